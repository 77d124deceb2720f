"""The expression prototypes of a fold: each class's mean grey training face.

What `interpret` measures the pattern maps against, and, with stage 3's `pattern_target:
class_mean`, what L_pattern pulls each map toward (one function, so the two are the same
faces: docs/SPEC.md says what that means for the measures).
"""

from __future__ import annotations

import numpy as np
import torch

from expmap.data.batches import EVAL_BATCH, image_batch, ordered_batches
from expmap.losses import grayscale

# Training images per class whose mean is the prototype: bounds the reading on a large
# training set (AffectNet's 280,000); the smaller benchmarks' classes use every image.
PROTOTYPE_IMAGES_PER_CLASS = 500


def expression_prototypes(images: np.ndarray, labels: np.ndarray, rows: np.ndarray,
                          num_classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The class-mean grey faces [K,1,H,W] in [0,1] of up to PROTOTYPE_IMAGES_PER_CLASS
    training `rows` per class (a seeded draw), and how many images each mean has [K]
    (0: a class without training images, whose prototype stays 0)."""
    generator = np.random.default_rng(seed)
    drawn = [generator.permutation(rows[labels[rows] == c])[:PROTOTYPE_IMAGES_PER_CLASS]
             for c in range(num_classes)]
    chosen = np.sort(np.concatenate(drawn))
    sums = torch.zeros(num_classes, 1, *images.shape[1:3], dtype=torch.float64)
    for batch in ordered_batches(chosen, EVAL_BATCH):
        grey = grayscale(image_batch(images, batch, "cpu"))
        sums.index_add_(0, torch.from_numpy(labels[batch]), grey.double())
    counts = torch.tensor([len(d) for d in drawn])
    return (sums / counts.clamp_min(1).view(-1, 1, 1, 1)).float(), counts
