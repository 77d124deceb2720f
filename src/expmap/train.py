"""The three training stages of SPEC §3, one fold at a time.

    stage 1  EFE: VGG-Face fine-tuned with the mask-net, cross-entropy, shuffled batches
    stage 2  EFE (first `frozen_convs` convs frozen) + EMR, L_EMR, t-per-class batches
    stage 3  EPMG on frozen EFE features, L_EPMG, t-per-class batches

`train_stage` reads one fold of a prepared dataset and the previous stage's checkpoint,
and writes the stage's checkpoint and a per-epoch metrics CSV. With `rounds` > 1 the three
stages repeat: round r trains its share of each stage's epochs (`round_epochs`), stage 1
of round r > 1 starting from round r - 1's stage-3 checkpoint; a checkpoint carries every
module made so far and the metric rows of earlier rounds. After every epoch it saves
a resumable state in `state_dir`; started again, it continues from there, and on a CPU
ends bit-identical to an unbroken run. The loop reads nothing back from the device but
once per epoch: losses, diagnostics, accuracy and the non-finite check are accumulated
there.

Besides the losses, every epoch's row holds diagnostics (see `expmap.diagnostics`):
gradient norms per module and per loss term, the share of active triplets, each triplet
term under the paper's definition, and the spread of each output across samples; the job
log warns when a triplet loss sits at its margin or an output is constant.
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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from expmap import checkpoints, diagnostics
from expmap.data.batches import (
    EVAL_BATCH,
    image_batch,
    ordered_batches,
    prefetched,
    shifted,
    to_device,
)
from expmap.data.sampling import (
    BalancedBatchSampler,
    ShuffledBatchSampler,
    TripletBatchSampler,
    epoch_generator,
)
from expmap.data.store import FoldData, PreparedDataset
from expmap.devices import use_threads
from expmap.errors import UserError
from expmap.feature_cache import FeatureCache
from expmap.io import atomic_write_csv
from expmap.losses import (
    DISTANCES,
    MININGS,
    PATTERN_TARGETS,
    EMRWeights,
    EPMGWeights,
    StageLoss,
    TripletSettings,
    grayscale,
    stage1_loss,
    stage2_loss,
    stage3_loss,
)
from expmap.model import EFE, NUM_CONVS, STACK, build_stack
from expmap.model.efe import EFEOutput
from expmap.model.emr import EMR_INITS
from expmap.model.epmg import DECODER_INITS
from expmap.model.vggface import conv_layers

PROGRESS_SECONDS = 60.0
MEAN_GREY_SAMPLE = 1024  # training images whose mean grey sets the decoder's output bias


class TrainingError(UserError):
    """A stage that cannot go on; the message is the one line to show."""


# ---------------------------------------------------------------- hyperparameters

# The values each choice may take: the schema lists the same (a test keeps them in step).
CHOICES = {
    "schedule": ("constant", "cosine"),
    "optimizer": ("sgd", "adam"),
    "clipping_scope": ("module", "model"),
    "distance": DISTANCES,
    "mining": MININGS,
    "emr_init": EMR_INITS,
    "decoder_init": DECODER_INITS,
    "precision": ("auto", "fp32", "bf16"),
    "sampler": ("shuffle", "balanced"),
    "pattern_target": PATTERN_TARGETS,
}


# Every key is required: config.yaml is the one home of the values (configs/paper.yaml holds
# the paper's formulation where ours deviates), and the schema the one list of keys.
@dataclass(frozen=True)
class CommonHyperparameters:
    lr: float
    momentum: float  # SGD only
    weight_decay: float  # SGD: L2 in the gradient; Adam: decoupled (AdamW)
    epochs: int  # of the whole stage, divided among the rounds
    rounds: int  # stage 1 -> 2 -> 3 repeated; equal in every stage (expmap.config checks)
    clipping: float  # max gradient norm, per module or per model (clipping_scope)
    seed: int
    optimizer: str  # "sgd" (the paper's) or "adam"
    clipping_scope: str  # "module" (ours) or "model" (each whole model, as the report)
    warmup_epochs: int
    schedule: str  # "constant" or "cosine" (to 0 at the last step, after warm-up)
    flip: bool
    eval_every: int
    precision: str  # "auto" (bf16 on a GPU that has it, else fp32), "fp32" or "bf16"
    compile: bool  # torch.compile the modules
    # Share of the training subjects held out to choose an epoch on; 0 = none. The test set
    # never chooses anything: its accuracy per epoch is recorded for the curves only.
    validation_fraction: float

    @classmethod
    def from_dict(cls, values: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainingError(f"unknown hyperparameter(s) {unknown} for {cls.__name__}")
        missing = sorted(known - set(values))
        if missing:
            raise TrainingError(f"missing hyperparameter(s) {missing} for {cls.__name__}")
        hp = cls(**values)
        if not 0.0 <= hp.validation_fraction < 1.0:
            raise TrainingError("validation_fraction must lie in [0, 1), not "
                                f"{hp.validation_fraction}")
        for key, allowed in CHOICES.items():
            if key in known and getattr(hp, key) not in allowed:
                raise TrainingError(f"{key} must be one of {', '.join(allowed)}, not "
                                    f"{getattr(hp, key)!r}")
        return hp


@dataclass(frozen=True)
class Stage1Hyperparameters(CommonHyperparameters):
    batch_size: int
    sampler: str  # "shuffle" (every image once per epoch) or "balanced" (classes equally)
    shift: int  # random translation of each training image, up to this many pixels; 0: none


@dataclass(frozen=True)
class TripletHyperparameters(CommonHyperparameters):
    t: int  # images per class in a batch
    iterations: int  # batches per epoch
    distance: str  # "squared" (the paper's) or "euclidean"
    mining: str  # "hardest" (the paper's) or "all" (every valid triplet)

    @property
    def triplets(self) -> TripletSettings:
        return TripletSettings(self.distance, self.mining)


@dataclass(frozen=True)
class Stage2Hyperparameters(TripletHyperparameters):
    lambda1: float
    lambda2: float
    lambda3: float
    alpha: float
    frozen_convs: int
    emr_init: str
    emr_lr: float | None  # the new EMR's learning rate; None: lr


@dataclass(frozen=True)
class Stage3Hyperparameters(TripletHyperparameters):
    lambda4: float
    lambda5: float
    lambda6: float
    lambda7: float
    beta: float
    gamma: float
    decoder_init: str
    decoder_lr: float | None  # the decoder's learning rate; None: lr
    pattern_target: str  # "input" (the paper's) or "class_mean" (PATTERN_TARGETS)


HYPERPARAMETERS = {1: Stage1Hyperparameters, 2: Stage2Hyperparameters, 3: Stage3Hyperparameters}


# ---------------------------------------------------------------- precision


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """What the modules' forward passes compute in: bfloat16, or None for fp32. "auto" is
    bf16 on a GPU that supports it and fp32 elsewhere (on a CPU bf16 is slower)."""
    if precision == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else None
    return torch.bfloat16 if precision == "bf16" else None


def precision_name(precision: str, device: torch.device) -> str:
    """What `precision` ("auto" included) computes in on `device`: "bf16" or "fp32"."""
    return "fp32" if autocast_dtype(precision, device) is None else "bf16"


def forward_precision(precision: str, device: torch.device) -> Callable[[], ContextManager]:
    """A context in which the modules run at `precision` (autocast; off for fp32)."""
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def as_fp32(outputs: tuple) -> tuple:
    """A module's named outputs in float32: the losses and metrics are computed in fp32."""
    return type(outputs)(*(t.float() for t in outputs))


