"""Figures of one dataset: the report's loss curves (fig. 11) and test accuracy per epoch
(fig. 12), the confusion matrix, masks over faces (fig. 9), the expression pattern maps and
their class differences beside the expression prototypes'.

Every function takes plain data (frames, arrays) and writes one PNG atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from expmap.errors import UserError  # noqa: E402
from expmap.io import replacing  # noqa: E402

STAGE_TITLES = {1: "Stage 1: EFE (L_EFE)", 2: "Stage 2: EMR (L_EMR)", 3: "Stage 3: EPMG (L_EPMG)"}
TERM_LABELS = {"total": "total", "efe": "L_EFE (cross-entropy)", "mask": "L_mask",
               "h": "L_h (triplet on h)", "embed": "L_embed (triplet on e)",
               "classify": "L_classify", "pattern": "L_pattern", "sim": "L_sim (triplet on P)"}


def save_figure(figure, path: str | os.PathLike) -> None:
    try:
        with replacing(path, Path(path).suffix) as tmp:  # removed if the write fails
            figure.savefig(tmp, dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)


def loss_curves(metrics: dict[int, list[pd.DataFrame]], dataset: str, path) -> None:
    """metrics[stage] = one metrics frame per fold; mean over folds per loss term, log scale."""
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, stage in zip(axes, (1, 2, 3)):
        frames = metrics.get(stage, [])
        if frames:
            mean = pd.concat(frames).groupby("epoch").mean(numeric_only=True)
            for column in [c for c in mean.columns if c.startswith("loss_")]:
                term = column[len("loss_"):]
                values = mean[column].abs().clip(lower=1e-8)
                ax.plot(mean.index, values, marker=".", label=TERM_LABELS.get(term, term),
                        linewidth=2.5 if term == "total" else 1.2)
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        ax.set_title(STAGE_TITLES[stage])
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (mean over folds)")
        ax.grid(alpha=0.3)
    figure.suptitle(f"{dataset}: loss per stage and term", y=1.03)
    save_figure(figure, path)


def accuracy_curves(metrics: dict[int, list[pd.DataFrame]], dataset: str, path) -> None:
    """Test accuracy per epoch of each stage's head, every fold thin and the mean thick."""
    figure, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    heads = {1: "EFE head", 2: "EFE head", 3: "EPMG head (the reported one)"}
    for ax, stage in zip(axes, (1, 2, 3)):
        frames = [f.dropna(subset=["test_accuracy"]) for f in metrics.get(stage, [])]
        for frame in frames:
            ax.plot(frame["epoch"], 100 * frame["test_accuracy"], color="tab:blue", alpha=0.25)
        if frames:
            mean = pd.concat(frames).groupby("epoch")["test_accuracy"].mean()
            ax.plot(mean.index, 100 * mean, color="tab:blue", linewidth=2.5,
                    label=f"test, mean of {len(frames)} fold(s)")
            train = pd.concat(metrics[stage]).groupby("epoch")["train_accuracy"].mean()
            ax.plot(train.index, 100 * train, color="tab:orange", linestyle="--",
                    label="train (running, mean)")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_title(f"{STAGE_TITLES[stage]}: {heads[stage]}")
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    figure.suptitle(f"{dataset}: accuracy per epoch (curves only: the table uses the last epoch)",
                    y=1.03)
    save_figure(figure, path)


