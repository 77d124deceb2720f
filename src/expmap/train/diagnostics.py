"""Is a stage learning? Checks on one epoch's metrics row that a researcher would otherwise
find only by plotting: a triplet loss that sits exactly at its margin (every embedding in
the batch the same point, so the hinge is the margin and its gradient vanishes), and an
output that does not change across samples (a dead decoder, a forgetting RNN).

The row's columns come from the training loop: loss_<term>, active_<term> (share of
triplets with a positive hinge), paper_<term> (the term under the paper's definition) and
spread_<output> (standard deviation across the batch, averaged over the output's values).
"""

from __future__ import annotations

import math

# A triplet term within 1% of its margin has collapsed (the check the demo's EMR failed:
# L_h = 0.2009 against alpha = 0.2, every epoch).
MARGIN_TOLERANCE = 0.01
# Every output we watch lies in [0, 1] or [-1, 1]: below this spread it is one constant.
CONSTANT_SPREAD = 1e-3

OUTPUTS = {"mask": "EFE mask M", "h": "EMR hidden state h", "embedding": "EPMG embedding e",
           "pattern": "pattern map P"}


def collapse_warnings(row: dict, margins: dict[str, tuple[str, float]]) -> list[str]:
    """One line per problem in `row`; margins maps a triplet term to (symbol, margin)."""
    warnings = []
    for term, (symbol, margin) in margins.items():
        value = row.get(f"loss_{term}", math.nan)
        if margin > 0 and abs(value / margin - 1) < MARGIN_TOLERANCE:
            active = row.get(f"active_{term}", math.nan)
            warnings.append(
                f"L_{term} = {value:.4g} sits at its margin {symbol} = {margin:g} "
                f"({100 * active:.0f}% of triplets active): the embeddings it compares have "
                "collapsed to one point and the loss no longer teaches anything; see "
                "docs/SPEC.md (triplet settings: distance, mining)")
    for output, name in OUTPUTS.items():
        value = row.get(f"spread_{output}", math.nan)
        if value < CONSTANT_SPREAD:
            warnings.append(f"the {name} is constant across samples (spread {value:.2g}, "
                            f"below {CONSTANT_SPREAD:g}): it carries no information about "
                            "the input")
    return warnings
