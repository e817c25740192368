"""Repairs of the QDQ graphs onnxruntime's quantizer writes for mixed int8 / int16 / float plans."""

from __future__ import annotations

from edgeport.quantizers.overrides import QDQ_PROPAGATED


def round_both_sides(graph) -> int:
    """Give each value-preserving op rounded on one side only (a DequantizeLinear before it and
    a float output, or a float input and a QuantizeLinear after it, as a mixed int8 / int16 /
    float plan leaves some) the same rounding on the other side, in place; the count.

    The values do not change (such an op moves values, so rounding before or after it is the
    same), and it is what onnxruntime's QDQ propagation adds when a session loads the model; but
    in opset-21 graphs that pass writes a QuantizeLinear whose output type is not its zero
    point's, and the session then refuses the file (seen on PP-OCRv4 rec with int16 layers and
    float activations).
    """
    import onnx

    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    ordered, count = [], 0
    for node in graph.node:  # topological order: new nodes go right before or after `node`
        if node.op_type not in QDQ_PROPAGATED or not node.input or not node.output:
            ordered.append(node)
            continue
        source, out = producer.get(node.input[0]), node.output[0]
        dequantized = source is not None and source.op_type == "DequantizeLinear"
        quantize = next((r for r in consumers.get(out, []) if r.op_type == "QuantizeLinear"), None)
        if dequantized and quantize is None:  # round the output as the input was
            params = list(source.input[1:])
            node.output[0] = f"{out}_unrounded"
            ordered += [node, onnx.helper.make_node("QuantizeLinear", [node.output[0], *params], [f"{out}_rounded_q"],
                                                    name=f"{out}_round_q"),
                        onnx.helper.make_node("DequantizeLinear", [f"{out}_rounded_q", *params], [out],
                                              name=f"{out}_round_dq")]
            count += 1
        elif quantize is not None and not dequantized:  # round the input as the output is
            params, name = list(quantize.input[1:]), node.input[0]
            rounded = f"{name}_rounded_for_{node.name}"
            ordered += [onnx.helper.make_node("QuantizeLinear", [name, *params], [f"{rounded}_q"], name=f"{rounded}_q"),
                        onnx.helper.make_node("DequantizeLinear", [f"{rounded}_q", *params], [rounded],
                                              name=f"{rounded}_dq"), node]
            node.input[0] = rounded
            count += 1
        else:
            ordered.append(node)
    if count:
        del graph.node[:]
        graph.node.extend(ordered)
    return count
