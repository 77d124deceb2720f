"""Evaluation of one fold: predictions of the EPMG head (the paper's number) and of the EFE
head after stage 1 and after stage 2 (the ablation), with overall, per-class accuracy and
the confusion matrix; the interpretability measures of masks and pattern maps, the latter
against the fold's expression prototypes (its training images' class-mean grey faces)."""

from __future__ import annotations

import os

import numpy as np
import torch

from expmap.checkpoints import build_modules, load_checkpoint
from expmap.data.batches import EVAL_BATCH, image_batch, ordered_batches
from expmap.data.store import PreparedDataset
from expmap.devices import use_threads
from expmap.interpret import (
    as_float16,
    mask_region_share,
    pattern_map_fidelity,
    weak_maps_warnings,
)
from expmap.io import atomic_write_csv, atomic_write_json, atomic_write_npz
from expmap.losses import grayscale
from expmap.prototypes import expression_prototypes

SAMPLES_PER_CLASS = 8
HEADS = {"efe_stage1": "stage1", "efe_stage2": "stage2", "epmg": "stage3"}


def head_outputs(checkpoint: dict, head: str, images: np.ndarray, rows: np.ndarray,
                 device, selected_on_validation: bool = False) -> dict[str, torch.Tensor]:
    """One head's outputs over `rows`, on the CPU: class probabilities and the EFE masks
    [N,1,7,7]; for the EPMG head also the pattern maps and the grey inputs [N,1,224,224]."""
    modules = build_modules(checkpoint, selected_on_validation)
    for module in modules.values():
        module.to(device, memory_format=torch.channels_last).eval()
    efe, epmg = modules["efe"], modules.get("epmg")
    outputs: dict[str, list[torch.Tensor]] = {"probabilities": [], "masks": [], "patterns": [],
                                              "grey": []}
    with torch.no_grad():
        for batch_rows in ordered_batches(rows, EVAL_BATCH):
            images_batch = image_batch(images, batch_rows, device)
            out = efe(images_batch)
            logits = out.logits
            if head == "epmg":
                generated = epmg(out.features)
                logits = generated.logits
                outputs["patterns"].append(generated.pattern.cpu())
                outputs["grey"].append(grayscale(images_batch).cpu())
            outputs["masks"].append(out.mask.cpu())
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


