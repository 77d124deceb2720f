"""The paper's accuracy table (SPEC §5) with this run's results beside it.

accuracy.csv: one row per dataset and method; columns dataset, method, accuracy (percent,
mean over folds), std (over folds), pooled (percent of every test image of the folds
together: the paper does not say which of the two it reports), n_folds, source ("paper" or
"this run").
accuracy.md: the paper's layout, a column pair per benchmark, comparators first, then
"Ours (paper)" and "Ours (this run)"; then every dataset of the run (the synthetic demo
included) with each head: EPMG (the paper's classifier) and the EFE head after stages 1
and 2 (the ablation).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from expmap.io import atomic_write_csv, atomic_write_text

# SPEC §5 (the report's figure 10): accuracy in percent, written as the paper prints it.
BENCHMARKS = {
    "ckplus": "CK+",
    "oulu_casia": "Oulu-CASIA",
    "rafdb": "RAF-DB",
    "affectnet": "AffectNet",
}
OURS_PAPER = "Ours (paper)"
PAPER = {
    "ckplus": [("DCMA-CNNs", "93.46"), ("DAM", "95.88"), ("GA-CNN", "96.4"), ("DeRL", "97.3"),
               ("LBVCNN", "97.38"), ("G2-VER", "97.40"), (OURS_PAPER, "98.06")],
    "oulu_casia": [("DCD", "84.80"), ("DCPN", "86.23"), ("SNA", "87.60"), ("DeRL", "88.00"),
                   ("IDFERM", "88.25"), ("DDL", "88.26"), (OURS_PAPER, "89.05")],
    "rafdb": [("PG-CNN", "83.27"), ("ALT", "84.50"), ("GA-CNN", "85.07"), ("SEP-Loss", "86.38"),
              ("IPA2LT", "86.77"), ("DDA-Loss", "86.90"), (OURS_PAPER, "87.10")],
    "affectnet": [("PG-CNN", "55.33"), ("IPA2LT", "57.31"), ("GA-CNN", "58.78"),
                  ("SEP-Loss", "58.89"), ("ESR-9", "59.30"), ("LDER", "60.53"),
                  (OURS_PAPER, "62.10")],
}

# summary.json heads -> method names; the first is the paper's classifier.
HEADS = {
    "epmg": "Ours (this run)",
    "efe_stage2": "EFE + EMR, stage 2 (this run)",
    "efe_stage1": "EFE, stage 1 (this run)",
}
OURS_RUN = HEADS["epmg"]
COLUMNS = ["dataset", "method", "accuracy", "std", "pooled", "n_folds", "source"]


def paper_rows() -> pd.DataFrame:
    return pd.DataFrame(
        [{"dataset": dataset, "method": method, "accuracy": float(accuracy), "std": np.nan,
          "pooled": np.nan, "n_folds": pd.NA, "source": "paper"}
         for dataset, rows in PAPER.items() for method, accuracy in rows],
        columns=COLUMNS)


def run_rows(summaries: dict[str, list[str | os.PathLike]]) -> pd.DataFrame:
    """Mean and standard deviation over folds, in percent, of every head of every dataset."""
    rows = []
    for dataset, paths in summaries.items():
        folds = [json.loads(Path(path).read_text()) for path in paths]
        for head, method in HEADS.items():
            done = [fold for fold in folds if head in fold["heads"]]
            accuracies = 100 * np.array([fold["heads"][head]["accuracy"] for fold in done])
            tested = np.array([fold["n_test"] for fold in done])
            if len(accuracies):
                rows.append({"dataset": dataset, "method": method,
                             "accuracy": accuracies.mean(),
                             "std": accuracies.std(ddof=1) if len(accuracies) > 1 else np.nan,
                             "pooled": (accuracies * tested).sum() / max(1, tested.sum()),
                             "n_folds": len(accuracies), "source": "this run"})
    return pd.DataFrame(rows, columns=COLUMNS)


def accuracy_table(summaries: dict[str, list[str | os.PathLike]]) -> pd.DataFrame:
    table = pd.concat([paper_rows(), run_rows(summaries)], ignore_index=True)
    table["n_folds"] = table["n_folds"].astype("Int64")
    return table.round({"accuracy": 4, "std": 4, "pooled": 4})


def _result(row: pd.Series) -> str:
    folds = f"{row['n_folds']} fold{'s' if row['n_folds'] != 1 else ''}"
    if row["n_folds"] > 1:
        folds += f"; pooled {row['pooled']:.2f}"
    spread = f" ± {row['std']:.2f}" if pd.notna(row["std"]) else ""
    return f"{row['accuracy']:.2f}{spread} ({folds})"


def markdown(table: pd.DataFrame) -> str:
    ours = table[table["source"] == "this run"].set_index(["dataset", "method"])
    lines = ["# Accuracy (%)", "",
             "The paper's table (SPEC §5) with this run's EPMG accuracy beside "
             f'"{OURS_PAPER}": mean ± standard deviation over folds, and the accuracy '
             "over the folds' test images pooled (the paper does not say which it reports).",
             "",
             "|" + "".join(f" {title} | |" for title in BENCHMARKS.values()),
             "|" + "---|" * 2 * len(BENCHMARKS)]
    for position in range(len(PAPER["ckplus"])):
        lines.append("| " + " | ".join(f"{method} | {accuracy}" for method, accuracy in
                                       (PAPER[name][position] for name in BENCHMARKS)) + " |")
    lines.append("| " + " | ".join(
        f"{OURS_RUN} | " + (_result(ours.loc[(name, OURS_RUN)]) if (name, OURS_RUN) in ours.index
                            else "not run")
        for name in BENCHMARKS) + " |")

    lines += ["", "## This run: every dataset, every head", "",
              "| dataset | " + " | ".join(HEADS.values()) + " |",
              "|---|" + "---|" * len(HEADS)]
    for dataset in dict.fromkeys(ours.index.get_level_values("dataset")):
        lines.append(f"| {BENCHMARKS.get(dataset, dataset)} | " + " | ".join(
            _result(ours.loc[(dataset, method)]) if (dataset, method) in ours.index else "-"
            for method in HEADS.values()) + " |")
    return "\n".join(lines) + "\n"


def write_tables(summaries: dict[str, list[str | os.PathLike]], csv: str | os.PathLike,
                 md: str | os.PathLike, log: Callable[[str], None] = print) -> pd.DataFrame:
    table = accuracy_table(summaries)
    atomic_write_csv(csv, table)
    atomic_write_text(md, markdown(table))
    for row in table[table["source"] == "this run"].itertuples():
        log(f"{row.dataset}: {row.method}: {_result(pd.Series(row._asdict()))}")
    return table


# ---------------------------------------------------------------- ablation and honesty

ABLATION = [  # (summary head, method, how the epoch was chosen)
    ("efe_stage1", "EFE (VGG-Face + mask-net), stage 1", "last epoch"),
    ("efe_stage2", "EFE + EMR, stage 2", "last epoch"),
    ("epmg", "EFE + EMR + EPMG (the paper's model)", "last epoch"),
    ("epmg_selected_on_validation", "EFE + EMR + EPMG (the paper's model)",
     "epoch chosen on held-out training subjects"),
]
BEST_TEST = ("EFE + EMR + EPMG (the paper's model)",
             "best test epoch: optimistic, as peers report; never our headline number")
ABLATION_COLUMNS = ["dataset", "method", "epoch_selection", "accuracy", "std", "n_folds"]


def _spread(values: list[float]) -> dict:
    values = 100 * np.asarray(values, dtype=float)
    return {"accuracy": values.mean(), "std": values.std(ddof=1) if len(values) > 1 else np.nan,
            "n_folds": len(values)}


def ablation_table(summaries: dict[str, list[str | os.PathLike]],
                   stage3_metrics: dict[str, list[str | os.PathLike]]) -> pd.DataFrame:
    """What each module adds, per dataset: mean and spread over folds of each head; the
    best-test-epoch row only for comparison with peers, and labelled so."""
    rows = []
    for dataset, paths in summaries.items():
        folds = [json.loads(Path(path).read_text())["heads"] for path in paths]
        for head, method, selection in ABLATION:
            values = [fold[head]["accuracy"] for fold in folds if head in fold]
            if values:
                rows.append({"dataset": dataset, "method": method, "epoch_selection": selection,
                             **_spread(values)})
        best = [pd.read_csv(path)["test_accuracy"].max() for path in stage3_metrics[dataset]]
        rows.append({"dataset": dataset, "method": BEST_TEST[0], "epoch_selection": BEST_TEST[1],
                     **_spread(best)})
    table = pd.DataFrame(rows, columns=ABLATION_COLUMNS)
    table["n_folds"] = table["n_folds"].astype("Int64")
    return table.round({"accuracy": 4, "std": 4})


# ---------------------------------------------------------------- interpretability

# summary.json's interpretability measures (expmap.interpret) -> (markdown header, percent)
INTERPRETABILITY = {
    "within_between_ratio": ("maps: within / between", False),
    "nearest_mean_accuracy": ("maps: nearest class mean (%)", True),
    "invariance_gain": ("maps: invariance gain over inputs", False),
    "span_ratio": ("maps: span / class-mean-face span", False),
    "face_correlation": ("maps: correlation with class-mean face", False),
    "region_concentration": ("maps: class differences in regions / area", False),
    "mask_share_stage1": ("mask mass in regions, stage 1 (%)", True),
    "mask_share": ("mask mass in regions, after EMR (%)", True),
    "area_share": ("regions' area (%)", True),
}


def interpretability_table(summaries: dict[str, list[str | os.PathLike]]) -> pd.DataFrame:
    """Per dataset, the mean and spread over folds of each measure of expmap.interpret (the
    region measures only where true regions are known)."""
    rows = []
    for dataset, paths in summaries.items():
        folds = [json.loads(Path(path).read_text())["interpretability"] for path in paths]
        row = {"dataset": dataset, "n_folds": len(folds)}
        for measure in INTERPRETABILITY:
            values = [fold[measure] for fold in folds if fold.get(measure) is not None]
            row[measure] = float(np.mean(values)) if values else np.nan
            row[f"{measure}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
        rows.append(row)
    columns = (["dataset"] + [c for m in INTERPRETABILITY for c in (m, f"{m}_std")]
               + ["n_folds"])
    return pd.DataFrame(rows, columns=columns).round(4)


def _cell(value, std=np.nan, percent=False, digits=3) -> str:
    if pd.isna(value):
        return "-"
    scale = 100 if percent else 1
    text = f"{scale * value:.{digits}f}"
    return text + (f" ± {scale * std:.{digits}f}" if pd.notna(std) else "")


def ablation_markdown(table: pd.DataFrame) -> str:
    lines = ["# Ablation: what each module adds (accuracy %, mean ± std over folds)", "",
             "The headline number is the model after its final epoch. The last row of each "
             "dataset picks the best epoch on the test set, as many peers do: it is shown only "
             "to compare with them.", "",
             "| dataset | model | epoch | accuracy | folds |", "|---|---|---|---|---|"]
    for row in table.itertuples():
        lines.append(f"| {BENCHMARKS.get(row.dataset, row.dataset)} | {row.method} | "
                     f"{row.epoch_selection} | {_cell(row.accuracy, row.std, digits=2)} | "
                     f"{row.n_folds} |")
    return "\n".join(lines) + "\n"


def interpretability_markdown(table: pd.DataFrame) -> str:
    lines = ["# Interpretability, measured", "",
             "Pattern maps of the test set: distance of a map to its own class mean over the "
             "distance between class means (lower: maps depend on the expression, not on who "
             "made it), the share of maps nearest their own class mean, and how much less the "
             "maps depend on the person than the input faces do; whether they show a face: "
             "their span against the class-mean faces' and their correlation with those. "
             "Where the true expression regions are known (the synthetic benchmark): how much "
             "of the maps' class differences and of the mask's mass lies inside them, against "
             "their share of the area. Mean ± standard deviation over folds.", "",
             "| dataset | " + " | ".join(h for h, _ in INTERPRETABILITY.values()) + " | folds |",
             "|---|" + "---|" * (len(INTERPRETABILITY) + 1)]
    for row in table.to_dict("records"):
        cells = [_cell(row[m], row[f"{m}_std"], percent, 1 if percent else 3)
                 for m, (_, percent) in INTERPRETABILITY.items()]
        lines.append(f"| {BENCHMARKS.get(row['dataset'], row['dataset'])} | "
                     + " | ".join(cells) + f" | {row['n_folds']} |")
    return "\n".join(lines) + "\n"


def write_module_tables(summaries: dict[str, list[str | os.PathLike]],
                        stage3_metrics: dict[str, list[str | os.PathLike]],
                        out: dict[str, str | os.PathLike],
                        log: Callable[[str], None] = print) -> None:
    """ablation.csv/.md and interpretability.csv/.md (out keys: ablation_csv, ablation_md,
    interpretability_csv, interpretability_md)."""
    ablation = ablation_table(summaries, stage3_metrics)
    atomic_write_csv(out["ablation_csv"], ablation)
    atomic_write_text(out["ablation_md"], ablation_markdown(ablation))
    measures = interpretability_table(summaries)
    atomic_write_csv(out["interpretability_csv"], measures)
    atomic_write_text(out["interpretability_md"], interpretability_markdown(measures))
    for row in measures.to_dict("records"):
        log(f"{row['dataset']}: " + ", ".join(f"{m} {row[m]}" for m in INTERPRETABILITY))


# ---------------------------------------------------------------- variants

VARIANT_MEASURES = ("span_ratio", "invariance_gain")


def variants_table(summaries: dict[str, list[str | os.PathLike]],
                   differences: dict[str, dict]) -> pd.DataFrame:
    """One row per "<dataset>/<variant>" key of `summaries`: each head's accuracy (mean and
    std over folds, percent), the folds, the maps' span ratio and invariance gain, and the
    keys in which the variant differs from default (`differences`, per key)."""
    accuracy = run_rows(summaries).set_index(["dataset", "method"])
    maps = interpretability_table(summaries).set_index("dataset")
    rows = []
    for key in summaries:
        dataset, variant = key.split("/", 1)
        row = {"dataset": dataset, "variant": variant}
        for head, method in HEADS.items():
            found = accuracy.loc[(key, method)] if (key, method) in accuracy.index else None
            row[f"{head}_accuracy"] = np.nan if found is None else found["accuracy"]
            row[f"{head}_std"] = np.nan if found is None else found["std"]
        row["n_folds"] = maps.loc[key, "n_folds"]
        row.update({measure: maps.loc[key, measure] for measure in VARIANT_MEASURES})
        row["differs_in"] = "; ".join(f"{k}={json.dumps(v)}"
                                      for k, v in sorted(differences.get(key, {}).items()))
        rows.append(row)
    return pd.DataFrame(rows).round(4)


def variants_markdown(table: pd.DataFrame) -> str:
    heads = list(HEADS.values())
    lines = ["# Variants (accuracy %, mean ± std over folds)", "",
             "Each variant beside the configuration as written (default); the last column "
             "names what it changes.", "",
             "| dataset | variant | " + " | ".join(heads)
             + " | folds | maps: span ratio | maps: invariance gain | differs in |",
             "|---|---|" + "---|" * (len(heads) + 4)]
    for row in table.to_dict("records"):
        cells = [_cell(row[f"{head}_accuracy"], row[f"{head}_std"], digits=2)
                 for head in HEADS]
        lines.append(f"| {row['dataset']} | {row['variant']} | " + " | ".join(cells)
                     + f" | {row['n_folds']} | {_cell(row['span_ratio'])} | "
                     f"{_cell(row['invariance_gain'], digits=1)} | "
                     f"{row['differs_in'] or '-'} |")
    return "\n".join(lines) + "\n"


def write_variants_table(summaries: dict[str, list[str | os.PathLike]],
                         differences: dict[str, dict], csv: str | os.PathLike,
                         md: str | os.PathLike, log: Callable[[str], None] = print) -> None:
    table = variants_table(summaries, differences)
    atomic_write_csv(csv, table)
    atomic_write_text(md, variants_markdown(table))
    log(f"wrote {csv} and {md}: {len(table)} dataset/variant rows")
