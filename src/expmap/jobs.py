"""What every workflow job script shares: its log file, and user errors as one line.

    with job_log(snakemake.log[0]) as log:
        ...  # call expmap, passing `log`

Everything the job writes (print, logging, warnings, tracebacks, torch's own messages) goes
to the log file. An error the user can fix (expmap.errors.UserError) ends the job with its
one line, in the log and on the console, and no traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from expmap.errors import UserError


@contextmanager
def job_log(path: str | os.PathLike) -> Iterator[Callable[[str], None]]:
    sys.stdout.flush()
    sys.stderr.flush()
    saved_stdout, saved_stderr = os.dup(1), os.dup(2)
    with open(path, "w", buffering=1) as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True,
                            format="%(asctime)s %(name)s: %(message)s")

        def log(message: str) -> None:
            print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

        try:
            yield log
        except UserError as error:
            line = f"error: {error}\n"
            sys.stdout.write(line)
            os.write(saved_stderr, line.encode())
            raise SystemExit(1) from None
        except Exception:
            traceback.print_exc()  # into the log; Python prints it again on the console
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, saved in ((1, saved_stdout), (2, saved_stderr)):
                os.dup2(saved, fd)
                os.close(saved)
