"""The training stages: samplers, freezing, resume, and the stops a user relies on."""

from contextlib import nullcontext

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PAPER, stage_hyperparameters

from expmap.checkpoints import build_modules, load_checkpoint
from expmap.data.batches import Augmentation, augmented
from expmap.data.sampling import BalancedBatchSampler, ShuffledBatchSampler, TripletBatchSampler
from expmap.data.store import PreparedDataset
from expmap.evaluate import evaluate_fold
from expmap.interpret import weak_maps_warnings
from expmap.losses import grayscale
from expmap.model import build_stack
from expmap.prototypes import expression_prototypes
from expmap.train import (
    STAGES,
    Stage1Hyperparameters,
    Stage3Hyperparameters,
    TrainingError,
    train_stage,
)
from expmap.train.feature_cache import FeatureCache
from expmap.train.hyperparameters import min_steps_factor
from expmap.train.initialisation import initial_modules
from expmap.train.stages import pattern_targets

WIDTH = 1 / 32
# The paper's formulation, two epochs (stage_hyperparameters: config.yaml plus a tiny run's)
STAGE1, STAGE2, STAGE3 = (stage_hyperparameters(stage, PAPER, epochs=2) for stage in (1, 2, 3))


def run(stage, hp, prepared, out, init=None, log=lambda line: None, feature_cache_mb=0,
        batch_norm=False):
    model = {"width": WIDTH, "weights": None, "batch_norm": batch_norm}
    train_stage(stage, hp, prepared, "fold0", out / f"stage{stage}.pt",
                out / f"stage{stage}.csv", out / f"state{stage}", init=init,
                model=model if stage == 1 else None, log=log, feature_cache_mb=feature_cache_mb)
    return out / f"stage{stage}.pt"


@pytest.fixture(scope="module")
def stage1(prepared, tmp_path_factory):
    return run(1, STAGE1, prepared, tmp_path_factory.mktemp("stage1"))


def test_shuffled_sampler_covers_every_sample_once():
    sampler = ShuffledBatchSampler(np.arange(10, 33), 5, seed=1)
    sampler.set_epoch(4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    assert sorted(np.concatenate(batches)) == list(range(10, 33))
    sampler.set_epoch(5)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, sampler))


def test_triplet_sampler_draws_t_of_each_class():
    labels = np.array([0] * 10 + [1] * 2 + [2] * 7)
    rows = np.arange(100, 119)
    sampler = TripletBatchSampler(rows, labels, t=4, iterations=6, seed=0)
    batches = list(sampler)
    assert len(batches) == 6
    for batch in batches:
        batch_labels = labels[batch - 100]
        assert [int((batch_labels == c).sum()) for c in range(3)] == [4, 4, 4]
        assert len(set(batch[batch_labels == 0])) == 4  # without replacement where possible
    sampler.set_epoch(0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, sampler))  # seeded


def test_stages_write_checkpoints_and_metrics(prepared, stage1, tmp_path):
    stage2 = run(2, STAGE2, prepared, tmp_path, init=stage1)
    stage3 = run(3, STAGE3, prepared, tmp_path, init=stage2)
    metrics = pd.read_csv(tmp_path / "stage3.csv")
    assert list(metrics["epoch"]) == [1, 2]
    for column in ["loss_total", "loss_embed", "loss_classify", "loss_pattern", "loss_sim",
                   "train_accuracy", "test_accuracy", "images_per_second"]:
        assert metrics[column].notna().all(), column
    assert set(pd.read_csv(tmp_path / "stage2.csv").columns) >= {"loss_efe", "loss_mask", "loss_h"}
    assert not (tmp_path / "state3").exists()  # the resumable state goes once the stage ends
    lines = []
    summary = evaluate_fold(prepared, "fold0", {"stage1": stage1, "stage2": stage2,
                                                "stage3": stage3},
                            tmp_path / "predictions.csv", tmp_path / "summary.json",
                            maps=tmp_path / "maps.npz", log=lines.append)
    assert summary["n_test"] == 12 and set(summary["heads"]) == {"efe_stage1", "efe_stage2",
                                                                  "epmg"}
    measures = summary["interpretability"]
    for measure in ("class_difference_correlation", "class_difference_ratio",
                    "detail_correlation"):
        assert isinstance(measures[measure], float), measure
    assert len([line for line in lines if "WARNING: pattern maps of fold0" in line]) == len(
        weak_maps_warnings(measures))
    with np.load(tmp_path / "maps.npz") as maps:
        assert maps["prototypes"].shape == (3, 224, 224)
        assert list(maps["prototype_counts"]) == [8, 8, 8]  # 4 training subjects x 2
        assert list(maps["test_counts"]) == [4, 4, 4]
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert len(predictions) == 12 and predictions["subject"].nunique() == 2
    assert abs(predictions.filter(like="prob_").sum(axis=1) - 1).max() < 1e-5
    assert summary["heads"]["epmg"]["accuracy"] == pytest.approx(
        (predictions["pred_epmg"] == predictions["label"]).mean())


