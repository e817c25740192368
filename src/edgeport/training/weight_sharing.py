"""k-means weight sharing with centroid fine-tuning (Han et al., "Deep Compression", 2016, §3).

`share_weights` replaces each Conv/Linear weight by a palette of 2^bits centroids (fitted by the
same k-means as the export recipe's `palettize`) indexed per weight. The centroids stay trainable:
the gradient of a centroid is the sum of the gradients of the weights that share it, which is
what autograd gives for `weight = centroids[index]`. Pruned weights (exact zeros) stay zero and
out of the palette. `finalize` turns the layers back into plain weights holding the palette values.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from edgeport.quantizers.compress import kmeans_palette, nearest_indices
from edgeport.training.pruning import PRUNABLE


class SharedWeight(nn.Module):
    """Parametrization computing a weight from trainable centroids, fixed indices and a zero mask."""

    def __init__(self, centroids: np.ndarray, index: np.ndarray, keep: np.ndarray):
        super().__init__()
        self.centroids = nn.Parameter(torch.from_numpy(np.asarray(centroids, np.float32)))
        self.register_buffer("index", torch.from_numpy(index.astype(np.int64)))
        self.register_buffer("keep", torch.from_numpy(keep.astype(np.float32)))

    def forward(self, original: torch.Tensor) -> torch.Tensor:  # the original weight is not used
        return self.centroids[self.index] * self.keep


def share_weights(model: nn.Module, bits: int, skip: tuple[str, ...] = ()) -> dict[str, SharedWeight]:
    """Cluster each Conv/Linear weight of `model` in place into 2^bits shared values.

    Returns the parametrizations by module path; their `centroids` are the trainable parameters
    to fine-tune (the latent weights get no gradient and can be left out of the optimizer).
    """
    shared = {}
    for name, module in model.named_modules():
        if not isinstance(module, PRUNABLE) or any(name == s or name.startswith(s + ".") for s in skip):
            continue
        w = module.weight.detach().cpu().numpy()
        keep = w != 0
        lut, _ = kmeans_palette(w[keep] if keep.any() else w.ravel(), bits)
        shared[name] = SharedWeight(lut, nearest_indices(w, lut), keep)
        parametrize.register_parametrization(module, "weight", shared[name])
    return shared


def centroid_parameters(shared: dict[str, SharedWeight]) -> list[nn.Parameter]:
    """The centroids, for the fine-tuning optimizer."""
    return [p.centroids for p in shared.values()]


def finalize(model: nn.Module) -> nn.Module:
    """Bake the shared values into plain weights (the model exports like any other)."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def distinct_values(model: nn.Module) -> dict[str, int]:
    """Number of distinct nonzero values per Conv/Linear weight (a check on the palette)."""
    weights = {name: m.weight.detach().cpu().numpy() for name, m in model.named_modules() if isinstance(m, PRUNABLE)}
    return {name: int(np.unique(w[w != 0]).size) for name, w in weights.items()}
