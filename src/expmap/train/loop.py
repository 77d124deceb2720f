"""One epoch of a stage: its steps (learning rate, flips, losses, clipping, diagnostics),
the sums kept on the device, the accuracy on the test and the validation rows, and the
epoch's metrics row and job-log line. The loop reads nothing back from the device but once
per epoch: losses, diagnostics, accuracy and the non-finite check are accumulated there.

Besides the losses, every epoch's row holds diagnostics (see `diagnostics`): gradient
norms per module and per loss term, the share of active triplets, each triplet term under
the paper's definition, and the spread of each output across samples; the job log warns
when a triplet loss sits at its margin or an output is constant.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from expmap.data.batches import EVAL_BATCH, image_batch, ordered_batches, prefetched, to_device
from expmap.data.sampling import ShuffledBatchSampler, TripletBatchSampler, epoch_generator
from expmap.data.store import FoldData
from expmap.losses import StageLoss
from expmap.train import diagnostics
from expmap.train.hyperparameters import CommonHyperparameters, TrainingError
from expmap.train.optimisation import clip_gradients, lr_factor, term_gradient_norms
from expmap.train.stages import Stage1, Stage2, Stage3

PROGRESS_SECONDS = 60.0


class EpochTotals:
    """An epoch's sums on the device: loss terms and diagnostics weighted by batch size,
    correct predictions, and the first step at which each term became non-finite."""

    def __init__(self, device: torch.device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.once: dict[str, torch.Tensor] = {}  # values measured on one step only
        self.first_nonfinite: dict[str, torch.Tensor] = {}
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0

    def add(self, step: int, loss: StageLoss, measured: dict, logits, labels) -> None:
        n = len(labels)
        for name, value in loss.terms.items():
            value = value.detach()
            if name not in self.first_nonfinite:
                self.first_nonfinite[name] = torch.full((), -1, device=self.device)
            first = self.first_nonfinite[name]
            self.first_nonfinite[name] = torch.where(~torch.isfinite(value) & (first < 0),
                                                     step, first)
            self.sums[f"loss_{name}"] = self.sums.get(f"loss_{name}", 0.0) + value * n
        for name, value in {**loss.diagnostics, **measured}.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach().float() * n
        self.correct += (logits.detach().argmax(1) == labels).sum()
        self.seen += n

    def means(self) -> dict[str, float]:
        means = {name: (total / self.seen).item() for name, total in self.sums.items()}
        means.update({name: value.item() for name, value in self.once.items()})
        return {**means, "train_accuracy": self.correct.item() / max(1, self.seen)}

    def nonfinite(self) -> tuple[int, str] | None:
        failed = [(int(step), name) for name, step in self.first_nonfinite.items() if step >= 0]
        return min(failed) if failed else None


@dataclass
class Loop:
    """What every epoch of a stage uses."""

    stage: int
    hp: CommonHyperparameters
    runner: Stage1 | Stage2 | Stage3
    optimizer: torch.optim.Optimizer
    sampler: ShuffledBatchSampler | TripletBatchSampler
    data: FoldData
    labels: torch.Tensor  # all labels, on the device
    validation_rows: np.ndarray  # held-out training rows (empty: none)
    device: torch.device
    context: str
    log: Callable[[str], None]


def train_step(loop: Loop, step: int, global_step: int, pixels, batch_rows, flips,
               totals: EpochTotals) -> None:
    hp, runner, optimizer = loop.hp, loop.runner, loop.optimizer
    factor = lr_factor(hp, global_step, len(loop.sampler))
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    flip = torch.rand(len(batch_rows), generator=flips) < 0.5 if hp.flip else None
    images = to_device(pixels, loop.device, flip)
    batch_labels = loop.labels[batch_rows]
    loss, logits = runner.losses(images, batch_labels, batch_rows, flip)
    optimizer.zero_grad(set_to_none=True)
    if step == 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        totals.once.update(term_gradient_norms(loss, params))
    loss.total.backward()
    norms = clip_gradients(runner.parts, hp.clipping, hp.clipping_scope)
    optimizer.step()
    totals.add(step, loss, norms, logits, batch_labels)


def train_one_epoch(loop: Loop, epoch: int) -> tuple[EpochTotals, float]:
    """One pass of the sampler; returns the sums and the last learning rate."""
    hp = loop.hp
    torch.manual_seed(hp.seed * 1_000_003 + 7919 * loop.stage + epoch)  # dropout
    flips = epoch_generator(hp.seed + 1, epoch)
    loop.sampler.set_epoch(epoch)
    loop.runner.train_mode(epoch)
    totals = EpochTotals(loop.device)
    started = last_progress = time.time()
    steps = len(loop.sampler)
    batches = prefetched(loop.sampler, loop.data.images, loop.device.type == "cuda")
    for step, (batch_rows, pixels) in enumerate(batches):
        train_step(loop, step, epoch * steps + step, pixels, batch_rows, flips, totals)
        if time.time() - last_progress > PROGRESS_SECONDS:
            last_progress = time.time()
            loop.log(f"{loop.context}: epoch {epoch + 1} step {step + 1}/{steps}, "
                     f"{totals.seen / (last_progress - started):.1f} images/s")
    return totals, loop.optimizer.param_groups[0]["lr"]


def accuracy_on(stage, images: np.ndarray, labels: torch.Tensor, rows: np.ndarray,
                device) -> torch.Tensor:
    """Accuracy of the stage's head on `rows`, left on the device."""
    for module in stage.modules.values():
        module.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    with torch.no_grad():
        for batch_rows in ordered_batches(rows, EVAL_BATCH):
            logits = stage.predict(image_batch(images, batch_rows, device), batch_rows)
            correct += (logits.argmax(1) == labels[batch_rows]).sum()
    return correct / max(1, len(rows))