# ---------------------------------------------------------------- the three stages


def triplet_sampler(hp, rows: np.ndarray, labels: np.ndarray) -> TripletBatchSampler:
    return TripletBatchSampler(rows, labels[rows], hp.t, hp.iterations, hp.seed)


class FrozenConvs:
    """A stage whose EFE has its first `frozen_convs` convs frozen: their activations are a
    fixed function of (image, mirrored or not), so they are computed the first time an
    image and view is drawn and read back afterwards, where they fit (`keep_frozen`)."""

    frozen_convs = 0
    cache: FeatureCache | None = None
    efe: EFE
    precision: Callable[[], ContextManager]

    def keep_frozen(self, data: FoldData, views: int, device: torch.device, limit_mb: float,
                    log: Callable[[str], None]) -> None:
        """Keep the frozen convs' activations of every image and view on `device` when they
        take at most `limit_mb`; else every step computes them."""
        if self.frozen_convs == 0:
            return
        what = f"the frozen convs' activations (conv 1..{self.frozen_convs})"
        probe = self.frozen_activations(image_batch(data.images, data.train_index[:1], device))
        shape = tuple(probe.shape[1:])
        needed = FeatureCache.megabytes(len(data.images), views, shape)
        if needed > limit_mb:
            log(f"{what} are recomputed at every step: keeping them would take "
                f"{needed:,.0f} MB, above feature_cache_mb {limit_mb:,.0f}")
            return
        self.cache = FeatureCache(len(data.images), views, shape, device)
        log(f"{what} are computed once per image and view and kept ({needed:,.0f} MB on "
            f"{device}, feature_cache_mb {limit_mb:,.0f})")

    def frozen_activations(self, images) -> torch.Tensor:
        with torch.no_grad(), self.precision():
            return self.efe.prefix(images, self.frozen_convs)

    def kept(self, images, rows, mirrored) -> torch.Tensor | None:
        """The frozen convs' kept activations of these images; None where none are kept."""
        if self.cache is None or rows is None:
            return None
        return self.cache(self.frozen_activations, images, rows, mirrored)

    def efe_outputs(self, images, rows, mirrored, precision) -> EFEOutput:
        kept = self.kept(images, rows, mirrored)
        with precision():
            # the module's own call where nothing is kept: compiled where `compile` asks
            out = (self.efe(images) if kept is None
                   else self.efe.forward_from(kept, self.frozen_convs))
        return as_fp32(out)


