"""What every adapter shares: finding the layout under the given root, listing folders
without OS litter, and the streamed prepare that turns a list of labelled images into the
prepared store (thread pool with bounded work in flight, resume, skipped files with their
reasons, the report with counts, warnings and images per second).

An adapter only lists its images (`Item`s, split already assigned) and says how one face is
cut out (`make_face`); `prepare_store` does the rest.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd

from expmap.data.adapters import LayoutError
from expmap.data.faces import SkippedImage, cut_face, detector_available, read_rgb
from expmap.data.folds import natural_key
from expmap.data.store import CENTRE_CROP, DETECTOR_CROP, StoreWriter, write_prepared

# Files that operating systems and archivers leave in folders (besides any dotfile).
LITTER = {"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx"}
# How many finished rows are flushed and put on record at once (and at most how many
# seconds apart): what an interrupted prepare can lose.
RECORD_EVERY_ROWS = 512
RECORD_EVERY_SECONDS = 10.0
LOG_EVERY_SECONDS = 30.0


def is_litter(name: str) -> bool:
    return name.startswith(".") or name.lower() in LITTER


def entries(folder: Path) -> list[Path]:
    """The folder's entries in name order (numbers as numbers), OS litter left out."""
    return sorted((p for p in folder.iterdir() if not is_litter(p.name)),
                  key=lambda p: natural_key(p.name))


def subfolders(folder: Path) -> list[Path]:
    return [p for p in entries(folder) if p.is_dir()]


def files(folder: Path) -> list[Path]:
    return [p for p in entries(folder) if p.is_file()]


def find_root(root: Path, looks_like: Callable[[Path], bool], expected: str,
              look_above: bool = True) -> Path:
    """The folder that holds the layout: `root` itself, a folder inside it (the archive's
    own top folder) or, with `look_above`, the one above it (root pointed inside the layout)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise LayoutError(f"{root} is not a folder (expected {expected} there)")
    for candidate in [root, *subfolders(root), *([root.parent] if look_above else [])]:
        if looks_like(candidate):
            return candidate
    where = "one level above or below" if look_above else "one level below"
    raise LayoutError(f"expected {expected} in {root} (or {where})")


def face_finder(root: Path, asked: str | None) -> tuple[Callable, bool]:
    """make_face for images that may hold more than the face: OpenCV's detector where an
    option asked for it (`asked` names that option, for the error), a centred crop where it
    finds no face; else centred crops. Also says whether the detector is in use. A detector
    asked for that cannot run is an error, not a silent change of the benchmark."""
    if asked and not detector_available():
        raise LayoutError(f"{asked}, but OpenCV's face detector cannot run here (its Haar "
                          "cascades ship with opencv-python-headless below 5): pip install "
                          "'expmap[faces]', or turn the option off for centred crops")
    use_detector = asked is not None
    crop = DETECTOR_CROP if use_detector else CENTRE_CROP

    def make_face(item: Item) -> tuple[np.ndarray, str]:
        return cut_face(read_rgb(root / item.source), crop)

    return make_face, use_detector


def option(options: dict, name: str, default):
    value = options.get(name)
    return default if value is None else value


@dataclass(frozen=True, slots=True)
class Item:
    """One image to prepare."""

    image_id: str
    source: str  # path relative to the root
    subject: str
    label: int
    split: str  # fold<k> (test set of fold k), train or test
    sequence: str = ""  # the labelled video sequence it comes from, if any
    crop: tuple = ()  # what make_face needs besides the pixels: a box, a landmark file...


@dataclass(frozen=True)
class Skipped:
    """A file left out while listing (before any pixel was read)."""

    source: str
    reason: str


def bounded_map(function: Callable, inputs: Iterable, threads: int) -> Iterator:
    """`function` over `inputs` on `threads` threads, results in input order, with at most
    4 x threads calls in flight: memory stays bounded whatever the number of inputs.
    `function` must not raise."""
    inputs = iter(inputs)
    window = 4 * max(1, threads)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        pending = deque(pool.submit(function, x) for x in islice(inputs, window))
        while pending:
            result = pending.popleft().result()
            for x in islice(inputs, 1):
                pending.append(pool.submit(function, x))
            yield result


def fingerprint(items: list[Item], options: dict) -> str:
    """Identifies the work: same images, crops and options -> a prepare may resume."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())
    for item in items:
        digest.update(f"{item.image_id}\t{item.source}\t{item.crop}\n".encode())
    return digest.hexdigest()


