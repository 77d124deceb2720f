"""From rows of the uint8 image store to float tensors on the device."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

EVAL_BATCH = 64  # images per forward pass when nothing is trained (evaluation, accuracy)


def read_rows(images: np.ndarray, rows: np.ndarray, pin: bool = False) -> torch.Tensor:
    """Rows of a uint8 [N,H,W,3] store (a memory map) as one uint8 tensor in RAM."""
    pixels = torch.from_numpy(np.ascontiguousarray(images[rows]))
    return pixels.pin_memory() if pin else pixels


def to_device(pixels: torch.Tensor, device: torch.device | str,
              flip: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 [B,H,W,3] -> float [B,3,H,W] in 0..255 on `device`; `flip` (bool [B]) mirrors
    the chosen images left-right. The copy crosses as uint8, a quarter of the bytes."""
    batch = pixels.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    if flip is not None:
        batch = torch.where(flip.to(device).view(-1, 1, 1, 1), batch.flip(3), batch)
    # NHWC in memory, as the modules' weights (train.build_loop): a no-op after the permute
    return batch.contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class Augmentation:
    """Random changes to each training image, each drawn per image; all zero: none."""

    shift: int = 0  # move by up to this many pixels on each axis (whole pixels)
    rotate: float = 0.0  # turn by up to this many degrees either way
    zoom: float = 0.0  # scale by a factor in 1 - zoom .. 1 + zoom
    jitter: float = 0.0  # contrast and brightness each times a factor in 1 - jitter .. 1 + jitter

    def __bool__(self) -> bool:
        return any((self.shift, self.rotate, self.zoom, self.jitter))


def augmented(batch: torch.Tensor, augmentation: Augmentation,
              generator: torch.Generator) -> torch.Tensor:
    """Each image [B,3,H,W] (0..255) moved, turned and scaled about its centre, the border
    pixels repeated into what it uncovers, then its contrast and brightness changed; one
    random draw per image and change, from `generator`."""
    if not augmentation:
        return batch
    n, _, height, width = batch.shape

    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * bound

    offsets = torch.randint(-augmentation.shift, augmentation.shift + 1, (n, 2),
                            generator=generator).double()
    angle = uniform(math.radians(augmentation.rotate))
    scale = 1 + uniform(augmentation.zoom)
    contrast, brightness = 1 + uniform(augmentation.jitter), 1 + uniform(augmentation.jitter)
    # output -> input coordinates, in grid_sample's -1..1 units of each axis
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin * height / width, 2 * offsets[:, 1] / width], 1),
                         torch.stack([sin * width / height, cos, 2 * offsets[:, 0] / height], 1)],
                        1).to(batch.dtype)
    grid = F.affine_grid(theta.to(batch.device), list(batch.shape), align_corners=False)
    moved = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border",
                          align_corners=False)
    if augmentation.jitter:
        mean = moved.mean(dim=(1, 2, 3), keepdim=True)
        factors = [f.to(batch.device, batch.dtype).view(n, 1, 1, 1)
                   for f in (contrast, brightness)]
        moved = ((moved - mean) * factors[0] + mean * factors[1]).clamp(0, 255)
    return moved.contiguous(memory_format=torch.channels_last)


def image_batch(images: np.ndarray, rows: np.ndarray, device: torch.device | str,
                flip: torch.Tensor | None = None) -> torch.Tensor:
    return to_device(read_rows(images, rows), device, flip)


def prefetched(batches: Iterable[np.ndarray], images: np.ndarray, pin: bool = False,
               depth: int = 2) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(rows, pixels) for each batch of rows, read by a background thread `depth` batches
    ahead, so that reading the store (page faults on a cold memory map) overlaps the step."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="expmap-read") as reader:
        pending: deque = deque()
        for rows in batches:
            pending.append((rows, reader.submit(read_rows, images, rows, pin)))
            if len(pending) > depth:
                rows_ready, pixels = pending.popleft()
                yield rows_ready, pixels.result()
        while pending:
            rows_ready, pixels = pending.popleft()
            yield rows_ready, pixels.result()


def ordered_batches(rows: np.ndarray, batch_size: int):
    for start in range(0, len(rows), batch_size):
        yield rows[start:start + batch_size]
