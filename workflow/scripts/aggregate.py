"""Rule aggregate: accuracy.csv and accuracy.md from every fold's summary.json."""

from expmap.jobs import job_log
from expmap.tables import write_tables

snakemake = globals()["snakemake"]  # set by the preamble Snakemake puts before this script

with job_log(snakemake.log[0]) as log:
    summaries = {name: list(paths) for name, paths in snakemake.input.items()}
    write_tables(summaries, snakemake.output.csv, snakemake.output.markdown, log=log)
