# Config merging and validation, start-up checks, paths, and the helpers rules call.

import re
import sys
from pathlib import Path

import expmap.config
from expmap.data.adapters import missing_data_message
from expmap.jobs import unwritable_results
from expmap.viz import FIGURES

SCHEMA = expmap.config.read_schema(
    Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
)
try:
    config.update(expmap.config.load(config, SCHEMA))
except expmap.config.ConfigError as error:
    raise SystemExit(f"config error: {error}")

DATASETS = config["datasets"]
BENCHMARKS = config["benchmarks"]
try:  # benchmark -> variant -> {model, train}: "default" and the config's `variants:`
    RUNS = expmap.config.variant_runs(config, SCHEMA)
except expmap.config.ConfigError as error:
    raise SystemExit(f"config error: {error}")
VARIANTS = sorted({variant for runs in RUNS.values() for variant in runs})

PREPARED = "results/{dataset}/prepared"
RUN = "results/{dataset}/{variant}/{fold}"
LOGS = "results/{dataset}/logs/{variant}/{fold}"
BENCHMARK_TABLES = "results/{dataset}/benchmarks/{variant}/{fold}"
TABLES = "results/tables"

# Honest threads: what each step's library call uses (torch's intra-op threads).
PREPARE_THREADS = 4
TRAIN_THREADS = 4
EVALUATE_THREADS = 2


wildcard_constraints:
    dataset="|".join(DATASETS),
    variant="|".join(re.escape(variant) for variant in VARIANTS),
    fold=r"fold\d+|test",


def startup_problems():
    """One line per benchmark whose raw data is missing, then one per missing weights file."""
    data, weights = [], []
    for name in BENCHMARKS:
        dataset = DATASETS[name]
        if not Path(PREPARED.format(dataset=name), "manifest.csv").exists():
            data.append(
                missing_data_message(name, dataset["adapter"], dataset.get("root"))
            )
        path = dataset["model"]["weights"]
        if path and not Path(path).is_file():
            key = (
                "defaults.model.weights"
                if path == config["defaults"]["model"]["weights"]
                else f"datasets.{name}.model.weights"
            )
            weights.append(
                f"{key} = {path}: no such file; put VGG-Face for PyTorch (vgg_face_dag.pth, "
                "from https://www.robots.ox.ac.uk/~albanie/pytorch-models.html) there, or set "
                "it to null to train from scratch (`make demo` needs none)"
            )
    return [line for line in data if line] + list(dict.fromkeys(weights))


# A read-only results folder: one line here (Snakemake's own failure is a traceback).
unwritable = unwritable_results("results")
problems = ([unwritable] if unwritable else []) + startup_problems()
if problems:
    raise SystemExit("\n".join(problems))
for name in BENCHMARKS:
    if DATASETS[name]["model"]["weights"] is None:
        print(
            f"warning: datasets.{name}: model.weights is null: stage 1 trains the VGG "
            "from scratch (the paper fine-tunes VGG-Face)",
            file=sys.stderr,
        )


def folds(name):
    return expmap.config.run_folds(DATASETS[name])


FIGURE = "results/{dataset}/{variant}/figures/{figure}.png"
MODULE_TABLES = ("ablation", "interpretability")


def final_outputs():
    tables = [f"{TABLES}/accuracy.csv", f"{TABLES}/accuracy.md"] + [
        f"{TABLES}/{name}.{kind}" for name in MODULE_TABLES for kind in ("csv", "md")
    ]
    figures = [
        FIGURE.format(dataset=name, variant=variant, figure=figure)
        for name in BENCHMARKS
        for variant in RUNS[name]
        for figure in FIGURES
    ]
    variants = [f"{TABLES}/variants.{kind}" for kind in ("csv", "md")]
    return tables + variants + figures


