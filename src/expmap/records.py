"""One record per finished run of a dataset and variant; the tables read every record on disk.

`results/<dataset>/<variant>/record.json` holds what the tables need of a finished run
(each fold's summary and best test-epoch accuracy), the configuration it ran with, the keys
in which it differs from default, and when it finished. The tables are built from all the
records under `results/`, not only from this run's: running one benchmark after another
builds up the whole table. A record whose configuration config.yaml no longer gives is
kept in the tables, marked stale with the keys that changed.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from expmap.errors import UserError
from expmap.io import atomic_write_json

RECORD = "record.json"
FORMAT = "expmap-record/1"
CURRENT = "current"


class RecordError(UserError):
    """A record.json the tables cannot read; the message is the one line to show."""


def write_record(dataset: str, variant: str, summaries: list[str | os.PathLike],
                 stage3_metrics: list[str | os.PathLike], configuration: dict,
                 differs_in: dict, out: str | os.PathLike) -> dict:
    """The record of one dataset and variant from its folds' summary.json and
    stage3_metrics.csv (same order); finished is when the last fold's evaluation ended."""
    folds = []
    for summary, metrics in zip(summaries, stage3_metrics, strict=True):
        fold = json.loads(Path(summary).read_text())
        best = pd.read_csv(metrics)["test_accuracy"].max()
        folds.append({"fold": fold["fold"], "n_test": fold["n_test"], "heads": fold["heads"],
                      "interpretability": fold.get("interpretability", {}),
                      "best_test_accuracy": None if math.isnan(best) else float(best)})
    finished = max(Path(path).stat().st_mtime for path in summaries)
    record = {"format": FORMAT, "dataset": dataset, "variant": variant,
              "finished": datetime.fromtimestamp(finished, timezone.utc)
              .strftime("%Y-%m-%d %H:%M UTC"),
              "configuration": configuration, "differs_in": differs_in, "folds": folds}
    atomic_write_json(out, record)
    return record


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
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise RecordError(f"{path}: not an {FORMAT} record ({found}); delete it, or run "
                          "its dataset again to rewrite it")
    return record


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
