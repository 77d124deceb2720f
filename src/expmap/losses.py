"""The paper's losses (SPEC §2): the triplet loss and the three stage losses.

Every function is vectorised and returns tensors: nothing here reads a value back to the
host, so a training step never waits on the device.

A stage loss is a StageLoss: the unweighted terms (what the metrics CSV shows as loss_*),
the weighted terms that add up to the total (what the per-term gradient norms are taken
of), and diagnostics (share of active triplets, each triplet term under the paper's own
definition, spread of the outputs across the batch), all detached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F

# Triplet loss settings (stages 2 and 3): the paper's are squared distances and the hardest
# positive and negative of each anchor; "euclidean" and "all" are ours (docs/SPEC.md).
DISTANCES = ("squared", "euclidean")
MININGS = ("hardest", "all")
PAPER_TRIPLET = {"distance": "squared", "mining": "hardest"}
# What L_pattern pulls a map toward (stage 3): the paper's is the input's grey face, the
# person included; "class_mean" (ours) is its class's mean grey training face (docs/SPEC.md).
PATTERN_TARGETS = ("input", "class_mean")
# What beta (L_sim's margin) is measured in (stage 3): "map" (the paper's) is the distance
# between two whole maps as L_sim computes it, so over 50,176 pixels beta = 0.2 is invisible;
# "pixel" (ours) is the RMS difference per pixel that two maps must differ by (docs/SPEC.md).
BETA_SCALES = ("map", "pixel")
# What L_pattern and L_sim train (stage 3): "encoder" (the paper's) the decoder and, through
# the code, the encoder, so the person the map is pulled toward enters the embedding;
# "decoder" (ours) the decoder alone, on the code that L_embed and L_classify shape.
PATTERN_GRADIENTS = ("encoder", "decoder")


def map_margin(beta: float, scale: str, pixels: int, distance: str) -> float:
    """L_sim's margin on the distance L_sim computes: beta itself ("map"), or the distance
    of two maps of `pixels` pixels that differ by beta RMS per pixel ("pixel")."""
    if scale == "map":
        return beta
    return beta * beta * pixels if distance == "squared" else beta * pixels ** 0.5


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


def as_distance(squared: torch.Tensor, distance: str) -> torch.Tensor:
    """Squared distances as they are, or their root ("euclidean")."""
    if distance == "squared":
        return squared
    # below 1e-12 the clamp has no gradient, so coinciding rows give 0, not NaN
    return squared.clamp_min(1e-12).sqrt()


class Triplet(NamedTuple):
    loss: torch.Tensor
    active: torch.Tensor  # share of the triplets (anchors, for "hardest") with a positive hinge


def _hardest(distances, same, margin):
    """Per anchor with a negative: hardest positive (itself included) minus hardest negative
    plus margin, clipped at 0; summed and divided by the batch size."""
    hardest_positive = distances.masked_fill(~same, float("-inf")).amax(dim=1)
    hardest_negative = distances.masked_fill(same, float("inf")).amin(dim=1)
    has_negative = (~same).any(dim=1)
    hinge = F.relu(hardest_positive - torch.where(has_negative, hardest_negative, 0.0) + margin)
    loss = torch.where(has_negative, hinge, 0.0 * hinge).sum() / len(distances)
    active = ((hinge > 0) & has_negative).sum() / has_negative.sum().clamp_min(1)
    return Triplet(loss, active)


def _all(distances, same, margin):
    """Mean over every valid triplet (anchor, another sample of its class, a sample of
    another class) of the hinge d_ap - d_an + margin."""
    eye = torch.eye(len(distances), dtype=torch.bool, device=distances.device)
    valid = (same & ~eye)[:, :, None] & ~same[:, None, :]  # [anchor, positive, negative]
    hinge = F.relu(distances[:, :, None] - distances[:, None, :] + margin)
    count = valid.sum().clamp_min(1)
    loss = torch.where(valid, hinge, 0.0 * hinge).sum() / count
    return Triplet(loss, ((hinge > 0) & valid).sum() / count)


def triplet(x: torch.Tensor, labels: torch.Tensor, margin: float, distance: str = "squared",
            mining: str = "hardest") -> Triplet:
    """Triplet loss on vectors or maps (flattened) and its share of active triplets. With no
    valid triplet the loss is a zero that still carries a gradient."""
    return _mined(squared_distances(x.flatten(1)), labels, margin, distance, mining)


def _mined(squared, labels, margin, distance, mining) -> Triplet:
    same = labels[:, None] == labels[None, :]
    return (_hardest if mining == "hardest" else _all)(as_distance(squared, distance), same,
                                                        margin)


def triplet_loss(x: torch.Tensor, labels: torch.Tensor, margin: float, distance: str = "squared",
                 mining: str = "hardest") -> torch.Tensor:
    """The triplet loss alone; by default the paper's (squared distances, batch-hard)."""
    return triplet(x, labels, margin, distance, mining).loss


