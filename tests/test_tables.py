"""The tables: the paper's numbers (SPEC §5) and ours beside them, built from the records of
finished runs (expmap.records), every row saying when it finished and whether it is stale."""

import json

import pandas as pd
import pytest

from expmap import records, tables


def record(dataset, epmg, efe=None, variant="default", status=records.CURRENT, n_test=None,
           differs_in=None):
    """A record as read_records gives it, with the given EPMG accuracies (fractions) and
    test images that give them (one subject for every two images)."""
    folds, images = [], []
    for i, accuracy in enumerate(epmg):
        n = (n_test or [10] * len(epmg))[i]
        images += [{"seed": 0, "fold": f"fold{i}", "image_id": f"f{i}i{k}",
                    "subject": f"f{i}s{k // 2}", "label": 0,
                    "pred_epmg": int(k >= round(n * accuracy))} for k in range(n)]
        heads = {"epmg": {"accuracy": accuracy, "per_class": {}}}
        if efe is not None:
            heads["efe_stage1"] = {"accuracy": efe, "per_class": {}}
        folds.append({"fold": f"fold{i}", "seed": 0, "n_test": (n_test or [10] * len(epmg))[i],
                      "heads": heads, "best_test_accuracy": accuracy + 0.01,
                      "interpretability": {"class_difference_correlation": 0.7 + 0.1 * i,
                                           "detail_correlation": 0.6,
                                           "invariance_gain": 30.0}})
    return {"dataset": dataset, "variant": variant, "finished": "2026-12-02 10:00 UTC",
            "configuration": {}, "differs_in": differs_in or {}, "folds": folds, "seeds": [0],
            "status": status, "predictions": pd.DataFrame(images).to_dict("list")}


def test_the_paper_s_table_is_complete():
    paper = tables.paper_rows()
    assert len(paper) == 28
    ours = paper[paper["method"] == tables.OURS_PAPER].set_index("dataset")["accuracy"]
    assert ours.to_dict() == {"ckplus": 98.06, "oulu_casia": 89.05, "rafdb": 87.10,
                              "affectnet": 62.10}
    assert (paper["source"] == "paper").all()


def test_ours_is_mean_and_std_over_folds_in_percent():
    table = tables.accuracy_table([record("ckplus", [0.9, 1.0], efe=0.5),
                                   record("rafdb", [0.8])])
    run = table[table["source"] == tables.OURS_SOURCE].set_index(["dataset", "method"])
    ckplus = run.loc[("ckplus", tables.OURS_RUN)]
    assert ckplus["accuracy"] == pytest.approx(95.0)
    assert ckplus["std"] == pytest.approx(7.0711, abs=1e-4)
    assert ckplus["n_folds"] == 2
    assert ckplus["finished"] == "2026-12-02 10:00 UTC"
    assert run.loc[("ckplus", tables.HEADS["efe_stage1"]), "accuracy"] == pytest.approx(50.0)
    assert pd.isna(run.loc[("rafdb", tables.OURS_RUN), "std"])
    assert ("rafdb", tables.HEADS["efe_stage1"]) not in run.index


def test_pooled_accuracy_weighs_each_fold_by_its_test_images():
    # 15 of 30 right, then 10 of 10
    table = tables.accuracy_table([record("ckplus", [0.5, 1.0], n_test=[30, 10])])
    run = table.set_index(["dataset", "method"])
    assert run.loc[("ckplus", tables.OURS_RUN), "accuracy"] == pytest.approx(75.0)
    assert run.loc[("ckplus", tables.OURS_RUN), "pooled"] == pytest.approx(62.5)


def write(tmp_path, recorded):
    out = {f"{name}_{kind}": tmp_path / f"{name}.{kind}" for name in tables.TABLES
           for kind in ("csv", "md")}
    tables.write_tables(recorded, out, log=lambda line: None)
    return out


