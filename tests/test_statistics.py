"""How sure a result is (expmap.statistics) and the claims' verdicts (expmap.claims), on
constructed predictions whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from expmap import claims, records, statistics, tables


def predictions(right: dict[str, np.ndarray], subjects: np.ndarray, seed: int = 0,
                fold: str = "fold0") -> pd.DataFrame:
    """Per-image predictions: every image of class 0; head h right where right[h] is true."""
    frame = pd.DataFrame({"seed": seed, "fold": fold,
                          "image_id": [f"img{i}" for i in range(len(subjects))],
                          "subject": subjects, "label": 0})
    for head, hits in right.items():
        frame[f"pred_{head}"] = np.where(hits, 0, 1)
    return frame


def spread_hits(n: int, wrong: int) -> np.ndarray:
    hits = np.ones(n, bool)
    hits[np.linspace(0, n - 1, wrong).astype(int)] = False
    return hits


SUBJECTS = np.repeat([f"S{i:02d}" for i in range(20)], 10)  # 20 people, 10 images each


def test_a_head_right_more_often_on_the_same_images_has_an_interval_above_zero():
    better = np.ones(200, bool)
    better[::10] = False  # 90 %: one wrong image of every person
    worse = better.copy()
    worse[5::10] = False  # 80 %: the same and one more of every person
    found = statistics.sample(predictions({"a": better, "b": worse}, SUBJECTS), ["a", "b"])
    difference = statistics.paired_difference(found, "a", "b")
    assert difference.estimate == pytest.approx(10.0)
    assert 0 < difference.low <= 10 <= difference.high
    assert statistics.direction(difference) == "supported"
    assert statistics.direction(statistics.paired_difference(found, "b", "a")) == "contradicted"


def test_identical_heads_differ_by_exactly_zero():
    hits = spread_hits(200, 30)
    found = statistics.sample(predictions({"a": hits, "b": hits.copy()}, SUBJECTS), ["a", "b"])
    difference = statistics.paired_difference(found, "a", "b")
    assert (difference.estimate, difference.low, difference.high) == (0.0, 0.0, 0.0)
    assert statistics.direction(difference) == "unresolved"


def test_errors_of_one_person_widen_the_interval_against_errors_spread_over_people():
    spread = spread_hits(200, 10)
    concentrated = np.ones(200, bool)
    concentrated[:10] = False  # all ten images of S00
    width = {}
    for name, hits in (("spread", spread), ("one person", concentrated)):
        found = statistics.sample(predictions({"a": hits}, SUBJECTS), ["a"])
        interval = statistics.accuracy(found, "a")
        assert interval.estimate == pytest.approx(95.0)
        width[name] = interval.high - interval.low
    assert width["one person"] > 1.5 * width["spread"]


def test_images_without_subjects_are_their_own_units():
    found = statistics.sample(predictions({"a": spread_hits(50, 5)},
                                          np.array([f"img{i}" for i in range(50)])), ["a"])
    assert len(found.units) == 50 and found.n_images == 50


def test_seeds_are_resampled_with_the_people():
    one = predictions({"a": spread_hits(200, 20)}, SUBJECTS, seed=0)
    other = predictions({"a": spread_hits(200, 60)}, SUBJECTS, seed=1)
    found = statistics.sample(pd.concat([one, other]), ["a"])
    assert found.seeds == (0, 1) and found.n_images == 200
    pooled = statistics.accuracy(found, "a")
    assert pooled.estimate == pytest.approx(80.0)
    alone = statistics.accuracy(statistics.sample(one, ["a"]), "a")
    assert pooled.high - pooled.low > alone.high - alone.low  # the seeds disagree


def test_each_verdict_of_the_vocabulary_is_reached():
    interval = statistics.Interval(85.0, 80.0, 90.0)
    reached = {statistics.against(interval, 85.0), statistics.against(interval, 95.0),
               statistics.against(interval, 75.0), statistics.against(interval, None),
               statistics.direction(interval), statistics.direction(interval, 100.0),
               statistics.direction(interval, 85.0)}
    assert reached == set(claims.VERDICTS)


def record_of(frames: list[pd.DataFrame], variant="default", gain=3.0) -> dict:
    """A record as read_records gives it, from per-image predictions of folds and seeds."""
    frame = pd.concat(frames, ignore_index=True)
    folds = []
    for (seed, fold), part in frame.groupby(["seed", "fold"]):
        heads = {head.removeprefix("pred_"): {"accuracy": float((part[head] == 0).mean())}
                 for head in part if head.startswith("pred_")}
        folds.append({"fold": fold, "seed": int(seed), "n_test": len(part), "heads": heads,
                      "best_test_accuracy": None,
                      "interpretability": {"invariance_gain": gain + 0.1 * int(seed),
                                           "class_difference_correlation": 0.5}})
    return {"dataset": "ckplus", "variant": variant, "finished": "2026-12-07 10:00 UTC",
            "configuration": {}, "differs_in": {}, "status": records.CURRENT,
            "seeds": sorted(frame["seed"].unique().tolist()), "folds": folds,
            "predictions": {column: frame[column].tolist() for column in frame}}


def heads_frame(seed: int, fold: str, subjects: np.ndarray, stage1: int, stage2: int,
                epmg: int) -> pd.DataFrame:
    n = len(subjects)
    return predictions({"efe_stage1": spread_hits(n, stage1), "efe_stage2": spread_hits(n, stage2),
                        "epmg": spread_hits(n, epmg)}, subjects, seed, fold)


def test_the_claims_table_says_each_claim_with_its_interval_and_verdict(tmp_path):
    frames = [heads_frame(seed, fold, np.repeat([f"{fold}S{i}" for i in range(10)], 5), 15, 15, 1)
              for seed in (0, 1) for fold in ("fold0", "fold1")]
    table = claims.claims_table([record_of(frames)]).set_index("claim")
    assert list(table.index) == list(claims.CLAIMS)
    accuracy = table.loc["accuracy"]
    assert accuracy["estimate"] == pytest.approx(98.0)
    assert accuracy["paper"] == 98.06 and accuracy["verdict"] == "consistent"
    assert (accuracy["n_seeds"], accuracy["n_folds"], accuracy["n_images"],
            accuracy["n_subjects"]) == (2, 2, 100, 20)
    assert table.loc["beats_comparators", "paper"] == 97.40
    assert table.loc["emr_improves", "estimate"] == 0.0
    assert table.loc["emr_improves", "verdict"] == "unresolved"
    assert table.loc["epmg_improves", "verdict"] == "supported"
    assert table.loc["maps_identity_invariant", "estimate"] == pytest.approx(3.05)
    assert table.loc["maps_identity_invariant", "verdict"] == "supported"
    assert table.loc["maps_class_specific", "verdict"] == "supported"


def write_all(folder, recorded):
    out = {f"{name}_{kind}": folder / f"{name}.{kind}" for name in tables.TABLES
           for kind in ("csv", "md")}
    tables.write_tables(recorded, out, log=lambda line: None)
    return {key: path.read_bytes() for key, path in out.items()}


def test_a_rebuilt_table_is_identical_and_rebuilds_from_the_predictions_files(tmp_path):
    frames = [heads_frame(seed, "fold0", SUBJECTS, 30, 20, 25) for seed in (0, 1)]
    first = write_all(tmp_path / "a", [record_of(frames)])
    assert write_all(tmp_path / "b", [record_of(frames)]) == first

    files = []  # the same images through predictions.csv files and write_record's reading
    for i, frame in enumerate(frames):
        files.append(tmp_path / f"predictions{i}.csv")
        frame.to_csv(files[-1], index=False)
    rebuilt = record_of(frames)
    rebuilt["predictions"] = records.predictions_columns(files)
    assert write_all(tmp_path / "c", [rebuilt]) == first


def test_a_variant_is_compared_with_default_on_the_images_and_seeds_they_share(tmp_path):
    default = record_of([heads_frame(s, "fold0", SUBJECTS, 20, 20, 40) for s in (0, 1)])
    sharper = record_of([heads_frame(s, "fold0", SUBJECTS, 20, 20, 10) for s in (0, 1)],
                        variant="sharper")
    table = tables.variants_table([default, sharper]).set_index("variant")
    assert pd.isna(table.loc["default", "epmg_vs_default"])
    assert table.loc["sharper", "epmg_vs_default"] == pytest.approx(15.0)
    assert 0 < table.loc["sharper", "epmg_vs_default_ci_low"] < 15
    assert table.loc["sharper", "n_seeds"] == 2


def test_a_map_measure_of_one_fold_run_has_no_interval_and_no_verdict():
    frames = [heads_frame(0, "fold0", SUBJECTS, 15, 15, 1)]
    table = claims.claims_table([record_of(frames)]).set_index("claim")
    row = table.loc["maps_identity_invariant"]
    assert row["estimate"] == pytest.approx(3.0) and pd.isna(row["ci_low"])
    assert row["verdict"] == "unresolved"
    assert "3.000 (one fold run: no interval)" in claims.claims_markdown(table.reset_index())


def test_the_paired_claims_count_the_predictions_each_head_alone_gets_right():
    stage2 = spread_hits(200, 20)
    epmg = stage2.copy()
    epmg[np.flatnonzero(~stage2)[:5]] = True  # gains 5 of stage 2's errors
    epmg[np.flatnonzero(stage2)[:3]] = False  # loses 3 it had right
    frames = [predictions({"efe_stage1": stage2, "efe_stage2": stage2, "epmg": epmg},
                          SUBJECTS, seed) for seed in (0, 1)]
    table = claims.claims_table([record_of(frames)]).set_index("claim")
    epmg_row, emr_row = table.loc["epmg_improves"], table.loc["emr_improves"]
    assert (epmg_row["head_alone_right"], epmg_row["baseline_alone_right"]) == (10, 6)
    assert (emr_row["head_alone_right"], emr_row["baseline_alone_right"]) == (0, 0)
    assert pd.isna(table.loc["accuracy", "head_alone_right"])
    text = claims.claims_markdown(table.reset_index())
    assert "the head alone is right on 10 test predictions, its baseline alone on 6" in text
