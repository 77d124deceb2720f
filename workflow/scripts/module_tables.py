"""Rule module_tables: the ablation (what each module adds) and the interpretability measures."""

from expmap.jobs import job_log
from expmap.tables import write_module_tables

snakemake = globals()["snakemake"]  # set by the preamble Snakemake puts before this script

with job_log(snakemake.log[0]) as log:
    datasets = snakemake.params.datasets
    write_module_tables(
        summaries={name: list(snakemake.input[f"summary_{name}"]) for name in datasets},
        stage3_metrics={name: list(snakemake.input[f"stage3_{name}"]) for name in datasets},
        out=dict(snakemake.output.items()),
        log=log,
    )
