"""Preemption: a training job killed with SIGKILL, started again, continues from its last
finished epoch and on a CPU ends bit-identical to a run that was never interrupted.

A SLURM requeue (preemption, node failure, `scontrol requeue`) is the same thing from the
job's point of view: SLURM kills the job's processes (SIGTERM, then SIGKILL after KillWait)
and later starts the same job script again with the same inputs, outputs and params. The
job finds its resumable state in `state_stageN/last.pt` (not a declared output, so neither
Snakemake nor the SLURM executor deletes it when the job fails) and goes on from there. So
killing a real process with SIGKILL and starting it again tests exactly that path.

Every process here is real: the training runs in a child Python process (or under a real
Snakemake), is SIGKILLed by pid (or process group), and is started afresh.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO, TINY, make_prepared, snakemake, snakemake_command, stage_hyperparameters

from expmap.checkpoints import load_checkpoint

WIDTH = 1 / 32
EPOCHS = 5
HP = stage_hyperparameters(1, epochs=EPOCHS, shift=8)  # random moves resume too
TIMING = ["images_per_second", "seconds"]

# The job a child process runs: one stage-1 training of fold0 of the store, one thread.
# With EXPMAP_TEST_STALL_SAVE=N the N-th save of the resumable state writes half of its
# bytes to the temporary file, says so in a marker file and hangs: the parent kills it there,
# exactly as a SIGKILL in the middle of torch.save would leave things.
CHILD = r"""
import io, json, os, sys, time
import torch
from expmap.train import train_stage

prepared, out, hp, model = sys.argv[1], sys.argv[2], *map(json.loads, sys.argv[3:5])
stall_at = int(os.environ.get("EXPMAP_TEST_STALL_SAVE", "0"))
saves = 0
real_save = torch.save

