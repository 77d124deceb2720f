"""The paper's three modules: EFE (features and mask), EMR (mask refiner), EPMG (pattern maps)."""

from expmap.model.efe import EFE
from expmap.model.emr import EMR
from expmap.model.epmg import EPMG
from expmap.model.vggface import NUM_CONVS, WeightsError

__all__ = ["EFE", "EMR", "EPMG", "NUM_CONVS", "WeightsError"]
