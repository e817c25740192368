"""Which zoo model exercises which op: from exported ONNX graphs, or (cheaply) from the ATen ops a
PyTorch forward pass dispatches.

    .venv/bin/python -m benchmarks.zoo.coverage [--models ...] [--torch]

prints `feature -> models`, from the ONNX graph edgeport makes of each model (its source loader:
the graph every converter starts from), or with `--torch` from one forward pass (seconds for the
whole zoo; ONNX files are read as they are).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

# issue #15's list, in its order; each has a detector over ONNX graphs and one over ATen calls
FEATURES = (
    "PReLU", "Hardswish", "SiLU", "GELU (erf)", "GELU (tanh)", "LeakyReLU", "ELU", "LayerNorm", "GroupNorm",
    "Resize (nearest)", "Resize (bilinear)", "ConvTranspose", "Split/Chunk", "Slice", "Concat", "Pad",
    "Gather/embedding", "batched MatMul", "Softmax (last axis)", "Softmax (other axis)", "Where/masking",
    "LSTM/GRU", "several inputs, mixed dtypes", "several outputs",
)


# ---------------------------------------------------------------- ONNX

def onnx_features(graph) -> set[str]:
    """The features an ONNX graph exercises (patterns, as exporters write them)."""
    import onnx

    constants = {t.name for t in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in graph.node for o in n.output}
    ranks = _ranks(graph)
    found = set()
    ops = {n.op_type for n in graph.node}
    simple = {"PRelu": "PReLU", "HardSwish": "Hardswish", "LeakyRelu": "LeakyReLU", "Elu": "ELU",
              "LayerNormalization": "LayerNorm", "GroupNormalization": "GroupNorm", "ConvTranspose": "ConvTranspose",
              "Split": "Split/Chunk", "Slice": "Slice", "Concat": "Concat", "Pad": "Pad", "Where": "Where/masking",
              "LSTM": "LSTM/GRU", "GRU": "LSTM/GRU", "Erf": "GELU (erf)"}
    found |= {feature for op, feature in simple.items() if op in ops}
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        inputs = list(node.input)
        if node.op_type == "Gelu":
            found.add("GELU (tanh)" if attrs.get("approximate") == b"tanh" else "GELU (erf)")
        elif node.op_type == "Resize":
            found.add("Resize (nearest)" if attrs.get("mode", b"nearest") == b"nearest" else "Resize (bilinear)")
        elif node.op_type == "Mul" and len(inputs) == 2:
            for a, b in (inputs, inputs[::-1]):
                source = producer.get(b)
                if source is not None and source.op_type == "Sigmoid" and source.input[0] == a:
                    found.add("SiLU")
                if source is not None and source.op_type == "HardSigmoid" and source.input[0] == a:
                    found.add("Hardswish")
        elif node.op_type == "Tanh" and "Pow" in ops:
            found.add("GELU (tanh)")  # 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))
        elif node.op_type == "InstanceNormalization" and producer.get(inputs[0]) is not None \
                and producer[inputs[0]].op_type == "Reshape":
            found.add("GroupNorm")  # torch.onnx writes GroupNorm as Reshape -> InstanceNorm -> Reshape
        elif node.op_type == "Gather" and inputs and inputs[0] in constants:
            found.add("Gather/embedding")
        elif node.op_type == "MatMul" and len(inputs) == 2 and not (set(inputs) & constants):
            found.add("batched MatMul")
        elif node.op_type == "Softmax":
            axis, rank = attrs.get("axis", -1), ranks.get(inputs[0])
            last = axis == -1 or (rank is not None and axis == rank - 1)
            found.add("Softmax (last axis)" if last else "Softmax (other axis)")
    graph_inputs = [i for i in graph.input if i.name not in constants]
    if len(graph_inputs) > 1 and len({i.type.tensor_type.elem_type for i in graph_inputs}) > 1:
        found.add("several inputs, mixed dtypes")
    if len(graph.output) > 1:
        found.add("several outputs")
    return found


def _ranks(graph) -> dict[str, int]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(onnx.helper.make_model(graph)).graph
    except Exception:  # noqa: BLE001 - ranks are a refinement; without them -1 still counts as last
        inferred = graph
    values = list(inferred.value_info) + list(inferred.input) + list(inferred.output)
    return {v.name: len(v.type.tensor_type.shape.dim) for v in values if v.type.tensor_type.HasField("shape")}


# ---------------------------------------------------------------- PyTorch (ATen)

_ATEN = {
    "_prelu_kernel": "PReLU", "prelu": "PReLU", "hardswish": "Hardswish", "silu": "SiLU",
    "leaky_relu": "LeakyReLU", "elu": "ELU", "native_layer_norm": "LayerNorm", "layer_norm": "LayerNorm",
    "native_group_norm": "GroupNorm", "group_norm": "GroupNorm", "upsample_nearest2d": "Resize (nearest)",
    "upsample_bilinear2d": "Resize (bilinear)", "split": "Split/Chunk", "split_with_sizes": "Split/Chunk",
    "chunk": "Split/Chunk", "unsafe_split": "Split/Chunk", "slice": "Slice", "cat": "Concat",
    "constant_pad_nd": "Pad", "pad": "Pad", "replication_pad1d": "Pad", "replication_pad2d": "Pad",
    "reflection_pad1d": "Pad", "reflection_pad2d": "Pad", "embedding": "Gather/embedding", "bmm": "batched MatMul",
    "where": "Where/masking", "masked_fill": "Where/masking", "lstm": "LSTM/GRU", "gru": "LSTM/GRU",
    "lstm_cell": "LSTM/GRU", "gru_cell": "LSTM/GRU", "_thnn_fused_lstm_cell": "LSTM/GRU", "_thnn_fused_gru_cell": "LSTM/GRU",
    "mkldnn_rnn_layer": "LSTM/GRU",
}


def torch_features(module, example: tuple) -> set[str]:
    """The features one forward pass of `module` on `example` dispatches (ATen level)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    found: set[str] = set()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = func.overloadpacket.__name__.rstrip("_") or func.overloadpacket.__name__  # in-place ops
            if name in _ATEN:
                found.add(_ATEN[name])
            elif name == "gelu":
                found.add("GELU (tanh)" if kwargs.get("approximate", "none") == "tanh" else "GELU (erf)")
            elif name == "tanh":
                found.add("tanh")  # with pow: the explicit tanh GELU (resolved below)
            elif name == "pow":
                found.add("pow")
            elif name == "convolution" and args[6]:
                found.add("ConvTranspose")
            elif name in ("_softmax", "softmax"):
                found.add("Softmax (last axis)" if args[1] in (-1, args[0].dim() - 1) else "Softmax (other axis)")
            elif "scaled_dot_product" in name:
                found.update({"batched MatMul", "Softmax (last axis)"})
            elif name == "matmul" and args[0].dim() >= 3 and args[1].dim() >= 3:
                found.add("batched MatMul")
            return func(*args, **kwargs)

    with torch.no_grad(), Record():
        module(*example)
    if {"tanh", "pow"} <= found:
        found.add("GELU (tanh)")
    return found - {"tanh", "pow"}


