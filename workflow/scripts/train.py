"""Rules train_stage1..3 and train_stage1..3_round: one training stage of one fold (in one
round)."""

import json
from pathlib import Path

from expmap.devices import claim_device
from expmap.jobs import job_log
from expmap.train import train_stage

snakemake = globals()["snakemake"]  # set by the preamble Snakemake puts before this script

with job_log(snakemake.log[0]) as log:
    params = snakemake.params
    with claim_device(log=log) as device:
        train_stage(
            stage=params.stage,
            hp=json.loads(params.hyperparameters),
            prepared=Path(snakemake.input.manifest).parent,
            fold=snakemake.wildcards.fold,
            checkpoint=snakemake.output.checkpoint,
            metrics=snakemake.output.metrics,
            state_dir=params.state_dir,
            init=snakemake.input.get("init"),
            model=json.loads(params.model) if "model" in params.keys() else None,
            threads=snakemake.threads,
            device=device,
            log=log,
            round_=params.round,
            feature_cache_mb=snakemake.resources.feature_cache_mb,
        )
