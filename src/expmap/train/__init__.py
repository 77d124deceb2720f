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
ends bit-identical to an unbroken run. Every epoch's metrics row holds the losses, the
accuracies and the diagnostics that say whether a stage is learning (`loop`).

Each module's docstring says what it holds; docs/ARCHITECTURE.md lists them in the order
they import one another. This package re-exports what the workflow, the bench and the
tests call.
"""

from expmap.train.hyperparameters import (
    CHOICES,
    HYPERPARAMETERS,
    CommonHyperparameters,
    Stage1Hyperparameters,
    Stage2Hyperparameters,
    Stage3Hyperparameters,
    TrainingError,
)
from expmap.train.loop import train_one_epoch
from expmap.train.optimisation import clip_gradients, make_optimizer
from expmap.train.precision import (
    autocast_dtype,
    forward_precision,
    precision_name,
    resolve_precision,
)
from expmap.train.run import build_loop, round_epochs, train_stage
from expmap.train.stages import STAGES, Stage1, Stage2, Stage3

__all__ = [
    "CHOICES",
    "HYPERPARAMETERS",
    "STAGES",
    "CommonHyperparameters",
    "Stage1",
    "Stage1Hyperparameters",
    "Stage2",
    "Stage2Hyperparameters",
    "Stage3",
    "Stage3Hyperparameters",
    "TrainingError",
    "autocast_dtype",
    "build_loop",
    "clip_gradients",
    "forward_precision",
    "make_optimizer",
    "precision_name",
    "resolve_precision",
    "round_epochs",
    "train_one_epoch",
    "train_stage",
]
