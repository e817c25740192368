"""The PT2E graph work behind the android int8 path (`tflite.int8_tflite`): observers that report
the plan's numbers, the fixed output scales LiteRT's LOGISTIC / TANH / SOFTMAX kernels require,
float batch norms, module paths. Split from `tflite.py` so the exporter reads as its recipes."""

from __future__ import annotations

import numpy as np

from edgeport.params import ParamMap, fingerprint
from edgeport.quantizers.plan import QuantPlan, WeightParams


def _weights_by_name(prepared, params: ParamMap, plan: QuantPlan) -> dict[str, WeightParams]:
    """Observer module name -> the plan's entry of the weight it observes: the observer's input is
    a `get_attr` of the PyTorch parameter path, which `params` pairs with the plan's initializer.
    Only where PT2E holds the initializer's very values (same fingerprint): a weight prepare_pt2e
    rewrote (BatchNorm folded into a conv) is not the plan's weight by name."""
    import torch

    found = {}
    for node in prepared.graph.nodes:
        source = node.args[0] if node.op == "call_module" and node.args else None
        if not isinstance(source, torch.fx.Node) or source.op != "get_attr":
            continue
        entry = params.by_path(source.target)
        planned = plan.weights.get(entry.onnx) if entry is not None and entry.onnx is not None else None
        if planned is None:
            continue
        value = prepared
        for part in source.target.split("."):
            value = getattr(value, part)
        if fingerprint(value.detach().cpu().numpy()) == entry.fingerprint:
            found[node.target] = planned
    return found



FIXED_OUTPUT_OPS = ("aten.sigmoid.default", "aten.tanh.default")  # LOGISTIC / TANH: fixed output scale


def _unshare_fixed_outputs(graph_module, config) -> None:
    """Leave float a concatenation that reads a sigmoid or tanh (a YOLOv8 head concatenates its
    class scores with its boxes), and give that sigmoid its own int8 output. The quantizer gives a
    concatenation one scale for its inputs and output, shared with the sigmoid's output, but
    LiteRT's LOGISTIC kernel only takes an output scale of 1/256 (TANH 1/128) and refuses to load
    the file otherwise; and it annotates a sigmoid only when its input is annotated."""
    import torch
    from litert_torch.quantize.pt2e_quantizer_utils import get_fixed_qparams_qspec, get_input_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    for node in graph_module.graph.nodes:
        if node.op != "call_function" or "cat" not in str(node.target):
            continue
        inputs = node.args[0] if node.args and isinstance(node.args[0], (list, tuple)) else []
        fixed = [i for i in inputs if isinstance(i, torch.fx.Node) and str(i.target) in FIXED_OUTPUT_OPS]
        if not fixed or config is None:
            continue
        node.meta.pop("quantization_annotation", None)
        for op in fixed:
            source = op.args[0]
            op.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={source: get_input_act_qspec(config)} if isinstance(source, torch.fx.Node) else {},
                output_qspec=get_fixed_qparams_qspec(config), _annotated=True)


def silu_as_sigmoid_mul(program) -> int:
    """Write each SiLU (x * sigmoid(x): EfficientNet, YOLO, CSP nets) as its sigmoid and its
    product, in place; the count. litert-torch's quantizer annotates neither a SiLU nor its parts
    once the converter splits it, so it stayed float (LOGISTIC and MUL between a DEQUANTIZE and a
    QUANTIZE); as a sigmoid and a product `annotate_by_target` and the quantizer's own sigmoid
    annotator make it LiteRT's int8 LOGISTIC and MUL."""
    import torch

    aten, graph, count = torch.ops.aten, program.graph_module.graph, 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (aten.silu.default, aten.silu_.default):
            continue
        (x,) = node.args[:1]
        with graph.inserting_before(node):
            sigmoid = graph.call_function(aten.sigmoid.default, (x,))
            product = graph.call_function(aten.mul.Tensor, (x, sigmoid))
        for new in (sigmoid, product):
            new.meta = dict(node.meta)  # the module path and source of the SiLU
        if "val" in node.meta:
            sigmoid.meta["val"] = torch.sigmoid(x.meta["val"]) if "val" in x.meta else node.meta["val"]
        node.replace_all_uses_with(product)
        graph.erase_node(node)
        count += 1
    if count:
        program.graph_module.recompile()
    return count


