"""EPMG, the expression pattern-map generator: encoder, classifier and decoder."""

from __future__ import annotations

import torch
from torch import nn

EMBEDDING = 128
# Seven 4x4 transposed convs from 1x1 to 224x224 (SPEC §1): stride 1 twice, then 2.
DECODER_CHANNELS = (128, 64, 32, 16, 8, 4, 2, 1)
DECODER_STRIDES = (1, 1, 2, 2, 2, 2, 2)


def pattern_decoder() -> nn.Sequential:
    layers: list[nn.Module] = []
    steps = list(zip(DECODER_CHANNELS[:-1], DECODER_CHANNELS[1:], DECODER_STRIDES))
    for i, (cin, cout, stride) in enumerate(steps):
        layers.append(nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=stride,
                                         padding=0 if stride == 1 else 1))
        layers.append(nn.Sigmoid() if i == len(steps) - 1 else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class EPMG(nn.Module):
    """Masked features [B,C,7,7] -> (e [B,128], logits [B,K], pattern map [B,1,224,224])."""

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

    def forward(self, masked: torch.Tensor):
        code = self.encoder(masked)  # [B, 128, 1, 1]
        embedding = code.flatten(1)
        return embedding, self.classifier(embedding), self.decoder(code)
