"""Images per second of each training stage: the pipeline's own loop against a bare step.

For stage 1, 2 and 3, in one run on one device, width and batch, in the precision that
`--precision` resolves to (auto: what the pipeline picks on this device, and why) and, for
the ratio, in the other one (bf16 against fp32), stage by stage in the same run:
- loop: `expmap.train.train_one_epoch`, the code a pipeline job runs (the store read by the
  background reader, flips, learning-rate schedule, clipping, diagnostics), on a store of
  random faces written to a temporary folder;
- bare: forward, the stage's loss, backward and the optimizer's step on the same modules
  and optimizer, on a batch already on the device.
Their ratio is what the loop costs beyond the arithmetic; in stages 2 and 3 the loop also
keeps what the frozen convs compute (config.yaml's feature_cache_mb) while the bare step
recomputes it, so there the ratio says what keeping it saves. Also: the reader's own rate, peak
memory, FLOPs per training image (torch.utils.flop_counter) and, on a GPU of the known-peaks
table, the loop's model FLOPs utilisation (MFU).

    .venv/bin/python bench/throughput.py                        # CPU, width 1/16, batch 16
    .venv/bin/python bench/throughput.py --device cuda --width 1 --batch 64 --precision bf16
    .venv/bin/python bench/throughput.py --no-compare           # one precision only
    .venv/bin/python bench/throughput.py --json throughput.json  # for bench/table_cost.py

Stages 2 and 3 draw t images of each of 8 classes per batch: t = batch / 8.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from expmap import checkpoints
from expmap import config as cfg
from expmap.data.batches import image_batch, prefetched, to_device
from expmap.data.sampling import ShuffledBatchSampler
from expmap.data.store import StoreWriter, write_prepared
from expmap.model import STACK, build_stack
from expmap.train import (
    HYPERPARAMETERS,
    STAGES,
    build_loop,
    resolve_precision,
    train_one_epoch,
)

REPO = Path(__file__).resolve().parents[1]
CLASSES = 8
FOLDS = 3

# Dense peak TFLOP/s per precision ("fp32" is TF32 on tensor cores, which cuDNN's
# convolutions use by default), from the vendors' data sheets.
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp32": 494.7},
    "H100 PCIe": {"bf16": 756.0, "fp32": 378.0},
    "H100": {"bf16": 989.0, "fp32": 494.7},  # SXM
    "A100": {"bf16": 312.0, "fp32": 156.0},
    "L40S": {"bf16": 362.1, "fp32": 183.0},
    "RTX 4090": {"bf16": 165.2, "fp32": 82.6},
}


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's dense peak in FLOP/s for `precision`, or None (CPU, unknown GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for known, peaks in PEAK_TFLOPS.items():
        if all(word in name for word in known.split()):
            return peaks[precision] * 1e12
    return None


def run_config(overlays=()) -> dict:
    """config.yaml with `overlays` on top, validated and merged as the pipeline does."""
    schema = cfg.read_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
    return cfg.load_files([REPO / "config.yaml", *overlays], schema)


def default_hyperparameters(merged: dict) -> dict[int, dict]:
    """The merged config's hyperparameters for a dataset of defaults (`mine`), per stage."""
    return {stage: merged["datasets"]["mine"]["train"][f"stage{stage}"] for stage in (1, 2, 3)}


def write_store(folder: Path, images: int, seed: int = 0) -> Path:
    """A prepared store of random faces, CLASSES classes, FOLDS folds by subject."""
    rng = np.random.default_rng(seed)
    names = [f"class{c}" for c in range(CLASSES)]
    rows = [{"image_id": f"i{i}", "source": f"i{i}.png", "subject": f"S{i // CLASSES:04d}",
             "label": i % CLASSES, "label_name": names[i % CLASSES],
             "split": f"fold{(i // CLASSES) % FOLDS}"} for i in range(images)]
    manifest = pd.DataFrame(rows)
    manifest["index"] = np.arange(images)
    writer = StoreWriter(folder, images)
    for i in range(images):
        writer[i] = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    writer.close()
    write_prepared(folder, manifest, names, {"counts": images})
    return folder


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated memory on the GPU; on the CPU the process's peak resident size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(device: torch.device, work, *args) -> tuple[float, object]:
    """(seconds, result) of work(*args), the device's queue drained before and after."""
    synchronize(device)
    started = time.perf_counter()
    result = work(*args)
    synchronize(device)
    return time.perf_counter() - started, result


