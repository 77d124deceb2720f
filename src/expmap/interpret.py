"""Measured interpretability (the paper shows it only in pictures).

Identity invariance of pattern maps: a good pattern map looks the same whoever's face made
it, so maps of one class lie close to their class mean and far from the other classes'.
  within_between_ratio   mean distance of a map to its own class mean (leave-one-out)
                         over the mean distance between class means; lower is better
  nearest_mean_accuracy  share of maps whose nearest class mean (leave-one-out) is their
                         own class's
Mask placement, where the true expression regions are known (the synthetic benchmark):
  mask_share  share of the mask's mass inside the image's expression regions; the mass is
              the mask above its own minimum, so a constant floor (a sigmoid mask is
              rarely below 0.3 anywhere) counts as looking nowhere in particular
  area_share  those regions' share of the image: what a mask that looks nowhere in
              particular scores
Pattern maps as faces (the paper's claim is that a class's map looks like that expression
on anyone's face): span, correlation with the class-mean face, identity invariance against
the inputs', and where the classes differ; see pattern_map_fidelity.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def class_means_leave_one_out(maps: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """Class means [K, D] and, per map, its own class mean without that map [N, D]."""
    flat = maps.flatten(1).double()
    counts = torch.bincount(labels, minlength=num_classes).double()
    means = class_means(maps, labels, num_classes)
    own_count = counts[labels][:, None]
    own_without = (means[labels] * own_count - flat) / (own_count - 1).clamp_min(1)
    return means, own_without, counts


def pattern_map_invariance(maps: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """within_between_ratio and nearest_mean_accuracy of maps [N, ...] with labels [N]."""
    flat = maps.flatten(1).double()
    means, own_without, counts = class_means_leave_one_out(maps, labels, num_classes)
    usable = counts[labels] >= 2  # a map alone in its class has no leave-one-out mean
    present = torch.nonzero(counts > 0).flatten()
    if usable.sum() == 0 or len(present) < 2:
        return {"within_between_ratio": None, "nearest_mean_accuracy": None,
                "n_maps": int(len(flat))}
    within = (flat - own_without).norm(dim=1)[usable].mean()
    between_pairs = torch.cdist(means[present], means[present])
    k = len(present)
    between = between_pairs.sum() / (k * (k - 1))
    if between == 0:  # every class mean is the same map: a collapsed, constant decoder
        return {"within_between_ratio": None, "nearest_mean_accuracy": 1.0 / k,
                "n_maps": int(usable.sum()), "collapsed": True}
    distances = torch.cdist(flat, means[present])  # [N, present classes]
    own_column = torch.searchsorted(present, labels)
    distances[torch.arange(len(flat)), own_column] = (flat - own_without).norm(dim=1)
    nearest = present[distances.argmin(dim=1)]
    correct = (nearest == labels)[usable].double().mean()
    return {"within_between_ratio": float(within / between),
            "nearest_mean_accuracy": float(correct), "n_maps": int(usable.sum())}


def mask_region_share(masks: torch.Tensor, regions: torch.Tensor) -> dict:
    """Mask mass inside the true regions against the regions' area, over images that have
    regions. masks [N,1,h,w] (any grid, upsampled bilinearly), regions [N,H,W] in {0,1}."""
    regions = regions.float()
    has_region = regions.flatten(1).sum(1) > 0
    if has_region.sum() == 0:
        return {"mask_share": None, "area_share": None, "n_masks": 0}
    upsampled = F.interpolate(masks.float(), size=regions.shape[-2:], mode="bilinear",
                              align_corners=False)[:, 0]
    mass = upsampled.flatten(1)
    mass = mass - mass.amin(dim=1, keepdim=True)
    flat = mass.sum(1, keepdim=True) <= 1e-12  # a constant mask: attention spread evenly
    mass = torch.where(flat, torch.ones_like(mass), mass)
    inside = (mass * regions.flatten(1)).sum(1) / mass.sum(1)
    area = regions.flatten(1).mean(1)
    return {"mask_share": float(inside[has_region].mean()),
            "area_share": float(area[has_region].mean()), "n_masks": int(has_region.sum())}


def as_float16(maps: torch.Tensor) -> np.ndarray:
    """Maps in [0,1] as stored for figures: float16 keeps differences of 1e-3 that uint8
    would round away (a barely trained decoder's maps differ by less than 1/255)."""
    return maps.to(torch.float16).cpu().numpy()


# ---------------------------------------------------------------- do the maps show faces?

SPAN_PERCENTILES = (1.0, 99.0)  # a span robust to a few extreme pixels


def percentile_span(values: torch.Tensor) -> float:
    low, high = np.percentile(values.float().flatten().numpy(), SPAN_PERCENTILES)
    return float(high - low)


def class_means(maps: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[K, D] mean of the flattened maps of each class (zeros for an absent class)."""
    flat = maps.flatten(1).double()
    counts = torch.bincount(labels, minlength=num_classes).double()
    sums = torch.zeros(num_classes, flat.shape[1], dtype=flat.dtype).index_add_(0, labels, flat)
    return sums / counts.clamp_min(1)[:, None]


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float | None:
    a, b = a - a.mean(), b - b.mean()
    scale = a.norm() * b.norm()
    return float((a * b).sum() / scale) if scale > 0 else None


def pattern_map_fidelity(maps: torch.Tensor, faces: torch.Tensor, labels: torch.Tensor,
                         num_classes: int, regions: torch.Tensor | None = None) -> dict:
    """How much of a face the pattern maps show, against the grey input faces [N,1,H,W]
    (with the maps' pattern_map_invariance):
      map_span, face_span   1st-99th percentile span of all maps, and of the class-mean faces
      span_ratio            map_span / face_span: a flat grey map scores ~0
      face_correlation      median over classes of the correlation between the class-mean
                            map and the class-mean face
      invariance_gain       the inputs' within/between ratio over the maps': how much less
                            the maps depend on who made them than the faces do
      region_concentration  where regions [N,H,W] are known: the share of the class-mean
                            maps' departures from their common mean that lies inside each
                            class's expression regions, over those regions' share of the area
    """
    present = torch.unique(labels)
    map_means = class_means(maps, labels, num_classes)[present]
    face_means = class_means(faces, labels, num_classes)[present]
    map_span, face_span = percentile_span(maps), percentile_span(face_means)
    correlations = [c for c in (_correlation(m, f) for m, f in zip(map_means, face_means))
                    if c is not None]
    invariance = pattern_map_invariance(maps, labels, num_classes)
    result = {**invariance, "map_span": map_span, "face_span": face_span,
              "span_ratio": map_span / face_span if face_span > 0 else None,
              "face_correlation": float(np.median(correlations)) if correlations else None}
    maps_ratio = invariance["within_between_ratio"]
    faces_ratio = pattern_map_invariance(faces, labels, num_classes)["within_between_ratio"]
    result["invariance_gain"] = (faces_ratio / maps_ratio if maps_ratio and faces_ratio
                                 else None)
    if regions is not None:
        region_means = class_means(regions.float(), labels, num_classes)[present]
        departures = (map_means - map_means.mean(0, keepdim=True)).abs()
        inside = (departures * region_means).sum() / departures.sum().clamp_min(1e-12)
        area = region_means.mean()
        result["region_concentration"] = float(inside / area) if area > 0 else None
    return result