def test_prototypes_are_the_training_images_class_mean_grey_faces(prepared):
    data = PreparedDataset(prepared).fold("fold0")
    prototypes, counts = expression_prototypes(data.images, data.labels, data.train_index,
                                               data.num_classes)
    assert prototypes.shape == (3, 1, 224, 224) and counts.tolist() == [8, 8, 8]
    for c in range(3):  # class c's bright block (grey 230) in column band c
        rows = data.train_index[data.labels[data.train_index] == c]
        grey = data.images[rows].astype(float) @ [0.299, 0.587, 0.114] / 255
        assert np.allclose(prototypes[c, 0].numpy(), grey.mean(0), atol=1e-5)
        assert prototypes[c, 0, 100, 75 * c + 30] == pytest.approx(230 / 255, abs=1e-5)


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_freezing_leaves_exactly_the_frozen_parameters(prepared, stage1, tmp_path):
    hp = {**STAGE2, "frozen_convs": 5, "epochs": 1, "iterations": 1}
    before = load_checkpoint(stage1)["modules"]["efe"]
    after = load_checkpoint(run(2, hp, prepared, tmp_path, init=stage1))["modules"]["efe"]
    first_five = {f"features.{i}.{kind}" for i in (0, 2, 5, 7, 10) for kind in ("weight", "bias")}
    buffers = {"input_mean", "input_std"}
    assert changed(before, after) == set(before) - first_five - buffers

    stage2 = tmp_path / "stage2.pt"
    stage3 = load_checkpoint(run(3, {**STAGE3, "epochs": 1, "iterations": 1}, prepared,
                                 tmp_path, init=stage2))
    stage2 = load_checkpoint(stage2)
    for module in ("efe", "emr"):
        assert not changed(stage2["modules"][module], stage3["modules"][module])


def test_batch_norms_train_with_their_convs_and_stay_frozen_with_them(prepared, tmp_path):
    """From scratch with batch norms: stage 2's frozen convs keep their norms' weights and
    statistics too (what they compute is kept and read back), the others train; stage 3
    leaves the EFE as it was, and every checkpoint rebuilds the same model."""
    stage1 = run(1, STAGE1, prepared, tmp_path, batch_norm=True)
    before = load_checkpoint(stage1)
    assert before["batch_norm"] and isinstance(build_modules(before)["efe"].features[1],
                                               torch.nn.BatchNorm2d)
    hp = {**STAGE2, "frozen_convs": 5, "epochs": 1, "iterations": 1}
    stage2 = run(2, hp, prepared, tmp_path, init=stage1)
    after = load_checkpoint(stage2)
    # torchvision's vgg16_bn layout: conv, norm, ReLU (+ max-pool after convs 2, 4, 7, 10)
    first_five = {f"features.{i + offset}.{kind}" for i in (0, 3, 7, 10, 14)
                  for offset, kinds in ((0, ("weight", "bias")),
                                        (1, ("weight", "bias", "running_mean", "running_var",
                                             "num_batches_tracked")))
                  for kind in kinds}
    assert first_five <= set(before["modules"]["efe"])
    assert changed(before["modules"]["efe"], after["modules"]["efe"]) == (
        set(before["modules"]["efe"]) - first_five - {"input_mean", "input_std"})
    stage3 = load_checkpoint(run(3, {**STAGE3, "epochs": 1, "iterations": 1}, prepared,
                                 tmp_path, init=stage2))
    assert not changed(after["modules"]["efe"], stage3["modules"]["efe"])
    assert stage3["batch_norm"]