def loop_epoch(loop, epoch: int) -> int:
    """One epoch of the pipeline's loop; the images it trained on."""
    totals, _ = train_one_epoch(loop, epoch)
    totals.means()  # reads the sums back, as the pipeline does after every epoch
    return totals.seen


def bare_step(loop, images, labels) -> None:
    loop.optimizer.zero_grad(set_to_none=True)
    loss, _ = loop.runner.losses(images, labels)
    loss.total.backward()
    loop.optimizer.step()


def bare_steps(loop, images, labels, steps: int) -> None:
    loop.runner.train_mode()
    for _ in range(steps):
        bare_step(loop, images, labels)


def rates(loop, images, labels, rounds: int) -> dict[str, float]:
    """Loop and bare images per second, the best of `rounds` rounds, each one epoch of the
    loop then as many bare steps, after one untimed round (warm-up: allocator, caches, and
    compilation where asked; its loop epoch's seconds are reported). Interleaved, so that a
    slower spell of a shared machine falls on both."""
    best = {"loop_images_per_s": 0.0, "bare_images_per_s": 0.0}
    steps = len(loop.sampler)
    for epoch in range(rounds + 1):
        loop_seconds, seen = timed(loop.device, loop_epoch, loop, epoch)
        bare_seconds, _ = timed(loop.device, bare_steps, loop, images, labels, steps)
        if epoch == 0:
            first_epoch_seconds = loop_seconds
            continue
        best["loop_images_per_s"] = max(best["loop_images_per_s"], seen / loop_seconds)
        best["bare_images_per_s"] = max(best["bare_images_per_s"],
                                        steps * len(labels) / bare_seconds)
    return {**best, "first_epoch_seconds": first_epoch_seconds,
            "epoch_seconds": seen / best["loop_images_per_s"]}


def stage_flops(stage: int, hp, width: float, labels: torch.Tensor) -> float:
    """FLOPs per image of one training step of `stage` (forward, loss, backward; the
    optimizer's elementwise update not counted), counted on shapes alone (meta tensors)."""
    with torch.device("meta"):
        modules = build_stack(STACK[:stage], CLASSES, width)
        runner = STAGES[stage](hp, modules, nullcontext)  # FLOPs do not depend on precision
        images = torch.empty(len(labels), 3, 224, 224)
        with FlopCounterMode(display=False) as counter:
            loss, _ = runner.losses(images, labels.to("meta"))
            loss.total.backward()
    return counter.get_total_flops() / len(labels)


def resident_batch(loop):
    """A training batch already on the device (the sampler's first), as the loop sees it."""
    loop.sampler.set_epoch(0)
    rows = next(iter(loop.sampler))
    return image_batch(loop.data.images, rows, loop.device), loop.labels[rows]


