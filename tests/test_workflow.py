"""The Snakemake pipeline: a whole run on a tiny synthetic config, what reruns after a
config change (dry runs), and the one-line errors that stop a run before any job."""

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, TINY, snakemake

# Snakemake's own notices, printed before the workflow's lines.
NOTICES = ("Using workflow specific profile", "Config file ")


def overlay(folder: Path, name: str, text: str) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def scheduled(result: subprocess.CompletedProcess) -> Counter:
    """Jobs a dry run schedules, by rule, read from its job-stats table."""
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return Counter()
    table = output.split("Job stats:")[1].split("\ntotal")[0]
    rows = (line.split() for line in table.splitlines()[3:])
    return Counter({rule: int(count) for rule, count in rows})


def workflow_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines()
            if line and not line.startswith(NOTICES)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny_run")
    result = snakemake(workdir)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir


@pytest.mark.slow
def test_whole_pipeline_writes_the_tables(tiny_run):
    table = pd.read_csv(tiny_run / "results/tables/accuracy.csv")
    assert list(table.columns) == ["dataset", "variant", "method", "accuracy", "std", "pooled",
                                   "ci_low", "ci_high", "n_folds", "n_seeds", "source",
                                   "learned_nothing", "finished", "status"]
    ours = table[(table["dataset"] == "synthetic") & (table["variant"] == "default")
                 & (table["method"] == "Ours (expmap)")]
    assert len(ours) == 1
    assert ours["source"].item() == "expmap"
    assert ours["status"].item() == "current"
    assert ours["n_folds"].item() == 2
    assert 0 <= ours["accuracy"].item() <= 100
    assert set(table[table["source"] == "paper"]["dataset"]) == {
        "ckplus", "oulu_casia", "rafdb", "affectnet"}

    markdown = (tiny_run / "results/tables/accuracy.md").read_text()
    assert "| CK+ | | Oulu-CASIA | | RAF-DB | | AffectNet | |" in markdown
    assert markdown.count("not run") == 4
    assert "| synthetic | " in markdown
    for fold in ("fold0", "fold1"):
        run = tiny_run / "results/synthetic/default" / fold
        for name in ("stage1.pt", "stage2.pt", "stage3.pt", "predictions.csv", "summary.json",
                     "maps.npz"):
            assert (run / name).is_file(), run / name
    assert not (tiny_run / "results/synthetic/default/fold2").exists()


@pytest.mark.slow
def test_whole_pipeline_writes_ablation_interpretability_and_figures(tiny_run):
    tables = tiny_run / "results/tables"
    ablation = pd.read_csv(tables / "ablation.csv")
    assert list(ablation["variant"]) == ["default"] * 4 + ["paper_stage3"] * 4
    assert list(ablation["epoch_selection"]) == 2 * (["last epoch"] * 3 + [
        "best test epoch: optimistic, as peers report; never our headline number"])
    assert (ablation["n_folds"] == 2).all()
    measures = pd.read_csv(tables / "interpretability.csv")
    assert list(measures["variant"]) == ["default", "paper_stage3"]
    assert (measures["dataset"] == "synthetic").all()
    assert measures["area_share"].between(0, 1).all()  # the generator's regions are known
    for measure in ("class_difference_correlation", "class_difference_ratio",
                    "detail_correlation", "invariance_gain", "region_concentration",
                    "mask_share_stage1", "mask_share"):
        assert measures[measure].notna().all(), measure
    assert "| synthetic |" in (tables / "interpretability.md").read_text()
    for variant in ("default", "paper_stage3"):
        for figure in ("losses", "accuracy", "confusion", "masks", "patterns", "own",
                       "differences"):
            path = tiny_run / f"results/synthetic/{variant}/figures/{figure}.png"
            assert path.stat().st_size > 1e4, path


@pytest.mark.slow
def test_a_finished_run_schedules_nothing(tiny_run):
    assert scheduled(snakemake(tiny_run, "-n")) == Counter()


