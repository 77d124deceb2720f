"""The frozen EFE's features, computed once per image and view in stage 3.

In stage 3 the EFE does not change and every image is read either as it is or mirrored,
so its masked features are a fixed function of (store row, mirrored): computing them once
and reading them back afterwards skips the EFE's forward pass, most of a stage-3 step's
arithmetic, from the second time an image is drawn on.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


class FeatureCache:
    """Features [rows x views, C, 7, 7] kept on the training device, filled as batches come.
    Which are filled is known on the host, so that a step never waits for the device."""

    def __init__(self, rows: int, views: int, feature_shape: tuple[int, ...],
                 device: torch.device):
        self.views = views
        self.features = torch.empty((rows * views, *feature_shape), device=device)
        self.filled = torch.zeros(rows * views, dtype=torch.bool)

    @staticmethod
    def megabytes(rows: int, views: int, feature_shape: tuple[int, ...]) -> float:
        return rows * views * math.prod(feature_shape) * 4 / 2**20  # fp32

    def slots(self, rows, mirrored: torch.Tensor | None) -> torch.Tensor:
        """Host tensor of each image's slot: its row's first, or second when mirrored."""
        slots = torch.as_tensor(rows, dtype=torch.long) * self.views
        if mirrored is not None:
            slots = slots + mirrored.cpu().long()
        return slots

    def __call__(self, compute: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                 rows, mirrored: torch.Tensor | None) -> torch.Tensor:
        """The features of `images` (store `rows`, `mirrored` or not), computing with
        `compute` only those of images not seen before; always fp32."""
        slots = self.slots(rows, mirrored)
        missing = (~self.filled[slots]).nonzero().squeeze(1)
        device = self.features.device
        if len(missing):
            new = slots[missing]
            self.features[new.to(device)] = compute(images[missing.to(device)]).float()
            self.filled[new] = True
        return self.features[slots.to(device)]
