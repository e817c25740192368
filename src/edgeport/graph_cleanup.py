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
