"""The three training stages of SPEC §3, one fold at a time.

    stage 1  EFE: VGG-Face fine-tuned with the mask-net, cross-entropy, shuffled batches
    stage 2  EFE (first `frozen_convs` convs frozen) + EMR, L_EMR, t-per-class batches
    stage 3  EPMG on frozen EFE features, L_EPMG, t-per-class batches

`train_stage` reads one fold of a prepared dataset and the previous stage's checkpoint,
and writes the stage's checkpoint and a per-epoch metrics CSV. After every epoch it saves
a resumable state in `state_dir`; started again, it continues from there, and on a CPU
ends bit-identical to an unbroken run. The loop reads nothing back from the device but
once per epoch: losses, accuracy and the non-finite check are accumulated there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from expmap import checkpoints
from expmap.data.batches import image_batch, ordered_batches, prefetched, to_device
from expmap.data.sampling import ShuffledBatchSampler, TripletBatchSampler, epoch_generator
from expmap.data.store import PreparedDataset, atomic_write_csv
from expmap.errors import UserError
from expmap.losses import EMRWeights, EPMGWeights, stage1_loss, stage2_loss, stage3_loss
from expmap.model import EFE, EMR, EPMG, NUM_CONVS
from expmap.model.vggface import conv_layers

EVAL_BATCH = 64
PROGRESS_SECONDS = 60.0


class TrainingError(UserError):
    """A stage that cannot go on; the message is the one line to show."""


# ---------------------------------------------------------------- hyperparameters


@dataclass(frozen=True)
class CommonHyperparameters:
    lr: float
    momentum: float
    weight_decay: float
    epochs: int
    clipping: float  # max gradient norm, applied to each module on its own
    seed: int = 0
    warmup_epochs: int = 0
    schedule: str = "constant"  # or "cosine" (to 0 at the last step, after warm-up)
    flip: bool = True
    eval_every: int = 1
    # Share of the training subjects held out to choose an epoch on; 0 = none. The test set
    # never chooses anything: its accuracy per epoch is recorded for the curves only.
    validation_fraction: float = 0.0

    @classmethod
    def from_dict(cls, values: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainingError(f"unknown hyperparameter(s) {unknown} for {cls.__name__}")
        missing = sorted(f.name for f in fields(cls)
                         if f.name not in values and f.default is dataclasses.MISSING)
        if missing:
            raise TrainingError(f"missing hyperparameter(s) {missing} for {cls.__name__}")
        hp = cls(**values)
        if not 0.0 <= hp.validation_fraction < 1.0:
            raise TrainingError("validation_fraction must lie in [0, 1), not "
                                f"{hp.validation_fraction}")
        if hp.schedule not in ("constant", "cosine"):
            raise TrainingError(f"schedule must be 'constant' or 'cosine', not {hp.schedule!r}")
        return hp


@dataclass(frozen=True)
class Stage1Hyperparameters(CommonHyperparameters):
    batch_size: int = 32


@dataclass(frozen=True)
class Stage2Hyperparameters(CommonHyperparameters):
    lambda1: float = 2.0
    lambda2: float = 1e-2
    lambda3: float = 1e-2
    alpha: float = 0.2
    t: int = 8
    iterations: int = 100
    frozen_convs: int = NUM_CONVS


@dataclass(frozen=True)
class Stage3Hyperparameters(CommonHyperparameters):
    lambda4: float = 1e-4
    lambda5: float = 1e-4
    lambda6: float = 1.0
    lambda7: float = 1.0
    beta: float = 0.2
    gamma: float = 0.2
    t: int = 8
    iterations: int = 100


HYPERPARAMETERS = {1: Stage1Hyperparameters, 2: Stage2Hyperparameters, 3: Stage3Hyperparameters}


# ---------------------------------------------------------------- the three stages


def triplet_sampler(hp, rows: np.ndarray, labels: np.ndarray) -> TripletBatchSampler:
    return TripletBatchSampler(rows, labels[rows], hp.t, hp.iterations, hp.seed)


class Stage1:
    """EFE trained whole with cross-entropy."""

    terms = ("total", "efe")

    def __init__(self, hp: Stage1Hyperparameters, modules: dict[str, nn.Module]):
        self.modules = modules
        self.efe = modules["efe"]
        self.clip_groups = {"backbone": self.efe.features, "mask_net": self.efe.mask_net,
                            "classifier": self.efe.classifier}

    @staticmethod
    def sampler(hp, rows: np.ndarray, labels: np.ndarray) -> ShuffledBatchSampler:
        return ShuffledBatchSampler(rows, hp.batch_size, hp.seed)

    def train_mode(self):
        self.efe.train()

    def losses(self, images, labels):
        _, _, logits = self.efe(images)
        return stage1_loss(logits, labels), logits

    def predict(self, images):
        return self.efe(images)[2]


class Stage2(Stage1):
    """EFE minus its frozen convs, plus EMR, with L_EMR."""

    terms = ("total", "efe", "mask", "h")

    def __init__(self, hp: Stage2Hyperparameters, modules: dict[str, nn.Module]):
        super().__init__(hp, modules)
        self.emr = modules["emr"]
        self.clip_groups["emr"] = self.emr
        self.weights = EMRWeights(hp.lambda1, hp.lambda2, hp.lambda3, hp.alpha)
        if not 0 <= hp.frozen_convs <= NUM_CONVS:
            raise TrainingError(f"frozen_convs must lie in 0..{NUM_CONVS}, not {hp.frozen_convs}")
        for conv in conv_layers(self.efe.features)[: hp.frozen_convs]:
            conv.requires_grad_(False)

    sampler = staticmethod(triplet_sampler)

    def train_mode(self):
        self.efe.train()
        self.emr.train()

    def losses(self, images, labels):
        mask, _, logits = self.efe(images)
        h, refined = self.emr(mask)
        return stage2_loss(logits, mask, refined, h, labels, self.weights), logits


class Stage3:
    """EPMG alone on the features of the frozen EFE, with L_EPMG."""

    terms = ("total", "embed", "classify", "pattern", "sim")

    def __init__(self, hp: Stage3Hyperparameters, modules: dict[str, nn.Module]):
        self.modules = modules
        self.efe, self.emr, self.epmg = modules["efe"], modules["emr"], modules["epmg"]
        self.efe.requires_grad_(False)
        self.emr.requires_grad_(False)
        self.clip_groups = {"encoder": self.epmg.encoder, "classifier": self.epmg.classifier,
                            "decoder": self.epmg.decoder}
        self.weights = EPMGWeights(hp.lambda4, hp.lambda5, hp.lambda6, hp.lambda7, hp.beta,
                                   hp.gamma)

    sampler = staticmethod(triplet_sampler)

    def train_mode(self):
        self.efe.eval()
        self.emr.eval()
        self.epmg.train()

    def losses(self, images, labels):
        with torch.no_grad():
            masked = self.efe(images)[1]
        embedding, logits, pattern = self.epmg(masked)
        return stage3_loss(embedding, logits, pattern, images, labels, self.weights), logits

    def predict(self, images):
        return self.epmg(self.efe(images)[1])[1]


STAGES = {1: Stage1, 2: Stage2, 3: Stage3}


# ---------------------------------------------------------------- helpers


def learning_rate(hp: CommonHyperparameters, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up over `warmup_epochs`, then constant or cosine to zero."""
    warmup = hp.warmup_epochs * steps_per_epoch
    if step < warmup:
        return hp.lr * (step + 1) / warmup
    if hp.schedule == "constant":
        return hp.lr
    remaining = max(1, hp.epochs * steps_per_epoch - warmup)
    return hp.lr * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / remaining))


