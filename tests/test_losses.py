"""triplet_loss against a plain loop written straight from SPEC §2."""

import pytest
import torch

from expmap.losses import (
    EMRWeights,
    EPMGWeights,
    TripletSettings,
    as_distance,
    grayscale,
    map_margin,
    squared_distances,
    stage2_loss,
    stage3_loss,
    triplet,
    triplet_loss,
)


def loop_triplet_loss(x, labels, margin):
    x = x.flatten(1)
    total = x.sum() * 0.0
    for i in range(len(x)):
        positives = [((x[i] - x[j]) ** 2).sum() for j in range(len(x)) if labels[j] == labels[i]]
        negatives = [((x[i] - x[j]) ** 2).sum() for j in range(len(x)) if labels[j] != labels[i]]
        if negatives:
            total = total + torch.clamp(max(positives) - min(negatives) + margin, min=0.0)
    return total / len(x)


def both(x, labels, margin):
    a = x.detach().clone().requires_grad_(True)
    b = x.detach().clone().requires_grad_(True)
    fast, slow = triplet_loss(a, labels, margin), loop_triplet_loss(b, labels, margin)
    fast.backward()
    slow.backward()
    return fast, slow, a.grad, b.grad


def batch_labels(batch, classes, generator):
    return torch.randint(0, classes, (batch,), generator=generator)


@pytest.mark.parametrize("batch", [56, 210])
@pytest.mark.parametrize("shape,margin", [((128,), 0.2), ((1, 224, 224), 0.2)])
def test_triplet_matches_loop(batch, shape, margin):
    generator = torch.Generator().manual_seed(batch)
    if len(shape) == 1:
        x = torch.rand(batch, *shape, generator=generator, dtype=torch.float64)
    else:  # pattern maps: similar images, as the decoder produces
        base = torch.rand(1, *shape, generator=generator, dtype=torch.float64)
        x = (base + 0.02 * torch.randn(batch, *shape, generator=generator,
                                       dtype=torch.float64)).clamp(0, 1)
    # classes 5 and 6 absent, class 4 with a single sample
    labels = batch_labels(batch, 4, generator)
    labels[0] = 4
    fast, slow, grad_fast, grad_slow = both(x, labels, margin)
    assert fast.item() > 0
    torch.testing.assert_close(fast, slow, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(grad_fast, grad_slow, rtol=1e-7, atol=1e-9)


def test_triplet_float32_maps_close_to_exact():
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 224, 224, generator=generator)
    x = (base + 0.05 * torch.randn(56, 1, 224, 224, generator=generator)).clamp(0, 1)
    labels = batch_labels(56, 7, generator)
    fast = triplet_loss(x, labels, 0.2)
    exact = loop_triplet_loss(x.double(), labels, 0.2)
    torch.testing.assert_close(fast.double(), exact, rtol=1e-4, atol=1e-4)


def test_triplet_single_class_is_zero_with_gradient():
    x = torch.rand(8, 128, requires_grad=True)
    loss = triplet_loss(x, torch.zeros(8, dtype=torch.long), 0.2)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_triplet_separated_classes_are_zero_and_margin_counts():
    x = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    labels = torch.tensor([0, 0, 1, 1])
    assert triplet_loss(x, labels, 0.2).item() == 0.0
    # d_ap = 0.01 for every anchor; d_an = 100 for anchors 0 and 3, 98.01 for 1 and 2
    expected = (2 * (100.0 + 0.01 - 100.0) + 2 * (100.0 + 0.01 - 98.01)) / 4
    assert triplet_loss(x, labels, 100.0).item() == pytest.approx(expected, abs=1e-4)


def test_grayscale_range():
    white = torch.full((1, 3, 4, 4), 255.0)
    assert torch.allclose(grayscale(white), torch.ones(1, 1, 4, 4))


def test_stage_losses_weigh_their_terms():
    generator = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    logits = torch.randn(6, 3, generator=generator)
    mask = torch.rand(6, 1, 7, 7, generator=generator)
    refined = torch.rand(6, 1, 7, 7, generator=generator)
    h = torch.randn(6, 16, generator=generator)
    w = EMRWeights(lambda1=2.0, lambda2=0.5, lambda3=3.0, alpha=0.2)
    loss = stage2_loss(logits, mask, refined, h, labels, w)
    terms = loss.terms
    assert set(loss.weighted) == {"efe", "mask", "h"}
    torch.testing.assert_close(sum(loss.weighted.values()), terms["total"])
    expected = 2.0 * terms["efe"] + 0.5 * terms["mask"] + 3.0 * terms["h"]
    torch.testing.assert_close(terms["total"], expected)
    torch.testing.assert_close(terms["mask"], ((mask - refined) ** 2).sum((1, 2, 3)).mean())

    e = torch.rand(6, 128, generator=generator, dtype=torch.float64)
    pattern = torch.rand(6, 1, 224, 224, generator=generator, dtype=torch.float64)
    images = torch.rand(6, 3, 224, 224, generator=generator, dtype=torch.float64) * 255
    logits = logits.double()
    w3 = EPMGWeights(lambda4=1e-4, lambda5=40.0, lambda6=1.0, lambda7=0.5, beta=0.2, gamma=0.3)
    loss = stage3_loss(e, logits, pattern, grayscale(images), labels, w3)
    terms = loss.terms
    # the paper's definition is reported beside the one in use
    torch.testing.assert_close(loss.diagnostics["paper_sim"], terms["sim"])
    expected = (terms["embed"] + 0.5 * terms["classify"] + 1e-4 * terms["pattern"]
                + 40.0 * terms["sim"])
    torch.testing.assert_close(terms["total"], expected)
    torch.testing.assert_close(terms["sim"], loop_triplet_loss(pattern, labels, 0.2))


