"""The conda environment of cluster jobs installs what the package needs: a job built from
envs/expmap.yaml must not silently lack a dependency the .venv has (without OpenCV every
Oulu-CASIA frame would be centre-cropped)."""

import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]
NOT_IN_JOBS = {"snakemake"}  # the jobs' script preamble puts Snakemake's own on sys.path


def by_name(requirements: list[str]) -> dict[str, str]:
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower(): r.replace(" ", "")
            for r in requirements}


def test_conda_environment_matches_the_package_requirements():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = by_name(project["dependencies"] + project["optional-dependencies"]["faces"])
    environment = yaml.safe_load((REPO / "envs/expmap.yaml").read_text())
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert by_name(pip) == {k: v for k, v in wanted.items() if k not in NOT_IN_JOBS}
