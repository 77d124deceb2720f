"""Adapters on raw layouts built here, in tmp_path, with tiny images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from expmap.data import faces
from expmap.data.adapters import LayoutError, adapter, missing_data_message
from expmap.data.adapters import common as common_module
from expmap.data.adapters.common import Item, prepare_store
from expmap.data.folds import (
    balanced_subject_folds,
    consecutive_subject_folds,
    interleaved_subject_folds,
    stratified_folds,
)
from expmap.data.store import PreparedDataset

THREADS = 2


def quiet(_message: str) -> None:
    pass


def write_image(path: Path, size=(40, 30), mode="RGB", fmt=None, seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, format=fmt)
    return path


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def prepare(name: str, root: Path, out: Path, **options) -> tuple[dict, pd.DataFrame]:
    report = adapter(name).prepare(options, root, out, THREADS, quiet)
    manifest = pd.read_csv(out / "manifest.csv", dtype={"subject": str})
    assert json.loads((out / "report.json").read_text())["images"] == len(manifest)
    images = np.load(out / "images.npy", mmap_mode="r")
    assert images.shape[1:] == (224, 224, 3) and images.dtype == np.uint8
    assert not (out / "images.npy.partial").exists()
    return report, manifest


def assert_folds_disjoint_by_subject(manifest: pd.DataFrame) -> None:
    assert (manifest.groupby("subject")["split"].nunique() == 1).all()


# ---------------------------------------------------------------- faces and folds


def test_read_rgb_converts_modes_and_names_reasons(tmp_path):
    gray = write_image(tmp_path / "gray.png", mode="L")
    cmyk = write_image(tmp_path / "cmyk.jpg", mode="CMYK")
    palette = write_image(tmp_path / "palette.png", mode="P")
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(np.full((10, 12), 65535, dtype=np.uint16)).save(sixteen)
    for path in (gray, cmyk, palette, sixteen):
        image = faces.read_rgb(path)
        assert image.mode == "RGB"
    assert np.asarray(faces.read_rgb(sixteen)).max() == 255

    broken = write_image(tmp_path / "broken.jpg", size=(200, 200))
    truncate(broken)
    (tmp_path / "text.jpg").write_text("not an image")
    for path, reason in ((broken, "truncated"), (tmp_path / "text.jpg", "unreadable"),
                         (tmp_path / "absent.jpg", "missing")):
        with pytest.raises(faces.SkippedImage) as raised:
            faces.read_rgb(path)
        assert raised.value.reason == reason


def test_crops_give_224_faces():
    image = Image.fromarray(np.zeros((90, 120, 3), dtype=np.uint8))
    assert faces.crop_centre(image).shape == (224, 224, 3)
    assert faces.crop_box(image, 10, 10, 30, 40).shape == (224, 224, 3)
    points = np.stack([np.linspace(30, 90, 68), np.linspace(20, 70, 68)], axis=1)
    assert faces.crop_landmarks(image, points).shape == (224, 224, 3)


def test_landmark_crop_levels_the_eyes():
    # A white dot on each eye of a face tilted by 20 degrees ends up on one row.
    canvas = np.zeros((200, 200, 3), dtype=np.uint8)
    angle = np.deg2rad(20)
    centre = np.array([100.0, 100.0])
    direction = np.array([np.cos(angle), np.sin(angle)])
    left, right = centre - 30 * direction, centre + 30 * direction
    for eye in (left, right):
        x, y = np.round(eye).astype(int)
        canvas[y - 3:y + 4, x - 3:x + 4] = 255
    points = np.tile(centre, (68, 1))
    points[36:42], points[42:48] = left, right
    points[:17] = centre + np.array([[-60.0, -60.0], [60.0, 60.0]]).repeat([9, 8], axis=0)
    face = faces.crop_landmarks(Image.fromarray(canvas), points)
    rows, cols = np.nonzero(face[..., 0] > 128)
    left_rows, right_rows = rows[cols < 112], rows[cols >= 112]
    assert abs(left_rows.mean() - right_rows.mean()) < 3


def test_folds():
    subjects = [f"S{i:03d}" for i in range(25)]
    interleaved = interleaved_subject_folds(subjects, 10)
    assert [interleaved[s] for s in subjects[:12]] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    consecutive = consecutive_subject_folds([f"P{i:03d}" for i in range(1, 81)], 10)
    assert [consecutive[f"P{i:03d}"] for i in (1, 8, 9, 80)] == [0, 0, 1, 9]
    labels = [0] * 20 + [1] * 10
    folds = stratified_folds(labels, 5)
    assert folds == stratified_folds(labels, 5)
    for label, per_fold in ((0, 4), (1, 2)):
        counts = np.bincount([f for f, y in zip(folds, labels, strict=True) if y == label])
        assert (counts == per_fold).all()


def test_balanced_subject_folds_spread_a_class_that_consecutive_ids_bunch():
    # 20 people with one image of each common class; the rare class belongs only to the
    # last five ids, as CK+'s contempt does: consecutive runs put it in one fold only
    pairs = [(f"S{i:03d}", label) for i in range(20) for label in (0, 1)]
    pairs += [(f"S{i:03d}", 2) for i in range(15, 20) for _ in range(3)]
    consecutive = consecutive_subject_folds((s for s, _ in pairs), 4)
    assert {consecutive[s] for s, label in pairs if label == 2} == {3}
    balanced = balanced_subject_folds(pairs, 4)
    assert balanced == balanced_subject_folds(list(reversed(pairs)), 4)  # order-free
    for label, images_a_subject in ((0, 1), (1, 1), (2, 3)):
        counts = np.bincount([balanced[s] for s, y in pairs if y == label], minlength=4)
        # every fold holds the class, within one subject's images of every other fold
        assert counts.min() > 0 and np.ptp(counts) <= images_a_subject, (label, counts)


# ---------------------------------------------------------------- CK+


def landmark_text(width=40, height=30) -> str:
    xs = np.linspace(5, width - 5, 68)
    ys = np.linspace(5, height - 5, 68)
    return "".join(f"   {x:.7e}   {y:.7e}\n" for x, y in zip(xs, ys, strict=True))


def build_ckplus(root: Path, n_subjects=12) -> dict:
    """Subject k has 1 + (k % 2) sequences of 5 frames; sequence 001 labelled with code
    1 + k % 7 (subject 1: contempt), 002 unlabelled. Returns the labelled sequences."""
    labelled = {}
    for k in range(n_subjects):
        subject = f"S{k * 5 + 5:03d}"
        for sequence in ["001", "002"][: 1 + k % 2]:
            frames = root / "cohn-kanade-images" / subject / sequence
            for f in range(1, 6):
                stem = f"{subject}_{sequence}_{f:08d}"
                write_image(frames / f"{stem}.png", mode="L", fmt="PNG", seed=f)
                if f != 3:  # frame 3 has no landmark file: its neighbour's is used
                    marks = root / "Landmarks" / subject / sequence / f"{stem}_landmarks.txt"
                    marks.parent.mkdir(parents=True, exist_ok=True)
                    marks.write_text(landmark_text())
            emotion = root / "Emotion" / subject / sequence
            emotion.mkdir(parents=True, exist_ok=True)
            if sequence == "001":
                code = 1 + k % 7
                (emotion / f"{subject}_{sequence}_00000005_emotion.txt").write_text(
                    f"   {code:.7e}\n")
                labelled[f"{subject}/{sequence}"] = code
    (root / "cohn-kanade-images" / ".DS_Store").write_text("litter")
    (root / "Emotion" / "Thumbs.db").write_text("litter")
    return labelled


def test_ckplus_counts_labels_folds(tmp_path):
    labelled = build_ckplus(tmp_path / "CK+")
    truncate(tmp_path / "CK+/cohn-kanade-images/S010/001/S010_001_00000005.png")
    report, manifest = prepare("ckplus", tmp_path / "CK+", tmp_path / "out")
    assert report["classes"] == ["anger", "contempt", "disgust", "fear", "happy", "sadness",
                                 "surprise"]
    assert len(manifest) == 3 * len(labelled) - 1  # the truncated frame is skipped
    assert [s["reason"].split(":")[0] for s in report["skipped"]] == ["truncated"]
    assert report["sequences"] == len(labelled) == 12
    assert any("sequences: 12 here, published 327" in w for w in report["warnings"])
    assert any("1 files skipped (1 truncated)" in w for w in report["warnings"])
    first = manifest[manifest["image_id"] == "S005_001_00000005"].iloc[0]
    assert (first["label"], first["label_name"], first["subject"]) == (0, "anger", "S005")
    assert first["source"] == "cohn-kanade-images/S005/001/S005_001_00000005.png"
    # subject i of the sorted list -> fold i mod 10
    subjects = sorted(manifest["subject"].unique())
    for i, subject in enumerate(subjects):
        assert set(manifest.loc[manifest["subject"] == subject, "split"]) == {f"fold{i % 10}"}
    assert_folds_disjoint_by_subject(manifest)
    assert report["crops"] == {"landmarks": len(manifest)}
    # grey frames cut out of a larger picture: predict repeats both on a photo
    assert report["preparation"] == {"grey": True, "crop": "detector"}
    fold = PreparedDataset(tmp_path / "out").fold("fold0")
    assert fold.preparation == report["preparation"]
    assert len(fold.test_index) and len(fold.train_index) + len(fold.test_index) == len(manifest)


def test_ckplus_options_contempt_neutral_frames(tmp_path):
    labelled = build_ckplus(tmp_path / "CK+")
    report, manifest = prepare("ckplus", tmp_path / "CK+", tmp_path / "out", contempt=False,
                               neutral_first_frame=True, frames=2)
    assert report["classes"] == ["neutral", "anger", "disgust", "fear", "happy", "sadness",
                                 "surprise"]
    kept = [seq for seq, code in labelled.items() if code != 2]
    assert len(manifest) == 3 * len(kept)  # 2 last frames + the first as neutral
    assert report["excluded_contempt_sequences"] == len(labelled) - len(kept)
    neutral = manifest[manifest["label_name"] == "neutral"]
    assert len(neutral) == len(kept) and neutral["image_id"].str.endswith("_00000001").all()
    assert "contempt" not in set(manifest["label_name"])
    # folds stay those of all labelled subjects, contempt-only subjects included
    everyone = sorted({seq.split("/")[0] for seq in labelled})
    for subject, split in manifest.groupby("subject")["split"].first().items():
        assert split == f"fold{everyone.index(subject) % 10}"


def test_ckplus_root_one_level_above_or_below_and_wrong_layout(tmp_path):
    build_ckplus(tmp_path / "download" / "CK+", n_subjects=2)
    module = adapter("ckplus")
    assert module.locate(tmp_path / "download") == tmp_path / "download" / "CK+"
    assert module.locate(tmp_path / "download/CK+/Emotion") == tmp_path / "download" / "CK+"
    (tmp_path / "wrong" / "Emotion").mkdir(parents=True)
    with pytest.raises(LayoutError, match="expected cohn-kanade-images/, Emotion/"):
        module.prepare({}, tmp_path / "wrong", tmp_path / "out", THREADS, quiet)
    message = missing_data_message("ckplus", "ckplus", str(tmp_path / "wrong"))
    assert message.count("\n") == 0 and "datasets.ckplus.root" in message


# ---------------------------------------------------------------- Oulu-CASIA


def build_oulu(root: Path, n_subjects=4, frames=5) -> None:
    for p in range(1, n_subjects + 1):
        for expression in ["Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"]:
            for f in range(frames):
                write_image(root / "OriginalImg" / "VL" / "Strong" / f"P{p:03d}" / expression
                            / f"{f:03d}.jpeg", size=(48, 36), fmt="JPEG", seed=f)
    (root / "OriginalImg" / "VL" / "Strong" / ".DS_Store").write_text("litter")


def test_oulu_casia_counts_and_consecutive_folds(tmp_path):
    build_oulu(tmp_path / "Oulu")
    (tmp_path / "Oulu/OriginalImg/VL/Strong/P002/Fear/004.jpeg").unlink()
    report, manifest = prepare("oulu_casia", tmp_path / "Oulu", tmp_path / "out", folds=2)
    assert report["classes"] == ["Anger", "Disgust", "Fear", "Happiness", "Sadness",
                                 "Surprise"]
    assert len(manifest) == 4 * 6 * 3 and report["sequences"] == 24
    assert manifest.groupby("subject")["split"].first().to_dict() == {
        "P001": "fold0", "P002": "fold0", "P003": "fold1", "P004": "fold1"}
    assert_folds_disjoint_by_subject(manifest)
    # the last 3 existing frames of the sequence with a frame gone
    fear = manifest[(manifest["subject"] == "P002") & (manifest["label_name"] == "Fear")]
    assert sorted(fear["source"].str[-8:]) == ["001.jpeg", "002.jpeg", "003.jpeg"]
    # noise has no face: every crop is the counted fallback (or all centred without OpenCV)
    assert report["crops"] == {"centre": len(manifest)}
    assert any("sequences: 24 here, published 480" in w for w in report["warnings"])
    assert any("centred crop" in w or "fallback" in w for w in report["warnings"])


def test_oulu_casia_wrong_layout_and_options(tmp_path):
    (tmp_path / "Oulu" / "VL" / "Strong").mkdir(parents=True)
    with pytest.raises(LayoutError, match="expected OriginalImg/VL/Strong"):
        adapter("oulu_casia").locate(tmp_path / "Oulu")
    build_oulu(tmp_path / "Oulu2", n_subjects=1, frames=1)
    with pytest.raises(LayoutError, match="expected OriginalImg/VL/Weak/"):
        adapter("oulu_casia").prepare({"strength": ["Weak"]}, tmp_path / "Oulu2",
                                      tmp_path / "out", THREADS, quiet)


def test_a_detector_asked_for_but_missing_stops_with_what_to_install(tmp_path, monkeypatch):
    """Without OpenCV's cascades a run that asks for the detector must not quietly
    centre-crop every frame: that would change the benchmark."""
    build_oulu(tmp_path / "Oulu", n_subjects=1, frames=1)
    monkeypatch.setattr(common_module, "detector_available", lambda: False)
    with pytest.raises(LayoutError) as error:
        adapter("oulu_casia").prepare({}, tmp_path / "Oulu", tmp_path / "out", THREADS, quiet)
    message = str(error.value)
    assert message.startswith("Oulu-CASIA options.detector is opencv")
    assert "pip install 'expmap[faces]'" in message and "\n" not in message
    assert not (tmp_path / "out").exists()  # nothing half-written
    report = adapter("oulu_casia").prepare({"detector": "none"}, tmp_path / "Oulu",
                                           tmp_path / "out", THREADS, quiet)
    assert report["crops"] == {"centre": 6}


# ---------------------------------------------------------------- RAF-DB


def build_rafdb(root: Path) -> None:
    lines = [f"train_{i:05d}.jpg {1 + i % 7}" for i in range(1, 9)]
    lines += [f"test_{i:04d}.jpg {1 + i % 7}" for i in range(1, 4)]
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        stem = line.split(".")[0]
        if stem == "train_00002":  # only the original, cut out by its bounding box
            write_image(root / "Image" / "original" / f"{stem}.jpg", size=(80, 60))
            box = root / "Annotation" / "boundingbox" / f"{stem}_boundingbox.txt"
            box.parent.mkdir(parents=True)
            box.write_text("10.0 5.0 50.0 45.0\n")
        elif stem != "test_0003":  # test_0003 has no image at all
            write_image(root / "Image" / "aligned" / f"{stem}_aligned.jpg", size=(100, 100))


def test_rafdb_official_split(tmp_path):
    build_rafdb(tmp_path / "RAF" / "basic")
    report, manifest = prepare("rafdb", tmp_path / "RAF", tmp_path / "out")
    assert report["classes"][0] == "Surprise" and report["classes"][6] == "Neutral"
    assert (manifest["split"] == "train").sum() == 8 and (manifest["split"] == "test").sum() == 2
    row = manifest[manifest["image_id"] == "train_00001"].iloc[0]
    assert (row["label"], row["label_name"]) == (1, "Fear")  # list label 2
    assert manifest.set_index("image_id").loc["train_00002", "source"] == \
        "Image/original/train_00002.jpg"
    assert report["crops"] == {"aligned": 9, "box": 1}
    assert report["skipped"] == [{"source": "Image/aligned/test_0003_aligned.jpg",
                                  "reason": "missing: no such file"}]
    assert any("train images: 8 here, published 12,271" in w for w in report["warnings"])
    assert PreparedDataset(tmp_path / "out").folds() == ["test"]


def test_rafdb_wrong_layout(tmp_path):
    (tmp_path / "basic" / "Image").mkdir(parents=True)
    with pytest.raises(LayoutError, match="EmoLabel/list_patition_label.txt"):
        adapter("rafdb").prepare({}, tmp_path / "basic", tmp_path / "out", THREADS, quiet)


# ---------------------------------------------------------------- AffectNet


def build_affectnet_csv(root: Path) -> None:
    header = ("subDirectory_filePath,face_x,face_y,face_width,face_height,"
              "facial_landmarks,expression,valence,arousal\n")
    train_codes, val_codes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10], [0, 1, 7, 9]
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    for name, codes, with_header in (("training.csv", train_codes, True),
                                     ("validation.csv", val_codes, False)):
        rows = []
        for i, code in enumerate(codes):
            path = f"{i % 3}/{name[0]}{i:04d}.jpg"
            write_image(root / "Manually_Annotated" / "Manually_Annotated_Images" / path,
                        size=(64, 64), seed=i)
            rows.append(f"{path},8,8,40,40,\"1.0;2.0\",{code},0.1,0.2\n")
        rows.append("9/broken.jpg,,8,40,40,\"\",1,0,0\n")  # no face_x: listed as unreadable
        (lists / name).write_text((header if with_header else "") + "".join(rows))
    (root / "Manually_Annotated" / "Manually_Annotated_Images" / "0/t0000.jpg").unlink()


def test_affectnet_csv_layout(tmp_path):
    build_affectnet_csv(tmp_path / "AffectNet")
    report, manifest = prepare("affectnet", tmp_path / "AffectNet", tmp_path / "out")
    assert report["layout"] == "csv" and len(report["classes"]) == 7
    assert (manifest["split"] == "train").sum() == 6  # codes 0-6, code 0's image missing
    assert (manifest["split"] == "test").sum() == 2
    assert report["excluded_by_label"] == {"10 Non-Face": 1, "7 Contempt": 2, "8 None": 1,
                                           "9 Uncertain": 1}
    reasons = sorted(s["reason"].split(":")[0] for s in report["skipped"])
    assert reasons == ["missing", "unreadable", "unreadable"]
    assert report["crops"] == {"box": 8}
    assert any("test images: 2 here, published 3,500" in w for w in report["warnings"])
    report8, manifest8 = prepare("affectnet", tmp_path / "AffectNet", tmp_path / "out8",
                                 classes8=True)
    assert report8["classes"][7] == "Contempt" and (manifest8["label"] == 7).sum() == 2


def test_affectnet_npy_layout(tmp_path):
    root = tmp_path / "AffectNet"
    for folder, codes in (("train_set", [0, 1, 2, 8, 7]), ("val_set", [3, 4])):
        for n, code in enumerate(codes):
            write_image(root / folder / "images" / f"{n}.jpg", size=(224, 224), seed=n)
            (root / folder / "annotations").mkdir(parents=True, exist_ok=True)
            np.save(root / folder / "annotations" / f"{n}_exp.npy", np.array(str(code)))
    write_image(root / "val_set" / "images" / "9.jpg")  # no annotation
    report, manifest = prepare("affectnet", root, tmp_path / "out")
    assert report["layout"] == "npy"
    assert manifest.groupby("split").size().to_dict() == {"test": 2, "train": 3}
    assert report["skipped"] == [{"source": "val_set/images/9.jpg",
                                  "reason": "missing: no annotation 9_exp.npy"}]
    assert report["crops"] == {"as given": 5}


def test_affectnet_wrong_layout(tmp_path):
    (tmp_path / "AffectNet" / "train_set" / "images").mkdir(parents=True)
    with pytest.raises(LayoutError, match="Manually_Annotated_file_lists/training.csv"):
        adapter("affectnet").locate(tmp_path / "AffectNet")


# ---------------------------------------------------------------- imagefolder


def build_imagefolder(root: Path, per_class=6) -> None:
    for name in ("happy", "sad", "angry"):
        for i in range(per_class):
            write_image(root / name / f"{name}{i}.png", mode="L", seed=i)
    (root / "happy" / ".DS_Store").write_text("litter")
    (root / "sad" / "notes.txt").write_text("not an image")


def test_imagefolder_stratified(tmp_path):
    build_imagefolder(tmp_path / "mine")
    report, manifest = prepare("imagefolder", tmp_path / "mine", tmp_path / "out", folds=3)
    assert report["classes"] == ["angry", "happy", "sad"]
    assert len(manifest) == 18 and report["grouping"] == "stratified by class"
    assert report["skipped"][0]["source"] == "sad/notes.txt"
    assert report["skipped"][0]["reason"].startswith("unreadable")
    per_fold = manifest.groupby(["label", "split"]).size()
    assert (per_fold[0] == 2).all() and (per_fold[1] == 2).all()  # angry, happy: 6 over 3 folds


def test_imagefolder_subjects_and_class_order(tmp_path):
    build_imagefolder(tmp_path / "mine")
    rows = [f"{name}/{name}{i}.png,person{i % 3}" for name in ("happy", "angry")
            for i in range(6)]
    rows += [f"sad{i}.png,person{i % 3}" for i in range(6)]  # bare names work too
    (tmp_path / "mine" / "subjects.csv").write_text("image,subject\n" + "\n".join(rows))
    report, manifest = prepare("imagefolder", tmp_path / "mine", tmp_path / "out", folds=3,
                               classes=["sad", "happy", "angry"])
    assert report["classes"] == ["sad", "happy", "angry"]
    assert sorted(manifest["subject"].unique()) == ["person0", "person1", "person2"]
    assert manifest.groupby("subject")["split"].first().to_dict() == {
        "person0": "fold0", "person1": "fold1", "person2": "fold2"}
    assert_folds_disjoint_by_subject(manifest)
    assert report["skipped"] == [{"source": "sad/notes.txt",
                                  "reason": "unknown: subjects.csv names no subject for it"}]


def test_imagefolder_wrong_layout_and_missing_subjects(tmp_path):
    write_image(tmp_path / "flat" / "a.jpg")
    with pytest.raises(LayoutError, match="two or more class folders"):
        adapter("imagefolder").locate(tmp_path / "flat")
    build_imagefolder(tmp_path / "mine")
    (tmp_path / "mine" / "subjects.csv").write_text("image,subject\nelse/x.png,p0\n")
    with pytest.raises(LayoutError, match="names the subject of none of the 19 images"):
        adapter("imagefolder").prepare({}, tmp_path / "mine", tmp_path / "out", THREADS, quiet)


def build_ck48_style(root: Path, subjects=6) -> list[str]:
    """CK+48's naming: <class>/S<subject>_<sequence>_<frame>.png, several frames a subject."""
    names = []
    for s in range(subjects):
        for name in ("happy", "sad", "angry"):
            for frame in (17, 18):
                source = f"{name}/S{10 + s:03d}_00{s % 3}_{frame:08d}.png"
                write_image(root / source, mode="L", seed=len(names))
                names.append(source)
    return names


