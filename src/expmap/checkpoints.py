"""Checkpoint files: what a finished stage writes and the next stage, evaluation and
`expmap predict` read. Written atomically; read with weights_only=True."""

from __future__ import annotations

import os

import torch

from expmap.errors import UserError
from expmap.io import replacing
from expmap.model import build_stack

FORMAT = "expmap-checkpoint/1"


class CheckpointError(UserError):
    """A checkpoint that cannot be used; the message is the one line to show."""


def save_atomic(obj, path: str | os.PathLike) -> None:
    """torch.save to a temporary name, then rename; a failed write leaves no file behind and
    a full disk is an OSError naming `path` (through a file object torch's own writer keeps
    the OSError as the cause of its RuntimeError)."""
    with replacing(path) as tmp, open(tmp, "wb") as file:
        torch.save(obj, file)


def load_checkpoint(path: str | os.PathLike) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one line
        raise CheckpointError(f"{path} is not a readable expmap checkpoint "
                              f"({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an expmap checkpoint (written by train_stage)")
    return checkpoint


def peek_checkpoint(path: str | os.PathLike) -> dict | None:
    """The expmap checkpoint at `path`, or None where the file holds something else (VGG-16
    weights). Memory-mapped, so a 500 MB weights file is not read to find that out."""
    try:
        found = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not one of ours; the weights reader says what it is
        return None
    return found if isinstance(found, dict) and found.get("format") == FORMAT else None


def architecture(checkpoint: dict) -> dict:
    """{width, batch_norm} of the model a checkpoint holds (older ones: no batch norm)."""
    return {"width": checkpoint["width"], "batch_norm": checkpoint.get("batch_norm", False)}


def build_modules(checkpoint: dict, selected_on_validation: bool = False
                  ) -> dict[str, torch.nn.Module]:
    """The modules a checkpoint holds (efe, and emr/epmg from the stages that made them): of
    its last epoch, or of the epoch chosen on validation where one was held out."""
    states = (checkpoint["selected_on_validation"]["modules"] if selected_on_validation
              else checkpoint["modules"])
    shape = architecture(checkpoint)
    modules = build_stack(states, checkpoint["num_classes"], shape["width"],
                          batch_norm=shape["batch_norm"])
    for name, module in modules.items():
        module.load_state_dict(states[name])
    return modules


def make_checkpoint(stage: int, modules: dict[str, torch.nn.Module], class_names: list[str],
                    architecture: dict, hyperparameters: dict, run_id: str,
                    preparation: dict) -> dict:
    """preparation: how the training faces were prepared (the store's record), which
    `expmap predict` repeats on a photo."""
    return {
        "format": FORMAT,
        "stage": stage,
        "num_classes": len(class_names),
        "width": architecture["width"],
        "batch_norm": architecture["batch_norm"],
        "class_names": list(class_names),
        "modules": {name: m.state_dict() for name, m in modules.items()},
        "hyperparameters": hyperparameters,
        "run_id": run_id,
        "preparation": dict(preparation),
    }
