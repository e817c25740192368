"""Pruning for PyTorch models, used inside the user's own training loop.

- `GradualPruner`: magnitude pruning whose sparsity rises on the polynomial schedule of Zhu &
  Gupta ("To prune, or not to prune", 2017) while the model trains, so it can recover between
  steps. Masks are PyTorch's own (`torch.nn.utils.prune`); `finalize()` makes the zeros permanent.
- `prune_channels`: structured pruning. Whole output channels (neurons) with the smallest L1 norm
  are removed and every layer that consumes them shrinks to match, so the model is really smaller
  and faster on every target. The dependency tracking (residual adds, concatenations, flatten,
  batch norm) is torch-pruning's (DepGraph, Fang et al. 2023), a maintained library.

The export recipe's `prune` and `prune_channels` apply the same rules once, without training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from edgeport.quantizers.compress import magnitude_mask

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)


def polynomial_sparsity(step: int, final: float, begin: int, end: int, initial: float = 0.0,
                        power: int = 3) -> float:
    """Target sparsity at `step`: s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^power, held at
    `initial` before `begin` and at `final` after `end` (Zhu & Gupta, eq. 1)."""
    if step <= begin:
        return initial
    if step >= end:
        return final
    progress = (step - begin) / (end - begin)
    return final + (initial - final) * (1.0 - progress) ** power


@dataclass(frozen=True)
class GradualPruningConfig:
    """When and how far `GradualPruner` prunes.

    Attributes:
        final_sparsity: Fraction of each layer's weights that are zero at the end (0 < s < 1).
        end_step: Step at which `final_sparsity` is reached.
        begin_step: First pruning step (train the dense model first, if it is not trained yet).
        frequency: Masks are recomputed every `frequency` steps (the model recovers in between).
        initial_sparsity: Sparsity of the first pruning step.
        power: Exponent of the schedule (3: prune fast early, slowly near the end).
        skip: Module paths left dense (e.g. the first layer, which has few weights).
        layer_sparsity: Final sparsity of particular layers by module path (e.g. a small output
            layer pruned less); the others reach `final_sparsity`.
    """

    final_sparsity: float
    end_step: int
    begin_step: int = 0
    frequency: int = 100
    initial_sparsity: float = 0.0
    power: int = 3
    skip: tuple[str, ...] = ()
    layer_sparsity: dict = field(default_factory=dict)

    def __post_init__(self):
        for name, value in {"final_sparsity": self.final_sparsity, **self.layer_sparsity}.items():
            if not 0.0 < value < 1.0:
                raise ValueError(f"sparsity of {name} must be in (0, 1), got {value}")
        if not 0.0 < self.final_sparsity < 1.0:
            raise ValueError(f"final_sparsity must be in (0, 1), got {self.final_sparsity}")
        if not 0.0 <= self.initial_sparsity <= self.final_sparsity:
            raise ValueError(f"initial_sparsity must be in [0, final_sparsity], got {self.initial_sparsity}")
        if self.end_step <= self.begin_step:
            raise ValueError(f"end_step ({self.end_step}) must come after begin_step ({self.begin_step})")
        if self.frequency < 1:
            raise ValueError(f"frequency must be at least 1, got {self.frequency}")
        object.__setattr__(self, "skip", tuple(self.skip))


class GradualPruner:
    """Prunes `model` in place on a polynomial schedule; call `step()` after each optimizer step.

        pruner = GradualPruner(model, GradualPruningConfig(final_sparsity=0.9, end_step=2000))
        for step, (x, y) in enumerate(batches):
            loss_fn(model(x), y).backward(); optimizer.step(); optimizer.zero_grad()
            pruner.step(step)
        pruner.finalize()          # zeros become plain weights; the masks are gone

    A weight pruned once stays pruned: masks are recomputed from the surviving weights only.
    """

    def __init__(self, model: nn.Module, config: GradualPruningConfig):
        self.model, self.config = model, config
        self.layers = {name: m for name, m in model.named_modules()
                       if isinstance(m, PRUNABLE) and not _skipped(name, config.skip)}
        if not self.layers:
            raise ValueError("no Conv/Linear layer to prune (all skipped?)")
        for module in self.layers.values():
            torch_prune.identity(module, "weight")  # adds weight_orig and a mask of ones
        self.sparsity = 0.0

    def step(self, step: int) -> float:
        """Recompute the masks when the schedule says so; returns the current target sparsity."""
        cfg = self.config
        between_updates = (step - cfg.begin_step) % cfg.frequency != 0 and step < cfg.end_step
        if step < cfg.begin_step or between_updates:
            return self.sparsity
        target = polynomial_sparsity(step, cfg.final_sparsity, cfg.begin_step, cfg.end_step,
                                     cfg.initial_sparsity, cfg.power)
        if target > self.sparsity:
            with torch.no_grad():
                for name, module in self.layers.items():
                    final = cfg.layer_sparsity.get(name, cfg.final_sparsity)
                    layer_target = polynomial_sparsity(step, final, cfg.begin_step, cfg.end_step,
                                                       min(cfg.initial_sparsity, final), cfg.power)
                    masked = (module.weight_orig * module.weight_mask).detach().cpu().numpy()
                    keep = magnitude_mask(masked, layer_target)  # zeros are the smallest: they stay pruned
                    module.weight_mask.copy_(torch.from_numpy(keep).to(module.weight_mask))
            self.sparsity = target
        return self.sparsity

    def layer_sparsity(self) -> dict[str, float]:
        """Fraction of zeros in each pruned layer's effective weight."""
        return {name: float((m.weight == 0).float().mean()) for name, m in self.layers.items()}

    def finalize(self) -> nn.Module:
        """Bake the masks into the weights (plain tensors again) and return the model."""
        for module in self.layers.values():
            torch_prune.remove(module, "weight")
        return self.model