def save(obj, file, *args, **kwargs):
    global saves
    if isinstance(obj, dict) and "optimizer" in obj:  # the resumable state, not the result
        saves += 1
        if saves == stall_at:
            buffer = io.BytesIO()
            real_save(obj, buffer)
            data = buffer.getvalue()
            file.write(data[: len(data) // 2])
            file.flush()
            os.fsync(file.fileno())
            open(os.path.join(out, "stalled"), "w").close()
            time.sleep(600)
    return real_save(obj, file, *args, **kwargs)

torch.save = save
train_stage(1, hp, prepared, "fold0", os.path.join(out, "stage1.pt"),
            os.path.join(out, "stage1.csv"), os.path.join(out, "state"),
            model=model, threads=1, log=print)
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Epochs of a few tenths of a second: 5 steps of up to 8 images, 18 test images."""
    return make_prepared(tmp_path_factory.mktemp("preempt") / "tiny" / "prepared",
                         subjects=6, per_class=3)


def start(store: Path, out: Path, stall_save: int = 0) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EXPMAP_TEST_STALL_SAVE": str(stall_save),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store), str(out), json.dumps(HP),
         json.dumps({"width": WIDTH, "weights": None})],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        cwd=Path(__file__).parent)


def inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0,
             replacing: int | None = None) -> None:
    """Until `path` exists (and, given `replacing`, is no longer that inode: the atomic save
    renames a new file onto it)."""
    deadline = time.monotonic() + timeout
    while inode(path) in (None, replacing):
        if process.poll() is not None:
            raise AssertionError(f"process ended before {path} appeared:\n"
                                 + process.stdout.read())
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.005)


def kill(process: subprocess.Popen) -> str:
    os.kill(process.pid, signal.SIGKILL)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    return output


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def whole(store, tmp_path_factory):
    """The uninterrupted run, in a child process like the others."""
    out = tmp_path_factory.mktemp("whole")
    finish(start(store, out))
    return out


def assert_same_result(whole: Path, resumed: Path) -> None:
    a, b = load_checkpoint(whole / "stage1.pt"), load_checkpoint(resumed / "stage1.pt")
    assert a["modules"].keys() == b["modules"].keys()
    for module in a["modules"]:
        state_a, state_b = a["modules"][module], b["modules"][module]
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), f"{module}.{key} differs"
    metrics_a = pd.read_csv(whole / "stage1.csv").drop(columns=TIMING)
    metrics_b = pd.read_csv(resumed / "stage1.csv").drop(columns=TIMING)
    assert list(metrics_a["epoch"]) == list(range(1, EPOCHS + 1))
    pd.testing.assert_frame_equal(metrics_a, metrics_b, check_exact=True)
    assert not (resumed / "state").exists()  # the resumable state goes once the stage ends


def test_sigkill_while_the_state_is_written_keeps_the_last_one(store, whole, tmp_path):
    """Killed with the second epoch's state half written to its temporary file: last.pt
    still holds the first epoch's state, loads, and the run resumes from epoch 1."""
    out = tmp_path / "killed"
    process = start(store, out, stall_save=2)
    wait_for(out / "stalled", process)
    kill(process)
    temporary = [p for p in (out / "state").iterdir() if p.name != "last.pt"]
    assert len(temporary) == 1 and temporary[0].name.startswith(".last.pt.tmp"), temporary
    assert torch.load(out / "state" / "last.pt", weights_only=True)["epoch"] == 1
    assert not (out / "stage1.pt").exists()

    output = finish(start(store, out))
    assert "fold0 stage 1: resuming after epoch 1 from" in output, output
    assert_same_result(whole, out)


def test_sigkill_after_an_epoch_twice_resumes_bit_identical(store, whole, tmp_path):
    """Killed as soon as the first epoch's state appears, started again and killed once more
    after its next epoch (preempted, requeued, preempted again), then run to the end: each
    start continues from the last state, and the result is the unbroken run's, bit for bit."""
    out = tmp_path / "killed"
    process = start(store, out)
    wait_for(out / "state" / "last.pt", process)
    kill(process)
    assert not (out / "stage1.pt").exists(), "killed too late: the stage had finished"
    first = torch.load(out / "state" / "last.pt", weights_only=True)["epoch"]
    assert 1 <= first < EPOCHS
    process = start(store, out)
    wait_for(out / "state" / "last.pt", process, replacing=inode(out / "state" / "last.pt"))
    kill(process)
    second = torch.load(out / "state" / "last.pt", weights_only=True)["epoch"]
    assert first < second < EPOCHS  # the second start went on from the first's state
    output = finish(start(store, out))
    assert f"fold0 stage 1: resuming after epoch {second} from" in output, output
    assert_same_result(whole, out)


# ---------------------------------------------------------------- under Snakemake

RESUME_OVERLAY = """\
datasets:
  synthetic:
    run_folds: [fold0]
    train:
      stage1: {epochs: 8}
"""


@pytest.mark.slow
def test_snakemake_killed_during_train_stage1_resumes_on_rerun(tmp_path):
    """The whole Snakemake process group is SIGKILLed while train_stage1 runs (as when the
    machine or the session goes); the rerun (after `snakemake --unlock`, which a killed
    Snakemake needs) runs the stage-1 job again, which resumes from its state."""
    (tmp_path / "resume.yaml").write_text(RESUME_OVERLAY)
    run = tmp_path / "results/synthetic/default/fold0"
    target = "results/synthetic/default/fold0/stage1.pt"
    state = run / "state_stage1" / "last.pt"
    overlays = (TINY, tmp_path / "resume.yaml")
    first = subprocess.Popen(snakemake_command(tmp_path, target, overlays=overlays), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        wait_for(state, first, timeout=300)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # snakemake and the job it started
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    assert not (run / "stage1.pt").exists(), "killed too late: stage 1 had finished"
    done = torch.load(state, weights_only=True)["epoch"]
    assert 1 <= done < 8

    assert snakemake(tmp_path, "--unlock", overlays=overlays).returncode == 0
    second = snakemake(tmp_path, target, overlays=overlays)
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]
    log = (tmp_path / "results/synthetic/logs/default/fold0/train_stage1.log").read_text()
    assert f"synthetic fold0 stage 1: resuming after epoch {done} from" in log, log
    assert "epoch 8/8" in log
    assert load_checkpoint(run / "stage1.pt")["stage"] == 1
    assert len(pd.read_csv(run / "stage1_metrics.csv")) == 8
    assert not (run / "state_stage1").exists()
