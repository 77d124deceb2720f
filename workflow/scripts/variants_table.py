"""Rule variants_table: variants.csv and variants.md from every variant's summary.json."""

import json

from expmap.jobs import job_log
from expmap.tables import write_variants_table

snakemake = globals()["snakemake"]  # set by the preamble Snakemake puts before this script

with job_log(snakemake.log[0]) as log:
    summaries = {key: list(paths) for key, paths in snakemake.input.items()}
    write_variants_table(summaries, json.loads(snakemake.params.differences),
                         snakemake.output.csv, snakemake.output.markdown, log=log)