def spread(x: torch.Tensor) -> torch.Tensor:
    """Standard deviation across the batch, averaged over features: 0 for a constant output."""
    return x.detach().flatten(1).float().std(dim=0).mean()


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """RGB 0..255 [B,3,H,W] -> luminance in [0,1] [B,1,H,W] (ITU-R 601 weights)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype)
    return (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True) / 255.0


def per_sample_squared_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batch mean of the per-sample sum of squared differences."""
    return (a - b).square().flatten(1).sum(dim=1).mean()


@dataclass(frozen=True)
class TripletSettings:
    distance: str = "squared"
    mining: str = "hardest"


@dataclass(frozen=True)
class EMRWeights:
    lambda1: float
    lambda2: float
    lambda3: float
    alpha: float
    triplets: TripletSettings = TripletSettings()


@dataclass(frozen=True)
class EPMGWeights:
    lambda4: float
    lambda5: float
    lambda6: float
    lambda7: float
    beta: float  # L_sim's margin on the distance it computes (map_margin converts)
    gamma: float
    triplets: TripletSettings = TripletSettings()


@dataclass
class StageLoss:
    terms: dict[str, torch.Tensor]  # "total" first, then each unweighted term
    weighted: dict[str, torch.Tensor]  # weight x term for each term; they add up to total
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def total(self) -> torch.Tensor:
        return self.terms["total"]


def _stage_loss(weighted: dict, unweighted: dict, diagnostics: dict) -> StageLoss:
    total = sum(weighted.values())
    return StageLoss({"total": total, **unweighted}, weighted,
                     {k: v.detach() for k, v in diagnostics.items()})


def _triplet_term(name: str, x, labels, margin, settings: TripletSettings
                  ) -> tuple[Triplet, dict]:
    """The triplet term in use and its diagnostics: the share of active triplets and the
    term under the paper's definition, from the same distance matrix."""
    squared = squared_distances(x.flatten(1))
    used = _mined(squared, labels, margin, settings.distance, settings.mining)
    with torch.no_grad():
        paper = _mined(squared.detach(), labels, margin, **PAPER_TRIPLET).loss
    return used, {f"active_{name}": used.active, f"paper_{name}": paper}


def stage1_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> StageLoss:
    efe = F.cross_entropy(logits, labels)
    return _stage_loss({"efe": efe}, {"efe": efe}, {"spread_mask": spread(mask)})


def stage2_loss(logits, mask, refined_mask, h, labels, w: EMRWeights) -> StageLoss:
    """L_EMR = l1 L_EFE + l2 L_mask + l3 L_h."""
    efe = F.cross_entropy(logits, labels)
    mask_term = per_sample_squared_error(mask, refined_mask)
    h_term, h_diagnostics = _triplet_term("h", h, labels, w.alpha, w.triplets)
    terms = {"efe": efe, "mask": mask_term, "h": h_term.loss}
    weighted = {"efe": w.lambda1 * efe, "mask": w.lambda2 * mask_term,
                "h": w.lambda3 * h_term.loss}
    diagnostics = {**h_diagnostics, "spread_mask": spread(mask), "spread_h": spread(h)}
    return _stage_loss(weighted, terms, diagnostics)


def stage3_loss(embedding, logits, pattern, target, labels, w: EPMGWeights) -> StageLoss:
    """L_EPMG = (l6 L_embed + l7 L_classify) + (l4 L_pattern + l5 L_sim); target [B,1,H,W]
    is the grey face L_pattern pulls each map toward (the paper's: the input's grey)."""
    embed, embed_diagnostics = _triplet_term("embed", embedding, labels, w.gamma, w.triplets)
    classify = F.cross_entropy(logits, labels)
    pattern_term = per_sample_squared_error(pattern, target)
    sim, sim_diagnostics = _triplet_term("sim", pattern, labels, w.beta, w.triplets)
    terms = {"embed": embed.loss, "classify": classify, "pattern": pattern_term,
             "sim": sim.loss}
    weighted = {"embed": w.lambda6 * embed.loss, "classify": w.lambda7 * classify,
                "pattern": w.lambda4 * pattern_term, "sim": w.lambda5 * sim.loss}
    diagnostics = {**embed_diagnostics, **sim_diagnostics,
                   "spread_embedding": spread(embedding), "spread_pattern": spread(pattern)}
    return _stage_loss(weighted, terms, diagnostics)
