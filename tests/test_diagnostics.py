"""The diagnostics a researcher reads in the metrics and the job log: a collapsed triplet
loss and a constant output are flagged; gradient norms and clipping are what they say."""

import pandas as pd
import pytest
import torch
from test_train import STAGE1, STAGE2, STAGE3, WIDTH
from torch import nn

from expmap.train import clip_gradients, make_optimizer, train_stage
from expmap.train.diagnostics import collapse_warnings

HEALTHY = {"loss_h": 0.03, "active_h": 0.2, "spread_h": 0.13, "spread_mask": 0.06}


def test_healthy_epoch_has_no_warning():
    assert collapse_warnings(HEALTHY, {"h": ("alpha", 0.2)}) == []


def test_loss_at_its_margin_is_flagged():
    row = {**HEALTHY, "loss_h": 0.2009, "active_h": 1.0}
    [warning] = collapse_warnings(row, {"h": ("alpha", 0.2)})
    assert "L_h = 0.2009 sits at its margin alpha = 0.2" in warning and "100%" in warning


def test_constant_output_is_flagged():
    row = {**HEALTHY, "spread_pattern": 7.7e-7}
    [warning] = collapse_warnings(row, {})
    assert "pattern map P is constant" in warning


def test_clipping_per_module_or_per_model():
    a, b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    parts = {"model": {"a": a, "b": b}}

    def set_grads():
        a.weight.grad = torch.tensor([[3.0]])
        b.weight.grad = torch.tensor([[4.0]])

    set_grads()
    norms = clip_gradients(parts, 1.0, "module")
    assert norms["grad_model_a"].item() == pytest.approx(3.0)  # before clipping
    assert a.weight.grad.item() == pytest.approx(1.0, rel=1e-5)
    assert b.weight.grad.item() == pytest.approx(1.0, rel=1e-5)
    set_grads()
    clip_gradients(parts, 1.0, "model")  # the whole model's norm is 5: both scaled by 1/5
    assert a.weight.grad.item() == pytest.approx(0.6, rel=1e-5)
    assert b.weight.grad.item() == pytest.approx(0.8, rel=1e-5)


def test_adam_is_adamw_with_the_groups_learning_rates():
    from expmap.train import Stage2Hyperparameters

    hp = Stage2Hyperparameters.from_dict({**STAGE2, "epochs": 1, "optimizer": "adam",
                                          "emr_lr": 0.5})
    groups = [{"params": [nn.Parameter(torch.ones(1))], "base_lr": hp.lr},
              {"params": [nn.Parameter(torch.ones(1))], "lr": 0.5, "base_lr": 0.5}]
    optimizer = make_optimizer(hp, groups)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["lr"] for g in optimizer.param_groups] == [hp.lr, 0.5]


def run_stage(stage, hp, prepared, out, init=None):
    lines = []
    train_stage(stage, hp, prepared, "fold0", out / f"stage{stage}.pt", out / f"stage{stage}.csv",
                out / f"state{stage}", init=init,
                model={"width": WIDTH, "weights": None} if stage == 1 else None,
                log=lines.append)
    return out / f"stage{stage}.pt", pd.read_csv(out / f"stage{stage}.csv"), lines


@pytest.fixture(scope="module")
def stage1(prepared, tmp_path_factory):
    return run_stage(1, {**STAGE1, "epochs": 1}, prepared, tmp_path_factory.mktemp("s1"))[0]


def test_the_paper_s_emr_collapses_and_the_log_says_so(prepared, stage1, tmp_path):
    """The paper's formulation: PyTorch's RNN init, squared distances, hardest triplets.
    h barely varies, so L_h sits at alpha: the log warns and the metrics show why."""
    _, metrics, lines = run_stage(2, {**STAGE2, "epochs": 1}, prepared, tmp_path, init=stage1)
    row = metrics.iloc[-1]
    assert row["loss_h"] == pytest.approx(0.2, rel=0.01)
    assert row["paper_h"] == pytest.approx(row["loss_h"])  # the paper's definition in use
    assert any("WARNING" in line and "sits at its margin alpha" in line for line in lines)
    for column in ("active_h", "spread_h", "spread_mask", "grad_efe_classifier", "grad_emr_rnn",
                   "grad_term_efe", "grad_term_mask", "grad_term_h"):
        assert column in metrics.columns and metrics[column].notna().all(), column


def test_the_paper_s_decoder_is_flat_and_the_log_says_so(prepared, stage1, tmp_path):
    stage2, _, _ = run_stage(2, {**STAGE2, "epochs": 1}, prepared, tmp_path, init=stage1)
    _, metrics, lines = run_stage(3, {**STAGE3, "epochs": 1}, prepared, tmp_path, init=stage2)
    assert metrics["spread_pattern"].iloc[-1] < 1e-3
    assert any("WARNING" in line and "pattern map P is constant" in line for line in lines)
    for column in ("active_embed", "active_sim", "paper_embed", "paper_sim", "spread_embedding",
                   "grad_epmg_decoder", "grad_term_pattern", "grad_term_sim"):
        assert column in metrics.columns and metrics[column].notna().all(), column


def test_a_stage_no_better_than_guessing_says_so_and_tells_evaluate(prepared, stage1, tmp_path):
    """One step at a learning rate too small to move anything: the stage ends at chance,
    the job log says so with what was seen and what to try, and the warning travels in the
    checkpoints to the fold's summary.json."""
    path, metrics, lines = run_stage(1, {**STAGE1, "epochs": 1, "lr": 1e-12}, prepared,
                                     tmp_path)
    [warning] = [line for line in lines if "WARNING" in line and "learned nothing" in line]
    assert "stage 1 learned nothing: training accuracy" in warning
    assert "(chance 33.3%)" in warning and "ln 3 = 1.099" in warning
    assert f"after {len(metrics) * 3} optimizer steps" in warning  # 24 images, batches of 8
    assert "Try more steps" in warning

    stage2, _, _ = run_stage(2, {**STAGE2, "epochs": 1}, prepared, tmp_path, init=path)
    stage3, _, _ = run_stage(3, {**STAGE3, "epochs": 1}, prepared, tmp_path, init=stage2)
    from expmap.evaluate import evaluate_fold

    summary = evaluate_fold(prepared, "fold0", {"stage1": path, "stage2": stage2,
                                                "stage3": stage3},
                            tmp_path / "predictions.csv", tmp_path / "summary.json",
                            log=lambda line: None)
    assert summary["learned_nothing"]["stage1"].startswith("stage 1 learned nothing")


def test_a_learning_stage_has_no_such_warning():
    from expmap.train.diagnostics import learned_nothing

    assert learned_nothing(1, {"train_accuracy": 0.6, "loss_efe": 1.1}, 7, 300) is None
    assert learned_nothing(1, {"train_accuracy": 0.6, "loss_efe": 1.9}, 7, 300) is not None
    assert learned_nothing(3, {"train_accuracy": 0.18, "loss_classify": 1.2}, 7, 300) is not None
