#!/usr/bin/env bash
# Snakemake runs this inside the new environment, in the working directory of the run
# (the repository root): the jobs then import this checkout's expmap.
set -euo pipefail
pip install --no-deps -e .
