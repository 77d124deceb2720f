"""Atomic file writes: every output expmap writes appears whole or not at all.

Each writer puts the bytes under a temporary name beside the target and renames it into
place; a failed write removes the temporary file and raises an OSError that names the
target (jobs.job_log turns a full or read-only disk into one line).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pandas as pd


@contextmanager
def replacing(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary name beside `path` to write, renamed onto `path` when the block ends.
    If the block fails the temporary file is removed, and an OSError that names no file
    (a full disk found by write or close, even inside torch.save) is raised naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        cause = error if isinstance(error, OSError) else error.__context__
        if isinstance(cause, OSError) and cause.errno and cause.filename is None:
            raise OSError(cause.errno, cause.strerror, os.fspath(path)) from error
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to a temporary name beside `path`, then rename: readers never see half."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def atomic_write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with replacing(path, ".npz") as tmp:  # numpy adds .npz to a name without it
        np.savez_compressed(tmp, **arrays)
