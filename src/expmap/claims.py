"""The paper's claims as verdicts with their uncertainty: claims.csv and claims.md.

One row per dataset, variant and claim, from every record on disk that holds its test
images (expmap.records): the estimate, its 95 % interval (expmap.statistics: a bootstrap
over test subjects and seeds for accuracies; over folds and seeds for the map measures),
what went into it, and a verdict in one fixed vocabulary:
- against a value the paper prints: consistent (inside the interval), below, above;
  no paper value where it prints none;
- for a direction (a difference above 0, a measure above its null): supported (the whole
  interval on the claimed side), contradicted (the whole interval on the other), unresolved.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from expmap import statistics
from expmap.paper import BENCHMARKS, best_comparator, own_result
from expmap.records import (
    CURRENT,
    frame_sample,
    learned_nothing,
    predictions_frame,
    table_notes,
)

NO_PAPER_VALUE = "no paper value"
VERDICTS = ("consistent", "below", "above", "supported", "contradicted", "unresolved",
            NO_PAPER_VALUE)
COLUMNS = ["dataset", "variant", "claim", "paper", "estimate", "ci_low", "ci_high", "n_seeds",
           "n_folds", "n_images", "n_subjects", "head_alone_right", "baseline_alone_right",
           "verdict", "learned_nothing", "status"]

# claim -> (what the paper claims, the unit of its estimate), as claims.md says it
CLAIMS = {
    "accuracy": ("the EPMG head reaches the paper's accuracy", "%"),
    "beats_comparators": ("the EPMG head beats the best method the paper compares with",
                          "points over it"),
    "emr_improves": ("EMR improves recognition (stage-2 head minus stage-1 head)", "points"),
    "epmg_improves": ("EPMG improves recognition (EPMG head minus stage-2 head)", "points"),
    "maps_identity_invariant": ("the pattern maps depend less on the person than the faces "
                                "do (invariance gain above 1)", ""),
    "maps_class_specific": ("the pattern maps differ between classes as the expressions do "
                            "(class-difference correlation above 0)", ""),
}
# claims that one head improves on another -> (the head, its baseline)
IMPROVEMENTS = {"emr_improves": ("efe_stage2", "efe_stage1"),
                "epmg_improves": ("epmg", "efe_stage2")}
# map claims -> (the interpretability measure, its value under no effect)
MAP_MEASURES = {"maps_identity_invariant": ("invariance_gain", 1.0),
                "maps_class_specific": ("class_difference_correlation", 0.0)}


def run_values(record: dict, measure: str) -> np.ndarray:
    """A measure of every fold run of a record, [seeds, folds], NaN where missing."""
    seeds = sorted({run["seed"] for run in record["folds"]})
    folds = sorted({run["fold"] for run in record["folds"]})
    values = np.full((len(seeds), len(folds)), np.nan)
    for run in record["folds"]:
        value = run["interpretability"].get(measure)
        if value is not None:
            values[seeds.index(run["seed"]), folds.index(run["fold"])] = value
    return values


def _verdicts(record: dict, found: statistics.Sample) -> dict[str, tuple]:
    """claim -> (paper value or NaN, Interval or None, verdict) for one record."""
    dataset = record["dataset"]
    accuracy = statistics.accuracy(found, "epmg")
    paper = own_result(dataset)
    verdicts = {"accuracy": (paper, accuracy, statistics.against(accuracy, paper))}
    best = best_comparator(dataset)
    if best is None:
        verdicts["beats_comparators"] = (None, None, NO_PAPER_VALUE)
    else:
        margin = statistics.Interval(*(value - best[1] for value in
                                       (accuracy.estimate, accuracy.low, accuracy.high)))
        verdicts["beats_comparators"] = (best[1], margin, statistics.direction(margin))
    for claim, (head, baseline) in IMPROVEMENTS.items():
        if {head, baseline} <= set(found.correct):
            difference = statistics.paired_difference(found, head, baseline)
            verdicts[claim] = (None, difference, statistics.direction(difference))
        else:
            verdicts[claim] = (None, None, "unresolved")
    for claim, (measure, null) in MAP_MEASURES.items():
        values = run_values(record, measure)
        if np.isnan(values).all():
            verdicts[claim] = (None, None, "unresolved")
            continue
        if (~np.isnan(values)).sum() < 2:  # one fold run: no spread to resample
            verdicts[claim] = (None, statistics.Interval(float(np.nanmean(values)), np.nan,
                                                         np.nan), "unresolved")
            continue
        interval = statistics.mean_interval(values)
        verdicts[claim] = (None, interval, statistics.direction(interval, null))
    return verdicts


def claims_table(records: list[dict]) -> pd.DataFrame:
    """Every claim of every record that holds its test images."""
    rows = []
    for record in records:
        frame = predictions_frame(record)
        found = None if frame is None else frame_sample(frame)
        if found is None or "epmg" not in found.correct:
            continue
        counts = {"n_seeds": len(found.seeds),
                  "n_folds": len({run["fold"] for run in record["folds"]}),
                  "n_images": found.n_images, "n_subjects": len(found.units)}
        alone = _alone_right(frame, found)
        for claim, (paper, interval, verdict) in _verdicts(record, found).items():
            values = (np.nan,) * 3 if interval is None else (
                interval.estimate, interval.low, interval.high)
            rows.append({"dataset": record["dataset"], "variant": record["variant"],
                         "claim": claim, "paper": np.nan if paper is None else paper,
                         **dict(zip(("estimate", "ci_low", "ci_high"), values)), **counts,
                         **dict(zip(("head_alone_right", "baseline_alone_right"),
                                    alone.get(claim, (np.nan, np.nan)))),
                         "verdict": verdict, "learned_nothing": learned_nothing(record),
                         "status": record["status"]})
    table = pd.DataFrame(rows, columns=COLUMNS)
    table = table.astype({"head_alone_right": "Int64", "baseline_alone_right": "Int64"})
    return table.round({"estimate": 4, "ci_low": 4, "ci_high": 4})


def _alone_right(frame: pd.DataFrame, found: statistics.Sample
                 ) -> dict[str, tuple[int, int]]:
    """improvement claim -> predictions its head alone gets right, and its baseline alone."""
    return {claim: statistics.discordant(frame, head, baseline)
            for claim, (head, baseline) in IMPROVEMENTS.items()
            if {head, baseline} <= set(found.correct)}


def _figures(row: dict) -> str:
    """The estimate and its interval in the claim's unit, and the paper's value."""
    if pd.isna(row["estimate"]):
        return "not measured"
    unit = CLAIMS[row["claim"]][1]
    form = "+.2f" if unit.startswith("points") else ".2f" if unit else ".3f"
    low, high = (f"{row[key]:{form}}" for key in ("ci_low", "ci_high"))
    spread = ("one fold run: no interval" if pd.isna(row["ci_low"])
              else f"95 % interval {low} to {high}")
    unit = f" {unit}" if unit else ""
    text = f"{row['estimate']:{form}}{unit} ({spread})"
    if pd.notna(row["head_alone_right"]):
        text += (f"; over every seed the head alone is right on "
                 f"{row['head_alone_right']:.0f} test predictions, its baseline alone on "
                 f"{row['baseline_alone_right']:.0f}")
    if pd.notna(row["paper"]):
        whose = ("the best comparator's" if row["claim"] == "beats_comparators"
                 else "the paper's")
        text += f"; {whose} {row['paper']:.2f} %"
    return text


def claims_markdown(table: pd.DataFrame) -> str:
    lines = ["# The paper's claims, with how sure we are", "",
             "Each claim with our estimate and its 95 % interval: accuracies and their "
             "differences resample whole test subjects (and seeds), the map measures resample "
             "folds (and seeds). A verdict against the paper's number: consistent (inside "
             "our interval), below or above it. A verdict on a direction: supported (the "
             "whole interval on the claimed side of no effect), contradicted (the whole "
             "interval on the other side), unresolved (the interval holds both: more seeds, "
             "folds or people narrow it)."]
    for (dataset, variant), rows in table.groupby(["dataset", "variant"], sort=False):
        first = rows.iloc[0]
        stale = "" if first["status"] == CURRENT else f" ({first['status']})"
        lines += ["", f"## {BENCHMARKS.get(dataset, dataset)}, {variant}{stale}", "",
                  f"{first['n_images']} test images of {first['n_subjects']} subjects (or "
                  f"images, where none are named), {first['n_folds']} "
                  f"fold{'s' if first['n_folds'] != 1 else ''}, "
                  f"{first['n_seeds']} seed{'s' if first['n_seeds'] != 1 else ''}."
                  + (f" **Learned nothing** ({first['learned_nothing']}): these verdicts are "
                     "of a model that did not learn." if first["learned_nothing"] else ""),
                  ""]
        for row in rows.to_dict("records"):
            lines.append(f"- **{row['claim']}**: {CLAIMS[row['claim']][0]}: "
                         f"{_figures(row)}. Verdict: **{row['verdict']}**.")
    if table.empty:
        lines += ["", "No finished run holds its test images yet."]
    return "\n".join(lines + table_notes(table)) + "\n"
