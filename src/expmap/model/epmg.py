"""EPMG, the expression pattern-map generator: encoder, classifier and decoder."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

EMBEDDING = 128
# Seven 4x4 transposed convs from 1x1 to 224x224 (SPEC §1): stride 1 twice, then 2.
DECODER_CHANNELS = (128, 64, 32, 16, 8, 4, 2, 1)
DECODER_STRIDES = (1, 1, 2, 2, 2, 2, 2)
PATTERN_SIZE = 224  # the side of the decoder's square map
# How the decoder starts (stage 3's `decoder_init`):
#   pytorch    PyTorch's default init of every layer (what the report's code ran)
#   mean_grey  the last bias at logit(mean training grey), so the first steps shape the face
#              instead of its overall brightness, and every hidden bias at +0.1, so no ReLU
#              channel starts dead: with PyTorch's biases the 2-channel 112x112 layer died
#              within 50 steps and the maps stayed flat (docs/SPEC.md, "Deviations")
DECODER_INITS = ("pytorch", "mean_grey")
HIDDEN_BIAS = 0.1


class EPMGOutput(NamedTuple):
    embedding: torch.Tensor  # e [B, 128], in (0, 1)
    logits: torch.Tensor  # c_e [B, K], the reported prediction
    pattern: torch.Tensor  # P [B, 1, 224, 224], in (0, 1)


def pattern_decoder() -> nn.Sequential:
    layers: list[nn.Module] = []
    steps = list(zip(DECODER_CHANNELS[:-1], DECODER_CHANNELS[1:], DECODER_STRIDES))
    for i, (cin, cout, stride) in enumerate(steps):
        layers.append(nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=stride,
                                         padding=0 if stride == 1 else 1))
        layers.append(nn.Sigmoid() if i == len(steps) - 1 else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class EPMG(nn.Module):
    """Masked features [B,C,7,7] -> EPMGOutput(embedding, logits, pattern)."""

    def __init__(self, num_classes: int, in_channels: int = 512):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 256, kernel_size=4), nn.ReLU(inplace=True),
            nn.Conv2d(256, EMBEDDING, kernel_size=4), nn.Sigmoid(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(EMBEDDING, 64), nn.ReLU(inplace=True), nn.Linear(64, num_classes),
        )
        self.decoder = pattern_decoder()

    def init_decoder(self, init: str, mean_grey: float) -> None:
        """Apply one of DECODER_INITS; mean_grey is the training images' mean in (0, 1)."""
        if init not in DECODER_INITS:
            raise ValueError(f"decoder init must be one of {DECODER_INITS}, not {init!r}")
        if init == "pytorch":
            return
        convs = [m for m in self.decoder if isinstance(m, nn.ConvTranspose2d)]
        grey = min(max(mean_grey, 1e-3), 1 - 1e-3)
        with torch.no_grad():
            for conv in convs[:-1]:
                conv.bias.fill_(HIDDEN_BIAS)
            convs[-1].bias.fill_(math.log(grey / (1 - grey)))

    def forward(self, features: torch.Tensor, code_gradient: bool = True) -> EPMGOutput:
        """code_gradient False: the pattern's gradient stops at the code, so what the map is
        trained toward does not reach the encoder (stage 3's pattern_gradient: decoder)."""
        code = self.encoder(features)  # [B, 128, 1, 1]
        embedding = code.flatten(1)
        return EPMGOutput(embedding, self.classifier(embedding),
                          self.decoder(code if code_gradient else code.detach()))