def test_markdown_keeps_the_paper_s_layout(tmp_path):
    out = write(tmp_path, [record("synthetic", [0.97]), record("ckplus", [0.9, 1.0])])
    lines = out["accuracy_md"].read_text().splitlines()
    header = lines.index("| CK+ | | Oulu-CASIA | | RAF-DB | | AffectNet | |")
    rows = lines[header + 2:header + 10]
    assert rows[0] == "| DCMA-CNNs | 93.46 | DCD | 84.80 | PG-CNN | 83.27 | PG-CNN | 55.33 |"
    assert rows[6].startswith("| Ours (paper) | 98.06 | Ours (paper) | 89.05 |")
    assert rows[7] == ("| Ours (expmap) | 95.00 ± 7.07 (2 folds; pooled 95.00; "
                       "95 % CI [85.00, 100.00]) | "
                       "Ours (expmap) | not run"
                       " | Ours (expmap) | not run | Ours (expmap) | not run |")
    # the paper's benchmarks first, whatever order the records came in
    every = [line for line in lines if line.startswith(("| CK+ | default", "| synthetic |"))]
    assert every[0].startswith("| CK+ | default | 95.00")
    assert every[1].startswith("| synthetic | default | 97.00 (1 fold; 95 % CI [100.00, 100.00])")
    assert every[1].endswith("| 2026-12-02 10:00 UTC |")
    assert list(pd.read_csv(out["accuracy_csv"]).columns) == tables.COLUMNS


def test_a_stale_record_stays_in_every_table_marked_with_what_changed(tmp_path):
    stale = "stale: config.yaml now differs in train.stage3.lambda4"
    out = write(tmp_path, [record("ckplus", [0.9], status=stale), record("rafdb", [0.8])])
    for name in tables.TABLES:
        table = pd.read_csv(out[f"{name}_csv"])
        ours = table[table["dataset"].isin(["ckplus", "rafdb"]) & table["variant"].notna()]
        assert set(ours["dataset"]) == {"ckplus", "rafdb"}, name
        assert set(ours[ours["dataset"] == "ckplus"]["status"]) == {stale}, name
        assert set(ours[ours["dataset"] == "rafdb"]["status"]) == {records.CURRENT}, name
        assert f"- ckplus / default: {stale}" in out[f"{name}_md"].read_text(), name
    assert "| Ours (expmap) | 90.00 (1 fold; 95 % CI [70.00, 100.00]; stale) |" in out[
        "accuracy_md"].read_text()


def test_variants_table_has_a_row_per_dataset_and_variant_with_what_it_changes(tmp_path):
    out = write(tmp_path, [record("synthetic", [0.8, 0.8], variant="sharper",
                                  differs_in={"stage3.lambda4": 0.5}),
                           record("synthetic", [0.9, 0.9])])
    table = pd.read_csv(out["variants_csv"])
    assert list(table["variant"]) == ["default", "sharper"]
    assert list(table["epmg_accuracy"]) == [90.0, 80.0]
    assert table["differs_in"].fillna("").tolist() == ["", "stage3.lambda4=0.5"]
    assert "| synthetic | sharper | 80.00 ± 0.00 |" in out["variants_md"].read_text()


def test_interpretability_leads_with_the_measures_a_blob_fails(tmp_path):
    out = write(tmp_path, [record("synthetic", [0.8, 0.9])])
    table = pd.read_csv(out["interpretability_csv"])
    assert list(table.columns[2:7]) == ["class_difference_correlation",
                                        "class_difference_correlation_std",
                                        "class_difference_correlation_ci_low",
                                        "class_difference_correlation_ci_high",
                                        "class_difference_ratio"]
    assert table.loc[0, "class_difference_correlation_ci_low"] == pytest.approx(0.7)
    assert table.loc[0, "class_difference_correlation_ci_high"] == pytest.approx(0.8)
    assert table.loc[0, "class_difference_correlation"] == pytest.approx(0.75)
    lines = out["interpretability_md"].read_text().splitlines()
    header = next(line for line in lines if line.startswith("| dataset |"))
    assert header.startswith("| dataset | variant | maps: class-difference correlation with "
                             "prototypes | maps: class-difference norm / prototypes' | "
                             "maps: fine-detail correlation with prototypes |")
    row = next(line for line in lines if line.startswith("| synthetic |"))
    assert row.startswith("| synthetic | default | 0.750 ± 0.071 | - | 0.600 ± 0.000 |")
    variants = out["variants_md"].read_text()
    assert "| 2 | 1 | - | 0.75 | 0.60 | 30.0 | - |" in variants


