"""What other heads make of the features the EPMG head reads: a measure of how much any head
on the frozen stage-2 EFE can add.

    .venv/bin/python bench/frozen_heads.py results/<dataset>/<variant>

For every fold run under the folder (every seed), the frozen EFE of its stage3.pt gives the
masked features of the fold's training images (as they are and mirrored) and test images.
Two heads are fitted on them here: a linear probe (multinomial logistic regression on the
standardised features, L2, LBFGS) and the nearest class mean. Each is printed pooled with
its 95 % interval beside the run's own stage-2 and EPMG heads (predictions.csv), with its
paired difference from stage 2's. A first line checks that the loaded EFE repeats the
stage-2 head's test predictions, so the features are the ones those heads read. On a CPU,
minutes per 10 folds of ~500 faces at width 1/8.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from expmap import statistics
from expmap.checkpoints import build_modules, load_checkpoint
from expmap.data.batches import EVAL_BATCH, image_batch, ordered_batches
from expmap.data.store import PreparedDataset

L2 = 1e-3  # the probe's weight penalty, on standardised features
HEADS = ("efe_stage2", "epmg", "linear_probe", "class_mean")


def features(efe, images, rows: np.ndarray, mirrored: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The flattened masked features and the EFE classifier's predictions of `rows`."""
    found, predicted = [], []
    with torch.no_grad():
        for batch in ordered_batches(rows, EVAL_BATCH):
            x = image_batch(images, batch, "cpu")
            out = efe(x.flip(-1) if mirrored else x)
            found.append(out.features.flatten(1))
            predicted.append(out.logits.argmax(1))
    return torch.cat(found), torch.cat(predicted)


def linear_probe(train: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.nn.Linear:
    probe = torch.nn.Linear(train.shape[1], classes)
    torch.nn.init.zeros_(probe.weight)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=200,
                                  line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = F.cross_entropy(probe(train), labels) + L2 * probe.weight.pow(2).sum()
        value.backward()
        return value

    optimizer.step(loss)
    return probe


def fold_predictions(run: Path, store: PreparedDataset) -> pd.DataFrame:
    """The run's predictions.csv with the probe's, the class mean's and the reloaded
    stage-2 head's predictions added."""
    frame = pd.read_csv(run / "predictions.csv", dtype={"subject": str})
    data = store.fold(frame["fold"].iloc[0])
    efe = build_modules(load_checkpoint(run / "stage3.pt"))["efe"].eval()
    plain, _ = features(efe, data.images, data.train_index, False)
    mirrored, _ = features(efe, data.images, data.train_index, True)
    train = torch.cat([plain, mirrored])
    labels = torch.from_numpy(data.labels[data.train_index]).repeat(2)
    mean, spread = train.mean(0), train.std(0) + 1e-6
    train = (train - mean) / spread
    test, reloaded = features(efe, data.images, frame["index"].to_numpy(), False)
    test = (test - mean) / spread
    probe = linear_probe(train, labels, data.num_classes)
    with torch.no_grad():
        frame["pred_linear_probe"] = probe(test).argmax(1).numpy()
    centres = torch.stack([train[labels == k].mean(0) for k in range(data.num_classes)])
    frame["pred_class_mean"] = torch.cdist(test, centres).argmin(1).numpy()
    frame["reloaded_efe_stage2"] = reloaded.numpy()
    return frame


def report(frame: pd.DataFrame) -> list[str]:
    same = (frame["reloaded_efe_stage2"] == frame["pred_efe_stage2"]).mean()
    seeds = frame["seed"].nunique()
    lines = [f"{len(frame)} test predictions ({seeds} seed{'s' if seeds != 1 else ''}); the "
             f"reloaded EFE repeats stage 2's on {100 * same:.1f} % of them"]
    found = statistics.sample(frame, list(HEADS))
    for head in HEADS:
        accuracy = statistics.accuracy(found, head)
        line = (f"{head:12s} {accuracy.estimate:6.2f} % ({accuracy.low:.2f} to "
                f"{accuracy.high:.2f})")
        if head != "efe_stage2":
            difference = statistics.paired_difference(found, head, "efe_stage2")
            line += (f"   minus stage 2 {difference.estimate:+.2f} ({difference.low:+.2f} to "
                     f"{difference.high:+.2f})")
        lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", type=Path, help="results/<dataset>/<variant>")
    args = parser.parse_args()
    runs = sorted(path.parent for path in args.variant.glob("**/predictions.csv")
                  if (path.parent / "stage3.pt").is_file())
    if not runs:
        raise SystemExit(f"{args.variant}: no fold run with predictions.csv and stage3.pt; "
                         "give a finished results/<dataset>/<variant> folder")
    prepared = args.variant.parent / "prepared"
    if not (prepared / "manifest.csv").is_file():
        raise SystemExit(f"{prepared}: no prepared faces beside the variant's folder; give the "
                         "results/<dataset>/<variant> folder of the run that prepared them")
    store = PreparedDataset(prepared)
    torch.manual_seed(0)
    frame = pd.concat([fold_predictions(run, store) for run in runs], ignore_index=True)
    print("\n".join(report(frame)))


if __name__ == "__main__":
    main()