def initial_modules(stage: int, num_classes: int, model: dict | None, init: dict | None,
                    log: Callable[[str], None]) -> tuple[dict[str, nn.Module], float]:
    """Stage 1 builds EFE (loading VGG-Face weights when given); stages 2 and 3 start from the
    previous stage's checkpoint and add the module they train."""
    if stage == 1:
        model = model or {}
        width = float(model.get("width", 1.0))
        efe = EFE(num_classes, width)
        weights = model.get("weights")
        if weights:
            layout = efe.load_backbone(weights)
            log(f"loaded {layout} backbone weights from {weights}")
        else:
            log("WARNING: no backbone weights (defaults.model.weights is null): training from "
                "scratch with unit-scale input")
        return {"efe": efe}, width
    if init["stage"] != stage - 1:
        raise TrainingError(f"stage {stage} needs a stage-{stage - 1} checkpoint, got a "
                            f"stage-{init['stage']} one")
    modules = checkpoints.build_modules(init)
    if stage == 2:
        modules["emr"] = EMR()
    else:
        modules["epmg"] = EPMG(num_classes, modules["efe"].channels)
    return modules, init["width"]


def accuracy_on(stage, images: np.ndarray, labels: torch.Tensor, rows: np.ndarray,
                device) -> torch.Tensor:
    """Accuracy of the stage's head on `rows`, left on the device."""
    for module in stage.modules.values():
        module.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    with torch.no_grad():
        for batch_rows in ordered_batches(rows, EVAL_BATCH):
            logits = stage.predict(image_batch(images, batch_rows, device))
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


