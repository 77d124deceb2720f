"""The tables: the paper's accuracy table (SPEC §5) with ours beside it, the ablation, the
interpretability measures and the variants, built from every run recorded on disk
(`expmap.records`), each row saying when its run finished and whether config.yaml still
gives its configuration ("current") or not ("stale: ...").

accuracy.csv: one row per dataset, variant and method; columns dataset, variant, method,
accuracy (percent, mean over folds of each fold's mean over seeds), std (over folds), pooled
(percent of every test image of the folds and seeds together: the paper does not say which
of the two it reports), ci_low and ci_high (the pooled accuracy's 95 % interval,
resampling test subjects and seeds: expmap.statistics), n_folds, n_seeds, source ("paper"
or "expmap"), finished, status.
accuracy.md: the paper's layout, a column pair per benchmark, comparators first, then
"Ours (paper)" and "Ours (expmap)" (the default variant); then every dataset and variant on
disk (the synthetic demo included) with each head: EPMG (the paper's classifier) and the EFE
head after stages 1 and 2 (the ablation).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import numpy as np
import pandas as pd

from expmap import statistics
from expmap.claims import claims_markdown, claims_table, run_values
from expmap.config import DEFAULT_VARIANT
from expmap.io import atomic_write_csv, atomic_write_text
from expmap.paper import BENCHMARKS, OURS_PAPER, PAPER
from expmap.records import (
    CURRENT,
    learned_nothing,
    predictions_frame,
    record_sample,
    table_notes,
)

# summary.json heads -> method names; the first is the paper's classifier.
HEADS = {
    "epmg": "Ours (expmap)",
    "efe_stage2": "EFE + EMR, stage 2 (expmap)",
    "efe_stage1": "EFE, stage 1 (expmap)",
}
OURS_RUN = HEADS["epmg"]
OURS_SOURCE = "expmap"
PROVENANCE = ["learned_nothing", "finished", "status"]
COLUMNS = ["dataset", "variant", "method", "accuracy", "std", "pooled", "ci_low", "ci_high",
           "n_folds", "n_seeds", "source", *PROVENANCE]


def record_order(record: dict) -> tuple:
    """The paper's benchmarks first, in its order; then the others by name; default first."""
    dataset, variant = record["dataset"], record["variant"]
    rank = list(BENCHMARKS).index(dataset) if dataset in BENCHMARKS else len(BENCHMARKS)
    return rank, dataset, variant != DEFAULT_VARIANT, variant


def _identity(record: dict) -> dict:
    return {"dataset": record["dataset"], "variant": record["variant"]}


def _provenance(record: dict) -> dict:
    return {"learned_nothing": learned_nothing(record), "finished": record["finished"],
            "status": record["status"]}


def by_fold(record: dict, value: Callable[[dict], float | None]) -> list[float]:
    """`value` of every fold of a record, averaged over the seeds that ran it (a fold run
    whose value is None is left out; a fold with none is left out)."""
    per_fold: dict[str, list[float]] = {}
    for run in record["folds"]:
        found = value(run)
        if found is not None:
            per_fold.setdefault(run["fold"], []).append(found)
    return [float(np.mean(values)) for values in per_fold.values()]


def _pooled_interval(found: statistics.Sample | None, head: str) -> dict:
    if found is None or head not in found.correct:
        return {"ci_low": np.nan, "ci_high": np.nan}
    interval = statistics.accuracy(found, head)
    return {"ci_low": interval.low, "ci_high": interval.high}


def paper_rows() -> pd.DataFrame:
    return pd.DataFrame(
        [{"dataset": dataset, "variant": "", "method": method, "accuracy": float(accuracy),
          "std": np.nan, "pooled": np.nan, "n_folds": pd.NA, "source": "paper",
          "learned_nothing": "", "finished": "", "status": ""}
         for dataset, rows in PAPER.items() for method, accuracy in rows],
        columns=COLUMNS)


def _head_accuracy(head: str) -> Callable[[dict], float | None]:
    return lambda run: run["heads"][head]["accuracy"] if head in run["heads"] else None


