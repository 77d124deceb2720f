"""Oulu-CASIA NIR&VIS: OriginalImg/{VL,NI}/{Strong,Weak,Dark}/P###/<Expression>/NNN.jpeg.

Options (config `datasets.oulu_casia`):
  illumination: [VL]     imaging systems to take (VL visible light, NI near infrared)
  strength: [Strong]     lighting conditions to take (Strong, Weak, Dark)
  frames: 3              the last `frames` frames of each sequence
  folds: 10              runs of consecutive subjects (80 subjects -> 10 folds of 8)
  detector: opencv       opencv: OpenCV's Haar face detector (extra `faces`), centred crop
                         where it finds none; none: centred crop throughout

The frames show head and shoulders, so the face is located first; every centred crop is
counted in the report. Classes (6): Anger, Disgust, Fear, Happiness, Sadness, Surprise.
"""

from __future__ import annotations

from pathlib import Path

from expmap.data.adapters import LayoutError
from expmap.data.adapters.common import (
    Item,
    Skipped,
    face_finder,
    files,
    find_root,
    option,
    prepare_store,
    subfolders,
)
from expmap.data.folds import consecutive_subject_folds, fold_name

NAME = "oulu_casia"
LAYOUT = "Oulu-CASIA's OriginalImg/{VL,NI}/{Strong,Weak,Dark}/P###/<Expression>/NNN.jpeg"
SOURCE = "the University of Oulu's CMVS (Oulu-CASIA NIR&VIS database, on request)"
needs_root = True

CLASSES = ["Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"]
ILLUMINATIONS, STRENGTHS = ("VL", "NI"), ("Strong", "Weak", "Dark")
SEQUENCES_PER_CONDITION = 480  # 80 subjects x 6 expressions under each illumination/strength
SUBJECTS = 80
TOP = "OriginalImg"


def looks_like(folder: Path) -> bool:
    return any((folder / TOP / name).is_dir() for name in ILLUMINATIONS)


def locate(root: Path) -> Path:
    return find_root(root, looks_like, f"{TOP}/VL/Strong/P001/... (or {TOP}/NI/...)")


def as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def prepare(options: dict, root: Path, out: Path, threads: int, log) -> dict:
    root = locate(root)
    illuminations = as_list(option(options, "illumination", ["VL"]))
    strengths = as_list(option(options, "strength", ["Strong"]))
    frames_per_sequence = int(option(options, "frames", 3))
    n_folds = int(option(options, "folds", 10))
    detector = str(option(options, "detector", "opencv"))
    for name, chosen, allowed in (("illumination", illuminations, ILLUMINATIONS),
                                  ("strength", strengths, STRENGTHS),
                                  ("detector", [detector], ("opencv", "none"))):
        unknown = [value for value in chosen if value not in allowed]
        if unknown:
            raise LayoutError(f"datasets.oulu_casia.{name}: {', '.join(unknown)} is not one of "
                              f"{', '.join(allowed)}")
    label_of = {name.lower(): label for label, name in enumerate(CLASSES)}

    sequences: list[tuple[str, str, int, list[Path]]] = []  # subject, sequence, label, frames
    skipped: list[Skipped] = []
    for illumination in illuminations:
        for strength in strengths:
            condition = root / TOP / illumination / strength
            if not condition.is_dir():
                raise LayoutError(f"expected {TOP}/{illumination}/{strength}/ in {root}")
            for subject_folder in subfolders(condition):
                for expression in subfolders(subject_folder):
                    sequence = f"{illumination}/{strength}/{subject_folder.name}/{expression.name}"
                    if expression.name.lower() not in label_of:
                        skipped.append(Skipped(f"{TOP}/{sequence}", "unknown: not one of the "
                                               f"expression folders {', '.join(CLASSES)}"))
                        continue
                    frames = files(expression)
                    if not frames:
                        skipped.append(Skipped(f"{TOP}/{sequence}", "missing: no frames"))
                        continue
                    sequences.append((subject_folder.name, sequence,
                                      label_of[expression.name.lower()], frames))

    folds = consecutive_subject_folds((subject for subject, *_ in sequences), n_folds)
    items = [Item(image_id=f"{sequence.replace('/', '_')}_{frame.stem}",
                  source=frame.relative_to(root).as_posix(), subject=subject, label=label,
                  split=fold_name(folds[subject]), sequence=sequence)
             for subject, sequence, label, frames in sequences
             for frame in frames[-frames_per_sequence:]]

    make_face, use_detector = face_finder(
        root, "Oulu-CASIA options.detector is opencv" if detector == "opencv" else None)
    conditions = len(illuminations) * len(strengths)
    return prepare_store(
        title="Oulu-CASIA", root=root, out=out, items=items, classes=CLASSES,
        make_face=make_face, options=options, threads=threads, log=log,
        published={"sequences": (SEQUENCES_PER_CONDITION * conditions,),
                   "subjects": (SUBJECTS,)},
        listing_skipped=skipped, fallback_crop="centre" if use_detector else None,
        notes={"detector": "opencv-haar" if use_detector else "none", "folds": n_folds,
               "frames_per_sequence": frames_per_sequence})
