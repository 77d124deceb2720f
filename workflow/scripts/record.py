"""Rule record: what the tables need of one finished dataset and variant, with its
configuration and when it finished."""

import json

from expmap.jobs import job_log
from expmap.records import write_record

snakemake = globals()["snakemake"]  # set by the preamble Snakemake puts before this script

with job_log(snakemake.log[0]) as log:
    settings = json.loads(snakemake.params.settings)
    record = write_record(
        dataset=snakemake.wildcards.dataset,
        variant=snakemake.wildcards.variant,
        summaries=list(snakemake.input.summaries),
        predictions=list(snakemake.input.predictions),
        stage3_metrics=list(snakemake.input.stage3),
        configuration=settings["configuration"],
        differs_in=settings["differs_in"],
        out=snakemake.output[0],
    )
    log(f"wrote {snakemake.output[0]}: {len(record['folds'])} fold runs, "
        f"seeds {record['seeds']}, finished {record['finished']}")
