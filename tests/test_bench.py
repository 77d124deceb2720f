"""The benchmark scripts run end to end (tiny sizes; no timing is asserted)."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from expmap.train import resolve_precision

STAGE_FIELDS = {"loop_images_per_s", "bare_images_per_s", "ratio", "peak_memory_mb",
                "flops_per_image", "mfu"}


@pytest.fixture(scope="module")
def throughput(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "throughput.json"
    result = subprocess.run([sys.executable, "bench/throughput.py", "--device", "cpu",
                             "--width", "0.03125", "--batch", "8", "--steps", "2",
                             "--rounds", "1", "--json", str(path)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return path, result.stdout


def test_throughput_measures_every_stage_and_writes_its_json(throughput):
    path, stdout = throughput
    result = json.loads(path.read_text())
    assert set(result["stages"]) == {"1", "2", "3"}
    for figures in result["stages"].values():
        assert STAGE_FIELDS <= set(figures)
        assert figures["loop_images_per_s"] > 0 and figures["bare_images_per_s"] > 0
        assert figures["mfu"] is None  # no known peak on a CPU
    assert result["stages"]["1"]["flops_per_image"] > result["stages"]["2"]["flops_per_image"]
    assert result["reader_images_per_s"] > 0
    auto = resolve_precision("auto", torch.device("cpu"))
    assert result["device"] == "cpu" and (result["precision"], result["precision_reason"]) == auto
    assert "reader:" in stdout


def test_throughput_measures_the_other_precision_beside_it_with_the_ratio(throughput):
    path, stdout = throughput
    result = json.loads(path.read_text())
    compared = result["compared"]
    assert {result["precision"], compared["precision"]} == {"bf16", "fp32"}
    for stage, figures in compared["stages"].items():
        assert figures["loop_images_per_s"] > 0
        assert compared["loop_ratio"][stage] == pytest.approx(
            result["stages"][stage]["loop_images_per_s"] / figures["loop_images_per_s"])
    assert f"loop, {result['precision']} over {compared['precision']}: stage 1 " in stdout


def test_table_cost_projects_the_four_benchmarks(throughput):
    path, _ = throughput
    result = subprocess.run([sys.executable, "bench/table_cost.py", str(path)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for name in ("ckplus", "oulu_casia", "rafdb", "affectnet", "whole table", "H100 h",
                 "measured, bf16 h", "measured, fp32 h"):
        assert name in result.stdout
    assert "MFU 40% (assumed: no GPU measurement)" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure without CUDA")
def test_the_gpu_check_fails_loudly_without_cuda():
    result = subprocess.run(["bash", "bench/gpu-check.sh"], cwd=REPO, capture_output=True,
                            text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert result.returncode != 0
    assert "gpu-check: error: torch sees no CUDA device" in result.stderr
