"""The paper's three modules: EFE (features and mask), EMR (mask refiner), EPMG (pattern maps),
and `build_stack`, the one place they are put together."""

from torch import nn

from expmap.model.efe import EFE
from expmap.model.emr import EMR
from expmap.model.epmg import EPMG
from expmap.model.vggface import NUM_CONVS, WeightsError

STACK = ("efe", "emr", "epmg")  # stage k adds module k; the order in which they are built


def build_stack(names, num_classes: int, width: float, emr_init: str = "uniform",
                batch_norm: bool = False) -> dict[str, nn.Module]:
    """Fresh modules `names` (a prefix of STACK), built in STACK order so that a seed gives
    each the same initial weights however it was asked for."""
    names = [name for name in STACK if name in set(names)]
    if "efe" not in names:
        raise ValueError(f"a stack starts with efe, not {names}")
    efe = EFE(num_classes, width, batch_norm=batch_norm)
    makers = {"efe": lambda: efe, "emr": lambda: EMR(init=emr_init),
              "epmg": lambda: EPMG(num_classes, efe.channels)}
    return {name: makers[name]() for name in names}


__all__ = ["EFE", "EMR", "EPMG", "NUM_CONVS", "STACK", "WeightsError", "build_stack"]
