"""The projected training time of the paper's table, from a throughput measurement.

    .venv/bin/python bench/throughput.py --json throughput.json
    .venv/bin/python bench/table_cost.py throughput.json [--configfile my.yaml] [--mfu 0.4]

For each benchmark of the paper (its full protocol: every fold, the three stages, the epochs
and batches of config.yaml plus any --configfile overlays): images trained on = images per
epoch x epochs x folds, per stage; stage 1's epoch is the fold's training set, stages 2
and 3's are `iterations` batches of t images per class. The per-epoch evaluation and the
final evaluation are left out (forward passes only, a few percent).

Two projections:
- the measured device, at the measured width: images / measured loop rate, in the JSON's
  precision (the one `precision: auto` picks there: bf16 on a CPU with AMX or AVX-512 BF16,
  fp32 on most laptops) and in the other one the bench measured beside it;
- each GPU of the known-peaks table at full width: FLOPs / (peak x MFU), with the FLOPs of
  a full-width VGG-16 step counted here and the MFU measured (a GPU JSON) or --mfu.
Training-set sizes: a prepared store under results/ where there is one, else the published
protocol counts (docs/SPEC.md, "Datasets").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch
from throughput import CLASSES, PEAK_TFLOPS, REPO, run_config, stage_flops

from expmap import config as cfg
from expmap.data.adapters import affectnet, ckplus, rafdb
from expmap.train import HYPERPARAMETERS

PAPER_BENCHMARKS = ("ckplus", "oulu_casia", "rafdb", "affectnet")
OULU_SEQUENCES = 480  # 80 subjects x 6 expressions under one lighting (VL)


def published_images(name: str, options: dict) -> int:
    """Images of a benchmark's protocol (train and test together for k folds; the training
    set for an official split), from the counts its adapter checks against."""
    if name == "ckplus":
        return ckplus.PUBLISHED[options["contempt"]]["sequences"][0] * options["frames"]
    if name == "oulu_casia":
        return OULU_SEQUENCES * options["frames"]
    if name == "rafdb":
        return rafdb.PUBLISHED["train images"][0]
    return affectnet.PUBLISHED[8 if options.get("classes8") else 7]["train images"][0]


def training_images(name: str, dataset: dict) -> tuple[int, str]:
    """(training images per fold, where the count comes from)."""
    folds = dataset["options"].get("folds")
    manifest = REPO / "results" / name / "prepared" / "manifest.csv"
    if manifest.exists():
        split = pd.read_csv(manifest, usecols=["split"])["split"]
        total = int((split == "train").sum()) if folds is None else len(split)
        source = "prepared store"
    else:
        total, source = published_images(name, dataset["options"]), "published"
    return (total if folds is None else round(total * (folds - 1) / folds)), source


def measured_rates(measured: dict) -> dict[str, dict]:
    """Each measured precision's per-stage figures: the JSON's own precision (what `auto`
    picks on the measured device, unless the bench was told otherwise) first."""
    rates = {measured["precision"]: measured["stages"]}
    if "compared" in measured:
        rates[measured["compared"]["precision"]] = measured["compared"]["stages"]
    return rates


def projections(name: str, dataset: dict, measured: dict, mfu: float | None,
                precision: str) -> dict:
    """One benchmark's row: folds, images trained on per stage, and hours: on the measured
    device as measured (in each measured precision), on it at full width at the same FLOP
    rate, on each known GPU."""
    train, source = training_images(name, dataset)
    folds = len(cfg.run_folds(dataset))
    classes = len(dataset["classes"])
    row = {"benchmark": name, "folds": folds, "training images": f"{train:,} ({source})"}
    rates = measured_rates(measured)
    seconds = {f"measured, {p}": 0.0 for p in rates} | {"full width": 0.0}
    gpu_flops = 0.0
    for stage in (1, 2, 3):
        hp = dataset["train"][f"stage{stage}"]
        per_epoch = train if stage == 1 else hp["iterations"] * hp["t"] * classes
        images = per_epoch * hp["epochs"] * folds
        row[f"stage {stage} images"] = images
        for p, stages in rates.items():
            seconds[f"measured, {p}"] += images / stages[str(stage)]["loop_images_per_s"]
        figures = measured["stages"][str(stage)]
        flops = full_width_flops(stage, hp)
        seconds["full width"] += (images / figures["loop_images_per_s"]
                                  * flops / figures["flops_per_image"])
        gpu_flops += images * flops / (mfu or figures["mfu"])
    row.update({f"{column} h": value / 3600 for column, value in seconds.items()})
    row[f"measured, full width, {measured['precision']} h"] = row.pop("full width h")
    for gpu, peaks in PEAK_TFLOPS.items():
        row[f"{gpu} h"] = gpu_flops / (peaks[precision] * 1e12) / 3600
    return row


def pipe_table(rows: list[dict]) -> str:
    """Rows as a Markdown table: thousands separated, three significant digits or more."""
    def cell(value):
        if isinstance(value, float):
            return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"
        return f"{value:,}" if isinstance(value, int) else str(value)
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def full_width_flops(stage: int, hp: dict) -> float:
    """FLOPs per image of a full-width VGG-16 training step of `stage` (t = 2 per class)."""
    hp = HYPERPARAMETERS[stage].from_dict(hp)
    labels = torch.arange(CLASSES).repeat(2)
    return stage_flops(stage, hp, 1.0, labels)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("throughput", type=Path, help="JSON written by bench/throughput.py")
    parser.add_argument("--configfile", type=Path, nargs="*", default=[],
                        help="overlays on config.yaml, as for snakemake")
    parser.add_argument("--mfu", type=float, default=None,
                        help="MFU for the GPU projection (default: the measured one, else 0.4)")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"),
                        help="the GPUs' precision in the projection")
    return parser.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse(argv)
    measured = json.loads(args.throughput.read_text())
    measured_mfu = all(s["mfu"] for s in measured["stages"].values())
    mfu = args.mfu or (None if measured_mfu else 0.4)
    config = run_config(args.configfile)
    rows = [projections(name, config["datasets"][name], measured, mfu, args.precision)
            for name in PAPER_BENCHMARKS]
    hours = [column for column in rows[0] if column.endswith(" h")]
    rows.append({"benchmark": "whole table", **{c: sum(r[c] for r in rows) for c in hours}})
    others = list(measured_rates(measured))[1:]
    print(f"measured: {measured['device']}, width {measured['width']:g}, "
          f"{measured['precision']} ({measured.get('precision_reason', 'as asked')})"
          + "".join(f" and {other} beside it" for other in others)
          + " (\"measured, full width\": at the FLOP rate measured in the first); "
          f"GPUs: full width, {args.precision}, MFU "
          + ("as measured per stage" if mfu is None else f"{mfu:.0%}"
             + ("" if args.mfu else " (assumed: no GPU measurement)")))
    print(pipe_table(rows))
    return rows


if __name__ == "__main__":
    main()
    sys.exit(0)