def test_imagefolder_reads_subjects_from_file_names_as_subjects_csv_would(tmp_path):
    sources = build_ck48_style(tmp_path / "ck48")
    report, manifest = prepare("imagefolder", tmp_path / "ck48", tmp_path / "out", folds=3,
                               subject_pattern=r"^(S\d+)_")
    assert report["grouping"] == "subjects from options.subject_pattern, balanced folds"
    assert sorted(manifest["subject"].unique()) == [f"S{10 + s:03d}" for s in range(6)]
    assert_folds_disjoint_by_subject(manifest)
    assert report["skipped"] == [] and report["warnings"] == []
    # The same folds as a subjects.csv naming the same subjects.
    (tmp_path / "ck48" / "subjects.csv").write_text(
        "image,subject\n" + "".join(f"{source},{Path(source).name[:4]}\n" for source in sources))
    _, listed = prepare("imagefolder", tmp_path / "ck48", tmp_path / "csv", folds=3)
    assert listed[["source", "subject", "split"]].equals(manifest[["source", "subject", "split"]])
    # A group named subject is taken before group 1.
    (tmp_path / "ck48" / "subjects.csv").unlink()
    _, named = prepare("imagefolder", tmp_path / "ck48", tmp_path / "named", folds=3,
                       subject_pattern=r"_(?P<sequence>\d+)_(?P<subject>\d+)\.")
    assert sorted(named["subject"].unique()) == ["00000017", "00000018"]
    # Consecutive runs of ids on request; a value neither names is one line.
    _, runs = prepare("imagefolder", tmp_path / "ck48", tmp_path / "runs", folds=3,
                      subject_pattern=r"^(S\d+)_", subject_folds="consecutive")
    assert runs.groupby("subject")["split"].first().tolist() == ["fold0"] * 2 + [
        "fold1"] * 2 + ["fold2"] * 2
    with pytest.raises(LayoutError, match="options.subject_folds is 'random': use balanced"):
        prepare("imagefolder", tmp_path / "ck48", tmp_path / "bad", folds=3,
                subject_pattern=r"^(S\d+)_", subject_folds="random")