class Interrupt(Exception):
    pass


def interrupt_after(text):
    def log(line):
        if text in line:
            raise Interrupt(line)
    return log


@pytest.mark.parametrize("stage", [1, 2])
def test_resume_equals_uninterrupted(prepared, stage1, tmp_path, stage):
    hp = {**(STAGE1 if stage == 1 else STAGE2), "epochs": 3}
    init = stage1 if stage == 2 else None
    whole = load_checkpoint(run(stage, hp, prepared, tmp_path / "whole", init=init))
    broken = tmp_path / "broken"
    with pytest.raises(Interrupt):  # mid-run, after epoch 2's log line, before its state
        run(stage, hp, prepared, broken, init=init, log=interrupt_after("epoch 2/3"))
    assert (broken / f"state{stage}" / "last.pt").exists()
    assert not (broken / f"stage{stage}.pt").exists()
    lines = []
    resumed = load_checkpoint(run(stage, hp, prepared, broken, init=init, log=lines.append))
    assert any("resuming after epoch 1" in line for line in lines)
    for module in whole["modules"]:
        assert not changed(whole["modules"][module], resumed["modules"][module])
    columns = ["epoch", "lr", "loss_total", "train_accuracy", "test_accuracy"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "whole" / f"stage{stage}.csv")[columns],
                                  pd.read_csv(broken / f"stage{stage}.csv")[columns])


def test_changed_hyperparameters_discard_the_old_state(prepared, tmp_path):
    with pytest.raises(Interrupt):
        run(1, STAGE1, prepared, tmp_path, log=interrupt_after("epoch 2/2"))
    lines = []
    run(1, {**STAGE1, "lr": 5e-3}, prepared, tmp_path, log=lines.append)
    assert any("discarding" in line for line in lines)
    assert not any("resuming" in line for line in lines)


def test_nonfinite_loss_stops_with_one_line_and_keeps_checkpoints(prepared, stage1, tmp_path):
    out = tmp_path
    (out / "stage2.pt").write_bytes(b"earlier result")
    with pytest.raises(TrainingError) as error:
        run(2, {**STAGE2, "lr": 1e30, "clipping": 1e30, "lambda1": 1e30}, prepared, out,
            init=stage1)
    message = str(error.value)
    assert "\n" not in message
    assert "prepared fold0 stage 2" in message or "fold0 stage 2" in message
    assert "non-finite" in message and "epoch 1" in message and "step" in message
    assert (out / "stage2.pt").read_bytes() == b"earlier result"


def test_unknown_hyperparameter_is_refused(prepared, tmp_path):
    with pytest.raises(TrainingError, match=r"unknown hyperparameter\(s\) \['lamda4'\]"):
        run(3, {**STAGE3, "lamda4": 1.0}, prepared, tmp_path, init=tmp_path / "x.pt")


def test_validation_subjects_choose_an_epoch_and_never_train(prepared, stage1, tmp_path):
    hp = {**STAGE3, "epochs": 3, "validation_fraction": 0.25}
    lines = []
    stage2 = run(2, {**STAGE2, "epochs": 1}, prepared, tmp_path, init=stage1)
    stage3 = run(3, hp, prepared, tmp_path, init=stage2, log=lines.append)
    # 4 training subjects in fold0 of the tiny store: one is held out (6 images)
    assert any("18 training, 6 validation and 12 test images" in line for line in lines)
    metrics = pd.read_csv(tmp_path / "stage3.csv")
    chosen = load_checkpoint(stage3)["selected_on_validation"]
    assert chosen["epoch"] == int(metrics["validation_accuracy"].idxmax()) + 1
    summary = evaluate_fold(prepared, "fold0", {"stage1": stage1, "stage2": stage2,
                                                "stage3": stage3},
                            tmp_path / "predictions.csv", tmp_path / "summary.json")
    assert summary["heads"]["epmg_selected_on_validation"]["epoch"] == chosen["epoch"]


def test_a_damaged_resumable_state_is_discarded_with_a_line(prepared, tmp_path):
    (tmp_path / "state1").mkdir()
    (tmp_path / "state1" / "last.pt").write_bytes(b"copied halfway")
    lines = []
    run(1, STAGE1, prepared, tmp_path, log=lines.append)
    assert any("discarding unreadable" in line for line in lines)
    assert (tmp_path / "stage1.pt").exists()


