"""Activations of frozen layers, computed once per image and view.

In stage 2 the EFE's first `frozen_convs` convs do not change, and in stage 3 none of the
EFE does; every image is read either as it is or mirrored. So what the frozen convs make of
an image is a fixed function of (store row, mirrored): computing it once and reading it
back afterwards skips their forward pass, most of a step's arithmetic in stage 3 and, with
the paper's 13 frozen convs, in stage 2, from the second time an image is drawn on.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


class FeatureCache:
    """Activations [rows x views, ...] kept on the training device, filled as batches come.
    Which are filled is known on the host: a step never reads a value back from the device."""

    def __init__(self, rows: int, views: int, shape: tuple[int, ...], device: torch.device):
        self.views = views
        self.activations = torch.empty((rows * views, *shape), device=device)
        self.filled = torch.zeros(rows * views, dtype=torch.bool)

    @staticmethod
    def megabytes(rows: int, views: int, shape: tuple[int, ...]) -> float:
        return rows * views * math.prod(shape) * 4 / 2**20  # fp32

    def slots(self, rows, mirrored: torch.Tensor | None) -> torch.Tensor:
        """Host tensor of each image's slot: its row's first, or second when mirrored."""
        slots = torch.as_tensor(rows, dtype=torch.long) * self.views
        if mirrored is not None:
            slots = slots + mirrored.cpu().long()
        return slots

    def __call__(self, compute: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                 rows, mirrored: torch.Tensor | None) -> torch.Tensor:
        """The activations of `images` (store `rows`, `mirrored` or not), computing with
        `compute` only those of images not seen before; always fp32."""
        slots = self.slots(rows, mirrored)
        missing = (~self.filled[slots]).nonzero().squeeze(1)
        device = self.activations.device
        if len(missing):
            new = slots[missing]
            self.activations[new.to(device)] = compute(images[missing.to(device)]).float()
            self.filled[new] = True
        return self.activations[slots.to(device)]
