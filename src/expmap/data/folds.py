"""Cross-validation folds: which fold's test set each subject (or image) belongs to.

Subjects are ordered by their ids with numbers compared as numbers (S5 before S10; the same
as plain sorting for zero-padded ids such as CK+'s S005 or Oulu-CASIA's P001).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np


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


def balanced_subject_folds(subject_labels: Iterable[tuple[str, int]], folds: int
                           ) -> dict[str, int]:
    """Each subject -> a fold such that every class is spread over the folds as evenly as
    whole subjects allow (a stratified group k-fold, for a folder whose subject ids say
    nothing of its classes: runs of consecutive ids can put a class in one fold only).

    Subjects are placed one at a time, those whose images are most one class first; each
    goes to the fold that leaves the classes' shares of the folds least uneven (the mean over
    classes of the standard deviation over folds), ties to the fold with fewest images, then
    the first. No randomness: the same subjects and labels always give the same folds."""
    counts: dict[str, Counter] = {}
    for subject, label in subject_labels:
        counts.setdefault(subject, Counter())[label] += 1
    classes = sorted({label for c in counts.values() for label in c})
    subjects = sorted_subjects(counts)
    vectors = np.array([[counts[s][k] for k in classes] for s in subjects], dtype=float)
    shares = vectors / vectors.sum(axis=0)  # each subject's share of each class
    order = sorted(range(len(subjects)), key=lambda i: -vectors[i].std())  # stable: ids
    per_fold = np.zeros((folds, len(classes)))
    sizes = np.zeros(folds)
    assigned: dict[str, int] = {}
    for i in order:
        # trial[f]: the folds' class shares were subject i put in fold f
        trial = np.repeat(per_fold[None], folds, axis=0)
        trial[np.arange(folds), np.arange(folds)] += shares[i]
        unevenness = trial.std(axis=1).mean(axis=1)
        best = min(range(folds), key=lambda f: (round(unevenness[f], 12), sizes[f], f))
        per_fold[best] += shares[i]
        sizes[best] += vectors[i].sum()
        assigned[subjects[i]] = best
    return assigned
