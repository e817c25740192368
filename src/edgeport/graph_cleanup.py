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


def fold_into_convs(model) -> int:
    """Fold each per-channel affine step that follows a convolution into that convolution's weight
    and bias, in place; returns how many were folded: an inference BatchNormalization, and a Mul
    or Add by a constant that is a scalar or one value per output channel (PP-LCNet's learnable
    affine blocks: Conv -> Mul(scale) -> Add(bias)).

    A `.onnx` source written by Paddle or an older exporter keeps these apart. Quantized as
    written, each one is another int8 rounding of the same values, and the convolution's raw
    output gets one int8 scale for all its channels before the batch norm rescales each of them.
    Every converter folds batch norms (PyTorch's ONNX export, the TFLite converter); edgeport folds
    these steps once, before the plan, so every target quantizes the folded convolution.
    Hand-written: onnxslim's `FusionConvBN` / `FusionConvMul` exist but rename the weights they
    rewrite, and the plan names weights by initializer.

    A weight or bias read by another node too is written under a new name (the other node keeps
    the original); the convolution's output takes the folded step's output name.
    """
    count = 0
    while _fold_one(model.graph):
        count += 1
    return count


def _fold_one(graph) -> bool:
    """Fold the first foldable step after a convolution; False when there is none."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    readers = _read_counts(graph)
    outputs = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}
    for step in graph.node:
        if step.domain not in ("", "ai.onnx") or step.op_type not in ("BatchNormalization", "Mul", "Add"):
            continue
        found = _conv_before(step, producer, readers, outputs, inits)
        if found is None:
            continue
        conv, data = found
        weight = numpy_helper.to_array(inits[conv.input[1]])
        axis = 1 if conv.op_type == "ConvTranspose" else 0
        affine = _affine(step, data, inits, weight.shape[axis], weight.ndim)
        if weight.dtype != np.float32 or affine is None:
            continue
        factor, shift = affine
        shape = [1] * weight.ndim
        shape[axis] = -1
        has_bias = len(conv.input) > 2 and conv.input[2]
        bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if has_bias else np.zeros(factor.size)
        new_weight = (weight.astype(np.float64) * factor.reshape(shape)).astype(np.float32)
        new_bias = (bias * factor + shift).astype(np.float32)
        stem = conv.name or conv.output[0]
        weight_name = _writable(conv.input[1], readers, inits, f"{stem}_folded_weight")
        bias_name = _writable(conv.input[2], readers, inits, f"{stem}_folded_bias") if has_bias \
            else _writable("", readers, inits, f"{stem}_folded_bias")
        for name, value in ((weight_name, new_weight), (bias_name, new_bias)):
            if name not in inits:
                inits[name] = graph.initializer.add()
            inits[name].CopyFrom(numpy_helper.from_array(value, name))
        replaced = [*conv.input[1:], *(name for name in step.input if name != data)]
        stale = conv.output[0]
        del conv.input[1:]
        conv.input.extend([weight_name, bias_name])
        conv.output[0] = step.output[0]
        graph.node.remove(step)
        read = {name for node in all_nodes(graph) for name in node.input} | outputs
        for init in [i for i in graph.initializer if i.name in replaced and i.name not in read]:
            graph.initializer.remove(init)  # the step's parameters, the weights rewritten
        for info in [v for v in graph.value_info if v.name == stale]:
            graph.value_info.remove(info)
        return True
    return False


def _conv_before(step, producer, readers, outputs, inits):
    """(the convolution, its output name) when `step` reads the output of a convolution with a
    constant weight (and bias) that nothing else reads; else None."""
    for data in step.input[:1] if step.op_type == "BatchNormalization" else step.input:
        conv = producer.get(data)
        if conv is None or conv.op_type not in ("Conv", "ConvTranspose") or conv.domain not in ("", "ai.onnx"):
            continue
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        if (readers.get(data, 0) != 1 or data in outputs or len(conv.input) < 2 or conv.input[1] not in inits
                or (len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits)
                or (conv.op_type == "ConvTranspose" and group != 1)):
            continue
        return conv, data
    return None


def _affine(step, data: str, inits: dict, channels: int, rank: int):
    """(factor, shift) per output channel with step(x) = factor * x + shift, or None when `step`
    is not such a step (a parameter not constant, not finite, or not one value per channel)."""
    from onnx import numpy_helper

    params = [name for name in step.input if name != data]
    if not params or not all(name in inits for name in params):
        return None
    values = [numpy_helper.to_array(inits[name]).astype(np.float64) for name in params]
    if not all(np.isfinite(v).all() for v in values):
        return None
    if step.op_type == "BatchNormalization":
        attrs = {a.name: a for a in step.attribute}
        if len(step.input) != 5 or ("training_mode" in attrs and attrs["training_mode"].i) \
                or len([o for o in step.output if o]) != 1:
            return None
        scale, beta, mean, var = values
        if scale.shape != (channels,):
            return None
        factor = scale / np.sqrt(var + (attrs["epsilon"].f if "epsilon" in attrs else 1e-5))
        return factor, beta - mean * factor
    if len(step.input) != 2:
        return None
    per_channel = _per_channel(values[0], channels, rank)
    if per_channel is None:
        return None
    return (per_channel, np.zeros(channels)) if step.op_type == "Mul" else (np.ones(channels), per_channel)


def _per_channel(value: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """`value` as one number per channel of an NC... tensor of `rank`, when it broadcasts as one
    (a scalar, or shape (C, 1, 1) / (1, C, 1, 1)); else None."""
    if value.ndim > rank:
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(value.reshape(-1), (channels,)).astype(np.float64)


def _writable(name: str, readers: dict[str, int], inits: dict, fresh: str) -> str:
    """`name` when only the node being folded reads it, else a new initializer name."""
    if name and readers.get(name, 0) == 1:
        return name
    while fresh in inits:
        fresh += "_"
    return fresh


def _read_counts(graph) -> dict[str, int]:
    """How many reads each value name has, sub-graphs (If, Loop bodies) included: they read outer
    names too."""
    readers: dict[str, int] = {}
    for node in all_nodes(graph):
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    return readers


def all_nodes(graph):
    """Every node of `graph` and of its sub-graphs (If branches, Loop bodies), depth first."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from all_nodes(sub)


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
    readers = _read_counts(graph)
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
        read = {name for node in all_nodes(graph) for name in node.input}
        gone = {name for _, mul, clip, add, _ in fused for name in (*clip.input[1:], *add.input)}
        for init in [i for i in graph.initializer if i.name in gone and i.name not in read]:
            graph.initializer.remove(init)
        stale = {name for div, mul, clip, add, _ in fused for name in (*mul.output, *clip.output, *add.output)}
        for info in [v for v in graph.value_info if v.name in stale]:
            graph.value_info.remove(info)
    return len(fused)
