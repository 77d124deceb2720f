# Config merging and validation, start-up checks, paths, and the helpers rules call.

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
VARIANT = "default"  # named hyperparameter variants come here next

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
    variant=VARIANT,
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
    figures = expand(FIGURE, dataset=BENCHMARKS, variant=VARIANT, figure=FIGURES)
    return tables + figures


def fold_files(name, file):
    """One file of every fold run for dataset `name`, e.g. fold_files(name, "summary.json")."""
    return expand(f"{RUN}/{file}", dataset=name, variant=VARIANT, fold=folds(name))


def module_table_inputs(wildcards):
    """module_tables' inputs per dataset: summary_<name> and stage3_<name> (metrics)."""
    inputs = {}
    for name in BENCHMARKS:
        inputs[f"summary_{name}"] = fold_files(name, "summary.json")
        inputs[f"stage3_{name}"] = fold_files(name, "stage3_metrics.csv")
    return inputs


def figure_inputs(wildcards):
    """figures' inputs: every fold's metrics of the three stages, summaries and maps."""
    name = wildcards.dataset
    inputs = {
        f"stage{stage}": fold_files(name, f"stage{stage}_metrics.csv")
        for stage in (1, 2, 3)
    }
    inputs["summaries"] = fold_files(name, "summary.json")
    inputs["maps"] = fold_files(name, "maps.npz")
    inputs["images"] = f"{PREPARED.format(dataset=name)}/images.npy"
    return inputs


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
        return expmap.config.canonical_json(
            DATASETS[wildcards.dataset]["train"][f"stage{stage}"]
        )

    return hyperparameters


def model_settings(wildcards):
    return expmap.config.canonical_json(DATASETS[wildcards.dataset]["model"])


def stage1_inputs(wildcards):
    inputs = prepared_files(wildcards)
    weights = DATASETS[wildcards.dataset]["model"]["weights"]
    if weights:
        inputs["weights"] = weights
    return inputs