def test_evaluation_reads_the_epmg_checkpoint_whatever_the_order_of_heads(
        prepared, stage1, tmp_path, monkeypatch):
    """The epoch chosen on validation belongs to the stage-3 checkpoint: evaluation must
    find it there, not in whichever checkpoint its loop over heads happened to read last."""
    import expmap.evaluate as evaluate

    stage2 = run(2, {**STAGE2, "epochs": 1}, prepared, tmp_path, init=stage1)
    stage3 = run(3, {**STAGE3, "epochs": 2, "validation_fraction": 0.25}, prepared, tmp_path,
                 init=stage2)
    monkeypatch.setattr(evaluate, "HEADS", {"epmg": "stage3", "efe_stage2": "stage2",
                                            "efe_stage1": "stage1"})
    summary = evaluate.evaluate_fold(prepared, "fold0", {"stage1": stage1, "stage2": stage2,
                                                         "stage3": stage3},
                                     tmp_path / "predictions.csv", tmp_path / "summary.json")
    assert "epmg_selected_on_validation" in summary["heads"]


def test_balanced_sampler_draws_every_class_equally_often():
    """AffectNet-like imbalance (9:1): the balanced sampler's epoch holds as many images as
    the training set, half of each class, all of the small class's images among them."""
    labels = np.array([0] * 90 + [1] * 10)
    rows = np.arange(100, 200)
    sampler = BalancedBatchSampler(rows, labels, batch_size=16, seed=0)
    sampler.set_epoch(3)
    batches = list(sampler)
    drawn = np.concatenate(batches)
    assert len(batches) == len(sampler) == 7 and len(drawn) == 100
    assert list(np.bincount(labels[drawn - 100])) == [50, 50]
    assert set(drawn[labels[drawn - 100] == 1]) == set(range(190, 200))
    sampler.set_epoch(3)
    assert all(np.array_equal(a, b) for a, b in zip(batches, sampler))  # seeded


def test_stage1_takes_the_sampler_the_config_names():
    from expmap.train import HYPERPARAMETERS, Stage1

    labels = np.array([0, 0, 0, 1])
    for name, kind in (("shuffle", ShuffledBatchSampler), ("balanced", BalancedBatchSampler)):
        hp = HYPERPARAMETERS[1].from_dict(stage_hyperparameters(1, sampler=name))
        sampler = Stage1.sampler(hp, np.arange(4), labels)
        assert type(sampler) is kind


def test_rounds_repeat_the_stages_each_from_the_last_checkpoint(prepared, tmp_path):
    """rounds = 2 of two-epoch stages: each round trains one epoch of every stage; round 2's
    stage 1 starts from round 1's stage 3, keeps its EMR and EPMG, and every stage's metrics
    hold both rounds' epochs."""
    hps = {stage: {**hp, "rounds": 2} for stage, hp in ((1, STAGE1), (2, STAGE2), (3, STAGE3))}
    init, lines = None, []
    for round_ in (1, 2):
        out = tmp_path / f"round{round_}"
        for stage in (1, 2, 3):
            train_stage(stage, hps[stage], prepared, "fold0", out / f"stage{stage}.pt",
                        out / f"stage{stage}.csv", out / f"state{stage}", init=init,
                        model={"width": WIDTH, "weights": None}, log=lines.append,
                        round_=round_)
            init = out / f"stage{stage}.pt"
        assert [list(pd.read_csv(out / f"stage{s}.csv")["epoch"]) for s in (1, 2, 3)] == [
            list(range(1, round_ + 1))] * 3
    first, second = (load_checkpoint(tmp_path / f"round{r}" / "stage3.pt") for r in (1, 2))
    stage1 = load_checkpoint(tmp_path / "round2" / "stage1.pt")
    assert set(stage1["modules"]) == {"efe", "emr", "epmg"}
    for name in ("emr", "epmg"):  # carried through stage 1 unchanged
        for key, value in first["modules"][name].items():
            assert torch.equal(stage1["modules"][name][key], value), (name, key)
    assert not torch.equal(second["modules"]["epmg"]["decoder.0.weight"],
                           first["modules"]["epmg"]["decoder.0.weight"])
    assert any("stage 1 round 2/2: epoch 2/2" in line for line in lines)


