"""CK+ (extended Cohn-Kanade): cohn-kanade-images/, Emotion/, Landmarks/.

Options (config `datasets.ckplus`):
  frames: 3                    the last `frames` frames of each labelled sequence
  contempt: true               keep contempt (7 classes); false: 6 classes
  neutral_first_frame: false   also take each labelled sequence's first frame as `neutral`
  folds: 10                    subject folds: sorted subject ids, subject i -> fold i mod folds

Only sequences with an emotion file are labelled. Folds are assigned over every labelled
subject (contempt or not), so dropping contempt keeps the published folds. Faces are cut
out around the frame's 68 landmarks (the nearest frame's when a frame has none, centred
when the sequence has none), eyes levelled. Class order: CK+'s own codes (0 neutral,
1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from expmap.data.adapters.common import (
    Item,
    Skipped,
    files,
    find_root,
    option,
    prepare_store,
    subfolders,
)
from expmap.data.faces import crop_centre, crop_landmarks, read_rgb
from expmap.data.folds import fold_name, interleaved_subject_folds

NAME = "ckplus"
LAYOUT = "CK+'s cohn-kanade-images/, Emotion/ and Landmarks/ folders side by side"
SOURCE = "https://www.jeffcohn.net/Resources/ (CK+ agreement; the CK+ archives unpacked together)"
needs_root = True

CODE_NAMES = ["neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]
CONTEMPT = 2
PUBLISHED = {True: {"sequences": (327,), "subjects": (118,)},  # contempt in
             False: {"sequences": (309,), "subjects": (106,)}}  # the 18 contempt ones out

IMAGES, EMOTION, LANDMARKS = "cohn-kanade-images", "Emotion", "Landmarks"


def looks_like(folder: Path) -> bool:
    return all((folder / name).is_dir() for name in (IMAGES, EMOTION, LANDMARKS))


def locate(root: Path) -> Path:
    return find_root(root, looks_like, f"{IMAGES}/, {EMOTION}/ and {LANDMARKS}/")


def read_code(path: Path) -> int:
    return int(round(float(path.read_text().split()[0])))


def landmark_crops(root: Path, sequence: str, frames: list[Path]) -> list[tuple]:
    """Per frame: ("landmarks", file) of that frame, or of the nearest frame that has one,
    or ("centre",) when the sequence has no landmark file."""
    folder = root / LANDMARKS / sequence
    position = {frame.stem: i for i, frame in enumerate(frames)}
    marked = sorted((position[p.name.removesuffix("_landmarks.txt")], p.relative_to(root))
                    for p in (files(folder) if folder.is_dir() else [])
                    if p.name.removesuffix("_landmarks.txt") in position)
    if not marked:
        return [("centre",)] * len(frames)
    return [("landmarks", min(marked, key=lambda mark: abs(mark[0] - i))[1].as_posix())
            for i in range(len(frames))]


def make_face(root: Path):
    def face(item: Item) -> tuple[np.ndarray, str]:
        image = read_rgb(root / item.source)
        if item.crop[0] == "landmarks":
            points = np.loadtxt(root / item.crop[1], dtype=np.float64)
            return crop_landmarks(image, points), "landmarks"
        return crop_centre(image), "centre"
    return face


def labelled_sequences(root: Path) -> tuple[list[tuple[str, str, int]], list[Skipped]]:
    """(subject, sequence, emotion code) of every sequence with a readable emotion file, and
    the emotion files that could not be used."""
    labelled: list[tuple[str, str, int]] = []
    skipped: list[Skipped] = []
    for subject_folder in subfolders(root / EMOTION):
        for sequence_folder in subfolders(subject_folder):
            emotion_files = [p for p in files(sequence_folder) if p.suffix == ".txt"]
            if not emotion_files:
                continue  # a sequence without an emotion file has no label
            sequence = f"{subject_folder.name}/{sequence_folder.name}"
            source = emotion_files[0].relative_to(root).as_posix()
            try:
                code = read_code(emotion_files[0])
            except (ValueError, IndexError, OSError) as error:
                skipped.append(Skipped(source, f"unreadable: emotion file: {error}"))
                continue
            if not 1 <= code <= 7:
                skipped.append(Skipped(source, f"unreadable: emotion code {code} not in 1..7"))
                continue
            labelled.append((subject_folder.name, sequence, code))
    return labelled, skipped


def prepare(options: dict, root: Path, out: Path, threads: int, log) -> dict:
    root = locate(root)
    frames_per_sequence = int(option(options, "frames", 3))
    keep_contempt = bool(option(options, "contempt", True))
    neutral = bool(option(options, "neutral_first_frame", False))
    n_folds = int(option(options, "folds", 10))

    codes = [code for code in range(1, 8) if keep_contempt or code != CONTEMPT]
    if neutral:
        codes = [0, *codes]
    label_of = {code: label for label, code in enumerate(codes)}
    classes = [CODE_NAMES[code] for code in codes]

    labelled, skipped = labelled_sequences(root)
    folds = interleaved_subject_folds((subject for subject, _, _ in labelled), n_folds)
    items: list[Item] = []
    excluded_contempt = 0
    for subject, sequence, code in labelled:
        if code not in label_of:
            excluded_contempt += 1
            continue
        folder = root / IMAGES / sequence
        frames = files(folder) if folder.is_dir() else []
        if not frames:
            skipped.append(Skipped(f"{IMAGES}/{sequence}", "missing: no frames for a "
                                   "labelled sequence"))
            continue
        last = range(max(0, len(frames) - frames_per_sequence), len(frames))
        chosen = [(position, code) for position in last]
        if neutral and 0 not in last:
            chosen.insert(0, (0, 0))
        crops = landmark_crops(root, sequence, frames)
        items += [Item(image_id=frames[position].stem,
                       source=frames[position].relative_to(root).as_posix(),
                       subject=subject, label=label_of[frame_code],
                       split=fold_name(folds[subject]), sequence=sequence,
                       crop=crops[position])
                  for position, frame_code in chosen]

    return prepare_store(
        title="CK+", root=root, out=out, items=items, classes=classes,
        make_face=make_face(root), options=options, threads=threads, log=log,
        published=PUBLISHED[keep_contempt], listing_skipped=skipped,
        notes={"excluded_contempt_sequences": excluded_contempt,
               "folds": n_folds, "frames_per_sequence": frames_per_sequence})