def run_rows(records: list[dict]) -> pd.DataFrame:
    """Every head of every record, in percent: mean and standard deviation over folds, the
    pooled accuracy of every fold run (of every seed) and its interval."""
    rows = []
    for record in records:
        found = record_sample(record)
        for head, method in HEADS.items():
            done = [run for run in record["folds"] if head in run["heads"]]
            accuracies = 100 * np.array([run["heads"][head]["accuracy"] for run in done])
            tested = np.array([run["n_test"] for run in done])
            if len(accuracies):
                rows.append({**_identity(record), "method": method,
                             "pooled": (accuracies * tested).sum() / max(1, tested.sum()),
                             **_pooled_interval(found, head),
                             **_spread(by_fold(record, _head_accuracy(head))),
                             "n_seeds": len({run["seed"] for run in done}),
                             "source": OURS_SOURCE, **_provenance(record)})
    return pd.DataFrame(rows, columns=COLUMNS)


def accuracy_table(records: list[dict]) -> pd.DataFrame:
    table = pd.concat([paper_rows(), run_rows(records)], ignore_index=True)
    table[["n_folds", "n_seeds"]] = table[["n_folds", "n_seeds"]].astype("Int64")
    return table.round({"accuracy": 4, "std": 4, "pooled": 4, "ci_low": 4, "ci_high": 4})


def _result(row: dict) -> str:
    folds = f"{row['n_folds']} fold{'s' if row['n_folds'] != 1 else ''}"
    if row["n_seeds"] > 1:
        folds += f" x {row['n_seeds']} seeds"
    if row["n_folds"] > 1 or row["n_seeds"] > 1:
        folds += f"; pooled {row['pooled']:.2f}"
    if pd.notna(row["ci_low"]):
        folds += f"; 95 % CI [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
    if row["learned_nothing"]:
        folds += "; learned nothing"
    if row["status"] != CURRENT:
        folds += "; stale"
    spread = f" ± {row['std']:.2f}" if pd.notna(row["std"]) else ""
    return f"{row['accuracy']:.2f}{spread} ({folds})"


def markdown(table: pd.DataFrame) -> str:
    ours = table[table["source"] == OURS_SOURCE]
    default = ours[ours["variant"] == DEFAULT_VARIANT].set_index("method")
    lines = ["# Accuracy (%)", "",
             "The paper's table (SPEC §5) with our EPMG accuracy (default variant) beside "
             f'"{OURS_PAPER}": mean ± standard deviation over folds, and the accuracy '
             "over the folds' test images pooled (the paper does not say which it reports), "
             "with the latter's 95 % interval (CI: a bootstrap over test subjects and seeds); "
             "with several seeds, each fold's accuracy is its mean over them.",
             "",
             "|" + "".join(f" {title} | |" for title in BENCHMARKS.values()),
             "|" + "---|" * 2 * len(BENCHMARKS)]
    for position in range(len(PAPER["ckplus"])):
        lines.append("| " + " | ".join(f"{method} | {accuracy}" for method, accuracy in
                                       (PAPER[name][position] for name in BENCHMARKS)) + " |")
    cells = []
    for name in BENCHMARKS:
        found = default[default["dataset"] == name]
        cells.append(_result(found.loc[OURS_RUN]) if OURS_RUN in found.index else "not run")
    lines.append("| " + " | ".join(f"{OURS_RUN} | {cell}" for cell in cells) + " |")

    lines += ["", "## Every dataset and variant on disk, every head", "",
              "| dataset | variant | " + " | ".join(HEADS.values()) + " | finished |",
              "|---|---|" + "---|" * (len(HEADS) + 1)]
    indexed = ours.set_index(["dataset", "variant", "method"])
    for (dataset, variant), rows in ours.groupby(["dataset", "variant"], sort=False):
        lines.append(f"| {BENCHMARKS.get(dataset, dataset)} | {variant} | " + " | ".join(
            _result(indexed.loc[(dataset, variant, method)])
            if (dataset, variant, method) in indexed.index else "-"
            for method in HEADS.values()) + f" | {rows['finished'].iloc[0]} |")
    return "\n".join(lines + table_notes(ours)) + "\n"


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
ABLATION_COLUMNS = ["dataset", "variant", "method", "epoch_selection", "accuracy", "std",
                    "n_folds", *PROVENANCE]


