"""The prepared store of one dataset: what every adapter writes and training reads.

A prepared folder holds
  manifest.csv   one row per image: image_id, source, subject, label, label_name, split,
                 index (the row of images.npy holding its pixels)
  classes.txt    the dataset's class names, one per line, in label order
  images.npy     aligned faces, uint8 [N, 224, 224, 3] RGB, read through a memory map so
                 training never decodes a JPEG per step and never holds the set in RAM
  report.json    counts, skipped files and warnings (written by the adapter), and
                 `preparation`, how the faces were prepared, which `expmap predict` repeats
                 on a photo: grey (every face's three channels equal) and crop, `detector`
                 (most faces were cut out of a larger picture: by a detector, landmarks or a
                 box) or `centre` (the picture was the face: given cropped, aligned, drawn,
                 or its centred square taken)

Splits: `fold0` ... `fold<k-1>` mark the test set of that fold (its training set is every
other fold), or `train` / `test` for an official split, whose single fold is named `test`.
"""

from __future__ import annotations

import json
import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from expmap.io import atomic_write_csv, atomic_write_json, atomic_write_text

IMAGE_SIZE = 224
MANIFEST_COLUMNS = ["image_id", "source", "subject", "label", "label_name", "split", "index"]
# Crops (the report's `crops`, as the adapters name them) that cut a face out of a larger
# picture; the others (centre, as given, aligned) take the picture as the face.
CUT_OUT_CROPS = {"detected", "landmarks", "box"}
DETECTOR_CROP, CENTRE_CROP = "detector", "centre"
# A face is grey when its channels differ by at most this many levels on average: a grey
# picture saved as a colour JPEG keeps a little chroma noise; a colour face differs by tens.
GREY_TOLERANCE = 2.0