def _skipped(name: str, skip: tuple[str, ...]) -> bool:
    return any(name == s or name.startswith(s + ".") for s in skip)


def output_layers(model: nn.Module, example_inputs: tuple) -> list[str]:
    """Module paths of the Conv/Linear layers whose channels are the model's outputs: the last one
    run before each output (their channel count is the model's contract, e.g. the classes)."""
    order: list[tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: order.append((name, out)))
             for name, m in model.named_modules() if isinstance(m, PRUNABLE)]
    try:
        with torch.no_grad():
            outputs = model(*example_inputs)
    finally:
        for hook in hooks:
            hook.remove()
    outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
    last = []
    for out in outputs:
        # the last layer whose channel count equals the output's (shapes may be reshaped after it)
        match = [name for name, t in order if t.shape[1] == out.shape[1]] if out.dim() > 1 else []
        last.append(match[-1] if match else order[-1][0])
    return list(dict.fromkeys(last))


def prune_channels(model: nn.Module, fraction: float, example_inputs: tuple, *,
                   skip: tuple[str, ...] = ()) -> tuple[nn.Module, dict]:
    """A copy of `model` with `fraction` of each layer's output channels removed by L1 norm.

    The layers producing the model's outputs and those in `skip` keep their channels. Fine-tune
    the result to recover accuracy (a few epochs usually suffice at 50%).

    Returns:
        (pruned model, {"layers": {path: [channels before, after]}, "params": [before, after]}).
    """
    import torch_pruning as tp

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    pruned = copy.deepcopy(model).eval()
    keep = set(output_layers(pruned, example_inputs)) | {n for n, _ in pruned.named_modules() if _skipped(n, skip)}
    before = {name: _channels(m) for name, m in pruned.named_modules() if isinstance(m, PRUNABLE)}
    params_before = sum(p.numel() for p in pruned.parameters())
    ignored = [m for name, m in pruned.named_modules() if name in keep and isinstance(m, PRUNABLE)]
    pruner = tp.pruner.MagnitudePruner(pruned, example_inputs, importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=fraction, ignored_layers=ignored)
    pruner.step()
    after = {name: _channels(m) for name, m in pruned.named_modules() if isinstance(m, PRUNABLE)}
    summary = {"layers": {name: [before[name], after[name]] for name in before},
               "params": [params_before, sum(p.numel() for p in pruned.parameters())]}
    return pruned, summary


def _channels(module: nn.Module) -> int:
    return int(module.out_features if isinstance(module, nn.Linear) else module.out_channels)


def sparsity(model: nn.Module) -> float:
    """Fraction of zeros over all Conv/Linear weights of `model`."""
    weights = [m.weight.detach().cpu().numpy() for m in model.modules() if isinstance(m, PRUNABLE)]
    total = sum(w.size for w in weights)
    return float(sum(int(np.count_nonzero(w == 0)) for w in weights) / max(total, 1))