def fingerprint(stage: int, hp: CommonHyperparameters, init: dict | None, model: dict | None,
                fold: str) -> str:
    """What a resumable state must match to be continued rather than discarded."""
    key = {"stage": stage, "hp": dataclasses.asdict(hp), "fold": fold, "model": model,
           "init": init["run_id"] if init else None}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def nonfinite_message(context: str, epoch: int, steps: list[int], terms) -> str | None:
    failed = [(step, term) for step, term in zip(steps, terms) if step >= 0]
    if not failed:
        return None
    step, term = min(failed)
    return (f"{context}: loss term '{term}' became non-finite at epoch {epoch + 1}, step "
            f"{step + 1}; no checkpoint was overwritten; lower lr or clipping and rerun")


# ---------------------------------------------------------------- the loop


def train_stage(stage: int, hp: dict, prepared: str | os.PathLike, fold: str,
                checkpoint: str | os.PathLike, metrics: str | os.PathLike,
                state_dir: str | os.PathLike, init: str | os.PathLike | None = None,
                model: dict | None = None, threads: int = 1, device: str = "cpu",
                log: Callable[[str], None] = print) -> None:
    hp = HYPERPARAMETERS[stage].from_dict(hp)
    torch.set_num_threads(max(1, threads))
    device = torch.device(device)
    context = f"{Path(prepared).parent.name} {fold} stage {stage}"

    data = PreparedDataset(prepared).fold(fold)
    init_checkpoint = checkpoints.load_checkpoint(init) if init else None
    torch.manual_seed(hp.seed * 1_000_003 + stage)  # the new modules' initial weights
    modules, width = initial_modules(stage, data.num_classes, model, init_checkpoint, log)
    for module in modules.values():
        module.to(device)
    runner = STAGES[stage](hp, modules)
    labels = torch.from_numpy(data.labels).to(device)
    train_rows, validation_rows = split_validation(data.train_index, data.subjects,
                                                   hp.validation_fraction)
    sampler = runner.sampler(hp, train_rows, data.labels)
    steps_per_epoch = len(sampler)
    trainable = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=hp.lr, momentum=hp.momentum,
                                weight_decay=hp.weight_decay)

    state_dir = Path(state_dir)
    state_file = state_dir / "last.pt"
    key = fingerprint(stage, hp, init_checkpoint, model, fold)
    rows: list[dict] = []
    selected: dict | None = None  # the epoch chosen on validation: its modules and accuracy
    start_epoch = 0
    state = None
    if state_file.exists():
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - a damaged state only costs the epochs
            log(f"{context}: discarding unreadable {state_file} ({type(error).__name__}); "
                "starting from epoch 1")
    if state is not None:
        if state.get("fingerprint") == key:
            for name, module in modules.items():
                module.load_state_dict(state["modules"][name])
            optimizer.load_state_dict(state["optimizer"])
            rows, start_epoch, selected = state["metrics"], state["epoch"], state["selected"]
            log(f"{context}: resuming after epoch {start_epoch} from {state_file}")
        else:
            log(f"{context}: discarding {state_file} (other hyperparameters or inputs)")

    log(f"{context}: {len(train_rows)} training, {len(validation_rows)} validation and "
        f"{len(data.test_index)} test images, "
        f"{data.num_classes} classes, {steps_per_epoch} steps per epoch, "
        f"{sum(p.numel() for p in trainable):,} trainable parameters, device {device}")
    for epoch in range(start_epoch, hp.epochs):
        started = time.time()
        last_progress = started
        torch.manual_seed(hp.seed * 1_000_003 + 7919 * stage + epoch)  # dropout
        flips = epoch_generator(hp.seed + 1, epoch)
        sampler.set_epoch(epoch)
        runner.train_mode()
        sums = torch.zeros(len(runner.terms), device=device)
        first_nonfinite = torch.full((len(runner.terms),), -1, dtype=torch.long, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = 0
        pin = device.type == "cuda"
        for step, (batch_rows, pixels) in enumerate(prefetched(sampler, data.images, pin)):
            global_step = epoch * steps_per_epoch + step
            lr = learning_rate(hp, global_step, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            flip = torch.rand(len(batch_rows), generator=flips) < 0.5 if hp.flip else None
            images = to_device(pixels, device, flip)
            batch_labels = labels[batch_rows]
            terms, logits = runner.losses(images, batch_labels)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            for group in runner.clip_groups.values():
                nn.utils.clip_grad_norm_(group.parameters(), hp.clipping)
            optimizer.step()

            values = torch.stack([terms[t].detach() for t in runner.terms])
            first_nonfinite = torch.where(~torch.isfinite(values) & (first_nonfinite < 0),
                                          step, first_nonfinite)
            sums += values * len(batch_rows)
            correct += (logits.detach().argmax(1) == batch_labels).sum()
            seen += len(batch_rows)
            if time.time() - last_progress > PROGRESS_SECONDS:
                last_progress = time.time()
                log(f"{context}: epoch {epoch + 1} step {step + 1}/{steps_per_epoch}, "
                    f"{seen / (last_progress - started):.1f} images/s")

        problem = nonfinite_message(context, epoch, first_nonfinite.tolist(), runner.terms)
        if problem:
            raise TrainingError(problem)
        evaluate_now = (epoch + 1) % hp.eval_every == 0 or epoch + 1 == hp.epochs
        test_accuracy = (accuracy_on(runner, data.images, labels, data.test_index, device).item()
                         if evaluate_now else float("nan"))
        validation_accuracy = float("nan")
        if len(validation_rows):
            validation_accuracy = accuracy_on(runner, data.images, labels, validation_rows,
                                              device).item()
            if selected is None or validation_accuracy > selected["validation_accuracy"]:
                selected = {"epoch": epoch + 1, "validation_accuracy": validation_accuracy,
                            "modules": {n: {k: v.detach().cpu().clone()
                                            for k, v in m.state_dict().items()}
                                        for n, m in modules.items()}}
        means = (sums / seen).tolist()
        seconds = time.time() - started
        row = {"epoch": epoch + 1, "lr": lr,
               **{f"loss_{t}": v for t, v in zip(runner.terms, means)},
               "train_accuracy": correct.item() / seen,
               "validation_accuracy": validation_accuracy, "test_accuracy": test_accuracy,
               "images_per_second": seen / seconds, "seconds": seconds}
        rows.append(row)
        log(f"{context}: epoch {epoch + 1}/{hp.epochs} "
            + " ".join(f"{t} {v:.4g}" for t, v in zip(runner.terms, means))
            + f" | train {100 * row['train_accuracy']:.1f}%"
            + (f" validation {100 * validation_accuracy:.1f}%" if len(validation_rows) else "")
            + " test "
            + (f"{100 * test_accuracy:.1f}%" if evaluate_now else "-")
            + f" | lr {lr:.2e} {row['images_per_second']:.1f} img/s {seconds:.1f} s")
        state_dir.mkdir(parents=True, exist_ok=True)
        checkpoints.save_atomic({"fingerprint": key, "epoch": epoch + 1, "metrics": rows,
                                 "selected": selected,
                                 "modules": {n: m.state_dict() for n, m in modules.items()},
                                 "optimizer": optimizer.state_dict()}, state_file)

    if not rows:
        raise TrainingError(f"{context}: epochs is {hp.epochs}; it must be at least 1")
    history = dict(init_checkpoint["hyperparameters"]) if init_checkpoint else {}
    history[f"stage{stage}"] = dataclasses.asdict(hp)
    if model is not None:
        history["model"] = model
    final = checkpoints.make_checkpoint(stage, modules, data.class_names, width, history,
                                        run_id=uuid.uuid4().hex)
    if selected is not None:  # the next stage starts from the last epoch, as without it
        final["selected_on_validation"] = selected
    atomic_write_csv(metrics, pd.DataFrame(rows))
    checkpoints.save_atomic(final, checkpoint)
    shutil.rmtree(state_dir, ignore_errors=True)
    log(f"{context}: wrote {checkpoint} and {metrics}")
