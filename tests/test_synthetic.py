"""The synthetic benchmark: generator and adapter, at small sizes."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from expmap.data import synthetic
from expmap.data.adapters import LayoutError, adapter
from expmap.data.store import PreparedDataset

OPTIONS = {"seed": 3, "subjects": 8, "frames": 2, "sequence_length": 5, "folds": 4}
TINY = {"seed": 5, "subjects": 2, "frames": 1, "sequence_length": 3, "folds": 2}


def prepare(options, out):
    return adapter("synthetic").prepare(options, None, out, 1, lambda line: None)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    report = prepare(OPTIONS, out)
    return out, report


def test_same_seed_gives_the_same_bytes_and_another_seed_differs(tmp_path):
    prepare(TINY, tmp_path / "a")
    prepare(TINY, tmp_path / "b")
    prepare({**TINY, "seed": 6}, tmp_path / "c")
    for name in ("images.npy", "regions.npy", "manifest.csv", "classes.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    images = [(tmp_path / run / "images.npy").read_bytes() for run in ("a", "c")]
    assert images[0] != images[1]


def test_a_frame_does_not_depend_on_what_else_is_generated():
    alone = synthetic.render_sequence(3, 5, 2, 5, keep=1)[0]
    within = [f for f in synthetic.generate(3, 6, 2, 5) if f.subject == "S006" and f.label == 2]
    assert within[-1].frame == alone.frame == 4
    assert np.array_equal(within[-1].image, alone.image)


def test_counts_per_class_and_per_fold(prepared):
    out, report = prepared
    manifest = pd.read_csv(out / "manifest.csv", dtype={"subject": str})
    per_class = OPTIONS["subjects"] * OPTIONS["frames"]
    per_fold = OPTIONS["subjects"] // OPTIONS["folds"] * len(synthetic.CLASSES) * OPTIONS["frames"]
    assert report["per_class"] == {name: per_class for name in synthetic.CLASSES}
    assert report["per_split"] == {f"fold{k}": per_fold for k in range(OPTIONS["folds"])}
    assert report["n_subjects"] == OPTIONS["subjects"]
    assert report["images_per_second"] > 0
    assert set(report["regions"]) == set(synthetic.CLASSES)
    assert len(manifest) == report["n_images"] == OPTIONS["subjects"] * 7 * OPTIONS["frames"]
    assert list(manifest["index"]) == list(range(len(manifest)))
    assert manifest["image_id"].is_unique
    assert (manifest["label_name"] == [synthetic.CLASSES[i] for i in manifest["label"]]).all()
    assert (out / "classes.txt").read_text().splitlines() == list(synthetic.CLASSES)


def test_folds_are_disjoint_by_subject_in_sorted_order(prepared):
    out, _ = prepared
    manifest = pd.read_csv(out / "manifest.csv", dtype={"subject": str})
    folds_of_subject = manifest.groupby("subject")["split"].unique()
    assert all(len(folds) == 1 for folds in folds_of_subject)
    for i, subject in enumerate(sorted(folds_of_subject.index)):
        assert folds_of_subject[subject][0] == f"fold{i % OPTIONS['folds']}"


def test_store_and_fold_split_are_readable(prepared):
    out, _ = prepared
    dataset = PreparedDataset(out)
    assert dataset.folds() == [f"fold{k}" for k in range(OPTIONS["folds"])]
    assert dataset.images.shape == (len(dataset.manifest), 224, 224, 3)
    fold = dataset.fold("fold1")
    assert fold.num_classes == 7
    assert not set(fold.train_index) & set(fold.test_index)
    assert len(fold.train_index) + len(fold.test_index) == len(dataset.images)
    assert not set(fold.subjects[fold.train_index]) & set(fold.subjects[fold.test_index])
    regions = np.load(out / "regions.npy", mmap_mode="r")
    assert regions.shape == dataset.images.shape[:3] and regions.dtype == np.uint8


def test_region_masks_are_the_regions_of_the_class_and_lie_in_the_face():
    for label, name in enumerate(synthetic.CLASSES):
        frame = synthetic.render_sequence(1, 0, label, 4, keep=1)[0]
        regions, face = frame.regions.astype(bool), frame.face.astype(bool)
        assert set(np.unique(frame.regions)) == {0, 1}
        assert regions.sum() > 500, name
        assert not (regions & ~face).any(), name
        assert regions.sum() < 0.5 * face.sum(), name
    # More regions, more pixels: Surprise (brows, eyes, mouth) covers more than Contempt (mouth).
    masks = {name: synthetic.render_sequence(1, 0, label, 4, keep=1)[0].regions.sum()
             for label, name in enumerate(synthetic.CLASSES)}
    assert masks["Surprise"] > 1.5 * masks["Contempt"]


def test_sequences_rise_from_neutral_to_the_peak():
    length = 6
    assert synthetic.intensity_ramp(length)[0] == 0 and synthetic.intensity_ramp(length)[-1] == 1
    for label, name in enumerate(synthetic.CLASSES):
        frames = synthetic.render_sequence(2, 1, label, length)
        assert [f.frame for f in frames] == list(range(length))
        where = frames[-1].regions.astype(bool)
        neutral = frames[0].image.astype(float)
        early, peak = (np.abs(frames[k].image - neutral)[where].mean() for k in (1, -1))
        # Head motion and noise change every frame a little; the expression far more.
        assert peak > 1.3 * early, name


def test_every_pair_of_classes_differs_where_their_regions_are(prepared):
    """Every subject shows every class, so class means differ only by expression: a pair's
    means differ inside the pair's regions, far more than outside them."""
    out, _ = prepared
    dataset = PreparedDataset(out)
    regions = np.load(out / "regions.npy", mmap_mode="r")
    labels = dataset.manifest["label"].to_numpy()
    means = [dataset.images[labels == k].astype(np.float32).mean(0) for k in range(7)]
    where = [regions[labels == k].max(0).astype(bool) for k in range(7)]
    for a, b in itertools.combinations(range(7), 2):
        difference = np.abs(means[a] - means[b]).mean(-1)
        inside = where[a] | where[b]
        pair = f"{synthetic.CLASSES[a]} vs {synthetic.CLASSES[b]}"
        assert difference[inside].mean() > 6, pair
        assert difference[inside].mean() > 3 * difference[~inside].mean(), pair


@pytest.mark.parametrize("options, message", [
    ({"subject": 4}, "unknown subject"),
    ({"frames": 9, "sequence_length": 8}, "must not exceed"),
    ({"subjects": 3, "folds": 5}, "at least folds"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"folds": True}, "folds must be an integer"),
    ({"sequence_length": 1, "frames": 1}, "sequence_length must be at least 2"),
])
def test_bad_options_give_one_clear_line(tmp_path, options, message):
    with pytest.raises(LayoutError, match=message) as error:
        prepare(options, tmp_path)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "images.npy").exists()


def test_adapter_interface_without_torch():
    module = adapter("synthetic")
    assert module.NAME == "synthetic" and module.needs_root is False
    assert module.locate(None) is None
    code = ("import sys, expmap.data.adapters.synthetic, expmap.data.synthetic; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
