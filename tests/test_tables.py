"""The accuracy table: the paper's numbers (SPEC §5) and this run's beside them."""

import json

import pandas as pd
import pytest

from expmap import tables


def summaries(folder, name, epmg, efe=None):
    """summary.json files of one dataset with the given EPMG accuracies (fractions)."""
    paths = []
    for i, accuracy in enumerate(epmg):
        heads = {"epmg": {"accuracy": accuracy, "per_class": {}}}
        if efe is not None:
            heads["efe_stage1"] = {"accuracy": efe, "per_class": {}}
        path = folder / f"{name}_fold{i}.json"
        path.write_text(json.dumps({"fold": f"fold{i}", "n_test": 10, "class_names": [],
                                    "heads": heads}))
        paths.append(path)
    return paths


def test_the_paper_s_table_is_complete():
    paper = tables.paper_rows()
    assert len(paper) == 28
    ours = paper[paper["method"] == tables.OURS_PAPER].set_index("dataset")["accuracy"]
    assert ours.to_dict() == {"ckplus": 98.06, "oulu_casia": 89.05, "rafdb": 87.10,
                              "affectnet": 62.10}
    assert (paper["source"] == "paper").all()


def test_this_run_is_mean_and_std_over_folds_in_percent(tmp_path):
    table = tables.accuracy_table({
        "ckplus": summaries(tmp_path, "ckplus", [0.9, 1.0], efe=0.5),
        "rafdb": summaries(tmp_path, "rafdb", [0.8]),
    })
    run = table[table["source"] == "this run"].set_index(["dataset", "method"])
    ckplus = run.loc[("ckplus", tables.OURS_RUN)]
    assert ckplus["accuracy"] == pytest.approx(95.0)
    assert ckplus["std"] == pytest.approx(7.0711, abs=1e-4)
    assert ckplus["n_folds"] == 2
    assert run.loc[("ckplus", tables.HEADS["efe_stage1"]), "accuracy"] == pytest.approx(50.0)
    assert pd.isna(run.loc[("rafdb", tables.OURS_RUN), "std"])
    assert ("rafdb", tables.HEADS["efe_stage1"]) not in run.index


def test_pooled_accuracy_weighs_each_fold_by_its_test_images(tmp_path):
    paths = summaries(tmp_path, "ckplus", [0.5, 1.0])
    first = json.loads(paths[0].read_text())
    paths[0].write_text(json.dumps({**first, "n_test": 30}))  # 15 of 30 right, then 10 of 10
    run = tables.accuracy_table({"ckplus": paths}).set_index(["dataset", "method"])
    assert run.loc[("ckplus", tables.OURS_RUN), "accuracy"] == pytest.approx(75.0)
    assert run.loc[("ckplus", tables.OURS_RUN), "pooled"] == pytest.approx(62.5)


def test_markdown_keeps_the_paper_s_layout(tmp_path):
    csv, md = tmp_path / "accuracy.csv", tmp_path / "accuracy.md"
    tables.write_tables({"ckplus": summaries(tmp_path, "ckplus", [0.9, 1.0]),
                         "synthetic": summaries(tmp_path, "synthetic", [0.97])},
                        csv, md, log=lambda line: None)
    lines = md.read_text().splitlines()
    header = lines.index("| CK+ | | Oulu-CASIA | | RAF-DB | | AffectNet | |")
    rows = lines[header + 2:header + 10]
    assert rows[0] == "| DCMA-CNNs | 93.46 | DCD | 84.80 | PG-CNN | 83.27 | PG-CNN | 55.33 |"
    assert rows[6].startswith("| Ours (paper) | 98.06 | Ours (paper) | 89.05 |")
    assert rows[7] == ("| Ours (this run) | 95.00 ± 7.07 (2 folds; pooled 95.00) | "
                       "Ours (this run) | not run"
                       " | Ours (this run) | not run | Ours (this run) | not run |")
    assert any(line.startswith("| synthetic | 97.00 (1 fold) |") for line in lines)
    assert list(pd.read_csv(csv).columns) == tables.COLUMNS


def test_variants_table_has_a_row_per_dataset_and_variant_with_what_it_changes(tmp_path):
    summaries = {}
    for variant, accuracy in (("default", 0.9), ("sharper", 0.8)):
        paths = []
        for i in range(2):
            path = tmp_path / f"{variant}_fold{i}.json"
            path.write_text(json.dumps({"fold": f"fold{i}", "n_test": 10, "class_names": [],
                                        "heads": {"epmg": {"accuracy": accuracy}},
                                        "interpretability": {"span_ratio": 0.5,
                                                             "invariance_gain": 30.0}}))
            paths.append(path)
        summaries[f"synthetic/{variant}"] = paths
    csv, md = tmp_path / "variants.csv", tmp_path / "variants.md"
    tables.write_variants_table(summaries, {"synthetic/sharper": {"stage3.lambda4": 0.5}},
                                csv, md, log=lambda line: None)
    table = pd.read_csv(csv)
    assert list(table["variant"]) == ["default", "sharper"]
    assert list(table["epmg_accuracy"]) == [90.0, 80.0]
    assert table["differs_in"].fillna("").tolist() == ["", "stage3.lambda4=0.5"]
    assert "| synthetic | sharper | 80.00 ± 0.00 |" in md.read_text()