def figure_samples(outputs: dict[str, dict], labels: np.ndarray, subjects: np.ndarray,
                   rows: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """What the figures need, bounded in size whatever the test set: per class up to
    SAMPLES_PER_CLASS masks (after stage 1 and after stage 2) and maps of different
    subjects, every class's mean map and mean grey face, and its number of test images
    (0: the class has no test image in this fold, and its means are 0)."""
    chosen = []
    for c in range(num_classes):
        of_class = np.flatnonzero(labels == c)
        _, first_of_subject = np.unique(subjects[of_class], return_index=True)
        chosen.extend(of_class[np.sort(first_of_subject)][:SAMPLES_PER_CLASS])
    chosen = np.array(chosen, dtype=np.int64)
    epmg = outputs["epmg"]
    patterns, grey = epmg["patterns"][:, 0], epmg["grey"][:, 0]
    mean_maps = torch.zeros(num_classes, *patterns.shape[1:])
    mean_faces = torch.zeros_like(mean_maps)
    for c in range(num_classes):
        if (labels == c).any():
            mean_maps[c] = patterns[torch.from_numpy(labels == c)].mean(0)
            mean_faces[c] = grey[torch.from_numpy(labels == c)].mean(0)
    return {"rows": rows[chosen], "labels": labels[chosen],
            "subjects": subjects[chosen].astype(str),
            "masks_stage1": outputs["efe_stage1"]["masks"][chosen, 0].numpy().astype(np.float32),
            "masks": epmg["masks"][chosen, 0].numpy().astype(np.float32),
            "patterns": as_float16(patterns[chosen]), "class_mean_patterns": mean_maps.numpy(),
            "class_mean_faces": mean_faces.numpy(),
            "test_counts": np.bincount(labels, minlength=num_classes)}


def interpretability(outputs: dict[str, dict], labels: np.ndarray, prototypes: torch.Tensor,
                     prototype_counts: torch.Tensor, regions: np.ndarray | None) -> dict:
    """The measures of expmap.interpret on the test set: pattern maps against the
    prototypes (expression_prototypes), and masks after stage 1 and after stage 2 where the
    true regions are known."""
    epmg, y = outputs["epmg"], torch.from_numpy(labels)
    truth = torch.from_numpy(np.asarray(regions)) if regions is not None else None
    result = pattern_map_fidelity(epmg["patterns"], epmg["grey"], y, prototypes,
                                  prototype_counts, truth)
    if truth is not None:
        result.update(mask_region_share(epmg["masks"], truth))
        stage1 = mask_region_share(outputs["efe_stage1"]["masks"], truth)
        result["mask_share_stage1"] = stage1["mask_share"]
    return result


def evaluate_fold(prepared: str | os.PathLike, fold: str, checkpoints: dict[str, str],
                  predictions: str | os.PathLike, summary: str | os.PathLike,
                  maps: str | os.PathLike | None = None, device: str = "cpu",
                  threads: int = 1, log=print, seed: int = 0) -> dict:
    """Writes predictions.csv and summary.json (accuracies, confusion, interpretability) and,
    when `maps` is given, an .npz of masks and pattern maps for the figures. `seed` is the
    replicate the checkpoints were trained for (config `seeds`), written with the rest."""
    use_threads(threads, log)
    dataset = PreparedDataset(prepared)
    data = dataset.fold(fold)
    rows = data.test_index
    labels = data.labels[rows]
    table = dataset.manifest.set_index("index").loc[rows, ["image_id", "subject", "label",
                                                          "label_name"]].reset_index()
    table.insert(0, "fold", fold)
    table.insert(0, "seed", seed)
    result = {"fold": fold, "seed": seed, "n_test": int(len(rows)),
              "class_names": data.class_names, "heads": {}}
    loaded = {stage: load_checkpoint(path) for stage, path in checkpoints.items()}
    outputs = {}
    for head, stage in HEADS.items():
        outputs[head] = head_outputs(loaded[stage], head, data.images, rows, device)
        predicted = outputs[head]["probabilities"].argmax(1).numpy()
        table[f"pred_{head}"] = predicted
        result["heads"][head] = accuracy_summary(labels, predicted, data.class_names)
    final = loaded[HEADS["epmg"]]
    result["learned_nothing"] = final.get("warnings", {})  # every stage's, carried along
    for line in result["learned_nothing"].values():
        log(f"WARNING: {fold}: {line}")
    if "selected_on_validation" in final:  # the stage-3 epoch chosen on held-out subjects
        chosen = final["selected_on_validation"]
        predicted = head_outputs(final, "epmg", data.images, rows, device,
                                 selected_on_validation=True)["probabilities"].argmax(1).numpy()
        table["pred_epmg_selected_on_validation"] = predicted
        result["heads"]["epmg_selected_on_validation"] = {
            **accuracy_summary(labels, predicted, data.class_names), "epoch": chosen["epoch"],
            "validation_accuracy": chosen["validation_accuracy"]}
    for c, name in enumerate(data.class_names):
        table[f"prob_{name}"] = outputs["epmg"]["probabilities"][:, c].numpy()
    regions = dataset.regions()
    prototypes, prototype_counts = expression_prototypes(data.images, data.labels,
                                                         data.train_index, data.num_classes)
    result["interpretability"] = interpretability(
        outputs, labels, prototypes, prototype_counts,
        regions[rows] if regions is not None else None)
    for warning in weak_maps_warnings(result["interpretability"]):
        log(f"WARNING: pattern maps of {fold}: {warning}")
    if maps is not None:
        samples = figure_samples(outputs, labels, data.subjects[rows], rows, data.num_classes)
        atomic_write_npz(maps, class_names=np.array(data.class_names),
                         prototypes=prototypes[:, 0].numpy(),
                         prototype_counts=prototype_counts.numpy(), **samples)
    atomic_write_csv(predictions, table)
    atomic_write_json(summary, result)
    return result