SOFTMAX_OPS = ("aten.softmax.int", "aten._softmax.default")
UNARY_OPS = ("aten.hardswish.default", "aten.hardswish_.default")  # LiteRT's int8 HARD_SWISH
BINARY_OPS = ("aten.add.Tensor", "aten.add_.Tensor", "aten.sub.Tensor", "aten.sub_.Tensor", "aten.mul.Tensor",
              "aten.mul_.Tensor")


def _annotated_output(node) -> bool:
    import torch

    annotation = node.meta.get("quantization_annotation") if isinstance(node, torch.fx.Node) else None
    return annotation is not None and annotation.output_qspec is not None


def annotate_by_target(graph_module, config) -> int:
    """Annotate what litert-torch's quantizer misses in the graphs torch.export writes today,
    in place; the count. Its annotators find element-wise ops by their source partitions (the
    `operator.add` of the Python code), which torch.export no longer records, and the softmax as
    `aten._softmax`, not the `aten.softmax.int` it now writes; so residual adds (MobileNetV2,
    ResNets), products and a classifier's closing softmax stayed float in the int8 model
    (between a DEQUANTIZE and a QUANTIZE: slower, and no int8 kernel for the C library).
    - add / sub / mul of two tensors whose inputs are int8: int8 inputs and output;
    - hard-swish of an int8 input: int8 output;
    - softmax of an int8 input: LiteRT's fixed int8 output (1/256, -128)."""
    from litert_torch.quantize.pt2e_quantizer_utils import (
        get_fixed_qparams_qspec,
        get_input_act_qspec,
        get_output_act_qspec,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    count = 0
    for node in graph_module.graph.nodes:
        target = str(node.target)
        if node.op != "call_function" or config is None or "quantization_annotation" in node.meta:
            continue
        sources = list(node.args[:2])
        if target in BINARY_OPS and len(sources) == 2 and all(_annotated_output(a) for a in sources):
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={a: get_input_act_qspec(config) for a in sources},
                output_qspec=get_output_act_qspec(config), _annotated=True)
        elif target in UNARY_OPS and sources and _annotated_output(sources[0]):
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={sources[0]: get_input_act_qspec(config)},
                output_qspec=get_output_act_qspec(config), _annotated=True)
        elif target in SOFTMAX_OPS and sources and _annotated_output(sources[0]):
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                output_qspec=get_fixed_qparams_qspec(config), _annotated=True)
        else:
            continue
        count += 1
    return count


def _override_observers(prepared, plan: QuantPlan, by_name: dict[str, WeightParams], weight_scales: dict) -> dict:
    """Make each observer report the plan's parameters; count what matched. `by_name` maps weight
    observers to the plan's entry (`_weights_by_name`); `weight_scales` maps the rule's scales of
    each planned weight (what its observer computes) to the plan's entry, the fallback for a
    weight observer `by_name` does not know."""
    import torch

    counts = {"weights": 0, "weights_rule": 0, "activations": 0, "activations_rule": 0}
    for module_name, observer in prepared.named_modules():
        if "FixedQParams" in type(observer).__name__:
            continue  # LOGISTIC / TANH outputs: LiteRT's kernels require their fixed scale (1/256, 1/128)
        if not hasattr(observer, "min_val") or observer.min_val.numel() == 0:
            continue
        lo, hi = observer.min_val.detach().numpy(), observer.max_val.detach().numpy()
        named = by_name.get(module_name)
        if getattr(observer, "ch_axis", None) is not None and lo.size > 1 or "PerChannel" in type(observer).__name__:
            rule = (np.maximum(np.abs(lo), np.abs(hi)) / np.float32(127)).astype(np.float32)
            rule[rule == 0] = 1.0
            planned = named if named is not None and len(named.scale) == rule.size \
                else weight_scales.get(tuple(rule.tolist()))
            counts["weights" if planned else "weights_rule"] += 1
            scales = torch.from_numpy(planned.scale_array() if planned else rule)
            observer.calculate_qparams = lambda s=scales: (s, torch.zeros(len(s), dtype=torch.int32))
            continue
        if named is not None and named.axis is None:  # a per-tensor weight observer, known by name
            counts["weights"] += 1
            observer.calculate_qparams = lambda s=float(named.scale[0]): (
                torch.tensor([s], dtype=torch.float32), torch.tensor([0], dtype=torch.int32))
            continue
        planned = plan.activation_matching(float(lo.min()), float(hi.max()), by="observed")
        if planned is None:  # a per-tensor weight observer looks like an activation's: find it by its scale
            peak = np.float32(max(abs(float(lo.min())), abs(float(hi.max()))) / np.float32(127))
            weight = weight_scales.get((float(peak),))
            if weight is not None and weight.axis is None:
                counts["weights"] += 1
                observer.calculate_qparams = lambda s=float(weight.scale[0]): (
                    torch.tensor([s], dtype=torch.float32), torch.tensor([0], dtype=torch.int32))
                continue
        if planned is None:
            from edgeport.quantizers import qmath

            scale, zero_point = qmath.activation_qparams(float(lo.min()), float(hi.max()))
            counts["activations_rule"] += 1
        else:
            scale, zero_point = np.float32(planned.scale), int(planned.zero_point)
            counts["activations"] += 1
        observer.calculate_qparams = lambda s=float(scale), z=int(zero_point): (
            torch.tensor([s], dtype=torch.float32), torch.tensor([z], dtype=torch.int32))
    return counts