def test_a_round_checks_the_checkpoint_it_starts_from(prepared, stage1, tmp_path):
    with pytest.raises(TrainingError, match="stage 1 of round 2 needs a stage-3 checkpoint, "
                                            "got a stage-1 one"):
        train_stage(1, {**STAGE1, "rounds": 2}, prepared, "fold0", tmp_path / "s.pt",
                    tmp_path / "s.csv", tmp_path / "state", init=stage1, round_=2)


def test_the_feature_cache_computes_each_image_and_view_once():
    computed = []

    def features(images):
        computed.append(len(images))
        return images[:, :2] * 2

    cache = FeatureCache(rows=5, views=2, shape=(2,), device=torch.device("cpu"))
    images = torch.arange(9.0).view(3, 3)
    first = cache(features, images, np.array([0, 1, 1]), torch.tensor([False, False, True]))
    again = cache(features, images.flip(0), np.array([1, 1, 0]),
                  torch.tensor([True, False, False]))
    assert computed == [3]  # the second batch held the same three (row, view) pairs
    assert torch.equal(first, images[:, :2] * 2) and torch.equal(again, first.flip(0))
    cache(features, images[:2], np.array([4, 1]), torch.tensor([False, False]))
    assert computed == [3, 1]


@pytest.mark.parametrize("stage", [2, 3])
def test_kept_frozen_activations_train_as_when_recomputed(prepared, stage1, tmp_path, stage):
    """Stage 2 (the paper's 13 frozen convs) and stage 3 (the whole EFE frozen) keep what
    their frozen convs compute; the run is the one that recomputes it, to float rounding."""
    init = stage1 if stage == 2 else run(2, STAGE2, prepared, tmp_path, init=stage1)
    hp = {2: STAGE2, 3: STAGE3}[stage]
    assert hp["flip"] and (stage == 3 or hp["frozen_convs"] == 13)
    logs = {"kept": [], "recomputed": []}
    for name, megabytes in (("kept", 64), ("recomputed", 0)):
        (tmp_path / name).mkdir()
        run(stage, hp, prepared, tmp_path / name, init=init, log=logs[name].append,
            feature_cache_mb=megabytes)
    assert any("conv 1..13) are computed once per image and view and kept" in line
               for line in logs["kept"])
    assert any("recomputed at every step: keeping them would take" in line
               for line in logs["recomputed"])
    kept, recomputed = (pd.read_csv(tmp_path / name / f"stage{stage}.csv")
                        for name in ("kept", "recomputed"))
    for column in ("loss_total", "train_accuracy", "test_accuracy"):
        assert kept[column].to_numpy() == pytest.approx(recomputed[column].to_numpy(),
                                                        rel=1e-4), column


@pytest.mark.parametrize("stage, error, advice", [
    (1, RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate "
                     "memory: you tried to allocate 40000000000 bytes."), "lower batch_size"),
    (2, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
                               "total capacity of 23.6 GiB\nof which ..."),
     "lower t (images per class in a step) or feature_cache_mb (now 64)"),
])
def test_running_out_of_memory_is_one_line_that_says_what_to_lower(
        prepared, stage1, tmp_path, monkeypatch, stage, error, advice):
    def exhausted(*args, **kwargs):
        raise error

    monkeypatch.setattr(STAGES[stage], "losses", exhausted)
    with pytest.raises(TrainingError) as raised:
        run(stage, {1: STAGE1, 2: STAGE2}[stage], prepared, tmp_path,
            init=stage1 if stage == 2 else None, feature_cache_mb=64)
    message = str(raised.value)
    assert "\n" not in message
    assert f"fold0 stage {stage}: out of memory on cpu (" in message
    assert str(error).split("\n")[0] in message and advice in message
    assert not (tmp_path / f"stage{stage}.pt").exists()


