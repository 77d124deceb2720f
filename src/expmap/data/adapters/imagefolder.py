r"""A folder of one's own: <root>/<class>/<image>, optionally <root>/subjects.csv.

Each image's subject comes from one of two places, or from neither:
- subjects.csv, with the columns image (path relative to root, such as happy/0001.jpg, or
  the bare file name when that is unique) and subject;
- options.subject_pattern, a Python regular expression searched in each file name (not
  the folders): the subject is its group named `subject`, else its group 1, else the
  whole match. `^(S\d+)_` reads S010 from CK+48's S010_004_00000017.png.
Both at once is refused (they could disagree). With either, the folds keep each subject's
images together (options.subject_folds says how subjects are dealt out), and an image
without a subject is left out and listed under skipped, with a warning; without, the
folds are stratified by class.

Options (config `datasets.<name>`, adapter imagefolder):
  classes: null          class order; default the class folders' names, sorted. A list
                         fixes the order and takes only those folders. A class folder
                         without images is refused (it would still be a class)
  folds: 10              number of folds
  seed: 0                seed of the stratified folds
  subject_pattern: null  regular expression giving the subject from the file name (above)
  subject_folds: balanced  how named subjects are dealt to folds: balanced (every class
                         spread over the folds as evenly as whole subjects allow) or
                         consecutive (runs of consecutive subject ids, as Oulu-CASIA's)
  detect_faces: false    true: cut the face out with OpenCV's detector (extra `faces`),
                         centred crop where none is found; false: centred square crop
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd

from expmap.data.adapters import LayoutError
from expmap.data.adapters.common import (
    Item,
    Skipped,
    entries,
    face_finder,
    find_root,
    is_litter,
    option,
    prepare_store,
    subfolders,
)
from expmap.data.folds import (
    balanced_subject_folds,
    consecutive_subject_folds,
    fold_name,
    stratified_folds,
)

NAME = "imagefolder"
LAYOUT = "one folder per class holding its images (<root>/<class>/<image>), optional subjects.csv"
SOURCE = "your own images"
needs_root = True

SUBJECTS = "subjects.csv"


def class_folders(folder: Path) -> list[Path]:
    return [sub for sub in subfolders(folder) if any(p.is_file() for p in entries(sub))]


def looks_like(folder: Path) -> bool:
    return folder.is_dir() and len(class_folders(folder)) >= 2


def locate(root: Path) -> Path:
    # Not the folder above: any folder with two subfolders of files would pass for one.
    return find_root(root, looks_like, "two or more class folders holding images",
                     look_above=False)


def images_in(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(is_litter(part) for part in p.relative_to(folder).parts)]


def read_subjects(root: Path, sources: list[str]) -> list[str | None]:
    """Each image's subject from subjects.csv (None where it names none)."""
    table = pd.read_csv(root / SUBJECTS, dtype=str)
    if not {"image", "subject"} <= set(table.columns):
        raise LayoutError(f"{root / SUBJECTS} needs the columns image and subject")
    by_path = {image: subject for image, subject in zip(table["image"], table["subject"],
                                                        strict=True)
               if isinstance(image, str) and isinstance(subject, str)}
    names = [Path(source).name for source in sources]
    unique_names = {name for name, count in Counter(names).items() if count == 1}
    subjects = [by_path.get(source, by_path.get(name) if name in unique_names else None)
                for source, name in zip(sources, names, strict=True)]
    if not any(subjects):
        raise LayoutError(f"{root / SUBJECTS} names the subject of none of the {len(sources)} "
                          f"images (column image: paths such as {sources[0]}, or file names)")
    return subjects


def subject_in_name(pattern: re.Pattern, source: str) -> str | None:
    match = pattern.search(Path(source).name)
    if match is None:
        return None
    group = "subject" if "subject" in pattern.groupindex else (1 if pattern.groups else 0)
    return match.group(group) or None


def pattern_subjects(root: Path, text: str, sources: list[str]) -> list[str | None]:
    """Each image's subject read from its file name by options.subject_pattern (None where
    the pattern finds none)."""
    where = f"options.subject_pattern '{text}'"
    try:
        pattern = re.compile(text)
    except re.error as error:
        raise LayoutError(f"{where} is not a valid Python regular expression ({error}): fix "
                          "it, such as '^(S\\d+)_' for S010_004_00000017.png") from None
    subjects = [subject_in_name(pattern, source) for source in sources]
    if not any(subjects):
        raise LayoutError(f"{where} finds no subject in any of the {len(sources)} file names "
                          f"in {root} (such as {Path(sources[0]).name}): give a pattern whose "
                          "group 1 (or group named subject) is the subject, such as "
                          "'^(S\\d+)_' for S010_004_00000017.png")
    return subjects


