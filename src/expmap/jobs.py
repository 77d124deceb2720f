"""What every workflow job script shares: its log file, and user errors as one line.

    with job_log(snakemake.log[0]) as log:
        ...  # call expmap, passing `log`

Everything the job writes (print, logging, warnings, tracebacks, torch's own messages) goes
to the log file. An error the user can fix (expmap.errors.UserError) ends the job with its
one line, in the log and on the console, and no traceback. So does a full, read-only or
forbidden disk (OSError ENOSPC, EDQUOT, EROFS, EACCES, EPERM): the atomic writers remove
their temporary file and name the path they were writing.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from expmap.errors import UserError

ELSEWHERE = "point results elsewhere (snakemake --directory DIR)"
DISK_ERRORS = {
    errno.ENOSPC: ("no space left on device writing", f"free space or {ELSEWHERE}"),
    errno.EDQUOT: ("disk quota exceeded writing", f"free space or {ELSEWHERE}"),
    errno.EROFS: ("read-only file system: cannot write", f"remount it writable or {ELSEWHERE}"),
    errno.EACCES: ("permission denied:", f"fix its permissions or {ELSEWHERE}"),
    errno.EPERM: ("operation not permitted:", f"fix its permissions or {ELSEWHERE}"),
}


def disk_error_line(error: BaseException) -> str | None:
    """The one line for an OSError the user fixes on their disk, else None."""
    if not isinstance(error, OSError) or error.errno not in DISK_ERRORS:
        return None
    what, fix = DISK_ERRORS[error.errno]
    where = error.filename if error.filename is not None else "(path not known)"
    return f"{what} {os.fsdecode(where)}: {fix}"


def unwritable_results(folder: str | os.PathLike = "results") -> str | None:
    """One line when `folder` (or, before it exists, the nearest folder above it) cannot be
    written, else None. Checked before any job: Snakemake itself would stop with a
    traceback when it removes a job's old outputs on a read-only disk."""
    path = Path(folder)
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if os.access(existing, os.W_OK):
        return None
    read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
    what, fix = DISK_ERRORS[errno.EROFS if read_only else errno.EACCES]
    return f"{what} {existing.absolute()}: {fix}"


def _open_log(path: str | os.PathLike):
    """The job's log file; a disk that refuses it ends the job with one line."""
    try:
        return open(path, "w", buffering=1)  # noqa: SIM115 - job_log closes it
    except OSError as error:
        line = disk_error_line(error)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def _flush_quietly() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a full disk: what was lost is said on the console
            pass


@contextmanager
def _into(log_file) -> Iterator[int]:
    """File descriptors 1 and 2 into the log file; yields a copy of the console's stderr."""
    saved_stdout, saved_stderr = os.dup(1), os.dup(2)
    try:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        yield saved_stderr
    finally:
        _flush_quietly()
        for fd, saved in ((1, saved_stdout), (2, saved_stderr)):
            os.dup2(saved, fd)
            os.close(saved)


def _one_line_for(error: BaseException) -> str | None:
    """The one line for an error the user fixes, else None (a bug: keep the traceback)."""
    if isinstance(error, UserError):
        return str(error)
    return disk_error_line(error)


def _logger(path: str | os.PathLike) -> Callable[[str], None]:
    def log(message: str) -> None:
        try:
            print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)
        except OSError as error:  # the log's own disk is full: say which file
            raise OSError(error.errno, error.strerror, os.fspath(path)) from None
    return log


def _say(line: str, console: int) -> None:
    """The error line in the log (its disk may be the one that failed) and on the console."""
    try:
        sys.stdout.write(f"error: {line}\n")
        sys.stdout.flush()
    except OSError:
        pass
    os.write(console, f"error: {line}\n".encode())


@contextmanager
def job_log(path: str | os.PathLike) -> Iterator[Callable[[str], None]]:
    sys.stdout.flush()
    sys.stderr.flush()
    log_file = _open_log(path)
    try:
        with _into(log_file) as console:
            logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True,
                                format="%(asctime)s %(name)s: %(message)s")
            try:
                yield _logger(path)
            except Exception as error:
                line = _one_line_for(error)
                if line is None:
                    traceback.print_exc()  # into the log; Python prints it again on the console
                    raise
                _say(line, console)
                raise SystemExit(1) from None
    finally:
        try:
            log_file.close()
        except OSError:  # a full disk: the line went to the console all the same
            pass