def test_class_mean_target_is_the_class_training_face_mirrored_with_the_input(prepared):
    data = PreparedDataset(prepared).fold("fold0")
    faces, _ = expression_prototypes(data.images, data.labels, data.train_index,
                                     data.num_classes)
    grey = data.images[data.train_index].astype(np.float64) @ [0.299, 0.587, 0.114] / 255
    for c in range(data.num_classes):
        expected = grey[data.labels[data.train_index] == c].mean(0)
        np.testing.assert_allclose(faces[c, 0].numpy(), expected, atol=1e-5)
    images = torch.rand(2, 3, 224, 224) * 255
    labels, mirrored = torch.tensor([1, 2]), torch.tensor([False, True])
    target = pattern_targets(faces, images, labels, mirrored)
    torch.testing.assert_close(target[0], faces[1])
    torch.testing.assert_close(target[1], faces[2].flip(-1))
    torch.testing.assert_close(pattern_targets(None, images, labels, mirrored),
                               grayscale(images))


def test_shift_moves_each_image_within_the_bound_and_repeats_the_border():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    assert augmented(images, Augmentation(), torch.Generator()) is images
    moved = augmented(images, Augmentation(shift=2), torch.Generator().manual_seed(0))
    assert moved.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    for i in range(2):  # each image is one window of its own padded copy
        windows = [(y, x) for y in range(5) for x in range(5)
                   if torch.allclose(moved[i], padded[i, :, y:y + 8, x:x + 8], atol=1e-3)]
        assert len(windows) == 1