def entry_features(entry, onnx_graph=None) -> set[str]:
    """An entry's features: from `onnx_graph` when given, else its ONNX file or one forward pass."""
    import numpy as np

    if onnx_graph is None and entry.is_onnx:
        import onnx

        onnx_graph = onnx.load(entry.source, load_external_data=False).graph
    if onnx_graph is not None:
        return onnx_features(onnx_graph)
    import torch

    from benchmarks.zoo import build

    arrays = entry.data(1)
    module = build(entry)
    found = torch_features(module, tuple(torch.from_numpy(np.asarray(arrays[i.name])) for i in entry.inputs))
    if any(isinstance(m, torch.nn.RNNBase) for m in module.modules()):
        found.add("LSTM/GRU")  # fused CPU kernels dispatch no per-op call to see
    if len({i.dtype for i in entry.inputs}) > 1:
        found.add("several inputs, mixed dtypes")
    if entry.outputs > 1:
        found.add("several outputs")
    return found


def exported_graph(entry):
    """The ONNX graph edgeport makes of the entry (its source loader), or the file's graph."""
    import onnx

    if entry.is_onnx:
        return onnx.load(entry.source, load_external_data=False).graph
    from edgeport.sources import load_source

    dtypes = {i.dtype for i in entry.inputs}
    model = load_source(entry.source, [i.shape for i in entry.inputs], dtypes.pop() if len(dtypes) == 1 else "float32")
    return onnx.load_from_string(model.onnx_bytes).graph


def coverage(entries, use_onnx: bool = True) -> dict[str, list[str]]:
    """feature -> names of the entries that exercise it (in zoo order)."""
    table = defaultdict(list)
    for entry in entries:
        graph = exported_graph(entry) if use_onnx else None
        for feature in entry_features(entry, graph):
            table[feature].append(entry.name)
    return dict(table)


def render(table: dict[str, list[str]]) -> str:
    lines = [f"{'feature':<30}{'models':>6}  which"]
    for feature in FEATURES:
        models = table.get(feature, [])
        lines.append(f"{feature:<30}{len(models):>6}  {', '.join(models) if models else 'MISSING'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    import os
    import sys

    from benchmarks import zoo

    parser = argparse.ArgumentParser(description="op coverage of the conformance zoo")
    parser.add_argument("--models", help="comma-separated zoo names or families (default: all)")
    parser.add_argument("--torch", action="store_true", help="from one forward pass instead of the ONNX export")
    args = parser.parse_args(argv)
    os.environ.setdefault("EDGEPORT_QUIET", "1")
    entries = [e for e in zoo.select(args.models) if not e.missing()]
    table = coverage(entries, use_onnx=not args.torch)
    print(render(table))
    return 0 if all(table.get(f) for f in FEATURES) else 1


if __name__ == "__main__":
    raise SystemExit(main())
