"""Rule tables: accuracy, ablation, interpretability and variants (.csv, .md) from every
record on disk."""

import json
from pathlib import Path

from expmap.jobs import job_log
from expmap.records import read_records
from expmap.tables import write_tables

snakemake = globals()["snakemake"]  # set by the preamble Snakemake puts before this script

with job_log(snakemake.log[0]) as log:
    results = Path(snakemake.output.accuracy_csv).parents[1]  # results/tables/x.csv
    records = read_records(results, json.loads(snakemake.params.current))
    write_tables(records, out=dict(snakemake.output.items()), log=log)
