"""The resumable state of a running stage: saved after every epoch in `state_dir`, and
continued from when the stage starts again with the same inputs (on a CPU it ends
bit-identical to an unbroken run); a state of other inputs is discarded."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from expmap import checkpoints
from expmap.train.hyperparameters import CommonHyperparameters
from expmap.train.loop import Loop, run_epoch


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