@pytest.mark.slow
def test_frozen_heads_fits_other_heads_on_the_features_the_heads_read(tiny_run):
    result = subprocess.run([sys.executable, str(REPO / "bench/frozen_heads.py"),
                             str(tiny_run / "results/synthetic/default")],
                            capture_output=True, text=True, cwd=tiny_run)
    assert result.returncode == 0, result.stderr[-3000:]
    first, *heads = result.stdout.splitlines()
    repeated = float(first.split("repeats stage 2's on ")[1].split(" %")[0])
    assert repeated >= 95  # the features are those the stage-2 head read
    assert [line.split()[0] for line in heads] == ["efe_stage2", "epmg", "linear_probe",
                                                   "class_mean"]
    assert all("minus stage 2" in line for line in heads[1:])


@pytest.mark.slow
def test_each_fold_s_predictions_and_the_claims_carry_the_seed(tiny_run):
    predictions = pd.read_csv(tiny_run / "results/synthetic/default/fold0/predictions.csv")
    assert list(predictions.columns[:6]) == ["seed", "fold", "index", "image_id", "subject",
                                             "label"]
    assert set(predictions["seed"]) == {0}
    claims = pd.read_csv(tiny_run / "results/tables/claims.csv")
    assert set(claims["claim"]) == {"accuracy", "beats_comparators", "emr_improves",
                                    "epmg_improves", "maps_identity_invariant",
                                    "maps_class_specific"}
    assert set(claims["n_seeds"]) == {1}
    assert "## synthetic, default" in (tiny_run / "results/tables/claims.md").read_text()


@pytest.mark.slow
def test_adding_a_seed_schedules_only_the_new_seed_s_jobs_and_the_tables(tiny_run):
    more = snakemake(tiny_run, "-n", "--config", "seeds=[0,1]")
    # the paper_stage3 variant trains its own stage 3 on the new seed's shared stages 1-2
    assert scheduled(more) == Counter(train_stage1=2, train_stage2=2, train_stage3=4,
                                      evaluate=4, record=2, tables=1, all=1)
    planned = more.stdout + more.stderr
    outputs = [line.split("output: ")[1] for line in planned.splitlines()
               if "output: results/synthetic/" in line and "/record.json" not in line]
    assert outputs and all("/seed1/fold" in line for line in outputs), outputs


@pytest.mark.slow
def test_a_stage3_value_reruns_stage3_and_what_follows(tiny_run, tmp_path):
    change = overlay(tmp_path, "stage3", "datasets:\n  synthetic:\n    train:\n"
                                         "      stage3: {lambda4: 0.5}\n")
    jobs = scheduled(snakemake(tiny_run, "-n", overlays=(TINY, change)))
    # paper_stage3 (config.yaml's demo variant) takes the new value too
    assert jobs == Counter(train_stage3=4, evaluate=4, record=2, tables=1, figures=2, all=1)


@pytest.mark.slow
def test_a_stage1_value_reruns_stages_1_to_3_never_prepare(tiny_run, tmp_path):
    change = overlay(tmp_path, "stage1", "datasets:\n  synthetic:\n    train:\n"
                                         "      stage1: {lr: 0.02}\n")
    jobs = scheduled(snakemake(tiny_run, "-n", overlays=(TINY, change)))
    assert jobs == Counter(train_stage1=2, train_stage2=2, train_stage3=4, evaluate=4,
                           record=2, tables=1, figures=2, all=1)


VARIANTS = """variants:
  sharper_maps:
    stage3: {lambda4: 0.5}
  wider_margin:
    stage2: {alpha: 0.3}
"""


@pytest.mark.slow
def test_variants_train_only_the_stages_they_change(tiny_run, tmp_path):
    """Beside a finished default run, a stage-3 variant and a stage-2 variant: per fold (two
    run) no stage 1, one stage 2, two stage 3 and two evaluate jobs."""
    jobs = scheduled(snakemake(tiny_run, "-n", overlays=(TINY, overlay(tmp_path, "variants",
                                                                        VARIANTS))))
    assert jobs == Counter(train_stage2=2, train_stage3=4, evaluate=4, record=2, figures=2,
                           tables=1, all=1)


