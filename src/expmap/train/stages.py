"""The three stage runners (the package's docstring says what each trains): what a stage
trains, clips and reports, its batches, its losses and its predictions. Stages 2 and 3
keep their frozen convs' activations (`FrozenConvs`, `feature_cache.FeatureCache`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from dataclasses import fields

import numpy as np
import torch
from torch import nn

from expmap.data.batches import Augmentation, augmented, image_batch
from expmap.data.sampling import (
    BalancedBatchSampler,
    ShuffledBatchSampler,
    TripletBatchSampler,
    epoch_generator,
)
from expmap.data.store import FoldData
from expmap.losses import (
    EMRWeights,
    EPMGWeights,
    StageLoss,
    grayscale,
    map_margin,
    stage1_loss,
    stage2_loss,
    stage3_loss,
)
from expmap.model import EFE, NUM_CONVS
from expmap.model.efe import EFEOutput
from expmap.model.epmg import PATTERN_SIZE
from expmap.train.feature_cache import FeatureCache
from expmap.train.hyperparameters import (
    Stage1Hyperparameters,
    Stage2Hyperparameters,
    Stage3Hyperparameters,
    TrainingError,
)
from expmap.train.precision import as_fp32


def triplet_sampler(hp, rows: np.ndarray, labels: np.ndarray) -> TripletBatchSampler:
    return TripletBatchSampler(rows, labels[rows], hp.t, hp.iterations, hp.seed)


class FrozenConvs:
    """A stage whose EFE has its first `frozen_convs` convs frozen: their activations are a
    fixed function of (image, mirrored or not), so they are computed the first time an
    image and view is drawn and read back afterwards, where they fit (`keep_frozen`)."""

    frozen_convs = 0
    cache: FeatureCache | None = None
    efe: EFE
    precision: Callable[[], ContextManager]

    def keep_frozen(self, data: FoldData, views: int, device: torch.device, limit_mb: float,
                    log: Callable[[str], None]) -> None:
        """Keep the frozen convs' activations of every image and view on `device` when they
        take at most `limit_mb`; else every step computes them."""
        if self.frozen_convs == 0:
            return
        what = f"the frozen convs' activations (conv 1..{self.frozen_convs})"
        probe = self.frozen_activations(image_batch(data.images, data.train_index[:1], device))
        shape = tuple(probe.shape[1:])
        needed = FeatureCache.megabytes(len(data.images), views, shape)
        if needed > limit_mb:
            log(f"{what} are recomputed at every step: keeping them would take "
                f"{needed:,.0f} MB, above feature_cache_mb {limit_mb:,.0f}")
            return
        self.cache = FeatureCache(len(data.images), views, shape, device)
        log(f"{what} are computed once per image and view and kept ({needed:,.0f} MB on "
            f"{device}, feature_cache_mb {limit_mb:,.0f})")

    def frozen_activations(self, images) -> torch.Tensor:
        with torch.no_grad(), self.precision():
            return self.efe.prefix(images, self.frozen_convs)

    def kept(self, images, rows, mirrored) -> torch.Tensor | None:
        """The frozen convs' kept activations of these images; None where none are kept."""
        if self.cache is None or rows is None:
            return None
        return self.cache(self.frozen_activations, images, rows, mirrored)

    def efe_outputs(self, images, rows, mirrored, precision) -> EFEOutput:
        kept = self.kept(images, rows, mirrored)
        with precision():
            # the module's own call where nothing is kept: compiled where `compile` asks
            out = (self.efe(images) if kept is None
                   else self.efe.forward_from(kept, self.frozen_convs))
        return as_fp32(out)


class Stage1(FrozenConvs):
    """EFE trained whole with cross-entropy."""

    margins: dict[str, tuple[str, float]] = {}  # triplet term -> (symbol, margin)

    def __init__(self, hp: Stage1Hyperparameters, modules: dict[str, nn.Module],
                 precision: Callable[[], ContextManager]):
        self.modules, self.precision = modules, precision
        self.efe = modules["efe"]
        # stage 1's random moves, seeded per epoch (train_mode) as the flips are, so that a
        # resumed run moves its images as an unbroken one does; stage 2 has none
        self.augmentation = Augmentation(**{field.name: getattr(hp, field.name, 0)
                                            for field in fields(Augmentation)})
        self.seed = hp.seed
        self.draws = epoch_generator(hp.seed + 2, 0)
        # what is clipped and reported: model -> its trainable parts
        self.parts = {"efe": {"backbone": self.efe.features, "mask_net": self.efe.mask_net,
                              "classifier": self.efe.classifier}}

    @staticmethod
    def sampler(hp, rows: np.ndarray, labels: np.ndarray) -> ShuffledBatchSampler:
        if hp.sampler == "balanced":
            return BalancedBatchSampler(rows, labels[rows], hp.batch_size, hp.seed)
        return ShuffledBatchSampler(rows, hp.batch_size, hp.seed)

    def param_groups(self, hp) -> list[dict]:
        return [{"params": trainable([self.efe]), "base_lr": hp.lr}]

    def train_mode(self, epoch: int = 0):
        self.efe.train()
        self.draws = epoch_generator(self.seed + 2, epoch)

    # rows and mirrored (the images' store rows, and which are mirrored) find kept frozen
    # activations; a batch built elsewhere (a bench, a test) passes neither
    def losses(self, images, labels, rows=None, mirrored=None) -> tuple[StageLoss, torch.Tensor]:
        if self.augmentation:  # changed images are not the kept ones: nothing is kept
            images, rows = augmented(images, self.augmentation, self.draws), None
        out = self.efe_outputs(images, rows, mirrored, self.precision)
        return stage1_loss(out.logits, labels, out.mask), out.logits

    def predict(self, images, rows=None):
        return self.efe_outputs(images, rows, None, nullcontext).logits


