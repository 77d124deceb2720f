"""Rule evaluate: predictions, accuracies and interpretability of one fold's test set."""

from pathlib import Path

from expmap.devices import claim_device
from expmap.evaluate import evaluate_fold
from expmap.jobs import job_log

snakemake = globals()["snakemake"]  # set by the preamble Snakemake puts before this script

with job_log(snakemake.log[0]) as log, claim_device(log=log) as device:
    summary = evaluate_fold(
        prepared=Path(snakemake.input.manifest).parent,
        fold=snakemake.wildcards.fold,
        seed=snakemake.params.seed,
        checkpoints={stage: snakemake.input[stage] for stage in ("stage1", "stage2", "stage3")},
        predictions=snakemake.output.predictions,
        summary=snakemake.output.summary,
        maps=snakemake.output.maps,
        device=device,
        threads=snakemake.threads,
        log=log,
    )
    for head, result in summary["heads"].items():
        log(f"{head}: accuracy {result['accuracy']:.4f}")