@pytest.mark.slow
def test_a_variant_reads_the_default_s_checkpoints_where_it_shares_them(tiny_run, tmp_path):
    result = snakemake(tiny_run, "-n", "-p", "--forceall", "--rerun-triggers", "mtime",
                       overlays=(TINY, overlay(tmp_path, "variants", VARIANTS)))
    text = result.stdout + result.stderr
    evaluate = [block for block in text.split("\n\n") if "rule evaluate:" in block
                and "sharper_maps/fold0" in block][0]
    assert "results/synthetic/default/fold0/stage2.pt" in evaluate
    assert "results/synthetic/sharper_maps/fold0/stage3.pt" in evaluate


@pytest.mark.parametrize(("name", "text", "line"), [
    ("misspelt_key",
     "datasets:\n  synthetic:\n    train:\n      stage3: {lamda4: 0.5}\n",
     "config error: datasets.synthetic.train.stage3.lamda4: unknown key; did you mean lambda4?"),
    ("string_for_number",  # PyYAML reads 1e-4 (no dot) as a string
     "datasets:\n  synthetic:\n    train:\n      stage3: {lambda4: 1e-4}\n",
     "config error: datasets.synthetic.train.stage3.lambda4 = '1e-4': must be of type number"),
    ("negative_weight",
     "defaults:\n  train:\n    stage2: {lambda2: -1.0}\n",
     "config error: defaults.train.stage2.lambda2 = -1.0: must be >= 0"),
    ("unknown_benchmark",
     "benchmarks: [synthetic, ckplsu]\n",
     "config error: benchmarks: unknown dataset 'ckplsu'; did you mean ckplus?"),
])
def test_a_config_error_is_one_line_and_starts_no_job(tmp_path, name, text, line):
    result = snakemake(tmp_path, overlays=(TINY, overlay(tmp_path, name, text)))
    assert result.returncode != 0
    lines = workflow_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith(line), lines[0]
    assert not (tmp_path / "results").exists()