class Stage2(Stage1):
    """EFE minus its frozen convs, plus EMR, with L_EMR."""

    def __init__(self, hp: Stage2Hyperparameters, modules: dict[str, nn.Module],
                 precision: Callable[[], ContextManager]):
        super().__init__(hp, modules, precision)
        self.emr = modules["emr"]
        self.parts["emr"] = {"rnn": self.emr}
        self.weights = EMRWeights(hp.lambda1, hp.lambda2, hp.lambda3, hp.alpha, hp.triplets)
        self.margins = {"h": ("alpha", hp.alpha)}
        if not 0 <= hp.frozen_convs <= NUM_CONVS:
            raise TrainingError(f"frozen_convs must lie in 0..{NUM_CONVS}, not {hp.frozen_convs}")
        self.frozen = self.efe.features[: self.efe.split(hp.frozen_convs)]  # shared modules
        self.frozen.requires_grad_(False)
        self.frozen.eval()  # from the first kept activation on (keep_frozen's probe)
        self.frozen_convs = hp.frozen_convs

    sampler = staticmethod(triplet_sampler)

    def param_groups(self, hp) -> list[dict]:
        emr_lr = hp.lr if hp.emr_lr is None else hp.emr_lr
        return [{"params": trainable([self.efe]), "base_lr": hp.lr},
                {"params": trainable([self.emr]), "lr": emr_lr, "base_lr": emr_lr}]

    def train_mode(self, epoch: int = 0):
        self.efe.train()
        self.frozen.eval()  # frozen batch norms keep their statistics, so kept activations hold
        self.emr.train()

    def losses(self, images, labels, rows=None, mirrored=None) -> tuple[StageLoss, torch.Tensor]:
        out = self.efe_outputs(images, rows, mirrored, self.precision)
        emr = self.emr(out.mask)  # a small RNN, kept in fp32
        return stage2_loss(out.logits, out.mask, emr.refined, emr.h, labels,
                           self.weights), out.logits


class Stage3(FrozenConvs):
    """EPMG alone on the features of the frozen EFE, with L_EPMG."""

    frozen_convs = NUM_CONVS

    def __init__(self, hp: Stage3Hyperparameters, modules: dict[str, nn.Module],
                 precision: Callable[[], ContextManager]):
        self.modules, self.precision = modules, precision
        self.efe, self.emr, self.epmg = modules["efe"], modules["emr"], modules["epmg"]
        self.efe.requires_grad_(False).eval()  # from the first kept activation on
        self.emr.requires_grad_(False).eval()
        self.parts = {"epmg": {"encoder": self.epmg.encoder,
                               "classifier": self.epmg.classifier,
                               "decoder": self.epmg.decoder}}
        beta = map_margin(hp.beta, hp.beta_scale, PATTERN_SIZE ** 2, hp.distance)
        self.weights = EPMGWeights(hp.lambda4, hp.lambda5, hp.lambda6, hp.lambda7, beta,
                                   hp.gamma, hp.triplets)
        self.code_gradient = hp.pattern_gradient == "encoder"
        self.margins = {"embed": ("gamma", hp.gamma), "sim": ("beta", beta)}

    sampler = staticmethod(triplet_sampler)
    class_mean_faces: torch.Tensor | None = None  # [K,1,H,W]: pattern_target class_mean

    def features(self, images, rows, mirrored, precision) -> torch.Tensor:
        """The frozen EFE's masked features (no classifier: EPMG does not read it)."""
        with torch.no_grad():
            kept = self.kept(images, rows, mirrored)
            with precision():
                if kept is None:
                    return self.efe(images).features
                return self.efe.masked_from(kept, self.frozen_convs)[1]

    def param_groups(self, hp) -> list[dict]:
        decoder_lr = hp.lr if hp.decoder_lr is None else hp.decoder_lr
        head = [self.epmg.encoder, self.epmg.classifier]
        return [{"params": trainable(head), "base_lr": hp.lr},
                {"params": trainable([self.epmg.decoder]), "lr": decoder_lr,
                 "base_lr": decoder_lr}]

    def train_mode(self, epoch: int = 0):
        self.efe.eval()
        self.emr.eval()
        self.epmg.train()

    def losses(self, images, labels, rows=None, mirrored=None) -> tuple[StageLoss, torch.Tensor]:
        features = self.features(images, rows, mirrored, self.precision)
        with self.precision():
            out = as_fp32(self.epmg(features, self.code_gradient))
        target = pattern_targets(self.class_mean_faces, images, labels, mirrored)
        return stage3_loss(out.embedding, out.logits, out.pattern, target, labels,
                           self.weights), out.logits

    def predict(self, images, rows=None):
        return self.epmg(self.features(images, rows, None, nullcontext).float()).logits


STAGES = {1: Stage1, 2: Stage2, 3: Stage3}


def pattern_targets(class_faces: torch.Tensor | None, images, labels, mirrored
                    ) -> torch.Tensor:
    """What L_pattern pulls each map toward: the input's grey where class_faces is None,
    else its class's face [K,1,H,W], mirrored where the input is."""
    if class_faces is None:
        return grayscale(images)
    faces = class_faces[labels]
    if mirrored is None:
        return faces
    return torch.where(mirrored.to(faces.device)[:, None, None, None], faces.flip(-1), faces)


def trainable(modules) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters() if p.requires_grad]
