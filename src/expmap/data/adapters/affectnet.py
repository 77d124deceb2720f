"""AffectNet, in either of its two layouts, told apart by what the folder holds:

  csv: Manually_Annotated_file_lists/{training,validation}.csv (subDirectory_filePath,
       face_x, face_y, face_width, face_height, facial_landmarks, expression, valence,
       arousal; with or without the header row) and the images under
       Manually_Annotated_Images/ (there or one folder down); faces cut out by the box
  npy: {train_set,val_set}/images/N.jpg with annotations/N_exp.npy (faces already cut out)

Options (config `datasets.affectnet`):
  classes8: false   7 classes (codes 0-6); true: 8, Contempt (code 7) too

Codes 8-10 (None, Uncertain, Non-Face) are dropped, as is 7 with 7 classes; the report
counts them. Any other code is listed as skipped (unreadable), with its file.
train = the training set, test = the validation set (the only fold, `test`);
the test set was never released. No subjects are named: each image is its own. Class order:
the codes, 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from expmap.data.adapters import LayoutError
from expmap.data.adapters.common import (
    Item,
    Skipped,
    bounded_map,
    files,
    find_root,
    option,
    prepare_store,
)
from expmap.data.faces import crop_box, crop_centre, read_rgb

NAME = "affectnet"
LAYOUT = ("AffectNet's Manually_Annotated_file_lists/ with Manually_Annotated_Images/, "
          "or its train_set/ and val_set/ (images/, annotations/)")
SOURCE = "http://mohammadmahoor.com/affectnet/ (AffectNet, by agreement)"
needs_root = True

CODE_NAMES = ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt",
              "None", "Uncertain", "Non-Face"]
PUBLISHED = {7: {"train images": (283901,), "test images": (3500,)},
             8: {"train images": (287651,), "test images": (4000,)}}
LISTS, IMAGES = "Manually_Annotated_file_lists", "Manually_Annotated_Images"
CSV_COLUMNS = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
               "facial_landmarks", "expression", "valence", "arousal"]
CSV_SPLITS = {"train": "training.csv", "test": "validation.csv"}
NPY_SPLITS = {"train": "train_set", "test": "val_set"}


def layout_of(folder: Path) -> str | None:
    if (folder / LISTS / CSV_SPLITS["train"]).is_file():
        return "csv"
    if all((folder / name / "images").is_dir() for name in NPY_SPLITS.values()):
        return "npy"
    return None


def locate(root: Path) -> Path:
    return find_root(root, lambda folder: layout_of(folder) is not None,
                     f"{LISTS}/training.csv, or train_set/images/ and val_set/images/")


def code_name(code: int) -> str:
    return f"{code} {CODE_NAMES[code]}" if 0 <= code < len(CODE_NAMES) else str(code)


def invalid_code(code: int) -> str:
    return f"unreadable: expression code {code} not in 0..{len(CODE_NAMES) - 1}"


def csv_items(root: Path, n_classes: int, excluded: Counter) -> tuple[list[Item], list[Skipped]]:
    images = next((folder for folder in [root / IMAGES, *sorted(root.glob(f"*/{IMAGES}"))]
                   if folder.is_dir()), None)
    if images is None:
        raise LayoutError(f"expected {IMAGES}/ beside {LISTS}/ in {root}")
    items: list[Item] = []
    skipped: list[Skipped] = []
    for split, name in CSV_SPLITS.items():
        path = root / LISTS / name
        if not path.is_file():
            raise LayoutError(f"expected {LISTS}/{name} in {root}")
        with open(path) as opened:
            has_header = opened.readline().startswith(CSV_COLUMNS[0])
        table = pd.read_csv(path, header=0 if has_header else None, names=CSV_COLUMNS,
                            usecols=[0, 1, 2, 3, 4, 6], dtype={CSV_COLUMNS[0]: str})
        numbers = table[CSV_COLUMNS[1:5] + ["expression"]].apply(pd.to_numeric,
                                                                  errors="coerce")
        complete = (numbers.notna().all(axis=1) & table[CSV_COLUMNS[0]].notna()).to_numpy()
        first_line = 2 if has_header else 1
        skipped += [Skipped(f"{LISTS}/{name}:{row + first_line}", "unreadable: incomplete row")
                    for row in np.flatnonzero(~complete)]
        for file_path, x, y, width, height, code in zip(
                table[CSV_COLUMNS[0]][complete], *(numbers[c][complete] for c in numbers),
                strict=True):
            code = int(code)
            if not 0 <= code < len(CODE_NAMES):
                skipped.append(Skipped(f"{LISTS}/{name}:{file_path}", invalid_code(code)))
                continue
            if code >= n_classes:
                excluded[code_name(code)] += 1
                continue
            image_id = file_path.rsplit(".", 1)[0]
            items.append(Item(image_id=image_id, source=(images / file_path).relative_to(root)
                              .as_posix(), subject=image_id, label=code, split=split,
                              crop=("box", x, y, width, height)))
    return items, skipped


def read_code(path: Path) -> int | str:
    """The expression code of an N_exp.npy, or the reason it cannot be read."""
    try:
        return int(str(np.load(path)))
    except FileNotFoundError:
        return f"missing: no annotation {path.name}"
    except (OSError, ValueError) as error:
        return f"unreadable: annotation {path.name}: {error}"


def npy_items(root: Path, n_classes: int, excluded: Counter,
              threads: int) -> tuple[list[Item], list[Skipped]]:
    items: list[Item] = []
    skipped: list[Skipped] = []
    for split, name in NPY_SPLITS.items():
        images = files(root / name / "images")
        annotations = [root / name / "annotations" / f"{image.stem}_exp.npy" for image in images]
        for image, code in zip(images, bounded_map(read_code, annotations, threads), strict=True):
            source = image.relative_to(root).as_posix()
            if isinstance(code, str):
                skipped.append(Skipped(source, code))
            elif not 0 <= code < len(CODE_NAMES):
                skipped.append(Skipped(source, invalid_code(code)))
            elif code >= n_classes:
                excluded[code_name(code)] += 1
            else:
                items.append(Item(image_id=f"{split}/{image.stem}", source=source,
                                  subject=f"{split}/{image.stem}", label=code, split=split))
    return items, skipped


def make_face(root: Path):
    def face(item: Item):
        image = read_rgb(root / item.source)
        if item.crop:
            return crop_box(image, *item.crop[1:]), "box"
        return crop_centre(image), "as given"
    return face


def prepare(options: dict, root: Path, out: Path, threads: int, log) -> dict:
    root = locate(root)
    n_classes = 8 if option(options, "classes8", False) else 7
    layout = layout_of(root)
    excluded: Counter = Counter()
    if layout == "csv":
        items, skipped = csv_items(root, n_classes, excluded)
    else:
        items, skipped = npy_items(root, n_classes, excluded, threads)
    log(f"AffectNet ({layout} layout): {len(items):,} labelled images listed")
    return prepare_store(
        title="AffectNet", root=root, out=out, items=items, classes=CODE_NAMES[:n_classes],
        make_face=make_face(root), options=options, threads=threads, log=log,
        published=PUBLISHED[n_classes], listing_skipped=skipped,
        notes={"layout": layout, "excluded_by_label": dict(sorted(excluded.items()))})