class Stage1(FrozenConvs):
    """EFE trained whole with cross-entropy."""

    margins: dict[str, tuple[str, float]] = {}  # triplet term -> (symbol, margin)

    def __init__(self, hp: Stage1Hyperparameters, modules: dict[str, nn.Module],
                 precision: Callable[[], ContextManager]):
        self.modules, self.precision = modules, precision
        self.efe = modules["efe"]
        # stage 1's own: a generator seeded once, so a resumed run's shifts differ from an
        # uninterrupted one's (its flips do not)
        self.shift = getattr(hp, "shift", 0)
        self.shifts = torch.Generator().manual_seed(hp.seed)
        # what is clipped and reported: model -> its trainable parts
        self.parts = {"efe": {"backbone": self.efe.features, "mask_net": self.efe.mask_net,
                              "classifier": self.efe.classifier}}

    @staticmethod
    def sampler(hp, rows: np.ndarray, labels: np.ndarray) -> ShuffledBatchSampler:
        if hp.sampler == "balanced":
            return BalancedBatchSampler(rows, labels[rows], hp.batch_size, hp.seed)
        return ShuffledBatchSampler(rows, hp.batch_size, hp.seed)

    def param_groups(self, hp) -> list[dict]:
        return [{"params": trainable([self.efe]), "base_lr": hp.lr}]

    def train_mode(self):
        self.efe.train()

    # rows and mirrored (the images' store rows, and which are mirrored) find kept frozen
    # activations; a batch built elsewhere (a bench, a test) passes neither
    def losses(self, images, labels, rows=None, mirrored=None) -> tuple[StageLoss, torch.Tensor]:
        if self.shift:  # moved images are not the kept ones: nothing is kept in stage 1
            images, rows = shifted(images, self.shift, self.shifts), None
        out = self.efe_outputs(images, rows, mirrored, self.precision)
        return stage1_loss(out.logits, labels, out.mask), out.logits

    def predict(self, images, rows=None):
        return self.efe_outputs(images, rows, None, nullcontext).logits