def test_ablation_keeps_the_best_test_epoch_apart_from_the_headline(tmp_path):
    table = tables.ablation_table([record("synthetic", [0.8, 0.9])])
    assert list(table["epoch_selection"]) == ["last epoch", tables.BEST_TEST[1]]
    assert table["accuracy"].tolist() == pytest.approx([85.0, 86.0])


def summary_files(folder, accuracies):
    """summary.json, predictions.csv and stage3_metrics.csv of a run's folds (seed 0)."""
    summaries, predictions, metrics = [], [], []
    for i, accuracy in enumerate(accuracies):
        fold = folder / f"fold{i}"
        fold.mkdir(parents=True)
        (fold / "summary.json").write_text(json.dumps(
            {"fold": f"fold{i}", "seed": 0, "n_test": 10, "class_names": [],
             "heads": {"epmg": {"accuracy": accuracy}}, "interpretability": {}}))
        pd.DataFrame({"seed": 0, "fold": f"fold{i}", "index": range(10),
                      "image_id": [f"f{i}i{k}" for k in range(10)],
                      "subject": [f"f{i}s{k // 2}" for k in range(10)], "label": 0,
                      "pred_epmg": [0 if k < 10 * accuracy else 1 for k in range(10)]}
                     ).to_csv(fold / "predictions.csv", index=False)
        pd.DataFrame({"epoch": [1, 2], "test_accuracy": [accuracy, float("nan")]}).to_csv(
            fold / "stage3_metrics.csv", index=False)
        summaries.append(fold / "summary.json")
        predictions.append(fold / "predictions.csv")
        metrics.append(fold / "stage3_metrics.csv")
    return summaries, predictions, metrics


def test_records_on_disk_are_current_or_stale_against_the_config(tmp_path):
    configuration = {"model": {"width": 1.0}, "train": {"stage3": {"lambda4": 60}}}
    for dataset in ("ckplus", "rafdb"):
        folder = tmp_path / dataset / "default"
        summaries, predictions, metrics = summary_files(folder, [0.9, 0.7])
        written = records.write_record(dataset, "default", summaries, predictions, metrics,
                                       configuration, {}, folder / records.RECORD)
        assert written["folds"][0]["best_test_accuracy"] == 0.9
        assert written["seeds"] == [0]
        assert sum(written["predictions"]["pred_epmg"]) == 4  # 9 + 7 right of 20, class 0
    changed = {"model": {"width": 1.0}, "train": {"stage3": {"lambda4": 1}}}
    found = {r["dataset"]: r for r in records.read_records(
        tmp_path, {"ckplus/default": configuration, "rafdb/default": changed})}
    assert found["ckplus"]["status"] == records.CURRENT
    assert found["rafdb"]["status"] == "stale: config.yaml now differs in train.stage3.lambda4"
    assert found["rafdb"]["finished"].endswith(" UTC")
    gone = records.read_records(tmp_path, {"ckplus/default": configuration})
    assert {r["dataset"]: r["status"] for r in gone}["rafdb"].startswith(
        "stale: config.yaml no longer has")


def test_an_unreadable_record_is_one_line_naming_it(tmp_path):
    path = tmp_path / "ckplus" / "default" / records.RECORD
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(records.RecordError, match=f"^{path}: not an expmap-record/2 record "
                                                  r"\(unreadable \(JSONDecodeError\)\); "
                                                  "delete it, or run its dataset again"):
        records.read_records(tmp_path, {})


def test_a_record_written_before_seeds_is_read_as_seed_0_without_intervals(tmp_path):
    old = record("ckplus", [0.9, 0.8])
    for fold in old["folds"]:
        del fold["seed"]
    del old["seeds"], old["status"], old["predictions"]
    path = tmp_path / "ckplus" / "default" / records.RECORD
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**old, "format": records.FORMAT_WITHOUT_PREDICTIONS}))
    [found] = records.read_records(tmp_path, {"ckplus/default": {}})
    assert found["seeds"] == [0] and {fold["seed"] for fold in found["folds"]} == {0}
    out = write(tmp_path / "tables", [found])
    accuracy = pd.read_csv(out["accuracy_csv"]).dropna(subset=["variant"])
    assert accuracy["pooled"].iloc[0] == pytest.approx(85.0)
    assert accuracy["ci_low"].isna().all()
    assert pd.read_csv(out["claims_csv"]).empty
