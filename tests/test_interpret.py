"""The interpretability measures on inputs whose answer is known."""

import pytest
import torch
import torch.nn.functional as F

from expmap.interpret import (
    WEAK_DETAIL_CORRELATION,
    mask_region_share,
    pattern_map_fidelity,
    pattern_map_invariance,
    prototype_agreement,
    weak_maps_warnings,
)


def test_identical_maps_per_class_are_perfectly_invariant():
    templates = torch.eye(3).repeat_interleave(4, dim=0).view(12, 1, 1, 3)  # 3 classes x 4
    labels = torch.arange(3).repeat_interleave(4)
    result = pattern_map_invariance(templates, labels, num_classes=4)  # class 3 absent
    assert result["within_between_ratio"] == pytest.approx(0.0)
    assert result["nearest_mean_accuracy"] == 1.0


def test_known_ratio_and_a_map_nearer_another_class():
    # class 0 maps at 0 and 2 (mean 1), class 1 maps at 10 and 12 (mean 11), one dim
    maps = torch.tensor([[0.0], [2.0], [10.0], [12.0]])
    labels = torch.tensor([0, 0, 1, 1])
    result = pattern_map_invariance(maps, labels, 2)
    # leave-one-out distance to own mean is 2 for every map; classes' means lie 10 apart
    assert result["within_between_ratio"] == pytest.approx(2 / 10)
    assert result["nearest_mean_accuracy"] == 1.0
    swapped = torch.tensor([[0.0], [11.0], [10.0], [3.0]])  # each map nearer the other class
    assert pattern_map_invariance(swapped, labels, 2)["nearest_mean_accuracy"] == 0.0


def test_random_maps_score_near_chance():
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(700, 1, 16, 16, generator=generator)
    labels = torch.arange(7).repeat(100)
    result = pattern_map_invariance(maps, labels, 7)
    assert result["within_between_ratio"] > 5  # class means nearly coincide
    assert result["nearest_mean_accuracy"] < 0.3


def test_mask_share_against_area_share():
    regions = torch.zeros(2, 224, 224)
    regions[:, :112] = 1  # top half
    on_region = torch.full((2, 1, 7, 7), 0.4)  # a floor counts as no attention
    on_region[:, :, :3] = 1  # top three of seven rows
    result = mask_region_share(on_region, regions)
    assert result["area_share"] == pytest.approx(0.5)
    assert result["mask_share"] > 0.95
    uniform = mask_region_share(torch.full((2, 1, 7, 7), 0.5), regions)
    assert uniform["mask_share"] == pytest.approx(0.5, abs=1e-6)
    empty = mask_region_share(torch.ones(1, 1, 7, 7), torch.zeros(1, 224, 224))
    assert empty["mask_share"] is None


def test_collapsed_constant_maps_are_reported_not_divided_by_zero():
    maps = torch.full((6, 1, 4, 4), 0.4)
    result = pattern_map_invariance(maps, torch.tensor([0, 0, 1, 1, 2, 2]), 3)
    assert result["within_between_ratio"] is None and result["collapsed"]
    assert result["nearest_mean_accuracy"] == pytest.approx(1 / 3)


def faces_and_regions(generator, people=10, classes=3, size=32):
    """Grey faces of every person in every class: the person's brightness and smooth
    shading (identity) plus, in a class-specific region, a striped patch (the expression,
    fine detail included); the regions are known."""
    shading = F.interpolate(torch.rand(people, 1, 4, 4, generator=generator), size=size,
                            mode="bilinear", align_corners=False)
    identity = 0.2 * torch.rand(people, 1, 1, 1, generator=generator) + 0.3 * shading
    regions = torch.zeros(classes, size, size)
    for c in range(classes):
        regions[c, 8 * c + 4:8 * c + 8, 4:size - 4] = 1
    stripes = (torch.arange(size) % 4 < 2).float()  # a 4-px period: what a blur removes
    faces = torch.stack([identity[p] + 0.4 * regions[c] * stripes for c in range(classes)
                         for p in range(people)])
    labels = torch.arange(classes).repeat_interleave(people)
    return faces, labels, regions[labels]