def bright_square(size=64, half=10) -> torch.Tensor:
    image = torch.zeros(1, 3, size, size)
    image[..., size // 2 - half:size // 2 + half, size // 2 - half:size // 2 + half] = 255
    return image


def test_turns_and_zooms_keep_the_face_centred_and_scale_it_within_the_bounds():
    square = bright_square().repeat(8, 1, 1, 1)
    area = (square[:, 0] > 127).sum((1, 2)).float()

    def centre_and_area(out):
        mask = (out[:, 0] > 127).float()
        rows = torch.arange(64.0)
        centre_y = (mask.sum(2) * rows).sum(1) / mask.sum((1, 2))
        centre_x = (mask.sum(1) * rows).sum(1) / mask.sum((1, 2))
        return centre_y, centre_x, mask.sum((1, 2)) / area

    turned = augmented(square, Augmentation(rotate=30), torch.Generator().manual_seed(1))
    zoomed = augmented(square, Augmentation(zoom=0.2), torch.Generator().manual_seed(1))
    for out, (low, high) in ((turned, (0.9, 1.1)), (zoomed, (0.8**2 * 0.9, 1.2**2 * 1.1))):
        centre_y, centre_x, ratio = centre_and_area(out)
        assert (centre_y - 31.5).abs().max() < 0.6 and (centre_x - 31.5).abs().max() < 0.6
        assert ((ratio > low) & (ratio < high)).all(), ratio
        assert len({round(r, 2) for r in ratio.tolist()}) > 1  # a draw per image
    corners = turned[:, 0, 32 - 10, [22, 41]]  # a turned square leaves its corners
    assert (corners < 255).any()
    again = augmented(square, Augmentation(rotate=30), torch.Generator().manual_seed(1))
    assert torch.equal(turned, again)


def test_jitter_scales_contrast_and_brightness_within_the_bound():
    faces = torch.rand(16, 3, 32, 32) * 100 + 50
    out = augmented(faces, Augmentation(jitter=0.2), torch.Generator().manual_seed(0))
    brightness = out.mean((1, 2, 3)) / faces.mean((1, 2, 3))
    contrast = out.std((1, 2, 3)) / faces.std((1, 2, 3))
    for factor in (brightness, contrast):
        assert ((factor > 0.8 - 1e-4) & (factor < 1.2 + 1e-4)).all() and factor.std() > 0.02


def test_the_decoder_learns_at_its_own_rate_where_decoder_lr_is_given():
    modules = build_stack(["efe", "emr", "epmg"], 3, WIDTH)
    decoder = {id(p) for p in modules["epmg"].decoder.parameters()}
    for decoder_lr, expected in ((0.05, 0.05), (None, STAGE3["lr"])):
        hp = Stage3Hyperparameters.from_dict({**STAGE3, "decoder_lr": decoder_lr})
        groups = STAGES[3](hp, modules, nullcontext).param_groups(hp)
        assert [g["base_lr"] for g in groups] == [STAGE3["lr"], expected]
        assert {id(p) for p in groups[1]["params"]} == decoder


def test_pattern_gradient_decoder_keeps_the_maps_losses_out_of_the_embedding():
    """pattern_gradient decoder: L_pattern and L_sim train the decoder alone, so the person
    the map is pulled toward cannot enter the embedding; encoder (the paper's) trains both."""
    modules = build_stack(["efe", "emr", "epmg"], 3, WIDTH)
    images = torch.rand(4, 3, 224, 224) * 255
    labels = torch.tensor([0, 0, 1, 1])
    for route, reaches_encoder in (("encoder", True), ("decoder", False)):
        hp = Stage3Hyperparameters.from_dict(
            {**STAGE3, "lambda4": 1.0, "lambda5": 1.0, "lambda6": 0.0, "lambda7": 0.0,
             "pattern_gradient": route})
        runner = STAGES[3](hp, modules, nullcontext)
        modules["epmg"].zero_grad()
        runner.losses(images, labels)[0].total.backward()
        encoder = sum(p.grad.abs().sum() for p in modules["epmg"].encoder.parameters())
        decoder = sum(p.grad.abs().sum() for p in modules["epmg"].decoder.parameters())
        assert decoder > 0
        assert (encoder > 0) == reaches_encoder


def start_from(weights, prepared, width=WIDTH, batch_norm=False):
    """Stage 1's modules with model.weights = weights, and the lines it logged."""
    lines = []
    data = PreparedDataset(prepared).fold("fold0")
    model = {"width": width, "weights": str(weights), "batch_norm": batch_norm}
    modules, _ = initial_modules(1, Stage1Hyperparameters.from_dict(STAGE1), data, model,
                                 None, 1, lines.append)
    return modules["efe"], lines


def rewritten(checkpoint, path, **changes):
    saved = {**load_checkpoint(checkpoint), **changes}
    torch.save(saved, path)
    return path


def test_stage_1_starts_from_another_run_s_model_where_model_and_faces_match(
        prepared, stage1, tmp_path):
    theirs = load_checkpoint(stage1)["modules"]["efe"]
    efe, lines = start_from(stage1, prepared)
    for key, value in efe.state_dict().items():
        torch.testing.assert_close(value, theirs[key])
    assert "started from another run's stage-1 model" in lines[0] and "every layer" in lines[0]
    # other classes: every layer but the one that scores them
    other = rewritten(stage1, tmp_path / "other.pt",
                      class_names=[f"x{i}" for i in range(len(load_checkpoint(stage1)
                                                               ["class_names"]))])
    efe, lines = start_from(other, prepared)
    assert "every layer but the last" in lines[0]
    torch.testing.assert_close(efe.state_dict()["classifier.3.weight"],
                               theirs["classifier.3.weight"])
    assert not torch.equal(efe.state_dict()["classifier.6.weight"],
                           theirs["classifier.6.weight"])


def test_another_run_s_model_of_another_shape_or_faces_stops_with_one_line(
        prepared, stage1, tmp_path):
    for kwargs, words in (({"width": 1 / 16}, "width 0.03125, batch_norm False; this run's "
                                              "is width 0.0625"),
                          ({"batch_norm": True}, "set model.width and model.batch_norm")):
        with pytest.raises(TrainingError, match=words) as error:
            start_from(stage1, prepared, **kwargs)
        assert "\n" not in str(error.value)
    colour = rewritten(stage1, tmp_path / "colour.pt",
                       preparation={"grey": True, "crop": "detector"})
    with pytest.raises(TrainingError, match="trained on grey, detector-cropped faces, this "
                                            "dataset's are colour, centre-cropped"):
        start_from(colour, prepared)


def test_min_steps_stretches_the_epochs_of_a_small_folder_by_a_whole_factor(prepared, tmp_path):
    lines = []
    steps = len(PreparedDataset(prepared).fold("fold0").train_index) // STAGE1["batch_size"]
    run(1, {**STAGE1, "epochs": 1, "min_steps": 2 * steps + 1}, prepared, tmp_path,
        log=lines.append)
    assert len(pd.read_csv(tmp_path / "stage1.csv")) == 3  # 1 epoch x 3 reaches min_steps
    assert any("fall short of min_steps" in line and "3 x the epochs (3)" in line
               for line in lines)
    hp = Stage1Hyperparameters.from_dict({**STAGE1, "epochs": 20, "min_steps": 560})
    assert [min_steps_factor(hp, n) for n in (28, 27, 5)] == [1, 2, 6]
