"""EFE, the expression feature extractor: VGG-Face backbone, mask-net and classifier."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from expmap.model.vggface import (
    FEATURE_GRID,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SCRATCH_MEAN,
    SCRATCH_STD,
    VGG_FACE_MEAN,
    VGG_FACE_STD,
    WeightsError,
    backbone_state,
    read_weights,
    scaled_width,
    vgg16_features,
)


class EFEOutput(NamedTuple):
    mask: torch.Tensor  # M [B, 1, 7, 7], in (0, 1)
    features: torch.Tensor  # G_ms = M * G_ori [B, C, 7, 7], what EPMG encodes
    logits: torch.Tensor  # [B, K]


class EFE(nn.Module):
    """Image batch [B,3,224,224] (RGB, 0..255) -> EFEOutput(mask, features, logits),
    C = 512 x width.

    The input normalisation is a pair of buffers, so it travels with the weights in every
    checkpoint: VGG-Face's or ImageNet's when those weights are loaded, unit scale otherwise.
    batch_norm puts a BatchNorm2d after every conv: from scratch only (VGG-Face has none).
    """

    def __init__(self, num_classes: int, width: float = 1.0, dropout: float = 0.5,
                 batch_norm: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.width = width
        self.batch_norm = batch_norm
        self.features = vgg16_features(width, batch_norm)
        channels = scaled_width(512, width)
        hidden = scaled_width(4096, width)
        self.channels = channels
        self.mask_net = nn.Sequential(nn.Conv2d(channels, 1, kernel_size=1), nn.Sigmoid())
        # Same indices as torchvision's VGG classifier (fc6 = 0, fc7 = 3, fc8 = 6).
        self.classifier = nn.Sequential(
            nn.Linear(channels * FEATURE_GRID * FEATURE_GRID, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.register_buffer("input_mean", torch.tensor(SCRATCH_MEAN).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(SCRATCH_STD).view(1, 3, 1, 1))
        self._init_from_scratch()

    def _init_from_scratch(self) -> None:
        # He (fan-in) init of fc6/fc7 and a small last fc and mask conv: without it the
        # narrow VGG collapses to a constant output (docs/real-faces.md).
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for m in (self.classifier[0], self.classifier[3]):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        for m in (self.classifier[6], self.mask_net[0]):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    def load_backbone(self, path: str) -> str:
        """Load VGG-Face (vgg_face_dag.pth) or torchvision vgg16 weights; returns the layout."""
        if self.batch_norm:
            raise WeightsError(f"{path}: pretrained VGG-16 weights have no batch norm; set "
                               "model.batch_norm: false to load them, or weights: null")
        layout, mapped = backbone_state(read_weights(path), self.features, self.classifier,
                                        str(path))
        own = self.state_dict()
        own.update(mapped)
        mean, std = ((VGG_FACE_MEAN, VGG_FACE_STD) if layout == "vgg_face_dag"
                     else (IMAGENET_MEAN, IMAGENET_STD))
        own["input_mean"] = torch.tensor(mean).view(1, 3, 1, 1)
        own["input_std"] = torch.tensor(std).view(1, 3, 1, 1)
        self.load_state_dict(own)
        return layout

    def forward(self, images: torch.Tensor) -> EFEOutput:
        # the whole backbone, unsliced: no new Sequential per call, one graph to compile
        return self.outputs(self.features(self.normalised(images)))

    def normalised(self, images: torch.Tensor) -> torch.Tensor:
        normalised = (images - self.input_mean) / self.input_std
        if self.batch_norm and normalised.device.type == "cpu":
            # a CPU's bf16 batch norm is slow on channels_last: measured, a training step of
            # the 1/8-wide EFE ran 88 images/s on this layout against 64 (batch 16, 2 threads)
            return normalised.contiguous()
        return normalised

    def masked(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask, masked features) of the backbone's last activations."""
        mask = self.mask_net(grid)
        return mask, mask * grid

    def outputs(self, grid: torch.Tensor) -> EFEOutput:
        mask, masked = self.masked(grid)
        return EFEOutput(mask, masked, self.classifier(masked.flatten(1)))

    def split(self, convs: int) -> int:
        """Index in `features` just past the `convs`-th conv, its batch norm and ReLU, and a
        max-pool that follows (parameter-free, and it quarters what a kept prefix output
        takes)."""
        if convs == 0:
            return 0
        relus = [i for i, m in enumerate(self.features) if isinstance(m, nn.ReLU)]
        end = relus[convs - 1] + 1
        if end < len(self.features) and isinstance(self.features[end], nn.MaxPool2d):
            end += 1
        return end

    def prefix(self, images: torch.Tensor, convs: int) -> torch.Tensor:
        """The backbone's activations after its first `convs` convs (the normalised images
        for 0): forward_from(prefix(x, n), n) is forward(x)."""
        return self.features[: self.split(convs)](self.normalised(images))

    def masked_from(self, activations: torch.Tensor, convs: int) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
        """(mask, masked features) from prefix(x, convs), without the classifier."""
        return self.masked(self.features[self.split(convs):](activations))

    def forward_from(self, activations: torch.Tensor, convs: int) -> EFEOutput:
        return self.outputs(self.features[self.split(convs):](activations))
