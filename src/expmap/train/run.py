"""`train_stage`, a stage from its inputs to its checkpoint: the hyperparameters checked,
the round's share of the epochs, the loop built, the epochs run from the resumable state
on, the checkpoint and metrics CSV written; running out of memory becomes one line."""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch

from expmap import checkpoints
from expmap.config import with_added_settings
from expmap.data.store import PreparedDataset
from expmap.devices import use_threads
from expmap.io import atomic_write_csv
from expmap.prototypes import expression_prototypes
from expmap.train.diagnostics import learned_nothing
from expmap.train.hyperparameters import HYPERPARAMETERS, TrainingError, min_steps_factor
from expmap.train.initialisation import initial_modules
from expmap.train.loop import Loop, split_validation
from expmap.train.optimisation import make_optimizer
from expmap.train.precision import forward_precision, resolve_precision
from expmap.train.resume import fingerprint, train_epochs
from expmap.train.stages import STAGES


def round_epochs(epochs: int, rounds: int, round_: int) -> range:
    """The epochs (0-based, of the whole stage) that round `round_` of `rounds` trains: the
    stage's epochs divided as evenly as possible, in order."""
    return range((round_ - 1) * epochs // rounds, round_ * epochs // rounds)


def build_loop(stage: int, hp, prepared, fold: str, init_checkpoint: dict | None,
               model: dict | None, device: torch.device, log, round_: int = 1,
               feature_cache_mb: float = 0) -> tuple[Loop, dict]:
    """The stage's modules, optimizer, sampler and data; and the model's architecture. Stages 2
    and 3 keep their frozen convs' activations where they take at most `feature_cache_mb`."""
    data = PreparedDataset(prepared).fold(fold)
    context = (f"{Path(prepared).parent.name} {fold} stage {stage}"
               + (f" round {round_}/{hp.rounds}" if hp.rounds > 1 else ""))
    torch.manual_seed(hp.seed * 1_000_003 + stage)  # the new modules' initial weights
    modules, architecture = initial_modules(stage, hp, data, model, init_checkpoint, round_,
                                            lambda line: log(f"{context}: {line}"))
    for module in modules.values():
        # channels_last: the convolutions' fast layout on GPUs and, measured, on CPUs too
        module.to(device, memory_format=torch.channels_last)
        if hp.compile:
            module.compile()
    runner = STAGES[stage](hp, modules, forward_precision(hp.precision, device))
    if stage == 3 and hp.pattern_target == "class_mean":
        runner.class_mean_faces = expression_prototypes(
            data.images, data.labels, data.train_index, data.num_classes)[0].to(device)
    runner.keep_frozen(data, 2 if hp.flip else 1, device, feature_cache_mb,
                       lambda line: log(f"{context}: {line}"))
    train_rows, validation_rows = split_validation(data.train_index, data.subjects,
                                                   hp.validation_fraction)
    sampler = runner.sampler(hp, train_rows, data.labels)
    factor = min_steps_factor(hp, len(sampler))
    if factor > 1:
        log(f"{context}: epochs {hp.epochs} x {len(sampler)} steps fall short of min_steps "
            f"{hp.min_steps}: {factor} x the epochs ({hp.epochs * factor}) and the warm-up "
            f"({hp.warmup_epochs * factor})")
        hp = dataclasses.replace(hp, epochs=hp.epochs * factor,
                                 warmup_epochs=hp.warmup_epochs * factor)
    loop = Loop(stage, hp, runner, make_optimizer(hp, runner.param_groups(hp)), sampler, data,
                torch.from_numpy(data.labels).to(device), validation_rows, device, context, log)
    parameters = sum(p.numel() for group in loop.optimizer.param_groups for p in group["params"])
    log(f"{loop.context}: {len(train_rows)} training, {len(validation_rows)} validation and "
        f"{len(data.test_index)} test images, {data.num_classes} classes, "
        f"{len(loop.sampler)} steps per epoch, {parameters:,} trainable parameters, "
        f"{hp.optimizer} optimizer, device {device}"
        + (", compiled" if hp.compile else ""))
    name, why = resolve_precision(hp.precision, device)
    log(f"{loop.context}: {name} forward passes; {why}")
    return loop, architecture


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
    hp = HYPERPARAMETERS[stage].from_dict(with_added_settings(stage, hp))
    if not 1 <= round_ <= hp.rounds:
        raise TrainingError(f"round {round_} of a stage with rounds = {hp.rounds}")
    use_threads(threads, log)
    init_checkpoint = checkpoints.load_checkpoint(init) if init else None
    lower = ("batch_size" if stage == 1
             else f"t (images per class in a step) or feature_cache_mb (now {feature_cache_mb:g})")
    with memory_advice(f"{Path(prepared).parent.name} {fold} stage {stage}", device, lower,
                       state_dir):
        loop, architecture = build_loop(stage, hp, prepared, fold, init_checkpoint, model,
                                        torch.device(device), log, round_, feature_cache_mb)
        hp = loop.hp  # its epochs stretched to min_steps where they fall short
        key = fingerprint(stage, hp, init_checkpoint, model, fold, round_)
        rows, selected = train_epochs(loop, key, round_epochs(hp.epochs, hp.rounds, round_),
                                      Path(state_dir))
        finish(stage, hp, loop, rows, selected, init_checkpoint, model, architecture, checkpoint,
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


def finish(stage: int, hp, loop: Loop, rows: list[dict], selected: dict | None,
           init_checkpoint: dict | None, model: dict | None, architecture: dict,
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
                                        architecture, history, run_id=uuid.uuid4().hex,
                                        preparation=loop.data.preparation)
    final["metrics"] = metric_rows
    final["warnings"] = stage_warnings(stage, loop, rows, init_checkpoint)
    if selected is not None:  # the next stage starts from the last epoch, as without it
        final["selected_on_validation"] = selected
    atomic_write_csv(metrics, pd.DataFrame(metric_rows[f"stage{stage}"]))
    checkpoints.save_atomic(final, checkpoint)
    loop.log(f"{loop.context}: wrote {checkpoint} and {metrics}")


def stage_warnings(stage: int, loop: Loop, rows: list[dict],
                   init_checkpoint: dict | None) -> dict[str, str]:
    """What the stages so far learned nothing in ("stageN" -> the line), the earlier stages'
    from `init_checkpoint`; this stage's is logged as a WARNING."""
    warnings = dict(init_checkpoint.get("warnings", {})) if init_checkpoint else {}
    warnings.pop(f"stage{stage}", None)  # a later round's verdict replaces an earlier one's
    line = learned_nothing(stage, rows[-1], loop.data.num_classes, len(rows) * len(loop.sampler))
    if line is not None:
        loop.log(f"{loop.context}: WARNING: {line}")
        warnings[f"stage{stage}"] = line
    return warnings