def open_array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A new uint8 .npy memory map with its disk space reserved up front: a full disk is an
    OSError here, not a SIGBUS on some later write into a sparse file."""
    try:
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    except OSError as error:
        with suppress(OSError):
            path.unlink()
        raise OSError(error.errno, error.strerror, os.fspath(path)) from None
    return array


class StoreWriter:
    """Streams faces into images.npy one at a time, in bounded memory.

    The array is created at its final size under a temporary name and renamed by `close()`.
    Beside it, images.npy.progress records the rows that are final under a fingerprint of
    the work list. A new writer with the same size and fingerprint reopens both, and `done`
    tells a resumed prepare which rows to leave alone: row -> ("ok", note) for a face
    written, ("skip", reason) for a file that could not be used. A different size or
    fingerprint starts afresh.
    """

    def __init__(self, folder: str | os.PathLike, n_images: int, fingerprint: str = ""):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.final = self.folder / "images.npy"
        self.partial = self.folder / "images.npy.partial"
        self.progress = self.folder / "images.npy.progress"
        self.done: dict[int, tuple[str, str]] = {}
        shape = (n_images, IMAGE_SIZE, IMAGE_SIZE, 3)
        header = f"expmap-progress\t{n_images}\t{fingerprint}"
        array = None
        if self.partial.exists():
            array = np.load(self.partial, mmap_mode="r+")
            if array.shape != shape:
                array = None
            elif self.progress.exists():
                recorded = self._read_progress(header)
                if recorded is None:
                    array = None
                else:
                    self.done = recorded
        if array is None:
            self.partial.unlink(missing_ok=True)
            array = open_array(self.partial, shape)
        if not self.done:
            atomic_write_text(self.progress, header + "\n")
        self.images = array

    def _read_progress(self, header: str) -> dict[int, tuple[str, str]] | None:
        lines = self.progress.read_text().split("\n")
        if lines[0] != header:
            return None
        done: dict[int, tuple[str, str]] = {}
        # The last line may be cut short by the interruption: only whole lines count.
        for line in lines[1:-1]:
            row, _, rest = line.partition("\t")
            status, _, detail = rest.partition("\t")
            if row.isdigit() and status in ("ok", "skip"):
                done[int(row)] = (status, detail)
        return done

    def __setitem__(self, index: int, face: np.ndarray) -> None:
        if face.shape != (IMAGE_SIZE, IMAGE_SIZE, 3) or face.dtype != np.uint8:
            raise ValueError(f"face {index} is {face.shape} {face.dtype}, expected 224x224x3 uint8")
        self.images[index] = face

    def record(self, finished: dict[int, tuple[str, str]]) -> None:
        """Mark rows final: row -> ("ok", note) or ("skip", reason). The pixels are flushed
        first, so a row on record is a row on disk."""
        self.images.flush()
        with open(self.progress, "a") as progress:
            for row, (status, detail) in finished.items():
                progress.write(f"{row}\t{status}\t{' '.join(detail.split())}\n")
            progress.flush()
            os.fsync(progress.fileno())
        self.done.update(finished)

    def flush(self) -> None:
        self.images.flush()

    def close(self) -> None:
        self.images.flush()
        del self.images
        os.replace(self.partial, self.final)
        self.progress.unlink(missing_ok=True)


def all_grey(images: np.ndarray, rows: np.ndarray, chunk: int = 64) -> bool:
    """Whether every face in `rows` is grey (stops at the first colour face)."""
    rows = np.sort(np.asarray(rows))
    for start in range(0, len(rows), chunk):
        faces = images[rows[start:start + chunk]].astype(np.int16)
        spread = np.abs(faces[..., 1:] - faces[..., :1]).mean(axis=(1, 2, 3))
        if (spread > GREY_TOLERANCE).any():
            return False
    return len(rows) > 0


def preparation_record(images: np.ndarray, rows: np.ndarray, crops: dict[str, int]) -> dict:
    """How the faces in `rows` were prepared, measured: grey or not, and the crop of most
    of them (`crops`: how many faces each crop cut)."""
    cut_out = sum(count for crop, count in crops.items() if crop in CUT_OUT_CROPS)
    return {"grey": all_grey(images, rows),
            "crop": DETECTOR_CROP if 2 * cut_out > sum(crops.values()) else CENTRE_CROP}


def write_prepared(folder: str | os.PathLike, manifest: pd.DataFrame, classes: list[str],
                   report: dict) -> None:
    """Write manifest, classes and report once images.npy is complete (manifest last); the
    report gets the preparation record, measured on the images the manifest lists."""
    folder = Path(folder)
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks columns {missing}")
    images = np.load(folder / "images.npy", mmap_mode="r")
    report["preparation"] = preparation_record(images, manifest["index"].to_numpy(),
                                               report.get("crops", {}))
    atomic_write_text(folder / "classes.txt", "".join(f"{c}\n" for c in classes))
    atomic_write_json(folder / "report.json", report)
    atomic_write_csv(folder / "manifest.csv", manifest[MANIFEST_COLUMNS])


@dataclass
class FoldData:
    """One fold of a prepared dataset: the pixels and the indices of each side."""

    images: np.ndarray  # uint8 [N, 224, 224, 3] (a memory map)
    labels: np.ndarray  # int64 [N]
    subjects: np.ndarray  # str [N]
    train_index: np.ndarray  # rows of images used for training
    test_index: np.ndarray  # rows of images used for testing
    class_names: list[str]
    preparation: dict  # how the faces were prepared (write_prepared's record)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class PreparedDataset:
    """Reads a prepared folder: manifest, class names and the memory-mapped images."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.manifest = pd.read_csv(self.folder / "manifest.csv", dtype={"subject": str})
        self.class_names = (self.folder / "classes.txt").read_text().splitlines()
        self.images = np.load(self.folder / "images.npy", mmap_mode="r")

    def preparation(self) -> dict:
        """The report's preparation record; measured now for a store prepared before
        stores recorded it."""
        report = json.loads((self.folder / "report.json").read_text())
        return report.get("preparation") or preparation_record(
            self.images, self.manifest["index"].to_numpy(), report.get("crops", {}))

    def regions(self) -> np.ndarray | None:
        """Ground-truth expression regions [N,224,224] where the data has them (synthetic)."""
        path = self.folder / "regions.npy"
        return np.load(path, mmap_mode="r") if path.exists() else None

    def folds(self) -> list[str]:
        splits = set(self.manifest["split"])
        if "test" in splits:
            return ["test"]
        return sorted((s for s in splits if s.startswith("fold")), key=lambda s: int(s[4:]))

    def fold(self, name: str) -> FoldData:
        split = self.manifest["split"]
        if name == "test":
            test, train = split == "test", split == "train"
        else:
            test, train = split == name, (split != name) & split.str.startswith("fold")
        if not test.any():
            raise ValueError(f"{self.folder}: no test images for fold {name!r} "
                             f"(folds present: {', '.join(self.folds())})")
        # Rows of images.npy with no manifest row (skipped files) keep label -1.
        index = self.manifest["index"].to_numpy()
        labels = np.full(len(self.images), -1, dtype=np.int64)
        labels[index] = self.manifest["label"].to_numpy(np.int64)
        subjects = np.full(len(self.images), "", dtype=object)
        subjects[index] = self.manifest["subject"].to_numpy(str)
        return FoldData(
            images=self.images,
            labels=labels,
            subjects=subjects,
            train_index=np.sort(index[train.to_numpy()]),
            test_index=np.sort(index[test.to_numpy()]),
            class_names=self.class_names,
            preparation=self.preparation(),
        )
