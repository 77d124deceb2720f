"""EMR, the expression mask refiner: an Elman RNN over the mask's cells in row-major order."""

from __future__ import annotations

import torch
from torch import nn


class EMR(nn.Module):
    """Mask [B,1,H,W] -> (h [B,16], the last hidden state; refined mask [B,1,H,W])."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.rnn = nn.RNN(input_size=1, hidden_size=hidden, nonlinearity="tanh", batch_first=True)
        self.readout = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, mask: torch.Tensor):
        cells = mask.flatten(1).unsqueeze(-1)  # [B, H*W, 1], row-major
        states, last = self.rnn(cells)
        refined = self.readout(states).view_as(mask)
        return last[-1], refined