def fold(generator, train_people=6):
    """Test faces, labels and regions of some people; the prototypes (class-mean faces) and
    their counts from the others'."""
    faces, labels, regions = faces_and_regions(generator)
    person = torch.arange(len(labels)) % 10
    train, test = person < train_people, person >= train_people
    prototypes = torch.stack([faces[train & (labels == c)].mean(0) for c in range(3)])
    counts = torch.bincount(labels[train], minlength=3)
    return faces[test], labels[test], regions[test], prototypes, counts


def measures(maps, generator=None):
    faces, labels, regions, prototypes, counts = fold(generator or
                                                      torch.Generator().manual_seed(0))
    return pattern_map_fidelity(maps(faces, labels, prototypes), faces, labels, prototypes,
                                counts, regions)


def vignette(size=32):
    """A grey oval with dark corners, the same for every class and person: the blob."""
    centred = (torch.arange(size) - (size - 1) / 2) / (size / 2)
    radius = centred[:, None].square() + centred[None, :].square()
    return (0.7 - 0.5 * radius).clamp(0, 1)


def test_maps_equal_to_the_prototypes_pass_every_measure():
    generator = torch.Generator().manual_seed(1)
    result = measures(lambda faces, labels, prototypes: prototypes[labels] + 0.01 * torch.randn(
        faces.shape, generator=generator))
    assert result["class_difference_correlation"] > 0.99
    assert result["class_difference_ratio"] == pytest.approx(1.0, abs=0.05)
    assert result["detail_correlation"] > 0.9
    assert result["invariance_gain"] > 4  # the person is gone, the expression is not
    assert result["region_concentration"] > 2.5  # the classes differ only in their regions
    assert weak_maps_warnings(result) == []


def test_a_constant_map_fails_and_is_warned_about():
    result = measures(lambda faces, labels, prototypes: torch.full_like(faces, 0.4))
    assert result["class_difference_correlation"] == 0.0
    assert result["class_difference_ratio"] == 0.0
    assert result["detail_correlation"] == 0.0
    assert result["invariance_gain"] is None and result["collapsed"]
    assert len(weak_maps_warnings(result)) == 3


def test_a_vignette_the_same_for_every_class_fails():
    result = measures(lambda faces, labels, prototypes: vignette().expand(faces.shape))
    assert result["class_difference_correlation"] == 0.0
    assert result["class_difference_ratio"] == 0.0
    assert abs(result["detail_correlation"]) < WEAK_DETAIL_CORRELATION
    assert len(weak_maps_warnings(result)) == 3


def test_a_copy_of_the_person_shows_the_expression_but_gains_no_invariance():
    result = measures(lambda faces, labels, prototypes: faces.clone())
    assert result["class_difference_correlation"] > 0.99  # each person shows every class
    assert result["invariance_gain"] == pytest.approx(1.0)  # the identity measure catches it


def test_a_class_without_test_images_or_training_images_is_left_out():
    faces, labels, regions, prototypes, counts = fold(torch.Generator().manual_seed(0))
    tested = labels != 2
    maps = prototypes[labels[tested]]
    result = prototype_agreement(maps, labels[tested], prototypes, counts)
    assert result["n_classes_compared"] == 2
    assert result["class_difference_correlation"] == pytest.approx(1.0)
    assert result["detail_correlation"] == pytest.approx(1.0)
    untrained = prototype_agreement(prototypes[labels], labels, prototypes,
                                    torch.tensor([6, 6, 0]))
    assert untrained["n_classes_compared"] == 2
    assert untrained["class_difference_ratio"] == pytest.approx(1.0)


def test_prototypes_at_another_resolution_are_resized_to_the_maps():
    faces, labels, regions, prototypes, counts = fold(torch.Generator().manual_seed(0))
    large = F.interpolate(prototypes, scale_factor=2, mode="nearest")
    result = prototype_agreement(prototypes[labels], labels, large, counts)
    assert result["class_difference_correlation"] > 0.95
