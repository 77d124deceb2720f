"""Which device a job trains on: a GPU no other job of this machine holds, else the CPU; and
how many CPU threads it may use.

Snakemake's `gpu` resource is only a counter: with `--resources gpu=2` it starts two GPU
jobs at once but tells neither which GPU to use. `claim_device` picks one by taking an
exclusive file lock per device (fcntl.flock, released when the job ends, even by a crash).
Devices are the ones torch sees, so CUDA_VISIBLE_DEVICES (set by SLURM, or by hand) limits
them; a lock is named by the GPU's UUID, so jobs that see different subsets still agree.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

LOCK_DIR_VARIABLE = "EXPMAP_GPU_LOCK_DIR"
POLL_SECONDS = 2.0


def default_lock_dir() -> Path:
    """$EXPMAP_GPU_LOCK_DIR, else expmap-gpu-locks in the system's temporary folder."""
    return Path(os.environ.get(LOCK_DIR_VARIABLE)
                or Path(tempfile.gettempdir()) / "expmap-gpu-locks")


@contextmanager
def claim_device(lock_dir: str | os.PathLike | None = None, log=print) -> Iterator[str]:
    """Yield "cuda:<i>" for a visible GPU this job holds until the block ends, or "cpu".

    When every visible GPU is held (by jobs outside Snakemake's count), waits for one."""
    if not torch.cuda.is_available():
        yield "cpu"
        return
    lock_dir = Path(lock_dir or default_lock_dir())
    lock_dir.mkdir(parents=True, exist_ok=True)
    uuids = [str(torch.cuda.get_device_properties(i).uuid)
             for i in range(torch.cuda.device_count())]
    waiting = False
    while True:
        for index, uuid in enumerate(uuids):
            lock = open(lock_dir / f"gpu-{uuid}.lock", "a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            try:
                log(f"device: cuda:{index} (GPU {uuid}, lock {lock.name})")
                yield f"cuda:{index}"
            finally:
                lock.close()  # closing releases the lock
            return
        if not waiting:
            log(f"device: all {len(uuids)} visible GPUs are held by other jobs; waiting")
            waiting = True
        time.sleep(POLL_SECONDS)


def use_threads(asked: int, log=print) -> int:
    """Give torch `asked` threads, but never more than the CPUs this process may run on (its
    affinity: a SLURM allocation, taskset, a container's cpuset), whatever `--cores` said;
    more threads than CPUs only makes them wait on each other."""
    cpus = len(os.sched_getaffinity(0))
    threads = max(1, min(asked, cpus))
    torch.set_num_threads(threads)
    log(f"threads: {threads} (the rule asked {asked}; {cpus} CPUs available to this job)")
    return threads