def test_imagefolder_subject_pattern_mistakes_are_one_line_each(tmp_path):
    build_ck48_style(tmp_path / "ck48")
    root = tmp_path / "ck48"

    def refused(pattern: str) -> str:
        with pytest.raises(LayoutError) as caught:
            adapter("imagefolder").prepare({"subject_pattern": pattern, "folds": 3}, root,
                                           tmp_path / "out", THREADS, quiet)
        assert "\n" not in str(caught.value)
        return str(caught.value)

    line = refused(r"^P(\d+)-")
    assert "finds no subject in any of the 36 file names" in line
    assert "such as S010_000_00000017.png" in line and r"'^(S\d+)_'" in line
    assert "not a valid Python regular expression" in refused(r"^(S\d+_")
    (root / "subjects.csv").write_text("image,subject\n")
    assert "remove the file or the option" in refused(r"^(S\d+)_")
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_imagefolder_images_the_pattern_gives_no_subject_are_left_out_and_said(tmp_path):
    build_ck48_style(tmp_path / "ck48")
    write_image(tmp_path / "ck48" / "sad" / "holiday.png", mode="L")
    report, manifest = prepare("imagefolder", tmp_path / "ck48", tmp_path / "out", folds=3,
                               subject_pattern=r"^(S\d+)_")
    assert len(manifest) == 36 and "sad/holiday.png" not in set(manifest["source"])
    reason = "unknown: options.subject_pattern names no subject for it"
    assert {"source": "sad/holiday.png", "reason": reason} in report["skipped"]
    assert ("1 of 37 files have no subject in options.subject_pattern (such as sad/holiday.png): "
            "left out, listed under skipped") in report["warnings"]


