"""Fixtures made in code (a tiny prepared store whose classes differ by a bright patch) and
the one way tests run the repository's Snakemake workflow."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expmap.data.store import StoreWriter, write_prepared

CLASSES = ["left", "middle", "right"]
REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"  # a whole pipeline in a minute or two


def snakemake_command(workdir, *args: str, overlays=(TINY,)) -> list[str]:
    """The repository's workflow (with its default profile) and `args`, outputs under
    `workdir`, on config.yaml plus the --configfile `overlays` (the tiny config by default)."""
    command = [sys.executable, "-m", "snakemake", *args, "--directory", str(workdir),
               "--cores", "2"]
    return command + (["--configfile", *map(str, overlays)] if overlays else [])


def snakemake(workdir, *args: str, overlays=(TINY,), timeout=1800) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_command(workdir, *args, overlays=overlays), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def make_prepared(folder, subjects=6, per_class=2, folds=3, seed=0, grey=False):
    """A prepared store: class c shows a bright block in column band c; folds by subject;
    colour noise around it, or grey noise with `grey`."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(subjects):
        for label, name in enumerate(CLASSES):
            for k in range(per_class):
                rows.append({"image_id": f"s{s}_{name}_{k}", "source": f"s{s}/{name}/{k}.png",
                             "subject": f"S{s:03d}", "label": label, "label_name": name,
                             "split": f"fold{s % folds}"})
    manifest = pd.DataFrame(rows)
    manifest["index"] = np.arange(len(manifest))
    writer = StoreWriter(folder, len(manifest))
    for i, row in manifest.iterrows():
        face = rng.integers(40, 90, size=(224, 224, 1 if grey else 3), dtype=np.uint8)
        face = np.repeat(face, 3, axis=2) if grey else face
        band = 75 * row["label"]
        face[60:160, band:band + 74] = 230
        writer[i] = face
    writer.close()
    write_prepared(folder, manifest, CLASSES, {"counts": len(manifest)})
    return folder


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("prepared") / "tiny" / "prepared")


PAPER = REPO / "configs" / "paper.yaml"  # the paper's formulation, an overlay
# A tiny run's values, on top of config.yaml's (the paper's SGD rate suits a narrow VGG)
TINY_VALUES = {"lr": 1e-2, "momentum": 0.9, "weight_decay": 5e-4, "clipping": 10.0, "seed": 3,
               "epochs": 1, "optimizer": "sgd"}
TINY_STAGE_VALUES = {1: {"batch_size": 8}, 2: {"t": 3, "iterations": 2, "frozen_convs": 13},
                     3: {"t": 3, "iterations": 2, "lambda4": 1e-4, "lambda5": 1e-4}}


def stage_hyperparameters(stage: int, *overlays, **values) -> dict:
    """Stage `stage`'s complete hyperparameters as the pipeline merges them for a dataset of
    defaults (`mine`) from config.yaml and the config files `overlays`; then the tiny run's
    values and `values`."""
    from expmap import config as cfg

    schema = cfg.read_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
    merged = cfg.load_files([REPO / "config.yaml", *overlays], schema)
    hp = merged["datasets"]["mine"]["train"][f"stage{stage}"]
    return {**hp, **TINY_VALUES, **TINY_STAGE_VALUES[stage], **values}


@pytest.fixture(scope="session")
def trained(prepared, tmp_path_factory):
    """Checkpoints of all three stages on fold0 of the tiny store (one epoch each)."""
    return train_stages(prepared, tmp_path_factory.mktemp("trained"))


def train_stages(prepared, out) -> dict:
    """Checkpoints of all three stages on fold0 of the store `prepared` (one epoch each),
    written into `out`."""
    from expmap.train import train_stage

    paths = {}
    for stage in (1, 2, 3):
        paths[f"stage{stage}"] = out / f"stage{stage}.pt"
        train_stage(stage, stage_hyperparameters(stage, PAPER), prepared, "fold0",
                    paths[f"stage{stage}"], out / f"stage{stage}.csv", out / f"state{stage}",
                    init=paths.get(f"stage{stage - 1}"),
                    model={"width": 1 / 32, "weights": None} if stage == 1 else None,
                    log=lambda line: None)
    return paths
