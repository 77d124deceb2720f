# Config merging and validation, start-up checks, paths, and the helpers rules call.

import itertools
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
    # "<dataset>/<variant>" -> {data, model, train} of every dataset: records on disk of
    # other runs are checked against it (stale or current)
    CONFIGURATIONS = expmap.config.configurations(config, SCHEMA)
except expmap.config.ConfigError as error:
    raise SystemExit(f"config error: {error}")
VARIANTS = sorted({variant for runs in RUNS.values() for variant in runs})
SEEDS = config["seeds"]

# {replicate}: "" for seed 0, "seed<s>/" for seed s (expmap.config.replicate_folder)
PREPARED = "results/{dataset}/prepared"
RUN = "results/{dataset}/{variant}/{replicate}{fold}"
LOGS = "results/{dataset}/logs/{variant}/{replicate}{fold}"
BENCHMARK_TABLES = "results/{dataset}/benchmarks/{variant}/{replicate}{fold}"
TABLES = "results/tables"

# Honest threads: what each step's library call uses (torch's intra-op threads).
PREPARE_THREADS = 4
TRAIN_THREADS = 4
EVALUATE_THREADS = 2


wildcard_constraints:
    dataset="|".join(DATASETS),
    variant="|".join(re.escape(variant) for variant in VARIANTS),
    fold=r"fold\d+|test",
    replicate=r"(seed\d+/)?",
    round=r"\d+",


def startup_problems():
    """One line per benchmark whose raw data is missing, then one per missing weights file."""
    data, weights = [], []
    for name in BENCHMARKS:
        dataset = DATASETS[name]
        if not Path(PREPARED.format(dataset=name), "manifest.csv").exists():
            data.append(
                missing_data_message(name, dataset["adapter"], dataset.get("root"))
            )
        weights.append(weights_problem(name, dataset["model"]["weights"]))
    return list(dict.fromkeys(line for line in data + weights if line))


def weights_problem(name, path):
    """One line when dataset `name`'s weights file cannot be a job's input, else None."""
    if not path:
        return None
    key = (
        "defaults.model.weights"
        if path == config["defaults"]["model"]["weights"]
        else f"datasets.{name}.model.weights"
    )
    if "{" in path or "}" in path:
        # An input path is a pattern to Snakemake: braces would be read as a wildcard.
        return (
            f"{key} = {path}: a weights path cannot hold {{ or }} (Snakemake reads them as "
            "a wildcard); move or link the file to a path without braces"
        )
    if not Path(path).is_file():
        return (
            f"{key} = {path}: no such file; put VGG-Face for PyTorch (vgg_face_dag.pth, "
            "from https://www.robots.ox.ac.uk/~albanie/pytorch-models.html) there, point "
            "it at another expmap run's stage checkpoint, or set it to null to train from "
            "scratch (`make demo` needs none)"
        )
    return None


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
RECORD = "results/{dataset}/{variant}/record.json"
TABLE_NAMES = ("claims", "accuracy", "ablation", "interpretability", "variants")


# The tables in the HTML report (snakemake --report), each with its caption file.
REPORTED_TABLES = {
    "claims_md": "claims",
    "accuracy_csv": "accuracy_csv",
    "accuracy_md": "accuracy_md",
    "ablation_csv": "ablation",
    "interpretability_csv": "interpretability",
    "variants_csv": "variants",
}


def table_files():
    """The tables rule's outputs: <name>_csv and <name>_md for every table."""
    files = {
        f"{name}_{kind}": f"{TABLES}/{name}.{kind}"
        for name in TABLE_NAMES
        for kind in ("csv", "md")
    }
    return {
        key: report(path, caption=f"../report/{REPORTED_TABLES[key]}.rst", category="Tables")
        if key in REPORTED_TABLES
        else path
        for key, path in files.items()
    }


def final_outputs():
    figures = [
        FIGURE.format(dataset=name, variant=variant, figure=figure)
        for name in BENCHMARKS
        for variant in RUNS[name]
        for figure in FIGURES
    ]
    tables = [
        f"{TABLES}/{name}.{kind}" for name in TABLE_NAMES for kind in ("csv", "md")
    ]
    return tables + figures


def fold_files(name, file, variant=expmap.config.DEFAULT_VARIANT, seeds=SEEDS):
    """One file of every fold run of every seed of `seeds` for dataset `name` and `variant`,
    e.g. fold_files(name, "summary.json"); seed by seed, fold by fold."""
    return expand(
        f"{RUN}/{file}",
        dataset=name,
        variant=variant,
        replicate=map(expmap.config.replicate_folder, seeds),
        fold=folds(name),
    )


def replicate_seed(wildcards):
    """This job's replicate seed (an entry of `seeds`)."""
    return expmap.config.replicate_seed(wildcards.replicate)


def rounds(wildcards):
    """How many rounds of stage 1 -> 2 -> 3 this job's variant trains."""
    return expmap.config.rounds_of(run(wildcards))


def owner(wildcards, stage, round_=None):
    """The variant that trains stage `stage` of round `round_` (default: the last) for this
    one (itself, or the first whose inputs to the stage are equal)."""
    round_ = rounds(wildcards) if round_ is None else round_
    return expmap.config.stage_owner(
        RUNS[wildcards.dataset], wildcards.variant, stage, round_
    )


