"""One record per finished run of a dataset and variant; the tables read every record on disk.

`results/<dataset>/<variant>/record.json` holds what the tables need of a finished run
(each fold's and seed's summary and best test-epoch accuracy, and every test image's
subject, label and predictions: what the intervals of expmap.statistics resample), the
configuration it ran with, the keys in which it differs from default, and when it finished.
The tables are built from all the records under `results/`, not only from this run's:
running one benchmark after another builds up the whole table. A record whose
configuration config.yaml no longer gives is kept in the tables, marked stale with the keys
that changed.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from expmap import statistics
from expmap.errors import UserError
from expmap.io import atomic_write_json

RECORD = "record.json"
FORMAT = "expmap-record/2"
FORMAT_WITHOUT_PREDICTIONS = "expmap-record/1"  # before seeds: one seed (0), no images
CURRENT = "current"
PREDICTION_COLUMNS = ["seed", "fold", "image_id", "subject", "label"]  # then pred_<head>


class RecordError(UserError):
    """A record.json the tables cannot read; the message is the one line to show."""


def write_record(dataset: str, variant: str, summaries: list[str | os.PathLike],
                 predictions: list[str | os.PathLike], stage3_metrics: list[str | os.PathLike],
                 configuration: dict, differs_in: dict, out: str | os.PathLike) -> dict:
    """The record of one dataset and variant from its fold runs' summary.json,
    predictions.csv and stage3_metrics.csv (same order: every seed's folds); finished is when
    the last evaluation ended."""
    folds = []
    for summary, metrics in zip(summaries, stage3_metrics, strict=True):
        fold = json.loads(Path(summary).read_text())
        best = pd.read_csv(metrics)["test_accuracy"].max()
        folds.append({"fold": fold["fold"], "seed": fold.get("seed", 0),
                      "n_test": fold["n_test"], "heads": fold["heads"],
                      "interpretability": fold.get("interpretability", {}),
                      "learned_nothing": fold.get("learned_nothing", {}),
                      "best_test_accuracy": None if math.isnan(best) else float(best)})
    finished = max(Path(path).stat().st_mtime for path in summaries)
    record = {"format": FORMAT, "dataset": dataset, "variant": variant,
              "finished": datetime.fromtimestamp(finished, timezone.utc)
              .strftime("%Y-%m-%d %H:%M UTC"),
              "seeds": sorted({fold["seed"] for fold in folds}),
              "configuration": configuration, "differs_in": differs_in, "folds": folds,
              "predictions": predictions_columns(predictions)}
    atomic_write_json(out, record)
    return record


def predictions_columns(paths: list[str | os.PathLike]) -> dict[str, list]:
    """Every test image of the predictions.csv files `paths`, column by column: seed, fold,
    image_id, subject, label and each head's predicted class (pred_<head>)."""
    frame = pd.concat([pd.read_csv(path, dtype={"subject": str, "image_id": str})
                       for path in paths], ignore_index=True)
    heads = [column for column in frame.columns if column.startswith("pred_")]
    return {column: frame[column].tolist() for column in PREDICTION_COLUMNS + heads}


def predictions_frame(record: dict) -> pd.DataFrame | None:
    """A record's test images as a table (None for a record written before seeds)."""
    columns = record.get("predictions")
    return None if columns is None else pd.DataFrame(columns)


def record_sample(record: dict) -> statistics.Sample | None:
    """A record's test images as a statistics.Sample of every head it predicted with (None
    for a record written before seeds, which has no images)."""
    frame = predictions_frame(record)
    return None if frame is None else frame_sample(frame)


def frame_sample(frame: pd.DataFrame) -> statistics.Sample:
    """Test-image predictions as a statistics.Sample of every head they hold."""
    heads = [column.removeprefix("pred_") for column in frame if column.startswith("pred_")]
    return statistics.sample(frame, heads)


def read_records(results: str | os.PathLike, current: dict[str, dict]) -> list[dict]:
    """Every record under `results`, each with a "status": "current", or "stale: ..."
    where `current` ("<dataset>/<variant>" -> the configuration config.yaml gives it now)
    disagrees or has no such run."""
    records = [_read(path) for path in sorted(Path(results).glob(f"*/*/{RECORD}"))]
    for record in records:
        record["status"] = status(record["configuration"],
                                  current.get(f"{record['dataset']}/{record['variant']}"))
    return records


def _read(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        record = {"format": f"unreadable ({type(error).__name__})"}
    found = record.get("format") if isinstance(record, dict) else type(record).__name__
    if found == FORMAT_WITHOUT_PREDICTIONS:  # readable: no intervals for it
        record["seeds"] = [0]
        for fold in record["folds"]:
            fold["seed"] = 0
    elif found != FORMAT:
        raise RecordError(f"{path}: not an {FORMAT} record ({found}); delete it, or run "
                          "its dataset again to rewrite it")
    return record


def learned_nothing(record: dict) -> str:
    """The stages that learned nothing, with their fold runs ("stage1: fold0, seed1/fold2"),
    "; " between stages; "" when every stage learned."""
    found: dict[str, list[str]] = {}
    for run in record["folds"]:
        for stage in run.get("learned_nothing", {}):
            found.setdefault(stage, []).append(f"seed{run['seed']}/{run['fold']}"
                                               if run["seed"] else run["fold"])
    return "; ".join(f"{stage}: {', '.join(runs)}" for stage, runs in sorted(found.items()))


def table_notes(table: pd.DataFrame) -> list[str]:
    """Closing lists of a table's datasets and variants whose stages learned nothing, and
    of the stale ones, with what changed."""
    lines = []
    for column, title in (
            ("learned_nothing", "Learned nothing: a stage whose classifier ended no better "
             "than guessing (its job log says what was seen and what to try); the rows "
             "after it are built on it."),
            ("status", "Stale: results on disk whose configuration config.yaml no longer "
             "gives; rerun them by adding the dataset to `benchmarks`.")):
        marked = table[table[column].fillna("").str.startswith(
            "stale" if column == "status" else "stage")]
        notes = {f"- {row['dataset']} / {row['variant']}: {row[column]}"
                 for row in marked.to_dict("records")}
        lines += ["", title, *sorted(notes)] if notes else []
    return lines


def status(recorded: dict, now: dict | None) -> str:
    if now is None:
        return "stale: config.yaml no longer has this dataset and variant"
    recorded, now = _flat(recorded), _flat(now)
    changed = [key for key in sorted(set(recorded) | set(now))
               if recorded.get(key) != now.get(key)]
    if not changed:
        return CURRENT
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3
                                      else "")
    return f"stale: config.yaml now differs in {shown}"


def _flat(value, prefix: str = "") -> dict:
    if not isinstance(value, dict):
        return {prefix: json.dumps(value, sort_keys=True)}
    flat = {}
    for key, item in value.items():
        flat.update(_flat(item, f"{prefix}.{key}" if prefix else key))
    return flat
