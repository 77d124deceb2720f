#!/usr/bin/env bash
# The GPU check: one script for a person with one CUDA GPU, at most about 8 minutes.
#   bench/gpu-check.sh [OUT.json]          (from the repository root, after `make install`)
# 1. bench/throughput.py for stages 1-3 at full width (VGG-16), batch 64, in fp32 and in
#    bf16: loop and bare images/s, peak memory, FLOPs and MFU, the reader's rate;
# 2. the tiny pipeline (tests/configs/tiny.yaml) with `--resources gpu=1`, so that its
#    jobs take the real device locks (expmap.devices) and train on the GPU;
# 3. one JSON (default gpu-check.json) with all of it, a summary, and the projected cost
#    of the paper's table from the bf16 figures.
# Fails, saying why, when torch sees no CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${1:-gpu-check.json}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/expmap-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" -c 'import sys, torch
sys.exit(0 if torch.cuda.is_available() else
         "gpu-check: error: torch sees no CUDA device (torch " + torch.__version__
         + ", CUDA build " + str(torch.version.cuda) + "); run this on a machine with an"
         " NVIDIA GPU and its driver, with a CUDA build of torch")'

echo "== throughput, full width, bf16 and fp32 stage by stage"
"$PYTHON" bench/throughput.py --device cuda --width 1 --batch 64 --steps 20 --rounds 2 \
    --precision bf16 --json "$WORK/throughput.json"

echo "== the tiny pipeline on the GPU (--resources gpu=1)"
started=$(date +%s)
"$PYTHON" -m snakemake --directory "$WORK/run" --configfile tests/configs/tiny.yaml \
    --cores 4 --resources gpu=1 --quiet > "$WORK/pipeline.log" 2>&1 \
    || { tail -n 30 "$WORK/pipeline.log"; echo "gpu-check: error: the pipeline failed" >&2; exit 1; }
seconds=$(( $(date +%s) - started ))

"$PYTHON" - "$WORK" "$OUT" "$seconds" <<'PY'
import json, sys
from pathlib import Path

work, out, seconds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
bf16 = json.loads((work / "throughput.json").read_text())
logs = sorted((work / "run" / "results").glob("*/logs/*/*/train_stage*.log"))
devices = sorted({line.split("device: ", 1)[1].split()[0] for log in logs
                  for line in log.read_text().splitlines() if "device: cuda" in line})
if not devices:
    sys.exit("gpu-check: error: the pipeline's training jobs did not claim a GPU "
             f"(logs: {', '.join(map(str, logs))})")
speedup = bf16["compared"]["loop_ratio"]
result = {"throughput": bf16, "bf16_over_fp32": speedup,
          "pipeline": {"seconds": seconds, "devices": devices, "training_logs": len(logs)}}
out.write_text(json.dumps(result, indent=2) + "\n")
print(f"\n{bf16['device']}: bf16 over fp32 (loop) "
      + ", ".join(f"stage {s} {r:.2f}x" for s, r in speedup.items())
      + f"; stage-1 MFU in bf16 {bf16['stages']['1']['mfu']}")
print(f"tiny pipeline: {seconds} s, training jobs on {', '.join(devices)}; wrote {out}")
PY
echo "== projected cost of the paper's table (bf16 figures, fp32 beside them)"
"$PYTHON" bench/table_cost.py "$WORK/throughput.json"