def checkpoint_file(wildcards, stage, round_):
    """This fold's stage-`stage` checkpoint of round `round_`, in the owner's folder:
    round<r>/stageN.pt, or stageN.pt for the last round."""
    folder = RUN.format(
        dataset=wildcards.dataset,
        variant=owner(wildcards, stage, round_),
        replicate=wildcards.replicate,
        fold=wildcards.fold,
    )
    within = "" if round_ == rounds(wildcards) else f"round{round_}/"
    return f"{folder}/{within}stage{stage}.pt"


def stage_checkpoint(stage):
    """Input function: this fold's final stage-`stage` checkpoint."""
    return lambda wildcards: checkpoint_file(wildcards, stage, rounds(wildcards))


def stage_inputs(stage, in_round_folder):
    """Input function of train_stage<stage>(_round): the prepared data and the checkpoint
    the stage starts from (the previous stage's; for stage 1 of a later round, the previous
    round's stage 3), or for the very first stage the VGG-Face weights when given."""

    def inputs(wildcards):
        round_ = int(wildcards.round) if in_round_folder else rounds(wildcards)
        files = prepared_files(wildcards)
        if stage > 1:
            files["init"] = checkpoint_file(wildcards, stage - 1, round_)
        elif round_ > 1:
            files["init"] = checkpoint_file(wildcards, expmap.config.STAGES[-1], round_ - 1)
        elif run(wildcards)["model"]["weights"]:
            files["weights"] = run(wildcards)["model"]["weights"]
        return files

    return inputs


def stage_resources(stage):
    """resources of train_stage<stage>(_round): a GPU, and the memory kept activations of
    frozen convs may take (a resource, not a param: changing it reruns nothing)."""
    return {"gpu": 1, "feature_cache_mb": config["feature_cache_mb"]}


def stage_params(stage, folder):
    """params of train_stage<stage>(_round): the stage's hyperparameters (one JSON string),
    the round it trains, its state folder; for stage 1 the model too."""
    params = {
        "stage": stage,
        "round": (lambda wildcards: int(wildcards.round)) if folder else rounds,
        "hyperparameters": stage_hyperparameters(stage),
        "state_dir": f"{RUN}/{folder}state_stage{stage}",
    }
    if stage == 1:
        params["model"] = model_settings
    return params


def figure_inputs(wildcards):
    """figures' inputs: every fold's metrics of the three stages, summaries and maps, of
    the first seed (another seed redraws no figure)."""
    name, variant, first = wildcards.dataset, wildcards.variant, SEEDS[:1]
    inputs = {
        f"stage{stage}": fold_files(
            name, f"stage{stage}_metrics.csv", owner(wildcards, stage), first
        )
        for stage in expmap.config.STAGES
    }
    inputs["summaries"] = fold_files(name, "summary.json", variant, first)
    inputs["maps"] = fold_files(name, "maps.npz", variant, first)
    inputs["images"] = f"{PREPARED.format(dataset=name)}/images.npy"
    return inputs


def this_run_records(wildcards):
    """tables' inputs: the record of every benchmark and variant of this run (the tables
    also read every other record on disk)."""
    return [
        RECORD.format(dataset=name, variant=variant)
        for name in BENCHMARKS
        for variant in RUNS[name]
    ]


def record_inputs(wildcards):
    """record's inputs: every fold's and seed's summary.json, predictions.csv and the
    stage-3 metrics it evaluated."""
    name = wildcards.dataset
    return {
        "summaries": fold_files(name, "summary.json", wildcards.variant),
        "predictions": fold_files(name, "predictions.csv", wildcards.variant),
        "stage3": fold_files(name, "stage3_metrics.csv", owner(wildcards, 3)),
    }


def current_configurations(wildcards):
    """tables' params: every dataset's and variant's configuration of this run (a function,
    as every params that carries configured text: Snakemake formats a plain string with the
    wildcards, and a brace in a root, a class or a pattern is no wildcard)."""
    return expmap.config.canonical_json(CONFIGURATIONS)


def record_settings(wildcards):
    """record's params: the configuration the run had and the keys in which it differs from
    default (one JSON string, so that a change rewrites the record)."""
    key = f"{wildcards.dataset}/{wildcards.variant}"
    return expmap.config.canonical_json(
        {
            "configuration": CONFIGURATIONS[key],
            "differs_in": expmap.config.differences(
                RUNS[wildcards.dataset], wildcards.variant
            ),
        }
    )


def prepared_files(wildcards):
    folder = PREPARED.format(dataset=wildcards.dataset)
    return {
        "manifest": f"{folder}/manifest.csv",
        "classes": f"{folder}/classes.txt",
        "images": f"{folder}/images.npy",
    }


def adapter_settings(wildcards):
    """prepare's params: everything of datasets.<name> the adapter reads, as one string."""
    return expmap.config.canonical_json(
        expmap.config.data_settings(DATASETS[wildcards.dataset])
    )


def stage_hyperparameters(stage):
    """The params of train_stage<stage>: exactly that stage's merged hyperparameters."""

    def hyperparameters(wildcards):
        hyperparameters = expmap.config.seeded(
            run(wildcards)["train"][f"stage{stage}"], replicate_seed(wildcards)
        )
        return expmap.config.canonical_json(
            expmap.config.stage_params(stage, hyperparameters)
        )

    return hyperparameters


def run(wildcards):
    """This job's variant of its dataset: {"model", "train"}."""
    return RUNS[wildcards.dataset][wildcards.variant]


def model_settings(wildcards):
    return expmap.config.canonical_json(run(wildcards)["model"])
