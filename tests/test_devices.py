"""claim_device: one GPU per job by a lock per device, the CPU when torch sees none."""

import threading
import uuid

import pytest
import torch

from expmap import devices


class Properties:
    def __init__(self, index):
        self.uuid = uuid.UUID(int=index)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", Properties)
    monkeypatch.setattr(devices, "POLL_SECONDS", 0.01)


def quiet(line):
    pass


def test_cpu_when_torch_sees_no_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with devices.claim_device(tmp_path, log=quiet) as device:
        assert device == "cpu"
    assert not any(tmp_path.iterdir())


def test_concurrent_jobs_get_different_gpus(two_gpus, tmp_path):
    with devices.claim_device(tmp_path, log=quiet) as first, \
            devices.claim_device(tmp_path, log=quiet) as second:
        assert {first, second} == {"cuda:0", "cuda:1"}
    with devices.claim_device(tmp_path, log=quiet) as again:
        assert again == "cuda:0"  # released when the block ended


def test_a_job_waits_while_every_gpu_is_held(two_gpus, tmp_path):
    claimed = []
    with devices.claim_device(tmp_path, log=quiet), devices.claim_device(tmp_path, log=quiet):
        def third_job():
            with devices.claim_device(tmp_path, log=quiet) as device:
                claimed.append(device)

        waiting = threading.Thread(target=third_job)
        waiting.start()
        waiting.join(timeout=0.3)
        assert waiting.is_alive() and claimed == []
    waiting.join(timeout=10)
    assert claimed in (["cuda:0"], ["cuda:1"])  # whichever was released first


def test_locks_name_the_physical_gpu(monkeypatch, two_gpus, tmp_path):
    """Two jobs that each see one GPU as cuda:0 (CUDA_VISIBLE_DEVICES) do not collide."""
    with devices.claim_device(tmp_path, log=quiet) as first:
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "get_device_properties",
                            lambda index: Properties(index + 1))
        with devices.claim_device(tmp_path, log=quiet) as second:
            assert first == second == "cuda:0"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"gpu-{uuid.UUID(int=0)}.lock", f"gpu-{uuid.UUID(int=1)}.lock"]


def test_the_lock_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(devices.LOCK_DIR_VARIABLE, str(tmp_path))
    assert devices.default_lock_dir() == tmp_path


def test_a_job_never_asks_for_more_threads_than_its_cpus(monkeypatch):
    """--cores 8 on a 2-CPU machine gives a rule 4 threads: torch must still get 2."""
    before = torch.get_num_threads()
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 1})
    lines = []
    try:
        assert devices.use_threads(4, lines.append) == 2
        assert torch.get_num_threads() == 2
        assert devices.use_threads(1, lines.append) == 1
    finally:
        torch.set_num_threads(before)
    assert lines[0] == "threads: 2 (the rule asked 4; 2 CPUs available to this job)"
