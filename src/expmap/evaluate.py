"""Evaluation of one fold: predictions of the EPMG head (the paper's number) and of the EFE
head after stage 1 and after stage 2 (the ablation), with overall, per-class accuracy and
the confusion matrix."""

from __future__ import annotations

import os

import numpy as np
import torch

from expmap.checkpoints import build_modules, load_checkpoint
from expmap.data.batches import image_batch, ordered_batches
from expmap.data.store import PreparedDataset, atomic_write_csv, atomic_write_json

EVAL_BATCH = 64
HEADS = {"efe_stage1": "stage1", "efe_stage2": "stage2", "epmg": "stage3"}


def head_logits(checkpoint: dict, head: str):
    """A function images -> logits of the named head of a checkpoint's modules."""
    modules = build_modules(checkpoint)
    for module in modules.values():
        module.eval()
    efe = modules["efe"]
    if head == "epmg":
        epmg = modules["epmg"]
        return modules, lambda images: epmg(efe(images)[1])[1]
    return modules, lambda images: efe(images)[2]


def predict(checkpoint: dict, head: str, images: np.ndarray, rows: np.ndarray,
            device) -> torch.Tensor:
    """Class probabilities [len(rows), K] of one head, on the CPU."""
    modules, logits_of = head_logits(checkpoint, head)
    for module in modules.values():
        module.to(device)
    chunks = []
    with torch.no_grad():
        for batch_rows in ordered_batches(rows, EVAL_BATCH):
            chunks.append(logits_of(image_batch(images, batch_rows, device)).softmax(1))
    return torch.cat(chunks).cpu()


def accuracy_summary(labels: np.ndarray, predictions: np.ndarray, class_names: list[str]) -> dict:
    """Overall and per-class accuracy (fractions) and the confusion matrix (rows: truth)."""
    k = len(class_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    per_class = {name: (float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else
                        None) for c, name in enumerate(class_names)}
    return {"accuracy": float((labels == predictions).mean()) if len(labels) else None,
            "per_class": per_class, "confusion": confusion.tolist()}


def evaluate_fold(prepared: str | os.PathLike, fold: str, checkpoints: dict[str, str],
                  predictions: str | os.PathLike, summary: str | os.PathLike,
                  device: str = "cpu", threads: int = 1) -> dict:
    torch.set_num_threads(max(1, threads))
    dataset = PreparedDataset(prepared)
    data = dataset.fold(fold)
    rows = data.test_index
    labels = data.labels[rows]
    table = dataset.manifest.set_index("index").loc[rows, ["image_id", "subject", "label",
                                                          "label_name"]].reset_index()
    result = {"fold": fold, "n_test": int(len(rows)), "class_names": data.class_names, "heads": {}}
    for head, stage in HEADS.items():
        checkpoint = load_checkpoint(checkpoints[stage])
        probabilities = predict(checkpoint, head, data.images, rows, device)
        predicted = probabilities.argmax(1).numpy()
        table[f"pred_{head}"] = predicted
        result["heads"][head] = accuracy_summary(labels, predicted, data.class_names)
        if head == "epmg":
            for c, name in enumerate(data.class_names):
                table[f"prob_{name}"] = probabilities[:, c].numpy()
    atomic_write_csv(predictions, table)
    atomic_write_json(summary, result)
    return result