def _spread(values) -> dict:
    values = 100 * np.asarray(values, dtype=float)
    return {"accuracy": values.mean() if len(values) else np.nan,
            "std": values.std(ddof=1) if len(values) > 1 else np.nan, "n_folds": len(values)}


def ablation_table(records: list[dict]) -> pd.DataFrame:
    """What each module adds, per dataset and variant: mean and spread over folds of each
    head; the best-test-epoch row only for comparison with peers, and labelled so."""
    rows = []
    for record in records:
        choices = [*ABLATION, ("best_test_accuracy", *BEST_TEST)]
        for head, method, selection in choices:
            values = by_fold(record, (lambda run: run["best_test_accuracy"])
                             if head == "best_test_accuracy" else _head_accuracy(head))
            if values:
                rows.append({**_identity(record), "method": method,
                             "epoch_selection": selection, **_spread(values),
                             **_provenance(record)})
    table = pd.DataFrame(rows, columns=ABLATION_COLUMNS)
    table["n_folds"] = table["n_folds"].astype("Int64")
    return table.round({"accuracy": 4, "std": 4})


# ---------------------------------------------------------------- interpretability

# summary.json's interpretability measures (expmap.interpret) -> (markdown header, percent);
# first those that a blob (one map for every class and person) or a copy of the person fails
INTERPRETABILITY = {
    "class_difference_correlation": ("maps: class-difference correlation with prototypes",
                                     False),
    "class_difference_ratio": ("maps: class-difference norm / prototypes'", False),
    "detail_correlation": ("maps: fine-detail correlation with prototypes", False),
    "invariance_gain": ("maps: invariance gain over inputs", False),
    "within_between_ratio": ("maps: within / between", False),
    "nearest_mean_accuracy": ("maps: nearest class mean (%)", True),
    "region_concentration": ("maps: class differences in regions / area", False),
    "mask_share_stage1": ("mask mass in regions, stage 1 (%)", True),
    "mask_share": ("mask mass in regions, after EMR (%)", True),
    "area_share": ("regions' area (%)", True),
}