def confusion_matrix(confusion: np.ndarray, class_names: list[str], dataset: str, path) -> None:
    """Row-normalised confusion (rows: true class) with per-class accuracy on the diagonal."""
    confusion = np.asarray(confusion, dtype=float)
    rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    figure, ax = plt.subplots(figsize=(1.0 * len(class_names) + 3, 1.0 * len(class_names) + 2))
    image = ax.imshow(100 * rates, cmap="Blues", vmin=0, vmax=100)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(j, i, f"{100 * rates[i, j]:.0f}\n({int(confusion[i, j])})", ha="center",
                    va="center", fontsize=8, color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    overall = 100 * np.trace(confusion) / max(confusion.sum(), 1)
    ax.set_title(f"{dataset}: EPMG head, all test folds ({overall:.1f}% overall)\n"
                 "% of the true class (count)")
    figure.colorbar(image, ax=ax, label="% of true class")
    save_figure(figure, path)


def upsample(mask: np.ndarray, size: int) -> np.ndarray:
    image = Image.fromarray((255 * np.clip(mask, 0, 1)).astype(np.uint8))
    return np.asarray(image.resize((size, size), Image.BILINEAR), dtype=float) / 255


def no_test_image(axes, name: str, fold: str) -> None:
    """The panels of class `name`, which has no test image in `fold`: empty, and saying so."""
    panels = np.ravel(axes)
    for ax in panels:
        ax.axis("off")
    note = panels[0].text(0.05, 0.5, f"{name}: no test image in {fold}", ha="left",
                          va="center", transform=panels[0].transAxes, fontsize=11,
                          color="tab:red")
    note.set_in_layout(False)  # it runs across the row's empty panels


def hide_empty(figure) -> None:
    """Panels left over where a class has fewer test subjects than columns: white space,
    not empty frames that look like white images."""
    for ax in figure.axes:
        if not ax.images:
            ax.axis("off")


def class_rows(labels: np.ndarray, class_names: list[str], columns: int, per_class: int,
               fold: str, rows_per_class: int = 1):
    """A grid of blank panels, `rows_per_class` rows per class, the first labelled with its
    name; yields (class index, that class's rows of axes, the indices of up to `per_class`
    samples of the class) for the classes with samples; the rows of a class without
    (no test image in `fold`) say so."""
    figure, axes = plt.subplots(rows_per_class * len(class_names), columns,
                                figsize=(1.8 * columns, 1.8 * rows_per_class * len(class_names)),
                                squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    rows = []
    for c, name in enumerate(class_names):
        own = axes[rows_per_class * c: rows_per_class * (c + 1)]
        chosen = np.flatnonzero(labels == c)[:per_class]
        if len(chosen) == 0:
            no_test_image(own, name, fold)
        else:
            own[0][0].set_ylabel(name, fontsize=10)
            rows.append((c, own, chosen))
    return figure, rows


def masks_over_faces(faces: np.ndarray, masks_stage1: np.ndarray, masks: np.ndarray,
                     labels: np.ndarray, class_names: list[str], dataset: str, fold: str,
                     path, per_class: int = 3) -> None:
    """Fig. 9: for each class, faces of different subjects of `fold`'s test set with the
    EFE mask laid over, after stage 1 and after stage 2 (EFE trained with EMR) side by side."""
    figure, rows = class_rows(labels, class_names, 2 * per_class, per_class, fold)
    stages = ((masks_stage1, "stage 1"), (masks, "after EMR"))
    titled = rows[0][0] if rows else None  # the first class drawn names the columns
    for c, (axes,), chosen in rows:
        for k, sample in enumerate(chosen):
            face = faces[sample]
            for j, (stage_masks, title) in enumerate(stages):
                ax = axes[2 * k + j]
                ax.imshow(face)
                ax.imshow(upsample(stage_masks[sample], face.shape[0]), cmap="jet", alpha=0.45,
                          vmin=0, vmax=1)
                if c == titled:
                    ax.set_title(f"subject {k + 1}\n{title}", fontsize=9)
    figure.suptitle(f"{dataset}: EFE masks over test faces of {fold}, after stage 1 and after "
                    "stage 2 (EMR), red = high attention (0..1)")
    hide_empty(figure)
    save_figure(figure, path)


def pattern_maps(faces: np.ndarray, patterns: np.ndarray, labels: np.ndarray,
                 class_mean_faces: np.ndarray, class_means: np.ndarray,
                 class_names: list[str], dataset: str, fold: str, path,
                 per_class: int = 5) -> None:
    """Two rows per class: the input faces of different subjects of `fold`'s test set, and
    below each its pattern map; the last column holds the class-mean grey face and the
    class-mean map. Identity-invariant maps look alike along a row and differ between
    classes. Maps on their natural grey scale, black = 0 and white = 1."""
    figure, rows = class_rows(labels, class_names, per_class + 1, per_class, fold,
                              rows_per_class=2)
    titled = rows[0][0] if rows else None  # the first class drawn names the columns
    for c, (face_axes, map_axes), chosen in rows:
        face_axes[0].set_ylabel(f"{class_names[c]}\ninput", fontsize=10)
        map_axes[0].set_ylabel("pattern map", fontsize=9)
        for k, sample in enumerate(chosen):
            face_axes[k].imshow(faces[sample])
            map_axes[k].imshow(patterns[sample].astype(np.float32), cmap="gray", vmin=0, vmax=1)
            if c == titled:
                face_axes[k].set_title(f"subject {k + 1}", fontsize=9)
        face_axes[-1].imshow(class_mean_faces[c], cmap="gray", vmin=0, vmax=1)
        map_axes[-1].imshow(class_means[c], cmap="gray", vmin=0, vmax=1)
        if c == titled:
            face_axes[-1].set_title("class mean", fontsize=9)
    figure.suptitle(f"{dataset}: test faces of {fold} and their expression pattern maps, per "
                    "class\n"
                    "(grey scale 0..1; last column: class-mean grey face and class-mean map)")
    hide_empty(figure)
    save_figure(figure, path)


def own_departures(faces: np.ndarray, patterns: np.ndarray, labels: np.ndarray,
                   class_means: np.ndarray, class_names: list[str], dataset: str, fold: str,
                   path, per_class: int = 2) -> None:
    """What a map says about its own image beyond its class: per class, test faces of
    different subjects, each with its pattern map and its map minus its class's mean map
    on one diverging scale for the figure (a map that is only its class's mean is flat in
    the third panel; one that redraws the person shows the person there)."""
    figure, rows = class_rows(labels, class_names, 3 * per_class, per_class, fold)
    own = patterns.astype(np.float32) - class_means[labels].astype(np.float32)
    limit = float(np.abs(own).max()) if own.size else 0.0
    limit = limit or 1e-6
    titled = rows[0][0] if rows else None
    for c, (axes,), chosen in rows:
        for k, sample in enumerate(chosen):
            axes[3 * k].imshow(faces[sample])
            axes[3 * k + 1].imshow(patterns[sample].astype(np.float32), cmap="gray", vmin=0,
                                   vmax=1)
            image = axes[3 * k + 2].imshow(own[sample], cmap="RdBu_r", vmin=-limit,
                                           vmax=limit)
            if c == titled:
                for j, title in enumerate(("input", "its map", "map - class mean")):
                    axes[3 * k + j].set_title(f"subject {k + 1}\n{title}", fontsize=9)
    hide_empty(figure)  # before the colorbar, which holds no image
    if rows:
        figure.colorbar(image, ax=figure.axes, shrink=0.5, label="grey difference")
    figure.suptitle(f"{dataset}: what each test map of {fold} shows beyond its class "
                    f"(map minus its class's mean map, ±{limit:.2g})")
    save_figure(figure, path)


def overview(run: str | os.PathLike, path: str | os.PathLike) -> None:
    """One small picture of what a run produces (README's): a test face of each class of
    the run's first fold above its pattern map. `run` is results/<dataset>/<variant>."""
    run = Path(run)
    maps = sorted(run.glob("fold*/maps.npz")) + sorted(run.glob("test/maps.npz"))
    if not maps:
        raise UserError(f"{run}: no <fold>/maps.npz; run the pipeline first (make demo)")
    images = np.load(run.parent / "prepared" / "images.npy", mmap_mode="r")
    with np.load(maps[0]) as samples:
        names, labels = list(samples["class_names"]), samples["labels"]
        shown = [(name, np.flatnonzero(labels == c)[0]) for c, name in enumerate(names)
                 if (labels == c).any()]
        figure, axes = plt.subplots(2, len(shown), figsize=(1.25 * len(shown), 2.8),
                                    squeeze=False, layout="constrained")
        for k, (name, sample) in enumerate(shown):
            axes[0][k].imshow(images[samples["rows"][sample]])
            axes[1][k].imshow(samples["patterns"][sample].astype(np.float32), cmap="gray",
                              vmin=0, vmax=1)
            axes[0][k].set_title(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].set_ylabel("test face", fontsize=8)
    axes[1][0].set_ylabel("pattern map", fontsize=8)
    save_figure(figure, path)


# the interpretability measures the class-difference figure's title shows
DIFFERENCE_MEASURES = ("class_difference_correlation", "class_difference_ratio",
                       "detail_correlation")


def departures(means: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Each present class's mean minus the mean of the present classes' (NaN elsewhere)."""
    shown = np.full(means.shape, np.nan, dtype=np.float32)
    shown[present] = means[present] - means[present].mean(0)
    return shown


def class_differences(class_means: np.ndarray, prototypes: np.ndarray,
                      test_counts: np.ndarray, prototype_counts: np.ndarray,
                      class_names: list[str], dataset: str, fold: str, measures: dict,
                      path) -> None:
    """What distinguishes the classes: each class-mean pattern map of `fold`'s test set minus
    the mean of the class-mean maps (top row), beside each expression prototype (training
    class-mean grey face) minus the prototypes' mean (bottom row), over the classes that
    have both; a diverging scale symmetric about 0 per row, whose limit the row names
    (differences of 0.01 vanish on the maps' 0..1 grey scale)."""
    present = (test_counts > 0) & (prototype_counts > 0)
    rows = {"pattern maps": departures(class_means.astype(np.float32), present),
            "prototypes": departures(prototypes.astype(np.float32), present)}
    figure, axes = plt.subplots(2, len(class_names), figsize=(1.9 * len(class_names) + 1, 4.4),
                                squeeze=False, layout="constrained")
    for (title, shown), row_axes in zip(rows.items(), axes):
        limit = float(np.nanmax(np.abs(shown))) if present.any() else 0.0
        limit = limit or 1e-6  # all zero: a flat panel, not a division by zero
        for c, ax in enumerate(row_axes):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_box_aspect(1)  # square whether it holds an image or only a note
            if c == 0:
                ax.set_ylabel(f"{title}\n(±{limit:.2g})", fontsize=9)
            if present[c]:
                image = ax.imshow(shown[c], cmap="RdBu_r", vmin=-limit, vmax=limit)
            else:
                reason = "test image\nin" if test_counts[c] == 0 else "training image\nfor"
                ax.text(0.5, 0.5, f"no {reason} {fold}", transform=ax.transAxes,
                        ha="center", va="center", fontsize=9, color="tab:red")
            if title == "pattern maps":
                ax.set_title(class_names[c], fontsize=10)
        if present.any():
            figure.colorbar(image, ax=list(row_axes), shrink=0.8, label="grey difference")
    shown_measures = ", ".join(f"{name.replace('_', ' ')} {measures[name]:.2f}"
                               for name in DIFFERENCE_MEASURES if measures.get(name) is not None)
    figure.suptitle(f"{dataset}, {fold}: class-mean pattern map minus their mean, beside the "
                    "prototypes' (red: brighter than the mean of the classes)\n"
                    + (shown_measures or "no class differences to measure"), fontsize=10)
    save_figure(figure, path)


def dataset_figures(dataset: str, metrics: dict[int, list[str | os.PathLike]],
                    summaries: list[str | os.PathLike], maps: list[str | os.PathLike],
                    images: np.ndarray, out: dict[str, str | os.PathLike]) -> None:
    """Every figure of one dataset from its folds' files: metrics[stage] = the folds'
    stageN_metrics.csv, summaries = summary.json, maps = maps.npz (evaluate's samples),
    images = the prepared store. out names the PNG of each of FIGURES."""
    frames = {stage: [pd.read_csv(path) for path in paths] for stage, paths in metrics.items()}
    loss_curves(frames, dataset, out["losses"])
    accuracy_curves(frames, dataset, out["accuracy"])
    folds = [json.loads(Path(path).read_text()) for path in summaries]
    class_names = folds[0]["class_names"]
    confusion = sum(np.array(fold["heads"]["epmg"]["confusion"]) for fold in folds)
    confusion_matrix(confusion, class_names, dataset, out["confusion"])
    # masks and pattern maps of the first fold's test subjects (every fold's are alike)
    fold = folds[0]["fold"]
    with np.load(maps[0]) as samples:
        if "prototypes" not in samples:
            raise UserError(f"{maps[0]}: written by an older expmap, without the expression "
                            "prototypes; delete it and its fold's summary.json so that "
                            "evaluate runs again")
        rows, labels = samples["rows"], samples["labels"]
        faces = images[rows]
        masks_over_faces(faces, samples["masks_stage1"], samples["masks"], labels, class_names,
                         dataset, fold, out["masks"])
        pattern_maps(faces, samples["patterns"], labels, samples["class_mean_faces"],
                     samples["class_mean_patterns"], class_names, dataset, fold,
                     out["patterns"])
        own_departures(faces, samples["patterns"], labels, samples["class_mean_patterns"],
                       class_names, dataset, fold, out["own"])
        class_differences(samples["class_mean_patterns"], samples["prototypes"],
                          samples["test_counts"], samples["prototype_counts"], class_names,
                          dataset, fold, folds[0]["interpretability"], out["differences"])


FIGURES = ("losses", "accuracy", "confusion", "masks", "patterns", "own", "differences")
