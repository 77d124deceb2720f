"""How sure a result is: percentile bootstrap intervals that resample whole test subjects
(one person's images are not independent draws) and, with several seeds, the seeds; paired
differences of two heads, or two variants, on the same images and the same draws.

A result is held as a `Sample`: for every seed (row) and unit (column: a test subject, or
an image where its dataset names no subjects) the number of test images and how many of
them each head got right. One bootstrap draw picks as many units as there are, with
replacement, and as many seeds; an accuracy of a draw is its right answers over its images
(each unit weighted by how often it was drawn). numpy's generator draws; the generator's
seed is fixed, so a table rebuilt from the same predictions is the same to the digit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

RESAMPLES = 4000
LEVEL = 0.95
GENERATOR_SEED = 2022  # fixed: every rebuild of a table draws the same resamples
_CHUNK = 500  # draws computed at once (memory: _CHUNK x units)


@dataclass(frozen=True)
class Sample:
    """Per seed (rows, in `seeds` order) and unit (columns): images, and right answers
    of each head."""
    seeds: tuple
    units: tuple
    images: np.ndarray
    correct: dict[str, np.ndarray]

    @property
    def n_images(self) -> int:
        """Test images of one seed (every seed tests the same images)."""
        return int(self.images.sum(1).max()) if self.images.size else 0


def sample(predictions: pd.DataFrame, heads: list[str]) -> Sample:
    """A Sample of the per-image `predictions` (columns seed, subject, label and
    pred_<head> for each of `heads`: predictions.csv of every fold and seed together)."""
    frame = predictions.assign(unit=predictions["subject"].astype(str))
    for head in heads:
        frame[head] = (frame[f"pred_{head}"] == frame["label"]).astype(np.int64)
    grouped = frame.groupby(["seed", "unit"])[heads].agg(["sum", "count"])
    seeds = tuple(sorted(frame["seed"].unique().tolist()))
    units = tuple(sorted(frame["unit"].unique().tolist()))
    index = pd.MultiIndex.from_product([seeds, units], names=["seed", "unit"])
    table = grouped.reindex(index, fill_value=0)

    def matrix(column) -> np.ndarray:
        return table[column].to_numpy(np.float64).reshape(len(seeds), len(units))

    return Sample(seeds, units, matrix((heads[0], "count")),
                  {head: matrix((head, "sum")) for head in heads})


def draws(n_seeds: int, n_units: int, resamples: int = RESAMPLES,
          seed: int = GENERATOR_SEED):
    """Bootstrap weights, chunk by chunk: (seed weights [b, n_seeds], unit weights
    [b, n_units]), how often each seed and unit is drawn."""
    generator = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        b = min(_CHUNK, resamples - done)
        units = generator.multinomial(n_units, np.full(n_units, 1 / n_units), size=b)
        seeds = generator.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=b)
        yield seeds.astype(np.float64), units.astype(np.float64)
        done += b


def ratio_draws(numerator: np.ndarray, denominator: np.ndarray,
                resamples: int = RESAMPLES) -> np.ndarray:
    """sum(numerator) / sum(denominator) ([seeds, units] each) in every bootstrap draw."""
    found = []
    for seeds, units in draws(*numerator.shape, resamples):
        top = np.einsum("bs,su,bu->b", seeds, numerator, units)
        bottom = np.einsum("bs,su,bu->b", seeds, denominator, units)
        found.append(top / np.where(bottom > 0, bottom, np.nan))
    return np.concatenate(found)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def ratio_interval(numerator: np.ndarray, denominator: np.ndarray, scale: float = 1.0,
                   resamples: int = RESAMPLES) -> Interval:
    """The ratio of the sums and its percentile interval at LEVEL, times `scale`."""
    estimate = numerator.sum() / denominator.sum() if denominator.sum() > 0 else np.nan
    spread = ratio_draws(numerator, denominator, resamples)
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.nanpercentile(spread, [tail, 100 - tail])
    return Interval(float(scale * estimate), float(scale * low), float(scale * high))


def accuracy(found: Sample, head: str) -> Interval:
    """A head's pooled accuracy in percent, with its interval."""
    return ratio_interval(found.correct[head], found.images, 100)


def paired_difference(found: Sample, head: str, baseline: str) -> Interval:
    """`head` minus `baseline` in percentage points on the same images and draws: exactly 0
    for identical predictions."""
    return ratio_interval(found.correct[head] - found.correct[baseline], found.images, 100)


def discordant(predictions: pd.DataFrame, head: str, baseline: str) -> tuple[int, int]:
    """Of every seed's predictions, how many `head` alone gets right and how many `baseline`
    alone: only these can move their paired difference, so two heads that differ by little
    either disagree on few images or gain as many as they lose."""
    head_right = predictions[f"pred_{head}"] == predictions["label"]
    baseline_right = predictions[f"pred_{baseline}"] == predictions["label"]
    return int((head_right & ~baseline_right).sum()), int((baseline_right & ~head_right).sum())


def mean_interval(values: np.ndarray) -> Interval:
    """The mean of per-run values ([seeds, folds]; NaN where a run has none) with its
    interval, resampling folds and seeds."""
    present = ~np.isnan(values)
    return ratio_interval(np.where(present, values, 0.0), present.astype(np.float64))


def direction(interval: Interval, null: float = 0.0) -> str:
    """A claim that the value exceeds `null`: supported when the whole interval does,
    contradicted when the whole interval lies below it."""
    if interval.low > null:
        return "supported"
    if interval.high < null:
        return "contradicted"
    return "unresolved"


def against(interval: Interval, value: float | None) -> str:
    """Our interval against a published value."""
    if value is None or np.isnan(value):
        return "no paper value"
    if interval.high < value:
        return "below"
    if interval.low > value:
        return "above"
    return "consistent"
