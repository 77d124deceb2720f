"""The front page and the manual stay true: every relative link and image resolves, README
stays short enough to read in five minutes, and the commands it tells a newcomer to type
exist."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
         REPO / "results" / "README.md", REPO / "profiles" / "slurm" / "README.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
README_LINES = 150
LONGEST_SENTENCE = 50  # words, in README's prose


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_and_image_resolves(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(REPO)} links to {target}, which is missing"


def prose(markdown: str) -> str:
    """README without its code blocks, headings, tables and list markers."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    lines = [line for line in text.splitlines()
             if not line.startswith(("#", "|", "![")) and line.strip()]
    return " ".join(re.sub(r"^\s*(- |\d+\. )", "", line) for line in lines)


def test_readme_is_short_with_short_sentences():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= README_LINES
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z`*\[])", prose(text))
    longest = max(sentences, key=lambda sentence: len(sentence.split()))
    assert len(longest.split()) <= LONGEST_SENTENCE, longest


def test_the_fresh_machine_commands_are_real_targets_and_entries():
    text = (REPO / "README.md").read_text()
    section = text.split("## On a fresh machine")[1].split("\n## ")[0]
    commands = re.findall(r"`(make [a-z-]+|\.venv/bin/[a-z]+[^`]*)`", section)
    commands += re.findall(r"^(make [a-z-]+)$", section, flags=re.M)
    targets = set(re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    scripts = (REPO / "pyproject.toml").read_text()
    assert {"make demo", "make test"} <= set(commands)
    for command in commands:
        if command.startswith("make "):
            assert command.split()[1] in targets, command
        else:
            program = command.split()[0].rsplit("/", 1)[1]
            assert program == "snakemake" or f"\n{program} = " in scripts, command