class Stage2(Stage1):
    """EFE minus its frozen convs, plus EMR, with L_EMR."""

    def __init__(self, hp: Stage2Hyperparameters, modules: dict[str, nn.Module],
                 precision: Callable[[], ContextManager]):
        super().__init__(hp, modules, precision)
        self.emr = modules["emr"]
        self.parts["emr"] = {"rnn": self.emr}
        self.weights = EMRWeights(hp.lambda1, hp.lambda2, hp.lambda3, hp.alpha, hp.triplets)
        self.margins = {"h": ("alpha", hp.alpha)}
        if not 0 <= hp.frozen_convs <= NUM_CONVS:
            raise TrainingError(f"frozen_convs must lie in 0..{NUM_CONVS}, not {hp.frozen_convs}")
        for conv in conv_layers(self.efe.features)[: hp.frozen_convs]:
            conv.requires_grad_(False)
        self.frozen_convs = hp.frozen_convs

    sampler = staticmethod(triplet_sampler)

    def param_groups(self, hp) -> list[dict]:
        emr_lr = hp.lr if hp.emr_lr is None else hp.emr_lr
        return [{"params": trainable([self.efe]), "base_lr": hp.lr},
                {"params": trainable([self.emr]), "lr": emr_lr, "base_lr": emr_lr}]

    def train_mode(self):
        self.efe.train()
        self.emr.train()

    def losses(self, images, labels, rows=None, mirrored=None) -> tuple[StageLoss, torch.Tensor]:
        out = self.efe_outputs(images, rows, mirrored, self.precision)
        emr = self.emr(out.mask)  # a small RNN, kept in fp32
        return stage2_loss(out.logits, out.mask, emr.refined, emr.h, labels,
                           self.weights), out.logits


class Stage3(FrozenConvs):
    """EPMG alone on the features of the frozen EFE, with L_EPMG."""

    frozen_convs = NUM_CONVS

    def __init__(self, hp: Stage3Hyperparameters, modules: dict[str, nn.Module],
                 precision: Callable[[], ContextManager]):
        self.modules, self.precision = modules, precision
        self.efe, self.emr, self.epmg = modules["efe"], modules["emr"], modules["epmg"]
        self.efe.requires_grad_(False)
        self.emr.requires_grad_(False)
        self.parts = {"epmg": {"encoder": self.epmg.encoder,
                               "classifier": self.epmg.classifier,
                               "decoder": self.epmg.decoder}}
        self.weights = EPMGWeights(hp.lambda4, hp.lambda5, hp.lambda6, hp.lambda7, hp.beta,
                                   hp.gamma, hp.triplets)
        self.margins = {"embed": ("gamma", hp.gamma), "sim": ("beta", hp.beta)}

    sampler = staticmethod(triplet_sampler)
    class_mean_faces: torch.Tensor | None = None  # [K,1,H,W]: pattern_target class_mean

    def features(self, images, rows, mirrored, precision) -> torch.Tensor:
        """The frozen EFE's masked features (no classifier: EPMG does not read it)."""
        with torch.no_grad():
            kept = self.kept(images, rows, mirrored)
            with precision():
                if kept is None:
                    return self.efe(images).features
                return self.efe.masked_from(kept, self.frozen_convs)[1]

    def param_groups(self, hp) -> list[dict]:
        decoder_lr = hp.lr if hp.decoder_lr is None else hp.decoder_lr
        head = [self.epmg.encoder, self.epmg.classifier]
        return [{"params": trainable(head), "base_lr": hp.lr},
                {"params": trainable([self.epmg.decoder]), "lr": decoder_lr,
                 "base_lr": decoder_lr}]

    def train_mode(self):
        self.efe.eval()
        self.emr.eval()
        self.epmg.train()

    def losses(self, images, labels, rows=None, mirrored=None) -> tuple[StageLoss, torch.Tensor]:
        features = self.features(images, rows, mirrored, self.precision)
        with self.precision():
            out = as_fp32(self.epmg(features))
        target = pattern_targets(self.class_mean_faces, images, labels, mirrored)
        return stage3_loss(out.embedding, out.logits, out.pattern, target, labels,
                           self.weights), out.logits

    def predict(self, images, rows=None):
        return self.epmg(self.features(images, rows, None, nullcontext).float()).logits


