"""The interpretability measures on inputs whose answer is known."""

import pytest
import torch

from expmap.interpret import mask_region_share, pattern_map_fidelity, pattern_map_invariance


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


def faces_and_regions(generator, people=6, classes=3, size=16):
    """Grey faces: a per-person base (identity) plus a class-specific bright patch in a
    class-specific region; the regions are known."""
    identity = torch.rand(people, 1, size, size, generator=generator) * 0.5
    regions = torch.zeros(classes, size, size)
    for c in range(classes):
        regions[c, 4 * c:4 * c + 4, 2:14] = 1
    faces = torch.stack([identity[p] + 0.5 * regions[c][None] for c in range(classes)
                         for p in range(people)])
    labels = torch.arange(classes).repeat_interleave(people)
    return faces, labels, regions[labels]


def test_maps_that_are_the_class_mean_faces_score_as_faces():
    generator = torch.Generator().manual_seed(0)
    faces, labels, regions = faces_and_regions(generator)
    means = torch.stack([faces[labels == c].mean(0) for c in range(3)])
    maps = means[labels] + 0.01 * torch.randn(faces.shape, generator=generator)
    result = pattern_map_fidelity(maps, faces, labels, 3, regions)
    assert result["span_ratio"] == pytest.approx(1.0, abs=0.1)
    assert result["face_correlation"] > 0.99
    assert result["invariance_gain"] > 4  # the person is gone, the expression is not
    assert result["region_concentration"] > 2.5  # the classes differ only in their regions


def test_flat_maps_score_as_no_face():
    generator = torch.Generator().manual_seed(1)
    faces, labels, regions = faces_and_regions(generator)
    flat = 0.5 + 1e-4 * torch.randn(faces.shape, generator=generator)
    result = pattern_map_fidelity(flat, faces, labels, 3, regions)
    assert result["span_ratio"] < 0.01
    assert abs(result["face_correlation"]) < 0.5