def prepare_store(*, title: str, root: Path, out: Path, items: list[Item], classes: list[str],
                  make_face: Callable[[Item], tuple[np.ndarray, str]], options: dict,
                  threads: int, log, published: dict[str, tuple[int, ...]] | None = None,
                  listing_skipped: Iterable[Skipped] = (), fallback_crop: str | None = None,
                  warnings: Iterable[str] = (), notes: dict | None = None) -> dict:
    """Write the prepared store of `items` into `out` and return the report.

    make_face(item) -> (face uint8 224x224x3, how it was cropped); it raises SkippedImage,
    OSError, ValueError or IndexError for a file that cannot be used, which is then listed,
    not fatal; any other exception is a bug and stops the prepare with its traceback.
    published: {what: accepted values}, what being images, sequences, subjects or
    `<split> images`; a count that differs gives a warning, as do faces cut out by the
    `fallback_crop` (the crop used when the proper one, say a detected face, failed).
    """
    if not items:
        raise LayoutError(f"{title}: no labelled images found under {root}")
    out = Path(out)
    done, written, seconds = write_faces(title, out, items, make_face, options, threads, log)
    kept = [row for row in range(len(items)) if done[row][0] == "ok"]
    manifest = pd.DataFrame({
        "image_id": [items[r].image_id for r in kept],
        "source": [items[r].source for r in kept],
        "subject": [items[r].subject for r in kept],
        "label": [items[r].label for r in kept],
        "label_name": [classes[items[r].label] for r in kept],
        "split": [items[r].split for r in kept],
        "index": kept,
    })
    skipped = [{"source": s.source, "reason": s.reason} for s in listing_skipped]
    skipped += [{"source": items[r].source, "reason": done[r][1]}
                for r in range(len(items)) if done[r][0] == "skip"]
    sequences = len({items[r].sequence for r in kept if items[r].sequence})
    crops = Counter(done[r][1] for r in kept)
    report = build_report(title, root, manifest, classes, sequences, published or {}, skipped,
                          crops)
    if fallback_crop and crops[fallback_crop]:
        report["warnings"].append(f"{crops[fallback_crop]:,} of {len(kept):,} faces cut out by "
                                  f"the fallback ({fallback_crop} crop)")
    report["warnings"] += list(warnings)
    report.update({
        "options": options,
        "threads": threads,
        "seconds": round(seconds, 2),
        "images_per_second": round(written / seconds, 1) if written and seconds > 0 else None,
        "resumed_rows": len(items) - written,
        **(notes or {}),
    })
    write_prepared(out, manifest, classes, report)
    log(f"{title}: {len(manifest):,} images in {len(classes)} classes, "
        f"{len(skipped):,} skipped, {report['images_per_second']} images/s -> {out}")
    for warning in report["warnings"]:
        log(f"{title}: warning: {warning}")
    return report


def write_faces(title: str, out: Path, items: list[Item], make_face, options: dict,
                threads: int, log) -> tuple[dict[int, tuple[str, str]], int, float]:
    """Cut out every face not yet in the store at `out` (a resumed store keeps its rows);
    returns each row's ("ok" | "skip", detail), the rows done now and the seconds taken."""
    writer = StoreWriter(out, len(items), fingerprint(items, options))
    todo = [row for row in range(len(items)) if row not in writer.done]
    if writer.done:
        log(f"{title}: resuming, {len(writer.done):,} of {len(items):,} images already done")

    def face_of(row: int) -> tuple[np.ndarray | None, str]:
        try:
            return make_face(items[row])
        except SkippedImage as error:
            return None, str(error)
        except (OSError, ValueError, IndexError) as error:  # a bad landmark or box file:
            return None, f"unreadable: {error!r}"  # listed, never fatal; our bugs still raise

    started = last_record = last_log = time.monotonic()
    finished: dict[int, tuple[str, str]] = {}
    for count, (row, (face, detail)) in enumerate(
            zip(todo, bounded_map(face_of, todo, threads), strict=True), start=1):
        if face is not None:
            writer[row] = face
        finished[row] = ("skip", detail) if face is None else ("ok", detail)
        now = time.monotonic()
        if len(finished) >= RECORD_EVERY_ROWS or now - last_record > RECORD_EVERY_SECONDS:
            writer.record(finished)
            finished, last_record = {}, now
        if now - last_log > LOG_EVERY_SECONDS:
            log(f"{title}: {count:,}/{len(todo):,} images, {count / (now - started):.0f}/s")
            last_log = now
    writer.record(finished)
    done = dict(writer.done)
    writer.close()
    return done, len(todo), time.monotonic() - started


def build_report(title: str, root: Path, manifest: pd.DataFrame, classes: list[str],
                 sequences: int, published: dict[str, tuple[int, ...]], skipped: list[dict],
                 crops: Counter) -> dict:
    per_split_label = manifest.groupby(["split", "label"]).size()
    counts = {split: {name: int(per_split_label.get((split, label), 0))
                      for label, name in enumerate(classes)}
              for split in sorted(set(manifest["split"]))}
    observed = {
        "images": len(manifest),
        "sequences": sequences,
        "subjects": manifest["subject"].nunique(),
        **{f"{split} images": sum(per_class.values()) for split, per_class in counts.items()},
    }
    warnings = [f"{what}: {observed.get(what, 0):,} here, published "
                + " or ".join(f"{value:,}" for value in accepted)
                for what, accepted in published.items() if observed.get(what, 0) not in accepted]
    present = set(manifest["label"])
    empty = [name for label, name in enumerate(classes) if label not in present]
    if empty:
        warnings.append(f"no images of class {', '.join(empty)}")
    if skipped:
        reasons = Counter(entry["reason"].split(":")[0] for entry in skipped)
        warnings.append(f"{len(skipped):,} files skipped ("
                        + ", ".join(f"{n:,} {why}" for why, n in sorted(reasons.items()))
                        + "), listed under skipped")
    report = {
        "dataset": title,
        "root": str(root),
        "classes": classes,
        "images": len(manifest),
        "subjects": observed["subjects"],
        "counts": counts,
        "crops": dict(sorted(crops.items())),
        "skipped": skipped,
        "warnings": warnings,
    }
    if sequences:
        report["sequences"] = sequences
    return report
