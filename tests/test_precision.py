"""Precision and memory layout of the training step: what a GPU user's run computes in."""

import pandas as pd
import pytest
import torch
from conftest import stage_hyperparameters

from expmap.data.batches import to_device
from expmap.train import autocast_dtype, resolve_precision, train_stage


@pytest.fixture(params=[True, False], ids=["native-bf16-cpu", "emulating-cpu"])
def cpu_bf16(request, monkeypatch):
    """PyTorch's check of the processor stubbed: a CPU with AMX, or one without bf16 units."""
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: request.param)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    return request.param


def test_auto_is_bf16_on_a_cpu_that_computes_it_natively_and_fp32_elsewhere(cpu_bf16):
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) == (torch.bfloat16 if cpu_bf16 else None)
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) == torch.bfloat16
    name, why = resolve_precision("auto", cpu)
    assert (name, why) == (("bf16", "auto: this CPU computes bf16 natively (AMX)") if cpu_bf16
                           else ("fp32", "auto: this CPU has no native bf16 (no AMX or "
                                         "AVX-512 BF16)"))
    assert ("emulates it" in resolve_precision("bf16", cpu)[1]) == (not cpu_bf16)


def test_the_job_log_says_what_auto_chose_and_why(cpu_bf16, prepared, tmp_path):
    lines = []
    train_stage(1, stage_hyperparameters(1, precision="auto", epochs=1), prepared, "fold0",
                tmp_path / "stage1.pt", tmp_path / "stage1.csv", tmp_path / "state",
                model={"width": 1 / 32, "weights": None}, log=lines.append)
    expected = ("bf16 forward passes; auto: this CPU computes bf16 natively (AMX)" if cpu_bf16
                else "fp32 forward passes; auto: this CPU has no native bf16")
    assert any(expected in line for line in lines), lines


def test_batches_reach_the_modules_in_channels_last():
    pixels = torch.randint(0, 256, (2, 224, 224, 3), dtype=torch.uint8)
    for flip in (None, torch.tensor([True, False])):
        batch = to_device(pixels, "cpu", flip)
        assert batch.is_contiguous(memory_format=torch.channels_last)
        assert batch.dtype == torch.float32


@pytest.mark.parametrize("precision, forward", [("fp32", "fp32"), ("bf16", "bf16")])
def test_a_stage_trains_in_the_precision_asked_and_says_so(prepared, tmp_path, precision,
                                                           forward):
    """bf16 forward passes (autocast), losses and metrics in fp32 and finite."""
    lines = []
    train_stage(1, stage_hyperparameters(1, precision=precision), prepared, "fold0",
                tmp_path / "stage1.pt", tmp_path / "stage1.csv", tmp_path / "state",
                model={"width": 1 / 32, "weights": None}, log=lines.append)
    assert any(f"{forward} forward passes" in line for line in lines)
    metrics = pd.read_csv(tmp_path / "stage1.csv")
    assert metrics[["loss_total", "train_accuracy", "test_accuracy"]].notna().all().all()


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_under_bf16_the_losses_are_computed_in_fp32(stage):
    from expmap.model import STACK, build_stack
    from expmap.train import HYPERPARAMETERS, STAGES, forward_precision

    hp = HYPERPARAMETERS[stage].from_dict(stage_hyperparameters(stage, precision="bf16"))
    modules = build_stack(STACK[:stage], 3, 1 / 32)
    runner = STAGES[stage](hp, modules, forward_precision("bf16", torch.device("cpu")))
    images = torch.rand(6, 3, 224, 224) * 255
    loss, logits = runner.losses(images, torch.arange(3).repeat(2))
    assert logits.dtype == loss.total.dtype == torch.float32
    assert all(term.dtype == torch.float32 for term in loss.terms.values())
    assert torch.isfinite(loss.total)