def test_the_store_records_whether_its_faces_are_grey_and_how_they_were_cut(tmp_path):
    for name in ("happy", "sad"):
        for i in range(3):  # grey pictures, some saved as colour JPEGs
            write_image(tmp_path / "mine" / name / f"{i}.png", mode="L", seed=i)
            Image.open(tmp_path / "mine" / name / f"{i}.png").convert("RGB").save(
                tmp_path / "mine" / name / f"{i}.jpg", quality=75)
    report, _ = prepare("imagefolder", tmp_path / "mine", tmp_path / "grey", folds=2)
    assert report["preparation"] == {"grey": True, "crop": "centre"}
    write_image(tmp_path / "mine" / "sad" / "colour.png", mode="RGB")
    report, _ = prepare("imagefolder", tmp_path / "mine", tmp_path / "colour", folds=2)
    assert report["preparation"] == {"grey": False, "crop": "centre"}
    # A store prepared before stores kept the record: measured when it is read.
    written = json.loads((tmp_path / "grey" / "report.json").read_text())
    del written["preparation"]
    (tmp_path / "grey" / "report.json").write_text(json.dumps(written))
    assert PreparedDataset(tmp_path / "grey").preparation() == {"grey": True, "crop": "centre"}


# ---------------------------------------------------------------- resume


