"""Every figure is drawn from plain data and lands as a readable PNG."""

import numpy as np
import pandas as pd
from PIL import Image

from expmap import viz

CLASSES = ["Anger", "Happiness", "Surprise"]


def metrics_frame(terms, seed):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"epoch": [1, 2, 3]})
    for term in terms:
        frame[f"loss_{term}"] = rng.random(3) + 0.1
    frame["train_accuracy"] = [0.3, 0.6, 0.9]
    frame["test_accuracy"] = [0.2, np.nan, 0.8]
    return frame


def check_png(path):
    image = Image.open(path)
    assert image.size[0] > 300 and image.size[1] > 200
    assert np.asarray(image.convert("L")).std() > 5  # something is drawn


def test_all_figures(tmp_path):
    metrics = {1: [metrics_frame(["total", "efe"], s) for s in (0, 1)],
               2: [metrics_frame(["total", "efe", "mask", "h"], s) for s in (0, 1)],
               3: [metrics_frame(["total", "embed", "classify", "pattern", "sim"], 0)]}
    viz.loss_curves(metrics, "demo", tmp_path / "losses.png")
    viz.accuracy_curves(metrics, "demo", tmp_path / "accuracy.png")
    viz.confusion_matrix(np.array([[5, 1, 0], [0, 6, 0], [2, 0, 4]]), CLASSES, "demo",
                         tmp_path / "confusion.png")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 4)
    faces = rng.integers(0, 255, (12, 224, 224, 3), dtype=np.uint8)
    viz.masks_over_faces(faces, rng.random((12, 7, 7)), rng.random((12, 7, 7)), labels, CLASSES,
                         "demo", tmp_path / "masks.png")
    viz.pattern_maps(faces, rng.random((12, 224, 224)).astype(np.float16), labels,
                     rng.random((3, 224, 224)), rng.random((3, 224, 224)), CLASSES, "demo",
                     tmp_path / "patterns.png")
    for name in ("losses", "accuracy", "confusion", "masks", "patterns"):
        check_png(tmp_path / f"{name}.png")
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
