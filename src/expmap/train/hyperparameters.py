"""The hyperparameters of each stage, read from the config and checked as they are read;
the values each choice may take; and `TrainingError`, the one line a stage that cannot go
on stops with."""

from __future__ import annotations

from dataclasses import dataclass, fields

from expmap.errors import UserError
from expmap.losses import (
    BETA_SCALES,
    DISTANCES,
    MININGS,
    PATTERN_GRADIENTS,
    PATTERN_TARGETS,
    TripletSettings,
)
from expmap.model.emr import EMR_INITS
from expmap.model.epmg import DECODER_INITS


class TrainingError(UserError):
    """A stage that cannot go on; the message is the one line to show."""


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
    "beta_scale": BETA_SCALES,
    "pattern_gradient": PATTERN_GRADIENTS,
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
    precision: str  # "auto" (bf16 where the device computes it natively), "fp32" or "bf16"
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
    rotate: float  # random turn of each training image, up to this many degrees; 0: none
    zoom: float  # random scale of each training image in 1 -/+ zoom; 0: none
    jitter: float  # random contrast and brightness factors in 1 -/+ jitter; 0: none
    # at least this many optimizer steps: on fewer images, epochs and warm-up are multiplied
    # by the smallest whole factor that reaches it (min_steps_factor); 0: epochs as written
    min_steps: int


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
    beta_scale: str  # "map" (the paper's) or "pixel": what beta is measured in (BETA_SCALES)
    pattern_gradient: str  # "encoder" (the paper's) or "decoder": what the maps' losses train


def min_steps_factor(hp, steps_per_epoch: int) -> int:
    """The whole factor on epochs that gives stage 1 at least hp.min_steps steps (1 where
    the epochs as written already do, and in the stages that have no min_steps)."""
    steps = hp.epochs * steps_per_epoch
    wanted = getattr(hp, "min_steps", 0)
    return 1 if steps >= wanted or steps == 0 else -(-wanted // steps)


HYPERPARAMETERS = {1: Stage1Hyperparameters, 2: Stage2Hyperparameters, 3: Stage3Hyperparameters}
