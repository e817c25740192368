"""The recipe's compression, applied once to the float model before any quantization.

Two steps, in this order (Deep Compression's, extended with structured pruning in front):
1. `prune_structure`: `prune_channels` removes whole channels from the PyTorch module, giving a
   smaller float model (new ONNX graph, new shapes). Its reference stays the original model, so
   parity shows what the pruning cost.
2. `compress_weights`: `prune` zeros weights by magnitude, then `palettize` fits a k-means palette
   to the surviving weights (zeros stay exactly zero). The same numbers go into the ONNX graph
   (which the quantization plan is computed from) and into a copy of the PyTorch module (which the
   TFLite and C library paths convert), so every target starts from the same weights.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np

from edgeport.errors import InputError
from edgeport.model import FloatModel
from edgeport.quantizers import STATIC_OPS, float_nodes, weight_inputs
from edgeport.quantizers import compress as numerics
from edgeport.recipe import Recipe


def prune_structure(model: FloatModel, recipe: Recipe) -> tuple[FloatModel, dict]:
    """Apply `recipe.prune_channels`: returns the smaller model and what was removed ({} if none)."""
    if not recipe.prune_channels:
        return model, {}
    if model.torch_module is None:
        raise InputError(f"{model.source}: prune_channels rewrites the PyTorch module; give a module:factory "
                         "or .pt2 source (an ONNX or TFLite file cannot be restructured by this edgeport version)")
    from edgeport.sources import rebuild_from_torch
    from edgeport.training.pruning import prune_channels

    skip = tuple(e for e in recipe.keep_float if any(n == e or n.startswith(e + ".")
                                                      for n, _ in model.torch_module.named_modules()))
    try:
        module, summary = prune_channels(model.torch_module, recipe.prune_channels, model.example_inputs, skip=skip)
    except Exception as exc:  # noqa: BLE001 - torch-pruning fails on graphs it cannot trace
        raise InputError(f"{model.source}: prune_channels: torch-pruning cannot restructure this model: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return rebuild_from_torch(module, model), summary


def compress_weights(model: FloatModel, recipe: Recipe) -> tuple[FloatModel, dict[str, dict]]:
    """Apply the recipe's pruning and k-means palettes to the Conv/Gemm/MatMul weights.

    Returns the model with compressed weights (its reference stays the original, so parity shows
    what compression cost) and, per ONNX weight, what was applied.
    """
    if not (recipe.palettize or recipe.prune):
        return model, {}
    from onnx import numpy_helper

    onnx_model = model.onnx_model()
    kept = set(float_nodes(onnx_model, model.layers, recipe))
    inits = {i.name: i for i in onnx_model.graph.initializer}
    applied: dict[str, dict] = {}
    compressed: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name -> (original, compressed)
    for node, name, original in weight_inputs(onnx_model, STATIC_OPS, kept):
        w, info = compress_array(original, recipe)
        info["layer"] = model.layers.get(node.name, node.name)
        inits[name].CopyFrom(numpy_helper.from_array(w, name))
        applied[name], compressed[name] = info, (original, w)
    module = _compressed_module(model, compressed)
    # same parameter <-> initializer pairs, fingerprints of the compressed values
    params = model.params.with_values(onnx_model, module)
    return replace(model, onnx_bytes=onnx_model.SerializeToString(), torch_module=module, params=params), applied


def compress_array(w: np.ndarray, recipe: Recipe) -> tuple[np.ndarray, dict]:
    """One weight through the recipe: magnitude pruning, then a palette fitted to the survivors."""
    info: dict = {}
    mask = numerics.magnitude_mask(w, recipe.prune) if recipe.prune else np.ones(w.shape, dtype=bool)
    w = np.where(mask, w, np.float32(0))
    if recipe.prune:
        info.update(sparsity=recipe.prune, zeros=int((~mask).sum()))
    if recipe.palettize:
        lut, _ = numerics.kmeans_palette(w[mask], recipe.palettize)
        w = np.where(mask, lut[numerics.nearest_indices(w, lut)], np.float32(0))
        info["palette"] = lut.tolist()
    return w.astype(np.float32), info


def _compressed_module(model: FloatModel, compressed: dict[str, tuple[np.ndarray, np.ndarray]]):
    """A copy of the PyTorch module holding the compressed weights (None for non-PyTorch sources).

    Each compressed ONNX weight goes to the parameter the model's `ParamMap` pairs it with. A
    Conv/Linear weight without one (the recipe keeps its layer float, or the exporter fused it
    away) is left as it is.
    """
    if model.torch_module is None:
        return None
    import torch

    module = copy.deepcopy(model.torch_module)
    parameters = dict(module.named_parameters())
    with torch.no_grad():
        for name, (_, new) in compressed.items():
            param = parameters.get(model.params.torch_path(name) or "")
            if param is not None and tuple(new.shape) == tuple(param.shape):
                param.copy_(torch.from_numpy(new))
    return module