def interpretability_table(records: list[dict]) -> pd.DataFrame:
    """Per dataset and variant, the mean and spread over folds (each fold's mean over its
    seeds) of each measure of expmap.interpret (the region measures only where true regions
    are known)."""
    rows = []
    for record in records:
        row = {**_identity(record), "n_folds": len({run["fold"] for run in record["folds"]})}
        for measure in INTERPRETABILITY:
            values = by_fold(record, lambda run, m=measure: run["interpretability"].get(m))
            row[measure] = float(np.mean(values)) if values else np.nan
            row[f"{measure}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
            row[f"{measure}_ci_low"], row[f"{measure}_ci_high"] = _measure_interval(
                record, measure)
        rows.append({**row, **_provenance(record)})
    columns = (["dataset", "variant"]
               + [c for m in INTERPRETABILITY
                  for c in (m, f"{m}_std", f"{m}_ci_low", f"{m}_ci_high")]
               + ["n_folds", *PROVENANCE])
    return pd.DataFrame(rows, columns=columns).round(4)


def _measure_interval(record: dict, measure: str) -> tuple[float, float]:
    """The 95 % interval of a measure's mean over fold runs, resampling folds and seeds."""
    values = run_values(record, measure)
    if np.isnan(values).all():
        return np.nan, np.nan
    interval = statistics.mean_interval(values)
    return interval.low, interval.high


def _cell(value, std=np.nan, percent=False, digits=3) -> str:
    if pd.isna(value):
        return "-"
    scale = 100 if percent else 1
    text = f"{scale * value:.{digits}f}"
    return text + (f" ± {scale * std:.{digits}f}" if pd.notna(std) else "")


def _difference(row: dict) -> str:
    if pd.isna(row["epmg_vs_default"]):
        return "-"
    return (f"{row['epmg_vs_default']:+.2f} [{row['epmg_vs_default_ci_low']:+.2f}, "
            f"{row['epmg_vs_default_ci_high']:+.2f}]")


def _variant(row: dict) -> str:
    return row["variant"] + ("" if row["status"] == CURRENT else " (stale)")


def ablation_markdown(table: pd.DataFrame) -> str:
    lines = ["# Ablation: what each module adds (accuracy %, mean ± std over folds)", "",
             "The headline number is the model after its final epoch. The last row of each "
             "dataset picks the best epoch on the test set, as many peers do: it is shown only "
             "to compare with them.", "",
             "| dataset | variant | model | epoch | accuracy | folds | finished |",
             "|---|---|---|---|---|---|---|"]
    for row in table.to_dict("records"):
        lines.append(f"| {BENCHMARKS.get(row['dataset'], row['dataset'])} | {_variant(row)} | "
                     f"{row['method']} | {row['epoch_selection']} | "
                     f"{_cell(row['accuracy'], row['std'], digits=2)} | {row['n_folds']} | "
                     f"{row['finished']} |")
    return "\n".join(lines + table_notes(table)) + "\n"


def interpretability_markdown(table: pd.DataFrame) -> str:
    lines = ["# Interpretability, measured", "",
             "Pattern maps of the test set against each fold's expression prototypes (its "
             "training images' class-mean grey faces): how the class-mean maps' departures "
             "from their mean over classes correlate with the prototypes' (0 for one map for "
             "every class), their norm against the prototypes', and the median over classes "
             "of the correlation of the high-passed class-mean map with the high-passed "
             "prototype (fine detail, not the face's oval); how much less the maps depend "
             "on the person than the input faces do (1 for a copy of the input); the "
             "distance of a map to its own class mean over the distance between class means "
             "(lower: maps depend on the expression, not on who made it) and the share of "
             "maps nearest their own class mean. Where the true expression regions are known "
             "(the synthetic benchmark): how much of the maps' class differences and of the "
             "mask's mass lies inside them, against their share of the area. Mean ± "
             "standard deviation over folds.", "",
             "| dataset | variant | " + " | ".join(h for h, _ in INTERPRETABILITY.values())
             + " | folds | finished |",
             "|---|---|" + "---|" * (len(INTERPRETABILITY) + 2)]
    for row in table.to_dict("records"):
        cells = [_cell(row[m], row[f"{m}_std"], percent, 1 if percent else 3)
                 for m, (_, percent) in INTERPRETABILITY.items()]
        lines.append(f"| {BENCHMARKS.get(row['dataset'], row['dataset'])} | {_variant(row)} | "
                     + " | ".join(cells) + f" | {row['n_folds']} | {row['finished']} |")
    return "\n".join(lines + table_notes(table)) + "\n"


# ---------------------------------------------------------------- variants

VARIANT_MEASURES = {  # interpretability measure -> (markdown header, digits)
    "class_difference_correlation": ("maps: class-difference corr.", 2),
    "detail_correlation": ("maps: detail corr.", 2),
    "invariance_gain": ("maps: invariance gain", 1),
}


def versus_default(record: dict, default: dict | None) -> statistics.Interval | None:
    """The EPMG head of `record` minus that of its dataset's `default` record, in points,
    paired on the test images (seed, fold, image) both have; None where they share none."""
    if default is None or record is default:
        return None
    ours, theirs = predictions_frame(record), predictions_frame(default)
    if ours is None or theirs is None:
        return None
    keys = ["seed", "fold", "image_id"]
    shared = ours[[*keys, "subject", "label", "pred_epmg"]].merge(
        theirs[[*keys, "pred_epmg"]].rename(columns={"pred_epmg": "pred_default"}), on=keys)
    if shared.empty:
        return None
    return statistics.paired_difference(statistics.sample(shared, ["epmg", "default"]),
                                        "epmg", "default")


def _versus_default_cells(record: dict, records: list[dict]) -> dict:
    default = next((other for other in records if other["dataset"] == record["dataset"]
                    and other["variant"] == DEFAULT_VARIANT), None)
    found = versus_default(record, default)
    values = (np.nan,) * 3 if found is None else (found.estimate, found.low, found.high)
    return dict(zip(("epmg_vs_default", "epmg_vs_default_ci_low", "epmg_vs_default_ci_high"),
                    values))


def variants_table(records: list[dict]) -> pd.DataFrame:
    """One row per record: each head's accuracy (mean and std over folds, percent), the
    folds and seeds, the EPMG head against the default's on the same images (points, with
    its interval), the maps' VARIANT_MEASURES, and the keys in which the variant differs
    from default."""
    rows = []
    for record in records:
        row = _identity(record)
        for head in HEADS:
            spread = _spread(by_fold(record, _head_accuracy(head)))
            row[f"{head}_accuracy"], row[f"{head}_std"] = spread["accuracy"], spread["std"]
        row["n_folds"] = len({run["fold"] for run in record["folds"]})
        row["n_seeds"] = len(record["seeds"])
        row.update(_versus_default_cells(record, records))
        for measure in VARIANT_MEASURES:
            values = by_fold(record, lambda run, m=measure: run["interpretability"].get(m))
            row[measure] = float(np.mean(values)) if values else np.nan
        row["differs_in"] = "; ".join(f"{k}={json.dumps(v)}"
                                      for k, v in sorted(record["differs_in"].items()))
        rows.append({**row, **_provenance(record)})
    return pd.DataFrame(rows).round(4)


def variants_markdown(table: pd.DataFrame) -> str:
    heads = list(HEADS.values())
    lines = ["# Variants (accuracy %, mean ± std over folds)", "",
             "Each variant beside the configuration as written (default); \"EPMG vs default\" "
             "is its EPMG head minus the default's on the same test images and seeds, in "
             "points, with its 95 % interval (a bootstrap over test subjects and seeds). "
             "The last columns name what it changes and when it finished.", "",
             "| dataset | variant | " + " | ".join(heads)
             + " | folds | seeds | EPMG vs default | "
             + " | ".join(h for h, _ in VARIANT_MEASURES.values())
             + " | differs in | finished |",
             "|---|---|" + "---|" * (len(heads) + len(VARIANT_MEASURES) + 5)]
    for row in table.to_dict("records"):
        cells = [_cell(row[f"{head}_accuracy"], row[f"{head}_std"], digits=2)
                 for head in HEADS]
        measures = [_cell(row[m], digits=digits) for m, (_, digits) in VARIANT_MEASURES.items()]
        lines.append(f"| {row['dataset']} | {_variant(row)} | " + " | ".join(cells)
                     + f" | {row['n_folds']} | {row['n_seeds']} | {_difference(row)} | "
                     + " | ".join(measures)
                     + f" | {row['differs_in'] or '-'} | {row['finished']} |")
    return "\n".join(lines + table_notes(table)) + "\n"


# ---------------------------------------------------------------- all of them

TABLES = {  # name -> (table, markdown)
    "accuracy": (accuracy_table, markdown),
    "ablation": (ablation_table, ablation_markdown),
    "interpretability": (interpretability_table, interpretability_markdown),
    "variants": (variants_table, variants_markdown),
    "claims": (claims_table, claims_markdown),
}


def write_tables(records: list[dict], out: dict[str, str | os.PathLike],
                 log: Callable[[str], None] = print) -> None:
    """Every table as <name>.csv and <name>.md (out keys: <name>_csv, <name>_md) from
    `records` (expmap.records.read_records)."""
    records = sorted(records, key=record_order)
    for name, (build, render) in TABLES.items():
        table = build(records)
        atomic_write_csv(out[f"{name}_csv"], table)
        atomic_write_text(out[f"{name}_md"], render(table))
    for record in records:
        log(f"{record['dataset']} / {record['variant']}: {len(record['folds'])} folds, "
            f"finished {record['finished']}, {record['status']}")
