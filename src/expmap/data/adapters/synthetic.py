"""The built-in `synthetic` benchmark: drawn faces generated from a seed, no download.

Besides the prepared store it writes `regions.npy` (uint8 [N, 224, 224], row = manifest
`index`): 1 on the pixels of the regions that carry each image's expression.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from expmap.data import synthetic
from expmap.data.adapters import LayoutError
from expmap.data.folds import fold_name, interleaved_subject_folds
from expmap.data.store import IMAGE_SIZE, StoreWriter, open_array, write_prepared

NAME = "synthetic"
LAYOUT = "nothing: the faces are generated from `options.seed`"
SOURCE = "expmap itself (src/expmap/data/synthetic.py)"
needs_root = False

DEFAULTS = {"seed": 0, "subjects": 40, "frames": 3, "sequence_length": 8, "folds": 5}
# The schema's minimums (options_synthetic; a test keeps them equal), for a caller that
# bypasses the config.
MINIMUM = {"seed": 0, "subjects": 2, "frames": 1, "sequence_length": 2, "folds": 2}


def locate(root: Path | None) -> Path | None:
    return root


def checked_options(options: dict | None) -> dict:
    """Defaults filled in; one-line LayoutError for an unknown key or a bad value."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise LayoutError(f"synthetic options: unknown {', '.join(unknown)}; "
                         f"known: {', '.join(DEFAULTS)}")
    merged = {**DEFAULTS, **options}
    for key, value in merged.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise LayoutError(f"synthetic options: {key} must be an integer, got {value!r}")
    for key, least in MINIMUM.items():
        if merged[key] < least:
            raise LayoutError(f"synthetic options: {key} must be at least {least}, "
                             f"got {merged[key]}")
    if merged["frames"] > merged["sequence_length"]:
        raise LayoutError(f"synthetic options: frames ({merged['frames']}) must not exceed "
                         f"sequence_length ({merged['sequence_length']})")
    if merged["subjects"] < merged["folds"]:
        raise LayoutError(f"synthetic options: subjects ({merged['subjects']}) must be at least "
                         f"folds ({merged['folds']}) so that every fold has a test subject")
    return {key: int(value) for key, value in merged.items()}


def prepare(options: dict | None, root: Path | None, out: Path, threads: int, log) -> dict:
    """Generate the faces and their region masks into the prepared store at `out`.

    Single-threaded (`threads` is unused): a thousand faces take seconds."""
    options = checked_options(options)
    out = Path(out)
    n_classes = len(synthetic.CLASSES)
    n_images = options["subjects"] * n_classes * options["frames"]
    log(f"synthetic: generating {n_images} faces ({options['subjects']} subjects x "
        f"{n_classes} expressions x last {options['frames']} of {options['sequence_length']} "
        f"frames), seed {options['seed']}")
    started = time.perf_counter()
    manifest = write_faces(options, out, n_images, log)
    seconds = time.perf_counter() - started
    # Folds by subject, as for CK+: sorted subject ids, subject i -> fold i mod k.
    fold_of = interleaved_subject_folds(manifest["subject"], options["folds"])
    manifest["split"] = manifest["subject"].map(lambda subject: fold_name(fold_of[subject]))
    report = {
        "dataset": NAME,
        "options": options,
        "n_images": n_images,
        "n_subjects": options["subjects"],
        "classes": list(synthetic.CLASSES),
        "per_class": {name: int((manifest["label_name"] == name).sum())
                      for name in synthetic.CLASSES},
        "per_split": {split: int(count)
                      for split, count in manifest["split"].value_counts().sort_index().items()},
        "regions": {name: {"regions": list(synthetic.REGIONS[name]), "cues": synthetic.CUES[name]}
                    for name in synthetic.CLASSES},
        "regions_file": "regions.npy: uint8 [N, 224, 224], row = manifest index, 1 where the "
                        "image's expression shows",
        "skipped": [],
        "warnings": [],
        "seconds": round(seconds, 3),
        "images_per_second": round(n_images / seconds, 1),
    }
    write_prepared(out, manifest, list(synthetic.CLASSES), report)
    log(f"synthetic: {n_images} faces in {seconds:.1f} s ({n_images / seconds:.0f} faces/s)")
    return report


def write_faces(options: dict, out: Path, n_images: int, log) -> pd.DataFrame:
    """Images into the store and regions.npy (renamed into place once complete); returns
    the manifest without its split column."""
    writer = StoreWriter(out, n_images)
    regions_partial = out / "regions.npy.partial"
    regions = open_array(regions_partial, (n_images, IMAGE_SIZE, IMAGE_SIZE))
    rows = []
    frames = synthetic.generate(options["seed"], options["subjects"], options["frames"],
                                options["sequence_length"])
    for index, frame in enumerate(frames):
        writer[index] = frame.image
        regions[index] = frame.regions
        name = synthetic.CLASSES[frame.label]
        rows.append({
            "image_id": f"{frame.subject}_{name}_{frame.frame:02d}",
            "source": f"synthetic seed {options['seed']}: {frame.subject}/{name}/{frame.frame:02d}",
            "subject": frame.subject,
            "label": frame.label,
            "label_name": name,
            "index": index,
        })
        if (index + 1) % 200 == 0 or index + 1 == n_images:
            log(f"synthetic: {index + 1}/{n_images} faces")
    writer.close()
    regions.flush()
    del regions
    os.replace(regions_partial, out / "regions.npy")
    return pd.DataFrame(rows)
