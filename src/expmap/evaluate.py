"""Evaluation of one fold: predictions of the EPMG head (the paper's number) and of the EFE
head after stage 1 and after stage 2 (the ablation), with overall, per-class accuracy and
the confusion matrix."""

from __future__ import annotations

import os

import numpy as np
import torch

from expmap.checkpoints import build_modules, load_checkpoint
from expmap.data.batches import image_batch, ordered_batches
from expmap.data.store import PreparedDataset, atomic_write_csv, atomic_write_json, replacing
from expmap.interpret import as_float16, mask_region_share, pattern_map_invariance

EVAL_BATCH = 64
SAMPLES_PER_CLASS = 8
HEADS = {"efe_stage1": "stage1", "efe_stage2": "stage2", "epmg": "stage3"}


def head_outputs(checkpoint: dict, head: str, images: np.ndarray, rows: np.ndarray,
                 device, selected_on_validation: bool = False) -> dict[str, torch.Tensor]:
    """Class probabilities of one head over `rows`, on the CPU; for the EPMG head also the
    EFE masks [N,1,7,7] and the pattern maps [N,1,224,224]."""
    modules = build_modules(checkpoint, selected_on_validation)
    for module in modules.values():
        module.to(device).eval()
    efe, epmg = modules["efe"], modules.get("epmg")
    outputs: dict[str, list[torch.Tensor]] = {"probabilities": [], "masks": [], "patterns": []}
    with torch.no_grad():
        for batch_rows in ordered_batches(rows, EVAL_BATCH):
            mask, masked, logits = efe(image_batch(images, batch_rows, device))
            if head == "epmg":
                _, logits, pattern = epmg(masked)
                outputs["masks"].append(mask.cpu())
                outputs["patterns"].append(pattern.cpu())
            outputs["probabilities"].append(logits.softmax(1).cpu())
    return {name: torch.cat(parts) for name, parts in outputs.items() if parts}


def accuracy_summary(labels: np.ndarray, predictions: np.ndarray, class_names: list[str]) -> dict:
    """Overall and per-class accuracy (fractions) and the confusion matrix (rows: truth)."""
    k = len(class_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    per_class = {name: (float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else
                        None) for c, name in enumerate(class_names)}
    return {"accuracy": float((labels == predictions).mean()) if len(labels) else None,
            "per_class": per_class, "confusion": confusion.tolist()}


def figure_samples(outputs: dict, labels: np.ndarray, subjects: np.ndarray, rows: np.ndarray,
                   num_classes: int) -> dict[str, np.ndarray]:
    """What the figures need, bounded in size whatever the test set: per class up to
    SAMPLES_PER_CLASS maps and masks of different subjects, and every class's mean map."""
    chosen = []
    for c in range(num_classes):
        of_class = np.flatnonzero(labels == c)
        _, first_of_subject = np.unique(subjects[of_class], return_index=True)
        chosen.extend(of_class[np.sort(first_of_subject)][:SAMPLES_PER_CLASS])
    chosen = np.array(chosen, dtype=np.int64)
    patterns = outputs["patterns"][:, 0]
    means = torch.zeros(num_classes, *patterns.shape[1:])
    for c in range(num_classes):
        if (labels == c).any():
            means[c] = patterns[torch.from_numpy(labels == c)].mean(0)
    return {"rows": rows[chosen], "labels": labels[chosen],
            "subjects": subjects[chosen].astype(str),
            "masks": outputs["masks"][chosen, 0].numpy().astype(np.float32),
            "patterns": as_float16(patterns[chosen]), "class_mean_patterns": means.numpy()}


def evaluate_fold(prepared: str | os.PathLike, fold: str, checkpoints: dict[str, str],
                  predictions: str | os.PathLike, summary: str | os.PathLike,
                  maps: str | os.PathLike | None = None, device: str = "cpu",
                  threads: int = 1) -> dict:
    """Writes predictions.csv and summary.json (accuracies, confusion, interpretability) and,
    when `maps` is given, an .npz of masks and pattern maps for the figures."""
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
        head_result = head_outputs(checkpoint, head, data.images, rows, device)
        predicted = head_result["probabilities"].argmax(1).numpy()
        table[f"pred_{head}"] = predicted
        result["heads"][head] = accuracy_summary(labels, predicted, data.class_names)
        if head == "epmg":
            outputs = head_result
    if "selected_on_validation" in checkpoint:  # the stage-3 epoch chosen on held-out subjects
        chosen = checkpoint["selected_on_validation"]
        predicted = head_outputs(checkpoint, "epmg", data.images, rows, device,
                                 selected_on_validation=True)["probabilities"].argmax(1).numpy()
        table["pred_epmg_selected_on_validation"] = predicted
        result["heads"]["epmg_selected_on_validation"] = {
            **accuracy_summary(labels, predicted, data.class_names), "epoch": chosen["epoch"],
            "validation_accuracy": chosen["validation_accuracy"]}
    for c, name in enumerate(data.class_names):
        table[f"prob_{name}"] = outputs["probabilities"][:, c].numpy()
    result["interpretability"] = pattern_map_invariance(
        outputs["patterns"], torch.from_numpy(labels), data.num_classes)
    regions = dataset.regions()
    if regions is not None:
        result["interpretability"].update(
            mask_region_share(outputs["masks"], torch.from_numpy(regions[rows])))
    if maps is not None:
        samples = figure_samples(outputs, labels, data.subjects[rows], rows, data.num_classes)
        save_npz_atomic(maps, class_names=np.array(data.class_names), **samples)
    atomic_write_csv(predictions, table)
    atomic_write_json(summary, result)
    return result


def save_npz_atomic(path: str | os.PathLike, **arrays) -> None:
    with replacing(path, ".npz") as tmp:  # removed if the write fails
        np.savez_compressed(tmp, **arrays)

