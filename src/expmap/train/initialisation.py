"""What a stage's modules start from: the previous stage's checkpoint (round r - 1's stage
3 for stage 1 of round r > 1), the VGG-Face weights for stage 1 of the first round, and
the decoder's output bias at the training images' mean grey for a new EPMG."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

from expmap import checkpoints
from expmap.data.batches import EVAL_BATCH, image_batch, ordered_batches
from expmap.data.store import FoldData
from expmap.losses import grayscale
from expmap.model import EFE, STACK, build_stack
from expmap.train.hyperparameters import TrainingError

LAST_LAYER = "classifier.6."  # the EFE's scores per class (fc8)
MEAN_GREY_SAMPLE = 1024  # training images whose mean grey sets the decoder's output bias


def mean_grey(images: np.ndarray, rows: np.ndarray, seed: int) -> float:
    """Mean luminance in (0, 1) of up to MEAN_GREY_SAMPLE training images (seeded)."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.permutation(rows)[:MEAN_GREY_SAMPLE])
    total = sum(grayscale(image_batch(images, batch, "cpu")).mean().item() * len(batch)
                for batch in ordered_batches(sample, EVAL_BATCH))
    return total / max(1, len(sample))


def expected_init(stage: int, round_: int) -> int | None:
    """The stage whose checkpoint a stage starts from: the previous one; for stage 1, round
    r - 1's stage 3 (none in the first round)."""
    if stage > 1:
        return stage - 1
    return len(STACK) if round_ > 1 else None


def initial_modules(stage: int, hp, data: FoldData, model: dict | None, init: dict | None,
                    round_: int, log: Callable[[str], None]
                    ) -> tuple[dict[str, nn.Module], dict]:
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
    architecture = ({"width": float((model or {}).get("width", 1.0)),
                     "batch_norm": bool((model or {}).get("batch_norm", False))}
                    if init is None else checkpoints.architecture(init))
    names = [name for name in STACK if name in held or name in STACK[:stage]]
    modules = build_stack(names, data.num_classes, architecture["width"],
                          emr_init=getattr(hp, "emr_init", "uniform"),
                          batch_norm=architecture["batch_norm"])
    for name, state in held.items():
        modules[name].load_state_dict(state)
    if init is None:
        load_backbone(modules["efe"], (model or {}).get("weights"), architecture, data, log)
    if stage == 3 and "epmg" not in held and hp.decoder_init != "pytorch":
        grey = mean_grey(data.images, data.train_index, hp.seed)
        modules["epmg"].init_decoder(hp.decoder_init, grey)
        log(f"decoder init {hp.decoder_init}: output bias at the training images' mean "
            f"grey {grey:.3f}")
    return modules, architecture


def load_backbone(efe: EFE, weights: str | None, architecture: dict, data: FoldData,
                  log: Callable[[str], None]) -> None:
    """Stage 1's start: VGG-16 weights, another expmap run's model, or nothing (scratch)."""
    if not weights:
        log("WARNING: no backbone weights (defaults.model.weights is null): training from "
            "scratch with unit-scale input")
        return
    other_run = checkpoints.peek_checkpoint(weights)
    if other_run is None:
        log(f"loaded {efe.load_backbone(weights)} backbone weights from {weights}")
        return
    log(start_from_run(efe, other_run, weights, architecture, data))


def start_from_run(efe: EFE, other_run: dict, path: str, architecture: dict,
                   data: FoldData) -> str:
    """Load the EFE of another expmap run's stage checkpoint, whose model and face
    preparation must be this run's; its last layer too where the classes are the same.
    Returns the line to log."""
    theirs = checkpoints.architecture(other_run)
    if theirs != architecture:
        raise TrainingError(
            f"model.weights = {path} holds a model of width {theirs['width']:g}, batch_norm "
            f"{theirs['batch_norm']}; this run's is width {architecture['width']:g}, "
            f"batch_norm {architecture['batch_norm']}: set model.width and model.batch_norm "
            "to the other run's")
    recorded = other_run.get("preparation") or {}
    if recorded and recorded != data.preparation:
        raise TrainingError(
            f"model.weights = {path} was trained on {preparation_words(recorded)} faces, "
            f"this dataset's are {preparation_words(data.preparation)}: start from a run "
            "whose faces were prepared alike, or train from scratch (weights: null)")
    state = other_run["modules"]["efe"]
    same_classes = list(other_run["class_names"]) == list(data.class_names)
    if not same_classes:  # its last layer scores other classes: this one starts afresh
        state = {k: v for k, v in state.items() if not k.startswith(LAST_LAYER)}
    efe.load_state_dict(state, strict=same_classes)
    return (f"started from another run's stage-{other_run['stage']} model ({path}): "
            + ("every layer" if same_classes else
               f"every layer but the last, which starts afresh (its classes "
               f"{', '.join(other_run['class_names'])} are not this dataset's)"))


def preparation_words(preparation: dict) -> str:
    return (f"{'grey' if preparation.get('grey') else 'colour'}, "
            f"{preparation.get('crop', 'unknown')}-cropped")
