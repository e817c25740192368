"""One graph clean-up of the float ONNX model before any converter reads it.

onnxslim (a maintained ONNX graph optimizer, pure Python) folds constant sub-graphs (static
`Shape` -> `Gather` -> `Concat` -> `Reshape` chains, `Constant` nodes), removes `Identity` and
other no-op nodes (`Reshape` to the same shape, `Slice` of everything, double `Transpose`) and
dead nodes. Its fusions that rewrite weights (Conv + BatchNorm / Add / Mul, MatMul + Add -> Gemm,
Pad into Conv, ...), its weight tying and its common sub-expression merging are left out: the
quantization plan and the parameter map (`edgeport.params`) name weights by ONNX initializer, so
every float initializer of the model keeps its name and its values (`clean` checks it), and so
does every node that computes with a weight.

Constants larger than `FOLD_LIMIT_BYTES` are not folded: those are weights seen through a
`Transpose` / `Reshape`, which converters take as they are, and folding them would give the plan's
weight a new name.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from edgeport.errors import MissingDependencyError

# onnxslim's fusions that rewrite or rename weights; its eliminations (no-op Reshape, Slice,
# Transpose, Unsqueeze, Concat) stay on.
WEIGHT_FUSIONS = ("FusionConvAdd", "FusionConvTransposeAdd", "FusionConvBN", "FusionConvTransposeBN",
                  "FusionConvMul", "FusionConvTransposeMul", "FusionGemm", "FusionGemmMul", "FusionGemmAdd",
                  "FusionPadConv", "FusionReduce", "FusionConcatReshape")
SKIPPED_PASSES = ("weight_tying", "subexpression_elimination")
FOLD_LIMIT_BYTES = 64 * 1024  # shape arithmetic is tiny; larger constants are weights


def clean(model):
    """The simplest equivalent of ONNX `model` (a new ModelProto; `model` is left as it is).

    Every float initializer of `model` that a remaining node reads is kept under its name with
    its values; a clean-up that would lose one returns `model` unchanged instead (the converters
    then see the graph as given, which is correct, only less simple).
    """
    if importlib.util.find_spec("onnxslim") is None:
        raise MissingDependencyError("onnxslim", "the ONNX graph clean-up before conversion", "android")
    import onnx
    import onnxslim

    from edgeport.quiet import quiet

    before = onnx.ModelProto()
    before.CopyFrom(model)
    try:
        with quiet():  # onnxslim logs its progress and a summary table
            after = onnxslim.slim(before, skip_fusion_patterns=list(WEIGHT_FUSIONS),
                                  skip_optimizations=list(SKIPPED_PASSES), size_threshold=FOLD_LIMIT_BYTES)
    except Exception:  # noqa: BLE001 - a graph onnxslim cannot simplify is converted as given
        after = None
    finally:
        # onnxslim keeps its switches as class attributes: leave them as the next caller expects
        from onnxslim.core.optimization import OptimizationSettings

        OptimizationSettings.reset()
    if after is None or _lost_or_unreadable(model, after):
        return before
    after.producer_name, after.producer_version = model.producer_name, model.producer_version
    return after


def _lost_or_unreadable(before, after) -> bool:
    try:
        return bool(lost_weights(before, after))
    except Exception:  # noqa: BLE001 - weights numpy cannot read (a malformed tensor): keep the graph as given
        return True


def lost_weights(before, after) -> list[str]:
    """Float initializers of `before` read by a node of `after` under another value, or no longer
    held by `after` although a node of `before` that is still in `after` read them."""
    from onnx import numpy_helper

    kept = {i.name: i for i in after.graph.initializer}
    surviving = {n.name for n in after.graph.node}
    read = {name for node in before.graph.node if node.name in surviving for name in node.input}
    lost = []
    for init in before.graph.initializer:
        if init.data_type not in (1, 10, 11, 16) or init.name not in read:  # float, float16, double, bfloat16
            continue
        now = kept.get(init.name)
        if now is None or not np.array_equal(numpy_helper.to_array(now), numpy_helper.to_array(init)):
            lost.append(init.name)
    return lost


def relative_difference(before, after, feeds: dict[str, np.ndarray]) -> float:
    """Largest |after - before| / max |before| over the outputs of the two models on `feeds`
    (onnxruntime, one thread): how far the clean-up moved the numbers."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graphs as written
    outputs = []
    for model in (before, after):
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, feeds))
    worst = 0.0
    for a, b in zip(*outputs):
        scale = max(float(np.abs(a).max(initial=0.0)), np.finfo(np.float32).tiny)
        worst = max(worst, float(np.abs(np.asarray(b, np.float64) - a).max(initial=0.0)) / scale)
    return worst