def test_interrupted_prepare_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(common_module, "RECORD_EVERY_ROWS", 2)
    items = [Item(image_id=str(i), source=f"{i}.png", subject=str(i), label=i % 2,
                  split="train" if i < 8 else "test") for i in range(10)]
    calls = []

    def make_face(item):
        if item.image_id == "6" and not calls.count("resumed"):
            raise KeyboardInterrupt  # an interruption, not a bad file
        calls.append(item.image_id)
        return np.full((224, 224, 3), int(item.image_id), dtype=np.uint8), "centre"

    arguments = dict(title="t", root=tmp_path, out=tmp_path / "out", items=items,
                     classes=["a", "b"], make_face=make_face, options={}, threads=1,
                     log=quiet)
    with pytest.raises(KeyboardInterrupt):
        prepare_store(**arguments)
    assert (tmp_path / "out" / "images.npy.partial").exists()
    first = len(calls)
    calls.append("resumed")
    report = prepare_store(**arguments)
    redone = calls[first + 1:]
    assert report["resumed_rows"] >= 4 and len(redone) == 10 - report["resumed_rows"]
    images = np.load(tmp_path / "out" / "images.npy")
    assert [int(images[i, 0, 0, 0]) for i in range(10)] == list(range(10))
    assert not (tmp_path / "out" / "images.npy.progress").exists()


def test_a_bad_file_is_listed_but_a_bug_in_our_code_is_not_hidden(tmp_path):
    items = [Item(image_id=str(i), source=f"{i}.png", subject=str(i), label=i % 2,
                  split="train" if i < 3 else "test") for i in range(4)]

    def bad_landmarks(item):
        if item.image_id == "1":
            raise ValueError("could not convert string to float: 'x'")  # np.loadtxt's
        return np.zeros((224, 224, 3), dtype=np.uint8), "centre"

    report = prepare_store(title="t", root=tmp_path, out=tmp_path / "listed", items=items,
                           classes=["a", "b"], make_face=bad_landmarks, options={}, threads=1,
                           log=quiet)
    assert [s["source"] for s in report["skipped"]] == ["1.png"]

    def buggy(item):
        return item.no_such_field  # AttributeError: ours, not the data's

    with pytest.raises(AttributeError):
        prepare_store(title="t", root=tmp_path, out=tmp_path / "bug", items=items,
                      classes=["a", "b"], make_face=buggy, options={}, threads=1, log=quiet)