# Output (scale, zero point) LiteRT's int8 kernels require (the model does not load otherwise)
FIXED_OUTPUT_QPARAMS = {"softmax": (1 / 256, -128), "sigmoid": (1 / 256, -128), "tanh": (1 / 128, 0)}


def _fixed_output_qparams(prepared) -> int:
    """Make the observers of softmax / sigmoid / tanh outputs report the scale and zero point
    LiteRT's int8 kernels require (`FIXED_OUTPUT_QPARAMS`), not the plan's range: PT2E does not
    always annotate these ops, and then their output is observed by the op that reads it. The
    count set."""
    import torch

    count = 0
    for node in prepared.graph.nodes:
        source = node.args[0] if node.op == "call_module" and node.args else None
        if not isinstance(source, torch.fx.Node) or source.op != "call_function":
            continue
        name = str(source.target).split(".")[1] if "." in str(source.target) else str(source.target)
        fixed = FIXED_OUTPUT_QPARAMS.get(name.lstrip("_"))
        observer = getattr(prepared, str(node.target), None)
        if fixed is not None and observer is not None and hasattr(observer, "calculate_qparams"):
            observer.calculate_qparams = lambda s=fixed[0], z=fixed[1]: (
                torch.tensor([s], dtype=torch.float32), torch.tensor([z], dtype=torch.int32))
            count += 1
    return count


def _module_path(node) -> str:
    """The innermost module path of an FX node ('features.3'), '' for nodes outside any module."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    return str(stack[-1][0]).removeprefix("L['self'].") if stack else ""


BATCH_NORMS = ("batch_norm", "_native_batch_norm_legit")


def _float_batch_norms_to_convs(graph_module, float_modules: dict[str, str]) -> set[str]:
    """PT2E folds a BatchNorm into the convolution before it: for each float BatchNorm layer, its
    convolution's module joins `float_modules` (in place), so the fused op stays float. The
    BatchNorm module paths so handled."""
    folded = set()
    for node in graph_module.graph.nodes:
        path = _module_path(node)
        if path not in float_modules or not any(b in str(node.target) for b in BATCH_NORMS):
            continue
        source = node.args[0] if node.args else None
        if source is not None and hasattr(source, "meta") and "conv" in str(source.target):
            float_modules.setdefault(_module_path(source), float_modules[path])
            folded.add(path)
    return folded


def _drop_integer_observers(prepared) -> int:
    """Remove, in place, the observers PT2E puts on integer tensors (an int64 sample rate that an
    op reads): an integer is not quantized, and the histogram observer cannot take one."""
    import torch

    graph, dropped = prepared.graph, 0
    for node in list(graph.nodes):
        if node.op != "call_module" or not node.args or not isinstance(node.args[0], torch.fx.Node):
            continue
        if "activation_post_process" not in str(node.target):
            continue
        source = node.args[0]
        value = source.meta.get("val")
        if value is None and source.op == "get_attr":  # a buffer (an int64 index table)
            value = prepared
            for part in str(source.target).split("."):
                value = getattr(value, part, None)
        if isinstance(value, torch.Tensor) and not value.dtype.is_floating_point:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            dropped += 1
    if dropped:
        prepared.recompile()
    return dropped
