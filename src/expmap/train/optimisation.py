"""The optimizer and its learning-rate schedule, and the gradients: clipping per module or
per model, and the norm each loss term's gradient has (which term drives the step)."""

from __future__ import annotations

import math

import torch
from torch import nn

from expmap.losses import StageLoss
from expmap.train.hyperparameters import CommonHyperparameters


def make_optimizer(hp: CommonHyperparameters, groups: list[dict]) -> torch.optim.Optimizer:
    if hp.optimizer == "adam":
        return torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
    return torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)


def lr_factor(hp: CommonHyperparameters, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up over `warmup_epochs`, then constant or cosine to zero; a factor on
    each parameter group's base learning rate."""
    warmup = hp.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if hp.schedule == "constant":
        return 1.0
    remaining = max(1, hp.epochs * steps_per_epoch - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / remaining))


def clip_gradients(parts: dict[str, dict[str, nn.Module]], max_norm: float,
                   scope: str) -> dict[str, torch.Tensor]:
    """Clip each module ("module") or each whole model ("model") to `max_norm`; returns the
    norm of every module's gradient before clipping, as grad_<model>_<module>."""
    norms = {}
    for model, modules in parts.items():
        params = {name: [p for p in m.parameters() if p.grad is not None]
                  for name, m in modules.items()}
        module_norms = {name: (nn.utils.get_total_norm([p.grad for p in params[name]])
                               if params[name] else
                               torch.zeros((), device=next(m.parameters()).device))
                        for name, m in modules.items()}
        if scope == "module":
            for name, group in params.items():
                nn.utils.clip_grads_with_norm_(group, max_norm, module_norms[name])
        else:
            whole = nn.utils.get_total_norm(list(module_norms.values()))
            nn.utils.clip_grads_with_norm_([p for g in params.values() for p in g], max_norm,
                                           whole)
        norms.update({f"grad_{model}_{name}": n for name, n in module_norms.items()})
    return norms


def term_gradient_norms(loss: StageLoss, params: list[nn.Parameter]) -> dict[str, torch.Tensor]:
    """Norm of the gradient of each weighted loss term over the trainable parameters, as
    grad_term_<term>: which term drives the step (one extra backward per term)."""
    norms = {}
    for name, term in loss.weighted.items():
        grads = (torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
                 if term.requires_grad else [])
        present = [g for g in grads if g is not None]
        norms[f"grad_term_{name}"] = (nn.utils.get_total_norm(present) if present
                                      else torch.zeros((), device=loss.total.device))
    return norms
