"""Rule figures: loss and accuracy curves, confusion, masks and pattern maps of one dataset."""

import numpy as np

from expmap.jobs import job_log
from expmap.viz import FIGURES, dataset_figures

snakemake = globals()["snakemake"]  # set by the preamble Snakemake puts before this script

with job_log(snakemake.log[0]) as log:
    dataset_figures(
        dataset=snakemake.wildcards.dataset,
        metrics={stage: list(snakemake.input[f"stage{stage}"]) for stage in (1, 2, 3)},
        summaries=list(snakemake.input.summaries),
        maps=list(snakemake.input.maps),
        images=np.load(snakemake.input.images, mmap_mode="r"),
        out={figure: snakemake.output[figure] for figure in FIGURES},
    )
    log(f"wrote {', '.join(snakemake.output)}")
