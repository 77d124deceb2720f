"""EMR, the expression mask refiner: an Elman RNN over the mask's cells in row-major order."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

# How the RNN starts (stage 2's `emr_init`):
#   uniform     PyTorch's default, U(-1/4, 1/4) for every weight (hidden 16): the paper and
#               the report say nothing, so this is what their code ran
#   orthogonal  orthogonal W_hh, so the state neither forgets the early cells of the 49 nor
#               explodes, and input weights U(-1, 1), 4x the default, because masks differ
#               across samples by only ~0.06 per cell (docs/SPEC.md, "Deviations")
EMR_INITS = ("uniform", "orthogonal")
ORTHOGONAL_INPUT_SCALE = 4.0


class EMROutput(NamedTuple):
    h: torch.Tensor  # [B, hidden], the last hidden state, what L_h sees
    refined: torch.Tensor  # [B, 1, H, W], M', the readout at every cell


class EMR(nn.Module):
    """Mask [B,1,H,W] -> EMROutput(h, refined)."""

    def __init__(self, hidden: int = 16, init: str = "uniform"):
        super().__init__()
        if init not in EMR_INITS:
            raise ValueError(f"EMR init must be one of {EMR_INITS}, not {init!r}")
        self.rnn = nn.RNN(input_size=1, hidden_size=hidden, nonlinearity="tanh", batch_first=True)
        self.readout = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid())
        if init == "orthogonal":
            nn.init.orthogonal_(self.rnn.weight_hh_l0)
            with torch.no_grad():
                self.rnn.weight_ih_l0.mul_(ORTHOGONAL_INPUT_SCALE)

    def forward(self, mask: torch.Tensor) -> EMROutput:
        cells = mask.flatten(1).unsqueeze(-1)  # [B, H*W, 1], row-major
        states, last = self.rnn(cells)
        return EMROutput(h=last[-1], refined=self.readout(states).view_as(mask))
