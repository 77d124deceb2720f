"""The paper's losses (SPEC §2): batch-hard triplet loss and the three stage losses.

Every function is vectorised and returns tensors: nothing here reads a value back to the
host, so a training step never waits on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances [B, B] of the rows of x [B, D].

    Centring first keeps the Gram-matrix form accurate for long, similar rows (pattern maps
    of 50,176 pixels): distances do not change under a shift, the cancellation error does.
    """
    centred = x - x.mean(dim=0, keepdim=True)
    norms = centred.square().sum(dim=1)
    gram = centred @ centred.T
    distances = (norms[:, None] + norms[None, :] - 2.0 * gram).clamp_min(0.0)
    eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
    return distances.masked_fill(eye, 0.0)


def triplet_loss(x: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss on vectors or maps (flattened), squared distances.

    For every anchor with at least one sample of another class in the batch: hardest
    positive (the anchor itself included) minus hardest negative plus margin, clipped at 0;
    the sum over anchors divided by the batch size. With no active triplet the result is a
    zero that still carries a gradient.
    """
    x = x.flatten(1)
    distances = squared_distances(x)
    same = labels[:, None] == labels[None, :]
    hardest_positive = distances.masked_fill(~same, float("-inf")).amax(dim=1)
    hardest_negative = distances.masked_fill(same, float("inf")).amin(dim=1)
    has_negative = (~same).any(dim=1)
    hinge = F.relu(hardest_positive - torch.where(has_negative, hardest_negative, 0.0) + margin)
    return torch.where(has_negative, hinge, 0.0 * hinge).sum() / len(x)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """RGB 0..255 [B,3,H,W] -> luminance in [0,1] [B,1,H,W] (ITU-R 601 weights)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype)
    return (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True) / 255.0


def per_sample_squared_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batch mean of the per-sample sum of squared differences."""
    return (a - b).square().flatten(1).sum(dim=1).mean()


@dataclass(frozen=True)
class EMRWeights:
    lambda1: float
    lambda2: float
    lambda3: float
    alpha: float


@dataclass(frozen=True)
class EPMGWeights:
    lambda4: float
    lambda5: float
    lambda6: float
    lambda7: float
    beta: float
    gamma: float


def stage1_loss(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    efe = F.cross_entropy(logits, labels)
    return {"total": efe, "efe": efe}


def stage2_loss(logits, mask, refined_mask, h, labels, w: EMRWeights) -> dict[str, torch.Tensor]:
    """L_EMR = l1 L_EFE + l2 L_mask + l3 L_h."""
    efe = F.cross_entropy(logits, labels)
    mask_term = per_sample_squared_error(mask, refined_mask)
    h_term = triplet_loss(h, labels, w.alpha)
    total = w.lambda1 * efe + w.lambda2 * mask_term + w.lambda3 * h_term
    return {"total": total, "efe": efe, "mask": mask_term, "h": h_term}


def stage3_loss(embedding, logits, pattern, images, labels,
                w: EPMGWeights) -> dict[str, torch.Tensor]:
    """L_EPMG = (l6 L_embed + l7 L_classify) + (l4 L_pattern + l5 L_sim)."""
    embed = triplet_loss(embedding, labels, w.gamma)
    classify = F.cross_entropy(logits, labels)
    pattern_term = per_sample_squared_error(pattern, grayscale(images))
    sim = triplet_loss(pattern, labels, w.beta)
    encoder = w.lambda6 * embed + w.lambda7 * classify
    decoder = w.lambda4 * pattern_term + w.lambda5 * sim
    return {"total": encoder + decoder, "embed": embed, "classify": classify,
            "pattern": pattern_term, "sim": sim}