def fold_files(name, file, variant=expmap.config.DEFAULT_VARIANT):
    """One file of every fold run for dataset `name` and `variant`, e.g.
    fold_files(name, "summary.json")."""
    return expand(f"{RUN}/{file}", dataset=name, variant=variant, fold=folds(name))


def owner(wildcards, stage):
    """The variant that trains stage `stage` for this one (itself, or the first whose
    inputs to the stage are equal)."""
    return expmap.config.stage_owner(RUNS[wildcards.dataset], wildcards.variant, stage)


def stage_checkpoint(stage):
    """Input function: this fold's stage-`stage` checkpoint, from the variant that owns the
    stage."""

    def checkpoint(wildcards):
        folder = RUN.format(
            dataset=wildcards.dataset, variant=owner(wildcards, stage), fold=wildcards.fold
        )
        return f"{folder}/stage{stage}.pt"

    return checkpoint


def module_table_inputs(wildcards):
    """module_tables' inputs per dataset: summary_<name> and stage3_<name> (metrics)."""
    inputs = {}
    for name in BENCHMARKS:
        inputs[f"summary_{name}"] = fold_files(name, "summary.json")
        inputs[f"stage3_{name}"] = fold_files(name, "stage3_metrics.csv")
    return inputs


def figure_inputs(wildcards):
    """figures' inputs: every fold's metrics of the three stages, summaries and maps."""
    name, variant = wildcards.dataset, wildcards.variant
    inputs = {
        f"stage{stage}": fold_files(
            name, f"stage{stage}_metrics.csv", owner(wildcards, stage)
        )
        for stage in (1, 2, 3)
    }
    inputs["summaries"] = fold_files(name, "summary.json", variant)
    inputs["maps"] = fold_files(name, "maps.npz", variant)
    inputs["images"] = f"{PREPARED.format(dataset=name)}/images.npy"
    return inputs


def variant_summaries(wildcards):
    """variants_table's inputs, named <dataset>/<variant>: every fold's summary.json."""
    return {
        f"{name}/{variant}": fold_files(name, "summary.json", variant)
        for name in BENCHMARKS
        for variant in RUNS[name]
    }


def variant_differences():
    """Per <dataset>/<variant>, the keys in which it differs from default (a JSON string)."""
    return expmap.config.canonical_json(
        {
            f"{name}/{variant}": expmap.config.differences(RUNS[name], variant)
            for name in BENCHMARKS
            for variant in RUNS[name]
        }
    )


def summaries_by_dataset(wildcards):
    """aggregate's inputs, named by dataset: every fold's summary.json."""
    return {name: fold_files(name, "summary.json") for name in BENCHMARKS}


def prepared_files(wildcards):
    folder = PREPARED.format(dataset=wildcards.dataset)
    return {
        "manifest": f"{folder}/manifest.csv",
        "classes": f"{folder}/classes.txt",
        "images": f"{folder}/images.npy",
    }


def adapter_settings(wildcards):
    """prepare's params: everything of datasets.<name> the adapter reads, as one string."""
    dataset = DATASETS[wildcards.dataset]
    return expmap.config.canonical_json(
        {
            "adapter": dataset["adapter"],
            "root": dataset.get("root"),
            "options": dataset.get("options", {}),
            "classes": dataset.get("classes"),
        }
    )


def stage_hyperparameters(stage):
    """The params of train_stage<stage>: exactly that stage's merged hyperparameters."""

    def hyperparameters(wildcards):
        return expmap.config.canonical_json(run(wildcards)["train"][f"stage{stage}"])

    return hyperparameters


def run(wildcards):
    """This job's variant of its dataset: {"model", "train"}."""
    return RUNS[wildcards.dataset][wildcards.variant]


def model_settings(wildcards):
    return expmap.config.canonical_json(run(wildcards)["model"])


def stage1_inputs(wildcards):
    inputs = prepared_files(wildcards)
    weights = run(wildcards)["model"]["weights"]
    if weights:
        inputs["weights"] = weights
    return inputs
