"""From rows of the uint8 image store to float tensors on the device."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

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


def shifted(batch: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image [B,3,H,W] moved by its own random whole-pixel offset in -max_shift..
    max_shift on each axis, the border pixels repeated into what it uncovers."""
    if max_shift <= 0:
        return batch
    height, width = batch.shape[-2:]
    padded = F.pad(batch, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (len(batch), 2), generator=generator)
    moved = torch.stack([padded[i, :, y:y + height, x:x + width]
                         for i, (y, x) in enumerate(offsets.tolist())])
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