def fold_batch_norms(model) -> int:
    """Fold each inference BatchNormalization that follows a convolution into that convolution's
    weight and bias, in place; returns how many were folded.

    A `.onnx` source written by Paddle or an older exporter keeps `Conv -> BatchNormalization`
    apart. Quantized as written, the convolution's raw output gets one int8 scale for all its
    channels before the batch norm rescales each of them, so the channels with a small raw range
    are lost (PP-OCR's MobileNetV3 classifier: cosine 0.77 at int8). Every converter folds these
    (PyTorch's ONNX export, the TFLite converter); edgeport does it once, before the plan, so every
    target quantizes the folded convolution. Hand-written: onnxslim's `FusionConvBN` exists but
    renames the weights it rewrites, and the plan names weights by initializer.

    A weight or bias read by another node too is written under a new name (the other node keeps
    the original); the convolution's output takes the batch norm's output name.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    readers: dict[str, int] = {}
    for node in _all_nodes(graph):  # sub-graphs (If, Loop bodies) read outer names too
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}
    folded, rewritten = [], []
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx") or len(bn.input) != 5:
            continue
        attrs = {a.name: a for a in bn.attribute}
        if "training_mode" in attrs and attrs["training_mode"].i:
            continue
        if len([o for o in bn.output if o]) != 1 or not all(name in inits for name in bn.input[1:]):
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type not in ("Conv", "ConvTranspose") or conv.domain not in ("", "ai.onnx"):
            continue
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        if (readers.get(bn.input[0], 0) != 1 or bn.input[0] in outputs or len(conv.input) < 2
                or conv.input[1] not in inits or (len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits)
                or (conv.op_type == "ConvTranspose" and group != 1)):
            continue
        scale, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:])
        weight = numpy_helper.to_array(inits[conv.input[1]])
        if weight.dtype != np.float32 or not all(np.isfinite(a).all() for a in (scale, beta, mean, var)):
            continue
        eps = attrs["epsilon"].f if "epsilon" in attrs else 1e-5
        factor = scale / np.sqrt(var + eps)
        axis = 1 if conv.op_type == "ConvTranspose" else 0
        if weight.shape[axis] != factor.size:
            continue
        shape = [1] * weight.ndim
        shape[axis] = -1
        has_bias = len(conv.input) > 2 and conv.input[2]
        bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if has_bias else np.zeros(factor.size)
        new_weight = (weight.astype(np.float64) * factor.reshape(shape)).astype(np.float32)
        new_bias = ((bias - mean) * factor + beta).astype(np.float32)
        weight_name = _writable(conv.input[1], readers, inits, f"{conv.name or conv.output[0]}_folded_weight")
        bias_name = (_writable(conv.input[2], readers, inits, f"{conv.name or conv.output[0]}_folded_bias")
                     if has_bias else f"{conv.name or conv.output[0]}_folded_bias")
        for name, value in ((weight_name, new_weight), (bias_name, new_bias)):
            if name in inits:
                inits[name].CopyFrom(numpy_helper.from_array(value, name))
            else:
                inits[name] = graph.initializer.add()
                inits[name].CopyFrom(numpy_helper.from_array(value, name))
        rewritten.extend(conv.input[1:])
        del conv.input[1:]
        conv.input.extend([weight_name, bias_name])
        conv.output[0] = bn.output[0]
        folded.append(bn)
    for bn in folded:
        graph.node.remove(bn)
    if folded:
        read = {name for node in _all_nodes(graph) for name in node.input} | outputs
        replaced = {name for bn in folded for name in bn.input[1:]} | set(rewritten)
        for init in [i for i in graph.initializer if i.name in replaced and i.name not in read]:
            graph.initializer.remove(init)  # the batch norms' parameters, the weights rewritten
        stale = {bn.input[0] for bn in folded}
        for info in [v for v in graph.value_info if v.name in stale]:
            graph.value_info.remove(info)
    return len(folded)


def _writable(name: str, readers: dict[str, int], inits: dict, fresh: str) -> str:
    """`name` when only the node being folded reads it, else a new initializer name."""
    if readers.get(name, 0) == 1:
        return name
    while fresh in inits:
        fresh += "_"
    return fresh


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _all_nodes(sub)


def fuse_hard_swish(model) -> int:
    """Rewrite `x * clip(x + 3, 0, 6) / 6` (Paddle's and older exporters' hard-swish, four ops)
    as one ONNX `HardSwish`, in place; returns how many were fused.

    One op has one output to quantize instead of four, and every converter has a kernel for it
    (LiteRT HARD_SWISH, Core ML, TF.js). Written as four, litert-torch's NHWC layout pass loses the
    layout of the clip's output inside an int8 graph and cannot convert the model. Hand-written:
    onnxslim has no hard-swish pattern. Only graphs at opset >= 14 (HardSwish) are rewritten.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 14:
        return 0
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer if len(i.dims) == 0 or
              (len(i.dims) == 1 and i.dims[0] == 1)}
    readers: dict[str, int] = {}
    for node in _all_nodes(graph):
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}

    def const(name: str, value: float) -> bool:
        return name in consts and np.allclose(consts[name], value)

    def inner(name: str):
        """The producer of `name` when only the pattern reads it."""
        node = producer.get(name)
        return node if node is not None and readers.get(name, 0) == 1 and name not in outputs else None

    fused = []
    for div in graph.node:
        if div.op_type != "Div" or len(div.input) != 2 or not const(div.input[1], 6.0):
            continue
        mul = inner(div.input[0])
        if mul is None or mul.op_type != "Mul":
            continue
        for x, other in ((mul.input[0], mul.input[1]), (mul.input[1], mul.input[0])):
            clip = inner(other)
            if clip is None or clip.op_type != "Clip" or len(clip.input) != 3 or not (
                    const(clip.input[1], 0.0) and const(clip.input[2], 6.0)):
                continue
            add = inner(clip.input[0])
            if add is None or add.op_type != "Add" or x not in add.input or not any(
                    const(name, 3.0) for name in add.input if name != x):
                continue
            fused.append((div, mul, clip, add, x))
            break
    for div, mul, clip, add, x in fused:
        position = list(graph.node).index(add)  # the first of the four: x is made before it
        for node in (div, mul, clip, add):
            graph.node.remove(node)
        graph.node.insert(position, helper.make_node("HardSwish", [x], [div.output[0]], name=mul.name or div.name))
    if fused:
        read = {name for node in _all_nodes(graph) for name in node.input}
        gone = {name for _, mul, clip, add, _ in fused for name in (*clip.input[1:], *add.input)}
        for init in [i for i in graph.initializer if i.name in gone and i.name not in read]:
            graph.initializer.remove(init)
        stale = {name for div, mul, clip, add, _ in fused for name in (*mul.output, *clip.output, *add.output)}
        for info in [v for v in graph.value_info if v.name in stale]:
            graph.value_info.remove(info)
    return len(fused)