def test_missing_data_and_weights_stop_the_run_with_one_line_each(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    change = overlay(tmp_path, "missing", f"benchmarks: [ckplus, rafdb]\n"
                                          f"datasets:\n  ckplus: {{root: {empty}}}\n"
                                          f"  rafdb: {{root: null}}\n")
    result = snakemake(tmp_path, "-n", overlays=(change,))
    assert result.returncode != 0
    ckplus, rafdb, weights = workflow_lines(result)
    assert ckplus.startswith(f"datasets.ckplus.root = {empty}: ")
    assert "cohn-kanade-images" in ckplus and "make demo" in ckplus
    assert rafdb.startswith("datasets.rafdb.root is not set") and "make demo" in rafdb
    assert weights.startswith("defaults.model.weights = weights/vgg_face_dag.pth: no such file")
    assert "null" in weights and "make demo" in weights


def test_null_weights_warn_and_train_from_scratch(tmp_path):
    result = snakemake(tmp_path, "-n")
    jobs = scheduled(result)
    assert jobs["prepare"] == 1 and jobs["train_stage1"] == 2
    assert "warning: datasets.synthetic: model.weights is null" in result.stderr


@pytest.mark.slow
def test_the_report_gathers_tables_and_figures(tiny_run):
    report = tiny_run / "report.html"
    result = snakemake(tiny_run, "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    page = report.read_text(errors="replace")
    for name in ("accuracy.csv", "ablation.csv", "interpretability.csv", "variants.csv",
                 "patterns.png", "masks.png", "differences.png"):
        assert name in page, name


# A second drawn benchmark, run on its own after the tiny run; it also changes a synthetic
# value, so that synthetic's rows, kept from the first run, are stale.
SECOND_BENCHMARK = """benchmarks: [faces2]
datasets:
  synthetic:
    train:
      stage3: {lambda4: 0.5}
  faces2:
    adapter: synthetic
    classes: [Anger, Contempt, Disgust, Fear, Happiness, Sadness, Surprise]
    options: {seed: 1, subjects: 6, frames: 1, sequence_length: 4, folds: 3}
    run_folds: [fold0]
    model: {width: 0.03125, weights: null}
    train:
      all_stages: {t: 2, iterations: 2}
      stage1: {optimizer: adam, epochs: 1, batch_size: 8}
      stage2: {epochs: 1}
      stage3: {epochs: 1, lambda4: 1.0e-4, lambda5: 1.0e-4}
"""


@pytest.mark.slow
def test_a_second_benchmark_run_keeps_the_first_s_rows_in_every_table(tiny_run, tmp_path):
    workdir = tmp_path / "work"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    second = overlay(tmp_path, "second", SECOND_BENCHMARK)
    result = snakemake(workdir, overlays=(TINY, second))
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    tables = workdir / "results/tables"
    for name in ("accuracy", "ablation", "interpretability", "variants"):
        table = pd.read_csv(tables / f"{name}.csv")
        ours = table[table["dataset"].isin(["synthetic", "faces2"])]
        status = ours.groupby("dataset")["status"].agg(set).to_dict()
        assert status["faces2"] == {"current"}, name
        assert status["synthetic"] == {
            "stale: config.yaml now differs in train.stage3.lambda4"}, name
        assert (ours["finished"].str.endswith(" UTC")).all(), name
        assert "- synthetic / default: stale" in (tables / f"{name}.md").read_text(), name
    markdown = (tables / "accuracy.md").read_text()
    assert "| synthetic | default |" in markdown and "| faces2 | default |" in markdown


ROUNDS = """defaults:
  train:
    all_stages: {rounds: 2}
datasets:
  synthetic:
    train:
      stage1: {epochs: 2}
      stage2: {epochs: 2}
      stage3: {epochs: 2}
"""


def test_rounds_repeat_the_three_stages_in_the_dag(tmp_path):
    """rounds: 2 on the tiny config (two folds; default and paper_stage3, which changes only
    stage 3): round 1's stages 1 and 2 are shared, everything after round 1's stage 3 is
    not; round 2's stage 1 starts from round 1's stage 3."""
    result = snakemake(tmp_path, "-n", overlays=(TINY, overlay(tmp_path, "rounds", ROUNDS)))
    jobs = scheduled(result)
    assert {rule: count for rule, count in jobs.items() if rule.startswith("train")} == {
        "train_stage1_round": 2, "train_stage2_round": 2, "train_stage3_round": 4,
        "train_stage1": 4, "train_stage2": 4, "train_stage3": 4}
    text = result.stdout + result.stderr
    stage1 = [block for block in text.split("\n\n") if "rule train_stage1:" in block
              and "paper_stage3/fold0/stage1.pt" in block][0]
    assert "results/synthetic/paper_stage3/fold0/round1/stage3.pt" in stage1
    stage3 = [block for block in text.split("\n\n") if "rule train_stage3_round:" in block
              and "paper_stage3/fold0/round1/stage3.pt" in block][0]
    assert "results/synthetic/default/fold0/round1/stage2.pt" in stage3


def test_the_slurm_profile_names_every_job_rule_and_gives_a_gpu_where_one_is_claimed(tmp_path):
    """profiles/slurm sizes rules by name: a rule renamed or added must be sized there too."""
    listed = snakemake(tmp_path, "--list-rules").stdout.split()
    rules = {rule for rule in listed if rule != "all" and rule.isidentifier()}
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    sized = profile["set-resources"]
    assert set(sized) == rules
    assert set(profile["set-threads"]) == rules
    with_gpu = {rule for rule, asked in sized.items() if asked.get("gpu") == 1}
    assert with_gpu == {rule for rule in rules if rule.startswith(("train_", "evaluate"))}


@pytest.mark.slow
def test_a_run_in_rounds_ends_with_every_round_s_epochs_in_its_metrics(tmp_path):
    """rounds: 2 of two-epoch stages, one fold, run whole: round 1 under round1/, the last
    round in the usual files, each stage's metrics holding both rounds' epochs."""
    change = overlay(tmp_path, "rounds", ROUNDS + "    run_folds: [fold0]\n")
    result = snakemake(tmp_path / "work", overlays=(TINY, change))
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    fold = tmp_path / "work/results/synthetic/default/fold0"
    for stage in (1, 2, 3):
        assert (fold / f"round1/stage{stage}.pt").is_file()
        assert list(pd.read_csv(fold / f"stage{stage}_metrics.csv")["epoch"]) == [1, 2]
    table = pd.read_csv(tmp_path / "work/results/tables/variants.csv")
    assert list(table["variant"]) == ["default", "paper_stage3"]
