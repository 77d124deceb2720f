"""From rows of the uint8 image store to float tensors on the device."""

from __future__ import annotations

import numpy as np
import torch


def image_batch(images: np.ndarray, rows: np.ndarray, device: torch.device | str,
                flip: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of a uint8 [N,H,W,3] store -> float [B,3,H,W] in 0..255 on `device`.

    The copy crosses to the device as uint8 (a quarter of the bytes) and becomes float there;
    `flip` (bool [B]) mirrors the chosen images left-right.
    """
    pixels = torch.from_numpy(np.ascontiguousarray(images[rows]))
    batch = pixels.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    if flip is not None:
        batch = torch.where(flip.to(device).view(-1, 1, 1, 1), batch.flip(3), batch)
    return batch


def ordered_batches(rows: np.ndarray, batch_size: int):
    for start in range(0, len(rows), batch_size):
        yield rows[start:start + batch_size]
