"""Batch samplers: shuffled batches (stage 1) and t-per-class triplet batches (stages 2, 3).

Each epoch draws from a generator seeded by (seed, epoch), so an epoch's batches do not
depend on what ran before it: a resumed run draws exactly the batches of an unbroken one.
"""

from __future__ import annotations

import numpy as np
import torch


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class ShuffledBatchSampler:
    """Every training sample once per epoch, in shuffled batches of `batch_size`."""

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int):
        self.indices = np.asarray(indices)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.indices), generator=epoch_generator(self.seed, self.epoch))
        shuffled = self.indices[order.numpy()]
        for start in range(0, len(shuffled), self.batch_size):
            yield shuffled[start:start + self.batch_size]


class TripletBatchSampler:
    """`iterations` batches per epoch, each holding t images drawn at random from every class
    present (without replacement where the class has t images, with replacement otherwise)."""

    def __init__(self, indices: np.ndarray, labels: np.ndarray, t: int, iterations: int,
                 seed: int):
        indices = np.asarray(indices)
        labels = np.asarray(labels)
        self.pools = [indices[labels == c] for c in np.unique(labels)]
        self.t = t
        self.iterations = iterations
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self):
        generator = epoch_generator(self.seed, self.epoch)
        for _ in range(self.iterations):
            batch = []
            for pool in self.pools:
                if len(pool) >= self.t:
                    chosen = torch.randperm(len(pool), generator=generator)[: self.t]
                else:
                    chosen = torch.randint(len(pool), (self.t,), generator=generator)
                batch.append(pool[chosen.numpy()])
            yield np.concatenate(batch)


class BalancedBatchSampler(ShuffledBatchSampler):
    """As many images per epoch as the training set holds, in shuffled batches of
    `batch_size`, every class drawn equally often: a class's images are taken in a random
    order, again from the start once all were taken (so a small class repeats and a large
    one is subsampled). For training sets much more unbalanced than their test sets
    (AffectNet's)."""

    def __init__(self, indices: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
        super().__init__(indices, batch_size, seed)
        labels = np.asarray(labels)
        self.pools = [self.indices[labels == c] for c in np.unique(labels)]

    def __iter__(self):
        generator = epoch_generator(self.seed, self.epoch)
        n, k = len(self.indices), len(self.pools)
        counts = np.full(k, n // k)
        counts[torch.randperm(k, generator=generator)[: n % k].numpy()] += 1
        drawn = [self._cycled(pool, count, generator) for pool, count in zip(self.pools, counts)]
        chosen = np.concatenate(drawn)
        shuffled = chosen[torch.randperm(n, generator=generator).numpy()]
        for start in range(0, n, self.batch_size):
            yield shuffled[start:start + self.batch_size]

    @staticmethod
    def _cycled(pool: np.ndarray, count: int, generator: torch.Generator) -> np.ndarray:
        rounds = -(-count // len(pool))
        orders = [pool[torch.randperm(len(pool), generator=generator).numpy()]
                  for _ in range(rounds)]
        return np.concatenate(orders)[:count] if orders else pool[:0]