VALIDATION_SEED = 20220101  # fixed, so every stage of a fold holds out the same subjects


def split_validation(rows: np.ndarray, subjects: np.ndarray,
                     fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows): a seeded share of the training subjects held out."""
    if fraction == 0:
        return rows, rows[:0]
    names = np.unique(subjects[rows].astype(str))
    held = np.random.default_rng(VALIDATION_SEED).permutation(names)
    held = held[: max(1, round(fraction * len(names)))]
    is_validation = np.isin(subjects[rows].astype(str), held)
    return rows[~is_validation], rows[is_validation]


def evaluate_epoch(loop: Loop, epoch: int,
                   selected: dict | None) -> tuple[float, float, dict | None]:
    """(test accuracy or NaN when not due, validation accuracy or NaN, the epoch chosen on
    validation so far with its modules)."""
    hp, runner, data = loop.hp, loop.runner, loop.data
    due = (epoch + 1) % hp.eval_every == 0 or epoch + 1 == hp.epochs
    test = (accuracy_on(runner, data.images, loop.labels, data.test_index, loop.device).item()
            if due else float("nan"))
    if not len(loop.validation_rows):
        return test, float("nan"), selected
    validation = accuracy_on(runner, data.images, loop.labels, loop.validation_rows,
                             loop.device).item()
    if selected is None or validation > selected["validation_accuracy"]:
        selected = {"epoch": epoch + 1, "validation_accuracy": validation,
                    "modules": {n: {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
                                for n, m in runner.modules.items()}}
    return test, validation, selected


def epoch_line(context: str, hp, row: dict, terms: list[str], validation: bool) -> str:
    test = row["test_accuracy"]
    return (f"{context}: epoch {row['epoch']}/{hp.epochs} "
            + " ".join(f"{t} {row[f'loss_{t}']:.4g}" for t in terms)
            + f" | train {100 * row['train_accuracy']:.1f}%"
            + (f" validation {100 * row['validation_accuracy']:.1f}%" if validation else "")
            + " test " + ("-" if math.isnan(test) else f"{100 * test:.1f}%")
            + f" | lr {row['lr']:.2e} {row['images_per_second']:.1f} img/s "
            + f"{row['seconds']:.1f} s")


def run_epoch(loop: Loop, epoch: int, selected: dict | None) -> tuple[dict, dict | None]:
    """Train, check, evaluate and log one epoch: its metrics row, and the epoch chosen on
    validation so far."""
    started = time.time()
    totals, lr = train_one_epoch(loop, epoch)
    problem = totals.nonfinite()
    if problem:
        step, term = problem
        raise TrainingError(f"{loop.context}: loss term '{term}' became non-finite at epoch "
                            f"{epoch + 1}, step {step + 1}; no checkpoint was overwritten; "
                            "lower lr or clipping and rerun")
    means = totals.means()
    test, validation, selected = evaluate_epoch(loop, epoch, selected)
    seconds = time.time() - started
    losses = {k: v for k, v in means.items() if k.startswith("loss_")}
    measured = {k: v for k, v in means.items() if k not in losses and k != "train_accuracy"}
    row = {"epoch": epoch + 1, "lr": lr, **losses, "train_accuracy": means["train_accuracy"],
           "validation_accuracy": validation, "test_accuracy": test,
           "images_per_second": totals.seen / seconds, "seconds": seconds, **measured}
    terms = [k[len("loss_"):] for k in losses]
    loop.log(epoch_line(loop.context, loop.hp, row, terms, len(loop.validation_rows) > 0))
    for warning in diagnostics.collapse_warnings(row, loop.runner.margins):
        loop.log(f"{loop.context}: WARNING: epoch {epoch + 1}: {warning}")
    return row, selected
