"""Every figure is drawn from plain data and lands as a readable PNG."""

import numpy as np
import pandas as pd
import pytest
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
                         "demo", "fold0", tmp_path / "masks.png")
    viz.pattern_maps(faces, rng.random((12, 224, 224)).astype(np.float16), labels,
                     rng.random((3, 224, 224)), rng.random((3, 224, 224)), CLASSES, "demo",
                     "fold0", tmp_path / "patterns.png")
    viz.own_departures(faces, rng.random((12, 224, 224)).astype(np.float16), labels,
                       rng.random((3, 224, 224)), CLASSES, "demo", "fold0", tmp_path / "own.png")
    viz.class_differences(rng.random((3, 224, 224)), rng.random((3, 224, 224)),
                          np.array([4, 4, 4]), np.array([9, 9, 9]), CLASSES, "demo", "fold0",
                          {"class_difference_correlation": 0.5}, tmp_path / "differences.png")
    assert set(viz.FIGURES) == {path.stem for path in tmp_path.glob("*.png")}
    for name in viz.FIGURES:
        check_png(tmp_path / f"{name}.png")
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def drawn(monkeypatch):
    """The figures' matplotlib figures, kept as they are saved."""
    figures = []
    monkeypatch.setattr(viz, "save_figure", lambda figure, path: figures.append(figure))
    return figures


def texts(figure):
    return [text.get_text() for ax in figure.axes for text in ax.texts]


def images(figure):
    return [image.get_array() for ax in figure.axes for image in ax.images]


def test_a_class_without_test_images_is_named_not_drawn_blank(monkeypatch):
    figures = drawn(monkeypatch)
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 2], [4, 1])  # no "Happiness" in this fold; one "Surprise"
    faces = rng.integers(0, 255, (5, 224, 224, 3), dtype=np.uint8)
    mean_maps = rng.random((3, 224, 224))
    mean_maps[1] = 0  # evaluate's class mean of a class without test images
    viz.masks_over_faces(faces, rng.random((5, 7, 7)), rng.random((5, 7, 7)), labels, CLASSES,
                         "demo", "fold0", "masks.png")
    viz.pattern_maps(faces, rng.random((5, 224, 224)), labels, mean_maps, mean_maps, CLASSES,
                     "demo", "fold0", "patterns.png")
    viz.class_differences(mean_maps, rng.random((3, 224, 224)), np.array([4, 0, 4]),
                          np.array([9, 9, 9]), CLASSES, "demo", "fold0", {},
                          "differences.png")
    for figure in figures[:2]:
        assert texts(figure) == ["Happiness: no test image in fold0"]
        assert not any((image == 0).all() for image in images(figure))  # no black mean
        assert all(ax.images for ax in figure.axes if ax.axison)  # no empty white frame
    assert texts(figures[2]) == ["no test image\nin fold0"] * 2
    assert len(images(figures[2])) == 4  # two classes, maps and prototypes


def test_class_differences_use_a_diverging_scale_symmetric_about_zero(monkeypatch):
    figures = drawn(monkeypatch)
    maps = np.full((3, 8, 8), 0.5)
    maps[0, :4] += 0.01  # differences of 0.01: invisible on a 0..1 grey scale
    prototypes = np.random.default_rng(0).random((3, 8, 8))
    viz.class_differences(maps, prototypes, np.array([2, 2, 2]), np.array([5, 5, 5]), CLASSES,
                          "demo", "fold0", {"class_difference_ratio": 0.03}, "differences.png")
    drawn_maps = [ax.images[0] for ax in figures[0].axes[:3]]
    low, high = drawn_maps[0].get_clim()
    assert drawn_maps[0].get_cmap().name == "RdBu_r" and low == -high
    assert high == pytest.approx(2 / 3 * 0.01)  # class 0 departs by 0.01 - 0.01 / 3
    assert "class difference ratio 0.03" in figures[0].texts[0].get_text()


def test_the_per_image_view_shows_each_map_minus_its_class_mean(monkeypatch):
    figures = drawn(monkeypatch)
    labels = np.array([0, 0, 2])
    means = np.zeros((3, 8, 8))
    means[0], means[2] = 0.4, 0.6
    patterns = means[labels].copy()
    patterns[1, :2] += 0.2  # subject 2 of class 0: its own brighter top
    faces = np.zeros((3, 8, 8, 3), np.uint8)
    viz.own_departures(faces, patterns, labels, means, CLASSES, "demo", "fold0", "own.png")
    [figure] = figures
    assert texts(figure) == ["Happiness: no test image in fold0"]
    panels = [ax.images[0] for ax in figure.axes if ax.images]
    residuals = [panel for panel in panels if panel.get_cmap().name == "RdBu_r"]
    assert len(residuals) == 3 and residuals[0].get_clim() == pytest.approx((-0.2, 0.2))
    assert np.abs(residuals[0].get_array()).max() == 0  # subject 1: its class mean exactly
    assert np.asarray(residuals[1].get_array())[:2].min() == pytest.approx(0.2)
