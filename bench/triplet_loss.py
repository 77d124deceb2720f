"""Speed of the vectorised batch-hard triplet loss against a per-sample Python loop.

Forward plus backward at B=210 (RAF-DB/AffectNet batches: 7 classes x t=30), for 128-d
embeddings and for 224x224 pattern maps, measured in one run on this machine:

    .venv/bin/python bench/triplet_loss.py
"""

import sys
import time
from pathlib import Path

import torch

from expmap.losses import triplet_loss

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_losses import loop_triplet_loss  # noqa: E402  (the reference the tests check against)


def seconds_per_call(loss_fn, x, labels, repeats):
    best = float("inf")
    for _ in range(repeats):
        leaf = x.detach().clone().requires_grad_(True)
        started = time.perf_counter()
        loss_fn(leaf, labels, 0.2).backward()
        best = min(best, time.perf_counter() - started)
    return best


def main():
    torch.manual_seed(0)
    batch = 210
    labels = torch.arange(7).repeat_interleave(30)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B={batch}")
    for name, shape, loop_repeats in [("128-d vectors", (128,), 3),
                                      ("224x224 maps", (1, 224, 224), 1)]:
        x = torch.rand(batch, *shape)
        fast = seconds_per_call(triplet_loss, x, labels, repeats=20)
        slow = seconds_per_call(loop_triplet_loss, x, labels, repeats=loop_repeats)
        print(f"{name:14s} vectorised {1e3 * fast:9.2f} ms   loop {1e3 * slow:10.1f} ms   "
              f"ratio {slow / fast:8.1f}x")


if __name__ == "__main__":
    main()
