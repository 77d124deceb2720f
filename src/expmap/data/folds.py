"""Cross-validation folds: which fold's test set each subject (or image) belongs to.

Subjects are ordered by their ids with numbers compared as numbers (S5 before S10; the same
as plain sorting for zero-padded ids such as CK+'s S005 or Oulu-CASIA's P001).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence


def fold_name(fold: int) -> str:
    return f"fold{fold}"


def natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def sorted_subjects(subjects: Iterable[str]) -> list[str]:
    return sorted(set(subjects), key=natural_key)


def interleaved_subject_folds(subjects: Iterable[str], folds: int) -> dict[str, int]:
    """Subject i of the sorted list -> fold i mod `folds` (CK+'s published protocol)."""
    return {subject: i % folds for i, subject in enumerate(sorted_subjects(subjects))}


def consecutive_subject_folds(subjects: Iterable[str], folds: int) -> dict[str, int]:
    """Runs of consecutive subjects of the sorted list, as equal as they can be
    (Oulu-CASIA's 80 subjects into 10 folds of 8)."""
    ordered = sorted_subjects(subjects)
    return {subject: i * folds // len(ordered) for i, subject in enumerate(ordered)}


def stratified_folds(labels: Sequence[int], folds: int, seed: int = 0) -> list[int]:
    """A fold per image such that every class is spread evenly over the folds (for data
    with no subject ids). Seeded: the same labels always give the same folds."""
    by_class: dict[int, list[int]] = {}
    for position, label in enumerate(labels):
        by_class.setdefault(label, []).append(position)
    assigned = [0] * len(labels)
    rng = random.Random(seed)
    offset = 0
    for label in sorted(by_class):
        members = by_class[label]
        rng.shuffle(members)
        # Each class starts where the last ended, so small classes do not all land in fold 0.
        for rank, position in enumerate(members):
            assigned[position] = (offset + rank) % folds
        offset = (offset + len(members)) % folds
    return assigned
