"""int8 (and int4) embedding tables in a PyTorch module, for the targets converted from PyTorch (TFLite).

The plan's embedding tables (`QuantPlan.embeddings`: one symmetric int8 scale per row) are
written into a copy of the module: each `nn.Embedding` holding a planned table becomes an
`Int8RowEmbedding`, which looks the ids up in the int8 rows and in the row scales and multiplies
the two. The converter then stores the table as int8 (a GATHER on an int8 constant) and scales
only the rows a call returns. Written here: neither litert-torch's PT2E quantizer nor
ai-edge-quantizer quantizes an embedding table per row with given scales. An int4 plan's table
stays an `nn.Embedding` holding its int4 rows scaled back, which ai-edge-quantizer's int4 rule
stores with the same numbers.
"""

from __future__ import annotations

import copy

import numpy as np

from edgeport.quantizers import qmath
from edgeport.quantizers.plan import QuantPlan


def _module_class():
    import torch

    class Int8RowEmbedding(torch.nn.Module):
        """An embedding whose rows are int8 with one float scale each: rows[ids] * scales[ids]."""

        def __init__(self, rows: np.ndarray, scales: np.ndarray):
            super().__init__()
            self.register_buffer("rows", torch.from_numpy(rows.astype(np.int8)))
            self.register_buffer("scales", torch.from_numpy(scales.astype(np.float32).reshape(-1, 1)))

        def forward(self, ids):
            rows = torch.nn.functional.embedding(ids, self.rows).to(torch.float32)
            return rows * torch.nn.functional.embedding(ids, self.scales)

    return Int8RowEmbedding


def with_int8_embeddings(module, params, plan: QuantPlan):
    """A copy of `module` whose planned embedding tables are int8 rows (the module itself when the
    plan has none), the module paths rewritten, and those of the plan's tables not found as an
    `nn.Embedding` of the module (left float)."""
    import torch

    if not plan.embeddings or module is None:
        return module, [], []
    found = {}
    for name, weights in plan.embeddings.items():
        path = params.torch_path(name)
        owner = path.rsplit(".", 1)[0] if path and path.endswith(".weight") else None
        try:
            layer = module.get_submodule(owner) if owner else None
        except AttributeError:
            layer = None
        if isinstance(layer, torch.nn.Embedding) and layer.max_norm is None \
                and tuple(layer.weight.shape) == (len(weights.scale), layer.weight.shape[1]):
            found[owner] = weights
    missing = [w.layer for n, w in plan.embeddings.items() if w not in found.values()]
    if not found:
        return module, [], missing
    copied = copy.deepcopy(module)
    cls = _module_class()
    for owner, weights in found.items():
        layer = copied.get_submodule(owner)
        table = layer.weight.detach().cpu().numpy().astype(np.float32)
        if weights.bits == 4:
            # int4 rows: the table keeps its nn.Embedding, holding the plan's int4 values scaled
            # back; ai-edge-quantizer's int4 EMBEDDING_LOOKUP (max|row| / 7 per row) then finds
            # the plan's scales and integers again (`edgeport.exporters.tflite`)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(weights.rounded(table)))
            continue
        scales = weights.scale_array()
        rows = qmath.quantize_rows(table, scales)
        parent, _, leaf = owner.rpartition(".")
        setattr(copied.get_submodule(parent) if parent else copied, leaf, cls(rows, scales))
    return copied.eval(), sorted(found), missing