def loop_triplet_all(x, labels, margin, euclidean):
    """Batch-all written as loops: the mean hinge over every (anchor, positive, negative)."""
    x = x.flatten(1)

    def d(i, j):
        squared = ((x[i] - x[j]) ** 2).sum()
        return squared.clamp_min(1e-12).sqrt() if euclidean else squared

    hinges = [torch.clamp(d(a, p) - d(a, n) + margin, min=0.0)
              for a in range(len(x)) for p in range(len(x)) for n in range(len(x))
              if p != a and labels[p] == labels[a] and labels[n] != labels[a]]
    return torch.stack(hinges).mean(), sum(float(h > 0) for h in hinges) / len(hinges)


@pytest.mark.parametrize("distance", ["squared", "euclidean"])
def test_batch_all_matches_loop(distance):
    generator = torch.Generator().manual_seed(7)
    x = torch.rand(18, 16, generator=generator, dtype=torch.float64)
    labels = batch_labels(18, 4, generator)
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    fast = triplet(a, labels, 0.3, distance, "all")
    slow, active = loop_triplet_all(b, labels, 0.3, distance == "euclidean")
    fast.loss.backward()
    slow.backward()
    torch.testing.assert_close(fast.loss, slow)
    torch.testing.assert_close(a.grad, b.grad)
    assert fast.active.item() == pytest.approx(active)
    assert 0 < active < 1


def test_euclidean_hardest_is_the_root_of_squared_distances():
    x = torch.tensor([[0.0], [0.5], [3.0], [3.25]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: d_ap 0.5, d_an 3.0 -> 0; anchor 1: 0.5 - 2.5 -> 0; all satisfied at margin 1
    assert triplet_loss(x, labels, 1.0, "euclidean").item() == 0.0
    # margin 2.6: hinges 0.5-3+2.6 = 0.1, 0.5-2.5+2.6 = 0.6, 0.25-2.5+2.6 = 0.35, 0.25-2.75+2.6
    result = triplet(x, labels, 2.6, "euclidean", "hardest")
    assert result.loss.item() == pytest.approx((0.1 + 0.6 + 0.35 + 0.1) / 4)
    assert result.active.item() == 1.0


def test_a_collapsed_embedding_sits_exactly_at_the_margin_with_no_gradient_under_squared():
    """The demo's EMR: every h the same point. The paper's loss is the margin, and its
    gradient vanishes; batch-all with Euclidean distances still says how to move."""
    h = torch.full((12, 16), 0.3, requires_grad=True)
    labels = torch.arange(12) % 3
    paper = triplet(h, labels, 0.2)
    assert paper.loss.item() == pytest.approx(0.2) and paper.active.item() == 1.0
    paper.loss.backward()
    assert h.grad.abs().max().item() == 0.0
    ours = TripletSettings("euclidean", "all")
    nudged = (h.detach() + 1e-3 * torch.randn(12, 16)).requires_grad_(True)
    triplet(nudged, labels, 0.2, ours.distance, ours.mining).loss.backward()
    assert nudged.grad.abs().max().item() > 1e-3



@pytest.mark.parametrize("distance", ["squared", "euclidean"])
def test_a_per_pixel_beta_is_the_margin_of_maps_that_differ_by_it_at_every_pixel(distance):
    """beta_scale pixel: maps that differ by beta at every pixel sit exactly at L_sim's
    margin, so another class's map half as far is a violated triplet; beta_scale map (the
    paper's) takes beta on the whole-map distance, which the same maps meet many times over."""
    pixels, beta = 224 * 224, 0.05
    grey = torch.full((1, pixels), 0.5, dtype=torch.float64)
    measured = as_distance(squared_distances(torch.cat([grey, grey + beta])), distance)[0, 1]
    torch.testing.assert_close(measured.item(), map_margin(beta, "pixel", pixels, distance))
    assert map_margin(beta, "map", pixels, distance) == beta
    maps = torch.cat([grey, grey, grey + beta / 2]).view(3, 1, 224, 224)  # classes 0, 0, 1
    labels = torch.tensor([0, 0, 1])

    def sim(scale):
        margin = map_margin(beta, scale, pixels, distance)
        w = EPMGWeights(1.0, 1.0, 1.0, 1.0, beta=margin, gamma=0.2,
                        triplets=TripletSettings(distance, "all"))
        return stage3_loss(torch.rand(3, 8, dtype=torch.float64), torch.zeros(3, 2).double(),
                           maps, maps, labels, w).terms["sim"].item()

    half = map_margin(beta, "pixel", pixels, distance) - measured.item() * (
        0.25 if distance == "squared" else 0.5)
    assert sim("map") == 0
    assert sim("pixel") == pytest.approx(half)
