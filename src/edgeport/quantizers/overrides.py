"""Layered overrides resolved against the float ONNX graph: node name -> precision.

The recipe's scheme applies to every layer; an op-type override replaces it for every node of
that type; a layer override replaces both for the nodes of that layer (a PyTorch module path
covers its submodules, an ONNX node name covers that node; the longest matching path wins).
`keep_float` entries are float overrides at the level they name (an op type, or a layer).
"""

from __future__ import annotations

from edgeport.errors import InputError
from edgeport.recipe import Recipe


def _layer_match(key: str, node, layers: dict[str, str]) -> int:
    """How specific `key` is for `node` (its length), or -1 when it does not name the node's layer."""
    layer = layers.get(node.name, "")
    if key in (node.name, layer) or (layer and layer.startswith(key + ".")):
        return len(key)
    return -1


def resolve_precisions(onnx_model, layers: dict[str, str], recipe: Recipe) -> dict[str, str]:
    """Node name -> "float" / "int8" / "int16" for every node whose precision is not the scheme's.

    Raises:
        InputError: an override or keep_float entry matches no node (names the layers and ops).
    """
    nodes = list(onnx_model.graph.node)
    op_types = {n.op_type for n in nodes}
    by_op = dict(recipe.overrides.op_type)
    by_layer = list(recipe.overrides.layer)
    for entry in recipe.keep_float:  # shorthand: an op type is an op-type override, else a layer one
        if entry in op_types and not any(n.name == entry for n in nodes):
            by_op.setdefault(entry, "float")
        else:
            by_layer.append((entry, "float"))
    for op in by_op:
        if op not in op_types:
            _no_match("op_type", op, nodes, layers)
    resolved: dict[str, str] = {}
    matched: set[str] = set()
    for node in nodes:
        precision = by_op.get(node.op_type)
        best = -1
        for key, value in by_layer:
            specificity = _layer_match(key, node, layers)
            if specificity >= 0:
                matched.add(key)
                if specificity > best:
                    best, precision = specificity, value
        if precision is not None:
            resolved[node.name] = precision
    for key, _ in by_layer:
        if key not in matched:
            _no_match("keep_float" if key in recipe.keep_float else "layer", key, nodes, layers)
    own = f"int{recipe.scheme.activation_bits}" if recipe.scheme.calibrated else None
    if own:
        _follow_quantized_inputs(nodes, resolved, own)
    return {n: p for n, p in resolved.items() if p != own}


# Value-preserving ops across which onnxruntime's graph optimizer moves a QuantizeLinear or a
# DequantizeLinear when a session loads the model (its QDQ propagation), whatever precision the
# plan gave them
QDQ_PROPAGATED = {"MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice"}


def _follow_quantized_inputs(nodes, resolved: dict[str, str], own: str) -> None:
    """A float value-preserving op reading a quantized tensor takes its input's precision (in
    place): its output is the input's grid values either way, so nothing is lost, and onnxruntime
    moves the DequantizeLinear past it anyway (`QDQ_PROPAGATED`). Graph order is topological, so
    chains of such ops follow the first one's input."""
    producer = {out: node.name for node in nodes for out in node.output}
    for node in nodes:
        if resolved.get(node.name) != "float" or node.op_type not in QDQ_PROPAGATED or not node.input:
            continue
        made_by = producer.get(node.input[0])
        if made_by is not None and resolved.get(made_by) != "float":
            resolved[node.name] = resolved.get(made_by, own)


def float_nodes(onnx_model, layers: dict[str, str], recipe: Recipe) -> list[str]:
    """Node names the recipe leaves in float (float overrides and keep_float), in graph order."""
    return [n for n, p in resolve_precisions(onnx_model, layers, recipe).items() if p == "float"]


def _no_match(level: str, entry: str, nodes, layers: dict[str, str]) -> None:
    known = sorted({v for v in layers.values() if v} | {n.op_type for n in nodes})
    raise InputError(f"{level}: '{entry}' matches no layer, node or op type "
                     f"(layers and ops: {', '.join(known[:30])})")
