"""Rule prepare: the dataset's adapter writes its prepared store."""

import json
from pathlib import Path

from expmap.config import check_classes
from expmap.data.adapters import adapter
from expmap.jobs import job_log

snakemake = globals()["snakemake"]  # set by the preamble Snakemake puts before this script

with job_log(snakemake.log[0]) as log:
    dataset = snakemake.wildcards.dataset
    settings = json.loads(snakemake.params.settings)
    root = Path(settings["root"]).expanduser() if settings["root"] else None
    out = Path(snakemake.output.manifest).parent
    adapter(settings["adapter"]).prepare(settings["options"], root, out,
                                         snakemake.threads, log)
    check_classes(dataset, settings["classes"],
                  Path(snakemake.output.classes).read_text().splitlines())