STAGES = {1: Stage1, 2: Stage2, 3: Stage3}


# ---------------------------------------------------------------- building a stage


def trainable(modules) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters() if p.requires_grad]


def make_optimizer(hp: CommonHyperparameters, groups: list[dict]) -> torch.optim.Optimizer:
    if hp.optimizer == "adam":
        return torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
    return torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)


def lr_factor(hp: CommonHyperparameters, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up over `warmup_epochs`, then constant or cosine to zero; a factor on
    each parameter group's base learning rate."""
    warmup = hp.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if hp.schedule == "constant":
        return 1.0
    remaining = max(1, hp.epochs * steps_per_epoch - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / remaining))


def mean_grey(images: np.ndarray, rows: np.ndarray, seed: int) -> float:
    """Mean luminance in (0, 1) of up to MEAN_GREY_SAMPLE training images (seeded)."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.permutation(rows)[:MEAN_GREY_SAMPLE])
    total = sum(grayscale(image_batch(images, batch, "cpu")).mean().item() * len(batch)
                for batch in ordered_batches(sample, EVAL_BATCH))
    return total / max(1, len(sample))


def class_mean_faces(data: FoldData, device: torch.device) -> torch.Tensor:
    """[K,1,H,W] mean grey (0..1) of each class's training images; zeros for a class
    without any."""
    rows = data.train_index
    sums = torch.zeros(data.num_classes, 1, *data.images.shape[1:3], dtype=torch.float64)
    for batch in ordered_batches(rows, EVAL_BATCH):
        labels = torch.from_numpy(data.labels[batch])
        sums.index_add_(0, labels, grayscale(image_batch(data.images, batch, "cpu")).double())
    counts = torch.bincount(torch.from_numpy(data.labels[rows]), minlength=data.num_classes)
    return (sums / counts.clamp_min(1)[:, None, None, None]).float().to(device)


def pattern_targets(class_faces: torch.Tensor | None, images, labels, mirrored
                    ) -> torch.Tensor:
    """What L_pattern pulls each map toward: the input's grey where class_faces is None,
    else its class's face [K,1,H,W], mirrored where the input is."""
    if class_faces is None:
        return grayscale(images)
    faces = class_faces[labels]
    if mirrored is None:
        return faces
    return torch.where(mirrored.to(faces.device)[:, None, None, None], faces.flip(-1), faces)


