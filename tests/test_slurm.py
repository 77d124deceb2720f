"""A real SLURM run: the tiny synthetic pipeline through the SLURM executor plugin and
profiles/slurm, on a one-node cluster with accounting that tests/slurm/cluster.sh brings
up on localhost (installing Debian's packages if missing) and always tears down.

Where the packages cannot be installed the test is skipped with cluster.sh's reason."""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
TINY = REPO / "tests" / "configs" / "tiny.yaml"
SKIP = 77  # cluster.sh: packages missing and not installable here
ACCOUNT = "expmap_test"  # made by cluster.sh
GPU_RULES = {"train_stage1", "train_stage2", "train_stage3", "evaluate"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux"),
]


def report(config, line: str) -> None:
    """Show a line in the test output even while pytest captures output."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="module")
def cluster(request):
    """The cluster's directory; its bin/ holds client shims that reach only it."""
    # A missing plugin is our install's fault, not the machine's: fail, don't skip.
    assert importlib.util.find_spec("snakemake_executor_plugin_slurm"), \
        "the SLURM executor plugin is missing: pip install -e '.[slurm]'"
    start = time.monotonic()
    up = subprocess.run(["bash", str(CLUSTER), "up"], capture_output=True, text=True,
                        timeout=900)
    if up.returncode == SKIP:
        reasons = [line.split("SKIP: ", 1)[1] for line in up.stderr.splitlines()
                   if "SKIP: " in line]
        pytest.skip(reasons[-1] if reasons else up.stderr.strip()[-500:])
    assert up.returncode == 0, f"cluster.sh up failed:\n{up.stderr[-8000:]}"
    directory = Path(up.stdout.split()[-1])
    report(request.config, f"\nSLURM bring-up: {time.monotonic() - start:.0f} s")
    try:
        yield directory
    finally:
        down = subprocess.run(["bash", str(CLUSTER), "down", str(directory)],
                              capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, f"cluster.sh down failed:\n{down.stderr}"


def test_tiny_pipeline_runs_on_slurm(cluster, tmp_path, request):
    env = dict(os.environ)
    # The cluster's shims first; the venv next, for `snakemake` inside the jobs.
    env["PATH"] = f"{cluster / 'bin'}:{Path(sys.executable).parent}:{env['PATH']}"
    # The profile's threads are sized for cluster nodes; here two cores are shared,
    # and more threads than cores only slows torch down.
    rules = yaml.safe_load((PROFILE / "config.yaml").read_text())["set-threads"]
    command = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
        "--configfile", str(TINY),
        "--executor", "slurm", "--profile", str(PROFILE),
        # profiles/default (local runs) holds a global gpu limit; keep it out.
        "--workflow-profile", "none",
        "--default-resources", f"slurm_account={ACCOUNT}",
        # The plugin's default is 40 s before the first status check of each job.
        "--slurm-init-seconds-before-status-checks", "2",
        "--set-threads", *(f"{rule}=1" for rule in rules),
    ]
    start = time.monotonic()
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=1800)
    report(request.config, f"SLURM run of the tiny pipeline: {time.monotonic() - start:.0f} s")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]

    table = pd.read_csv(tmp_path / "results" / "tables" / "accuracy.csv")
    ours = table[(table["dataset"] == "synthetic") & (table["variant"] == "default")
                 & (table["method"] == "Ours (expmap)")]
    assert len(ours) == 1, table
    assert ours["n_folds"].item() == 2 and 0 <= ours["accuracy"].item() <= 100

    # Every job ran through SLURM and finished; GPU rules, and only they, held a GPU.
    # The plugin puts the rule's name into the job's comment: rule_<name>_wildcards_...
    sacct = subprocess.run(
        ["sacct", "--allocations", "--noheader", "--parsable2", "--allusers",
         "--starttime", "2000-01-01",
         "--format", "JobID,State,AllocTRES,Comment"],
        env=env, capture_output=True, text=True, check=True)
    jobs = [line.split("|") for line in sacct.stdout.splitlines() if line]
    ran = {}
    for jobid, state, tres, comment in jobs:
        assert state == "COMPLETED", f"job {jobid} ({comment}): {state}"
        rule = comment.removeprefix("rule_").split("_wildcards")[0]
        ran.setdefault(rule, []).append("gres/gpu=1" in tres)
    assert GPU_RULES | {"prepare", "record", "tables"} <= set(ran), ran
    for rule, gpus in ran.items():
        assert all(gpus) if rule in GPU_RULES else not any(gpus), (rule, gpus)
    assert len(ran["train_stage1"]) == 2  # tiny.yaml runs two folds