def named_subjects(root: Path, options: dict, sources: list[str]
                   ) -> tuple[list[str | None], str] | None:
    """Each image's subject and where it was read, or None when nothing names subjects."""
    pattern = option(options, "subject_pattern", None)
    listed = (root / SUBJECTS).is_file()
    if pattern is not None and listed:
        raise LayoutError(f"both {root / SUBJECTS} and options.subject_pattern name the "
                          "subjects (they could disagree): remove the file or the option")
    if pattern is not None:
        return pattern_subjects(root, str(pattern), sources), "options.subject_pattern"
    if listed:
        return read_subjects(root, sources), SUBJECTS
    return None


def fold_by_subject(root: Path, options: dict, listed: list[tuple[str, int]], n_folds: int,
                    seed: int) -> tuple[list[tuple[str, int, str]], list[int], dict]:
    """The images kept with their subjects, each one's fold, and what the report says of it:
    grouping, the images left out for want of a subject (skipped) and warnings."""
    named = named_subjects(root, options, [source for source, _ in listed])
    if named is None:
        # No subjects named: each image is its own.
        listed = [(source, label, source.rsplit(".", 1)[0]) for source, label in listed]
        folds = stratified_folds([label for _, label, _ in listed], n_folds, seed)
        return listed, folds, {"grouping": "stratified by class", "skipped": [], "warnings": []}
    subjects, origin = named
    skipped = [Skipped(source, f"unknown: {origin} names no subject for it")
               for (source, _), subject in zip(listed, subjects, strict=True) if subject is None]
    warnings = [f"{len(skipped):,} of {len(listed):,} files have no subject in {origin} (such "
                f"as {skipped[0].source}): left out, listed under skipped"] if skipped else []
    listed = [(source, label, subject)
              for (source, label), subject in zip(listed, subjects, strict=True) if subject]
    dealt = option(options, "subject_folds", "balanced")
    if dealt == "consecutive":
        by_subject = consecutive_subject_folds((subject for *_, subject in listed), n_folds)
    elif dealt == "balanced":
        by_subject = balanced_subject_folds(((s, label) for _, label, s in listed), n_folds)
    else:
        raise LayoutError(f"options.subject_folds is '{dealt}': use balanced or consecutive")
    folds = [by_subject[subject] for *_, subject in listed]
    return listed, folds, {"grouping": f"subjects from {origin}, {dealt} folds",
                           "skipped": skipped, "warnings": warnings}


def prepare(options: dict, root: Path, out: Path, threads: int, log) -> dict:
    root = locate(root)
    n_folds = int(option(options, "folds", 10))
    seed = int(option(options, "seed", 0))
    detect = bool(option(options, "detect_faces", False))
    folders = {folder.name: folder for folder in subfolders(root)}
    classes = list(option(options, "classes", sorted(folders)))
    absent = [name for name in classes if name not in folders]
    if absent:
        raise LayoutError(f"expected class folders {', '.join(absent)} in {root}")
    # A class without images would still count as a class of the model: refused.
    empty = [name for name in classes if not images_in(folders[name])]
    if empty:
        raise LayoutError(f"class folder(s) {', '.join(empty)} in {root} hold no images: add "
                          "its images, remove the folder, or list the classes to use in the "
                          "dataset's options.classes")

    listed = [(path.relative_to(root).as_posix(), label) for label, name in enumerate(classes)
              for path in images_in(folders[name])]
    listed, folds, folding = fold_by_subject(root, options, listed, n_folds, seed)
    items = [Item(image_id=source.rsplit(".", 1)[0], source=source, subject=subject,
                  label=label, split=fold_name(fold))
             for (source, label, subject), fold in zip(listed, folds, strict=True)]
    subjects = {item.subject for item in items}

    warnings = folding["warnings"]
    if len(subjects) < n_folds:
        warnings.append(f"{len(subjects)} subjects for {n_folds} folds: some folds are "
                        "empty")
    make_face, use_detector = face_finder(
        root, f"imagefolder {root.name}: options.detect_faces is true" if detect else None)
    return prepare_store(
        title=f"imagefolder {root.name}", root=root, out=out, items=items, classes=classes,
        make_face=make_face, options=options, threads=threads, log=log,
        listing_skipped=folding["skipped"], fallback_crop="centre" if use_detector else None,
        warnings=warnings,
        notes={"folds": n_folds, "grouping": folding["grouping"]})