def round_epochs(epochs: int, rounds: int, round_: int) -> range:
    """The epochs (0-based, of the whole stage) that round `round_` of `rounds` trains: the
    stage's epochs divided as evenly as possible, in order."""
    return range((round_ - 1) * epochs // rounds, round_ * epochs // rounds)


def expected_init(stage: int, round_: int) -> int | None:
    """The stage whose checkpoint a stage starts from: the previous one; for stage 1, round
    r - 1's stage 3 (none in the first round)."""
    if stage > 1:
        return stage - 1
    return len(STACK) if round_ > 1 else None


def initial_modules(stage: int, hp, data: FoldData, model: dict | None, init: dict | None,
                    round_: int, log: Callable[[str], None]
                    ) -> tuple[dict[str, nn.Module], float]:
    """The modules stage `stage` trains or uses, with those the checkpoint `init` holds:
    stage 1 of the first round builds EFE (loading VGG-Face weights when given); later
    stages load the checkpoint and start afresh only the module they add."""
    wanted = expected_init(stage, round_)
    found = init["stage"] if init else None
    if found != wanted:
        raise TrainingError(f"stage {stage} of round {round_} needs "
                            + (f"a stage-{wanted} checkpoint" if wanted else "no checkpoint")
                            + (f", got a stage-{found} one" if found else ", got none"))
    held = init["modules"] if init else {}
    width = float((model or {}).get("width", 1.0)) if init is None else init["width"]
    names = [name for name in STACK if name in held or name in STACK[:stage]]
    modules = build_stack(names, data.num_classes, width,
                          emr_init=getattr(hp, "emr_init", "uniform"))
    for name, state in held.items():
        modules[name].load_state_dict(state)
    if init is None:
        load_backbone(modules["efe"], (model or {}).get("weights"), log)
    if stage == 3 and "epmg" not in held and hp.decoder_init != "pytorch":
        grey = mean_grey(data.images, data.train_index, hp.seed)
        modules["epmg"].init_decoder(hp.decoder_init, grey)
        log(f"decoder init {hp.decoder_init}: output bias at the training images' mean "
            f"grey {grey:.3f}")
    return modules, width


def load_backbone(efe: EFE, weights: str | None, log: Callable[[str], None]) -> None:
    if weights:
        log(f"loaded {efe.load_backbone(weights)} backbone weights from {weights}")
    else:
        log("WARNING: no backbone weights (defaults.model.weights is null): training from "
            "scratch with unit-scale input")


# ---------------------------------------------------------------- gradients


def clip_gradients(parts: dict[str, dict[str, nn.Module]], max_norm: float,
                   scope: str) -> dict[str, torch.Tensor]:
    """Clip each module ("module") or each whole model ("model") to `max_norm`; returns the
    norm of every module's gradient before clipping, as grad_<model>_<module>."""
    norms = {}
    for model, modules in parts.items():
        params = {name: [p for p in m.parameters() if p.grad is not None]
                  for name, m in modules.items()}
        module_norms = {name: (nn.utils.get_total_norm([p.grad for p in params[name]])
                               if params[name] else
                               torch.zeros((), device=next(m.parameters()).device))
                        for name, m in modules.items()}
        if scope == "module":
            for name, group in params.items():
                nn.utils.clip_grads_with_norm_(group, max_norm, module_norms[name])
        else:
            whole = nn.utils.get_total_norm(list(module_norms.values()))
            nn.utils.clip_grads_with_norm_([p for g in params.values() for p in g], max_norm,
                                           whole)
        norms.update({f"grad_{model}_{name}": n for name, n in module_norms.items()})
    return norms


def term_gradient_norms(loss: StageLoss, params: list[nn.Parameter]) -> dict[str, torch.Tensor]:
    """Norm of the gradient of each weighted loss term over the trainable parameters, as
    grad_term_<term>: which term drives the step (one extra backward per term)."""
    norms = {}
    for name, term in loss.weighted.items():
        grads = (torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
                 if term.requires_grad else [])
        present = [g for g in grads if g is not None]
        norms[f"grad_term_{name}"] = (nn.utils.get_total_norm(present) if present
                                      else torch.zeros((), device=loss.total.device))
    return norms


# ---------------------------------------------------------------- one epoch


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
    loop.runner.train_mode()
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


# ---------------------------------------------------------------- evaluation


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


# ---------------------------------------------------------------- state and logging


def fingerprint(stage: int, hp: CommonHyperparameters, init: dict | None, model: dict | None,
                fold: str, round_: int) -> str:
    """What a resumable state must match to be continued rather than discarded."""
    key = {"stage": stage, "hp": dataclasses.asdict(hp), "fold": fold, "model": model,
           "init": init["run_id"] if init else None, "round": round_}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def resume(state_file: Path, key: str, loop: Loop) -> tuple[list[dict], int, dict | None]:
    """(metrics rows, epochs done, selected) from a matching state; a state of other inputs
    or an unreadable one is discarded with a log line."""
    if not state_file.exists():
        return [], 0, None
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a damaged state only costs the epochs
        loop.log(f"{loop.context}: discarding unreadable {state_file} "
                 f"({type(error).__name__}); starting from epoch 1")
        return [], 0, None
    if state.get("fingerprint") != key:
        loop.log(f"{loop.context}: discarding {state_file} (other hyperparameters or inputs)")
        return [], 0, None
    for name, module in loop.runner.modules.items():
        module.load_state_dict(state["modules"][name])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.log(f"{loop.context}: resuming after epoch {state['epoch']} from {state_file}")
    return state["metrics"], state["epoch"], state["selected"]


def epoch_line(context: str, hp, row: dict, terms: list[str], validation: bool) -> str:
    test = row["test_accuracy"]
    return (f"{context}: epoch {row['epoch']}/{hp.epochs} "
            + " ".join(f"{t} {row[f'loss_{t}']:.4g}" for t in terms)
            + f" | train {100 * row['train_accuracy']:.1f}%"
            + (f" validation {100 * row['validation_accuracy']:.1f}%" if validation else "")
            + " test " + ("-" if math.isnan(test) else f"{100 * test:.1f}%")
            + f" | lr {row['lr']:.2e} {row['images_per_second']:.1f} img/s "
            + f"{row['seconds']:.1f} s")


# ---------------------------------------------------------------- the loop


def build_loop(stage: int, hp, prepared, fold: str, init_checkpoint: dict | None,
               model: dict | None, device: torch.device, log, round_: int = 1,
               feature_cache_mb: float = 0) -> tuple[Loop, float]:
    """The stage's modules, optimizer, sampler and data; and the model's width. Stages 2
    and 3 keep their frozen convs' activations where they take at most `feature_cache_mb`."""
    data = PreparedDataset(prepared).fold(fold)
    context = (f"{Path(prepared).parent.name} {fold} stage {stage}"
               + (f" round {round_}/{hp.rounds}" if hp.rounds > 1 else ""))
    torch.manual_seed(hp.seed * 1_000_003 + stage)  # the new modules' initial weights
    modules, width = initial_modules(stage, hp, data, model, init_checkpoint, round_,
                                     lambda line: log(f"{context}: {line}"))
    for module in modules.values():
        # channels_last: the convolutions' fast layout on GPUs and, measured, on CPUs too
        module.to(device, memory_format=torch.channels_last)
        if hp.compile:
            module.compile()
    runner = STAGES[stage](hp, modules, forward_precision(hp.precision, device))
    if stage == 3 and hp.pattern_target == "class_mean":
        runner.class_mean_faces = class_mean_faces(data, device)
    runner.keep_frozen(data, 2 if hp.flip else 1, device, feature_cache_mb,
                       lambda line: log(f"{context}: {line}"))
    train_rows, validation_rows = split_validation(data.train_index, data.subjects,
                                                   hp.validation_fraction)
    loop = Loop(stage, hp, runner, make_optimizer(hp, runner.param_groups(hp)),
                runner.sampler(hp, train_rows, data.labels), data,
                torch.from_numpy(data.labels).to(device), validation_rows, device, context, log)
    parameters = sum(p.numel() for group in loop.optimizer.param_groups for p in group["params"])
    log(f"{loop.context}: {len(train_rows)} training, {len(validation_rows)} validation and "
        f"{len(data.test_index)} test images, {data.num_classes} classes, "
        f"{len(loop.sampler)} steps per epoch, {parameters:,} trainable parameters, "
        f"{hp.optimizer} optimizer, device {device}, "
        f"{precision_name(hp.precision, device)} forward passes"
        + (", compiled" if hp.compile else ""))
    return loop, width


def train_stage(stage: int, hp: dict, prepared: str | os.PathLike, fold: str,
                checkpoint: str | os.PathLike, metrics: str | os.PathLike,
                state_dir: str | os.PathLike, init: str | os.PathLike | None = None,
                model: dict | None = None, threads: int = 1, device: str = "cpu",
                log: Callable[[str], None] = print, round_: int = 1,
                feature_cache_mb: float = 0) -> None:
    """Train stage `stage` (its share of epochs in round `round_` of hp's `rounds`) from the
    checkpoint `init`; write `checkpoint` and `metrics` (every round's rows so far). Stages
    2 and 3 keep their frozen convs' activations in up to `feature_cache_mb` of the
    device's memory. Running out of memory is one line that says what to lower."""
    hp = HYPERPARAMETERS[stage].from_dict(hp)
    if not 1 <= round_ <= hp.rounds:
        raise TrainingError(f"round {round_} of a stage with rounds = {hp.rounds}")
    use_threads(threads, log)
    init_checkpoint = checkpoints.load_checkpoint(init) if init else None
    lower = ("batch_size" if stage == 1
             else f"t (images per class in a step) or feature_cache_mb (now {feature_cache_mb:g})")
    with memory_advice(f"{Path(prepared).parent.name} {fold} stage {stage}", device, lower,
                       state_dir):
        loop, width = build_loop(stage, hp, prepared, fold, init_checkpoint, model,
                                 torch.device(device), log, round_, feature_cache_mb)
        key = fingerprint(stage, hp, init_checkpoint, model, fold, round_)
        rows, selected = train_epochs(loop, key, round_epochs(hp.epochs, hp.rounds, round_),
                                      Path(state_dir))
        finish(stage, hp, loop, rows, selected, init_checkpoint, model, width, checkpoint,
               metrics)
    shutil.rmtree(state_dir, ignore_errors=True)


@contextmanager
def memory_advice(context: str, device: str, lower: str, state_dir) -> Iterator[None]:
    """Running out of memory becomes one line that says what to lower."""
    try:
        yield
    except RuntimeError as error:
        # a GPU's allocator raises OutOfMemoryError; the CPU's a RuntimeError that says so
        if not (isinstance(error, torch.OutOfMemoryError)
                or "can't allocate memory" in str(error)):
            raise
        cause = str(error).split("\n")[0][:160]
        raise TrainingError(
            f"{context}: out of memory on {device} ({cause}): lower {lower}, or on a GPU set "
            f"precision: bf16; finished epochs stay in {state_dir} and a rerun continues "
            "from them") from None


def train_epochs(loop: Loop, key: str, epochs: range,
                 state_dir: Path) -> tuple[list[dict], dict | None]:
    """The round's `epochs` from the resumable state on, saving it after each: the metric
    rows, and the epoch chosen on validation."""
    state_file = state_dir / "last.pt"
    rows, done, selected = resume(state_file, key, loop)
    for epoch in range(max(done, epochs.start), epochs.stop):
        row, selected = run_epoch(loop, epoch, selected)
        rows.append(row)
        state_dir.mkdir(parents=True, exist_ok=True)
        checkpoints.save_atomic({"fingerprint": key, "epoch": epoch + 1, "metrics": rows,
                                 "selected": selected,
                                 "modules": {n: m.state_dict()
                                             for n, m in loop.runner.modules.items()},
                                 "optimizer": loop.optimizer.state_dict()}, state_file)
    return rows, selected


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


def finish(stage: int, hp, loop: Loop, rows: list[dict], selected: dict | None,
           init_checkpoint: dict | None, model: dict | None, width: float,
           checkpoint, metrics) -> None:
    """Write the stage's checkpoint and metrics CSV."""
    if not rows:
        raise TrainingError(f"{loop.context}: epochs is {hp.epochs}; it must be at least 1")
    history = dict(init_checkpoint["hyperparameters"]) if init_checkpoint else {}
    history[f"stage{stage}"] = dataclasses.asdict(hp)
    if model is not None:
        history["model"] = model
    # earlier rounds' rows of every stage travel with the checkpoints
    metric_rows = dict(init_checkpoint.get("metrics", {})) if init_checkpoint else {}
    metric_rows[f"stage{stage}"] = metric_rows.get(f"stage{stage}", []) + rows
    final = checkpoints.make_checkpoint(stage, loop.runner.modules, loop.data.class_names,
                                        width, history, run_id=uuid.uuid4().hex)
    final["metrics"] = metric_rows
    if selected is not None:  # the next stage starts from the last epoch, as without it
        final["selected_on_validation"] = selected
    atomic_write_csv(metrics, pd.DataFrame(metric_rows[f"stage{stage}"]))
    checkpoints.save_atomic(final, checkpoint)
    loop.log(f"{loop.context}: wrote {checkpoint} and {metrics}")