def hyperparameters(stage: int, args, defaults: dict, precision: str) -> dict:
    """config.yaml's values, sized for the bench: `steps` batches of `batch` images per epoch."""
    hp = {**defaults[stage], "precision": precision, "compile": args.compile,
          "eval_every": 10**6, "epochs": 10**6}
    if stage == 1:
        hp["batch_size"] = args.batch
    else:
        hp.update(t=max(1, args.batch // CLASSES), iterations=args.steps)
    return hp


def measure_stage(stage: int, args, defaults: dict, store: Path, init: dict | None,
                  device: torch.device, precision: str):
    """(the stage's figures in `precision`, its checkpoint for the next stage)."""
    hp = hyperparameters(stage, args, defaults, precision)
    model = {"width": args.width, "weights": None}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loop, architecture = build_loop(stage, HYPERPARAMETERS[stage].from_dict(hp), store, "fold0",
                                    init, model if stage == 1 else None, device,
                                    log=lambda line: None,
                                    feature_cache_mb=args.feature_cache_mb)
    images, labels = resident_batch(loop)
    measured = rates(loop, images, labels, args.rounds)
    loop_images = measured["loop_images_per_s"]
    flops = stage_flops(stage, loop.hp, args.width, labels)
    peak = peak_flops(device, precision)
    figures = {**measured, "ratio": loop_images / measured["bare_images_per_s"],
               "peak_memory_mb": peak_memory_mb(device), "flops_per_image": flops,
               "mfu": loop_images * flops / peak if peak else None,
               "batch": len(labels)}
    checkpoint = checkpoints.make_checkpoint(stage, loop.runner.modules,
                                             loop.data.class_names, architecture, {},
                                             run_id="bench",
                                             preparation=loop.data.preparation)
    return figures, checkpoint


def reader_rate(store: Path, batch: int, device: torch.device, epochs: int) -> float:
    """Images per second of the store's reader alone: rows read ahead, copied to the device."""
    images = np.load(store / "images.npy", mmap_mode="r")
    sampler = ShuffledBatchSampler(np.arange(len(images)), batch, seed=0)
    started, seen = time.perf_counter(), 0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for _, pixels in prefetched(sampler, images, device.type == "cuda"):
            seen += len(to_device(pixels, device))
    synchronize(device)
    return seen / (time.perf_counter() - started)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--width", type=float, default=1 / 16, help="1 = VGG-16")
    parser.add_argument("--batch", type=int, default=16, help="images per step")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="the figures' precision (auto: the pipeline's choice here)")
    parser.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the other precision, stage by stage, for the ratio")
    parser.add_argument("--compile", action="store_true", help="torch.compile the modules")
    parser.add_argument("--steps", type=int, default=30, help="batches per timed epoch")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed rounds per stage (one loop epoch, as many bare steps)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--feature-cache-mb", type=int, default=None,
                        help="frozen convs' kept activations (default: config.yaml's; 0: none)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    return parser.parse_args(argv)


def print_table(result: dict) -> None:
    print(f"device {result['device']}, precision {result['precision']}; "
          f"{result['precision_reason']}; width {result['width']:g}, "
          f"{result['threads']} threads")
    print(f"{'stage':>5} {'precision':>9} {'batch':>5} {'loop img/s':>11} {'bare img/s':>11} "
          f"{'ratio':>6} {'GFLOP/img':>10} {'MFU':>6} {'peak MB':>8}")
    other = result.get("compared", {})
    for stage, s in result["stages"].items():
        rows = [(result["precision"], s)] + ([(other["precision"], other["stages"][stage])]
                                             if other else [])
        for precision, f in rows:
            mfu = "-" if f["mfu"] is None else f"{100 * f['mfu']:.1f}%"
            print(f"{stage:>5} {precision:>9} {f['batch']:>5} {f['loop_images_per_s']:>11.1f} "
                  f"{f['bare_images_per_s']:>11.1f} {f['ratio']:>6.2f} "
                  f"{f['flops_per_image'] / 1e9:>10.3f} {mfu:>6} {f['peak_memory_mb']:>8.0f}")
    if other:
        print(f"loop, {result['precision']} over {other['precision']}: " + ", ".join(
            f"stage {stage} {ratio:.2f}x" for stage, ratio in other["loop_ratio"].items()))
    print(f"reader: {result['reader_images_per_s']:.1f} images/s, "
          f"{result['reader_images_per_s'] / result['stages']['1']['loop_images_per_s']:.1f}x "
          "the stage-1 loop")


def measure_stages(args, defaults: dict, store: Path, device: torch.device,
                   precisions: list[str]) -> dict[str, dict]:
    """Each precision's figures per stage, measured stage by stage one after the other (a
    slower spell of a shared machine falls on both); every precision's stage N starts from
    the first precision's stage N - 1."""
    figures: dict[str, dict] = {precision: {} for precision in precisions}
    init = None
    for stage in (1, 2, 3):
        checkpoints_made = []
        for precision in precisions:
            figures[precision][str(stage)], made = measure_stage(stage, args, defaults, store,
                                                                 init, device, precision)
            checkpoints_made.append(made)
        init = checkpoints_made[0]
    return figures


def main(argv=None) -> dict:
    args = parse(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    precision, reason = resolve_precision(args.precision, device)
    other = "fp32" if precision == "bf16" else "bf16"
    precisions = [precision, other] if args.compare else [precision]
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "precision": precision, "precision_reason": reason, "width": args.width,
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="expmap-bench-") as folder:
        # enough training rows (two folds of three) for `steps` stage-1 batches
        store = write_store(Path(folder) / "prepared", FOLDS * args.batch * args.steps // 2)
        config = run_config()
        if args.feature_cache_mb is None:
            args.feature_cache_mb = config["feature_cache_mb"]
        result["feature_cache_mb"] = args.feature_cache_mb
        figures = measure_stages(args, default_hyperparameters(config), store, device,
                                 precisions)
        result["stages"] = figures[precision]
        if args.compare:
            result["compared"] = {"precision": other, "stages": figures[other], "loop_ratio": {
                stage: figures[precision][stage]["loop_images_per_s"]
                / figures[other][stage]["loop_images_per_s"] for stage in figures[other]}}
        result["reader_images_per_s"] = reader_rate(store, args.batch, device, args.rounds)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
