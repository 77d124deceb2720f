"""Is a stage learning? Checks on one epoch's metrics row that a researcher would otherwise
find only by plotting: a triplet loss that sits exactly at its margin (every embedding in
the batch the same point, so the hinge is the margin and its gradient vanishes), an output
that does not change across samples (a dead decoder, a forgetting RNN), and, at a stage's
end, a classifier no better than guessing.

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

# A stage whose last epoch trains its classifier no better than guessing learned nothing:
# training accuracy within this many points of chance (1/K), or the classification loss
# within this share of ln K (a uniform guess's cross-entropy).
CHANCE_POINTS = 0.05
CHANCE_LOSS = 0.05
CLASSIFICATION_LOSS = {1: "loss_efe", 2: "loss_efe", 3: "loss_classify"}

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


def learned_nothing(stage: int, row: dict, num_classes: int, steps: int) -> str | None:
    """One line when stage `stage`'s last epoch (`row`) classifies its training images no
    better than guessing among `num_classes`, after `steps` optimizer steps; else None."""
    chance, guess = 1 / num_classes, math.log(num_classes)
    accuracy = row["train_accuracy"]
    loss = row.get(CLASSIFICATION_LOSS[stage], math.nan)
    if accuracy - chance >= CHANCE_POINTS and not loss > (1 - CHANCE_LOSS) * guess:
        return None
    return (f"stage {stage} learned nothing: training accuracy {100 * accuracy:.1f}% (chance "
            f"{100 * chance:.1f}%), classification loss {loss:.3f} (ln {num_classes} = "
            f"{guess:.3f}: a uniform guess) after {steps} optimizer steps; what follows is "
            "built on it. Try more steps (a small folder makes few steps an epoch: the "
            "overlay configs/small-folders.yaml sets stage1.min_steps), a warm-up or a "
            "lower lr, or a start from pretrained weights or another expmap run's stage "
            "checkpoint (model.weights)")
