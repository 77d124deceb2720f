"""The VGG-16 layout of VGG-Face (Parkhi et al. 2015), at any width, and its weight files.

torchvision builds the layers (`make_layers` with configuration "D"), so the module names
are torchvision's: `features.<i>` for the 13 convolutions and `classifier.{0,3,6}` for
fc6, fc7 and fc8. A width factor scales every conv and hidden fc width, so that tests and
the demo run a narrow copy of the same 224 x 224 geometry.
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from expmap.errors import UserError

VGG16_LAYOUT = cfgs["D"]
NUM_CONVS = sum(1 for v in VGG16_LAYOUT if v != "M")
FEATURE_GRID = 7  # 224 / 2**5 after five max-pools

# Input normalisation belongs to the weights. Images enter the model as RGB in 0..255.
VGG_FACE_MEAN = (129.186279296875, 104.76238250732422, 93.59396362304688)
VGG_FACE_STD = (1.0, 1.0, 1.0)
IMAGENET_MEAN = tuple(255.0 * m for m in (0.485, 0.456, 0.406))
IMAGENET_STD = tuple(255.0 * s for s in (0.229, 0.224, 0.225))
# From scratch: centred and divided by about 60, i.e. roughly unit scale: the narrow VGG
# does not train on 0..255 inputs (docs/real-faces.md).
SCRATCH_MEAN = (127.5, 127.5, 127.5)
SCRATCH_STD = (60.0, 60.0, 60.0)

# vgg_face_dag.pth names its layers after the MatConvNet original.
VGG_FACE_CONV_NAMES = [f"conv{block}_{i}" for block, n in zip(range(1, 6), (2, 2, 3, 3, 3))
                       for i in range(1, n + 1)]
VGG_FACE_FC_NAMES = ["fc6", "fc7"]


class WeightsError(UserError):
    """A weights file that cannot be used; the message is the one line to show."""


def scaled_width(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def vgg16_features(width: float, batch_norm: bool = False) -> nn.Sequential:
    """VGG-16's 13 convs and 5 max-pools; with batch_norm a BatchNorm2d after each conv
    (torchvision's vgg16_bn layout), for training from scratch only."""
    layout = [v if v == "M" else scaled_width(v, width) for v in VGG16_LAYOUT]
    return make_layers(layout, batch_norm=batch_norm)


def conv_layers(features: nn.Sequential) -> list[nn.Conv2d]:
    return [m for m in features if isinstance(m, nn.Conv2d)]


def _torchvision_names(features: nn.Sequential) -> list[str]:
    return [f"features.{i}" for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]


def _source_to_target(keys: set[str], features: nn.Sequential) -> tuple[str, dict[str, str]]:
    """Which layout the file has, and a map of its parameter prefixes onto EFE's."""
    targets = _torchvision_names(features) + ["classifier.0", "classifier.3"]
    if "conv1_1.weight" in keys:
        return "vgg_face_dag", dict(zip(VGG_FACE_CONV_NAMES + VGG_FACE_FC_NAMES, targets))
    if "features.0.weight" in keys:
        return "torchvision", dict(zip(targets, targets))
    raise WeightsError("expected the keys of vgg_face_dag.pth (conv1_1.weight ... fc8.bias) or "
                       "of a torchvision vgg16 state dict (features.0.weight ...); found "
                       f"{sorted(keys)[:3]}")


def refusal_reason(error: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in a few words. Never torch's own
    first line: it suggests weights_only=False, which would run the file's code."""
    text = str(error)
    code = re.search(r"unsupported GLOBAL ([\w.]+)|Unsupported global: GLOBAL ([\w.]+)", text,
                     re.IGNORECASE)
    if code:
        return f"loading it would call {code.group(1) or code.group(2)}; nothing was run"
    if "Weights only load failed" in text:
        return "it holds objects other than tensors; nothing was run"
    return f"{type(error).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}"


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict without running any code the file may carry."""
    if not os.path.isfile(path):
        raise WeightsError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one line
        reason = refusal_reason(error)
        raise WeightsError(f"{path} is not a plain state dict that loads with weights_only=True "
                           f"({reason[:160]}); save the weights with torch.save(state_dict)") \
            from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return state


def backbone_state(state: dict[str, torch.Tensor], features: nn.Sequential,
                   classifier: nn.Sequential, path: str) -> tuple[str, dict[str, torch.Tensor]]:
    """Map a VGG-16 state dict onto EFE's features/classifier (fc8 dropped: it names people
    or ImageNet classes, not expressions), checking every name and shape."""
    try:
        layout, prefixes = _source_to_target(set(state), features)
    except WeightsError as error:  # name the file, and what to put there
        raise WeightsError(f"{path}: {error}; use VGG-Face's vgg_face_dag.pth") from None
    own = {**{f"features.{k}": v for k, v in features.state_dict().items()},
           **{f"classifier.{k}": v for k, v in classifier.state_dict().items()}}
    mapped = {}
    for source, target in prefixes.items():
        for kind in ("weight", "bias"):
            key = f"{source}.{kind}"
            if key not in state:
                raise WeightsError(f"{path}: missing {key} ({layout} layout)")
            expected = own[f"{target}.{kind}"].shape
            tensor = state[key]
            if source.startswith("fc6") and tensor.dim() == 4:  # some conversions keep fc as conv
                tensor = tensor.flatten(1)
            if tuple(tensor.shape) != tuple(expected):
                raise WeightsError(f"{path}: {key} has shape {tuple(tensor.shape)}, the model "
                                   f"expects {tuple(expected)} (is defaults.model.width 1.0?)")
            mapped[f"{target}.{kind}"] = tensor
    return layout, mapped
