"""An `.onnx` source as a PyTorch module, for the converters that start from one (android:
litert-torch, ios: coremltools).

Why onnx2torch: it turns each ONNX node into a small `nn.Module` (Conv and Gemm into `nn.Conv*`
and `nn.Linear` holding the initializer's values), so an ONNX model reaches the very conversions a
PyTorch source takes: litert-torch with the recipe's fp16 / ai-edge-quantizer recipes and the
PT2E int8 path whose observers take the plan's numbers, coremltools with the same constexpr
rewrites. The other paths were worse: onnx2tf needs TensorFlow (a second, 600 MB framework) and
would make a TFLite file by another converter than the PyTorch path, whose int8 plan would not
apply; coremltools 9 has no ONNX front end any more, and a direct ONNX -> MIL translator would be
one more converter per op to write and keep right.

The conversion:
1. the float graph with its batch fixed at 1 (the exports are batch 1), cleaned
   (`edgeport.graph_cleanup`: static shape chains fold to constants);
2. nodes normalized to what onnx2torch 1.5 reads (`_normalize`), and refused before any work
   with the op and the node where it has no conversion (`unsupported_node`);
3. `onnx2torch.convert`, then every module that reads an integer constant (a shape, axes, pads,
   indices) traced once with those constants as Python values (`_specialize`): torch.export
   cannot branch on a tensor's values, and onnx2torch's modules do;
4. a `ParamMap` pairing each module parameter with the ONNX initializer it holds (Conv's
   `weight` is input 1, ...; a constant read as a buffer, by the node input it feeds), so the
   plan's numbers (keyed by ONNX initializer) are found by name as for a PyTorch source.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import replace

import numpy as np

from edgeport import onnx_torch_ops
from edgeport.errors import InputError, MissingDependencyError, UnsupportedOpError
from edgeport.model import FloatModel
from edgeport.params import Param, ParamMap, fingerprint

CONVERTER = "ONNX -> PyTorch (onnx2torch) has no conversion for it"

# Op versions whose change in ONNX only added element types (float8, int4, bfloat16, ...): the
# converter of the newest older version onnx2torch has reads them correctly.
TYPE_ONLY_VERSIONS = {
    **{op: (19, 21, 23, 24, 25) for op in ("Cast", "Constant", "Identity", "Reshape", "Shape")},
    **{op: (21, 23, 24, 25) for op in ("Flatten", "Squeeze", "Transpose", "Unsqueeze")},
    "ConstantOfShape": (20, 21, 23, 24, 25), "Equal": (19,), "IsInf": (20,), "IsNaN": (20,),
    **{op: (22,) for op in ("Acos", "Asin", "Atan", "Conv", "ConvTranspose", "Cos", "Dropout", "Elu", "EyeLike",
                            "GlobalAveragePool", "HardSigmoid", "HardSwish", "InstanceNormalization", "MaxPool",
                            "RoiAlign", "Round", "Selu", "Sin", "Softplus", "Softsign", "Tan")},
}
# Reductions whose axes became an input in opset 18: rewritten to the opset-13 attribute form.
AXES_INPUT_REDUCTIONS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                         "ReduceMin", "ReduceProd", "ReduceSumSquare")
# Ops whose onnx2torch module is replaced by a plain torch call even without integer constants.
ALWAYS_STATIC = ("PRelu", "Resize", "Upsample")
# Ops whose static form needs no recorded output: computed so when onnx2torch's module refuses.
RECORDED_STATIC = ("Pad", "Slice")
# Module parameter -> ONNX node input, for the modules onnx2torch builds from a node's weights.
PARAM_INPUTS = {
    "Conv": {"weight": 1, "bias": 2}, "ConvTranspose": {"weight": 1, "bias": 2}, "Gemm": {"weight": 1, "bias": 2},
    "BatchNormalization": {"weight": 1, "bias": 2, "running_mean": 3, "running_var": 4},
    "LayerNormalization": {"weight": 1, "bias": 2}, "InstanceNormalization": {"weight": 1, "bias": 2},
    "MatMul": {"weight": 1},  # a MatMul by a constant becomes torch.nn.Linear (`_linear_matmuls`)
}


def onnx2torch():
    """onnx2torch, imported on first use, with edgeport's additions to its converter table.

    onnx2torch imports torchvision for its NonMaxSuppression and RoiAlign converters only; where
    torchvision cannot be imported (PyPI's Linux wheel is a CUDA build that a CPU torch cannot
    load), it is imported without them and `unsupported_node` refuses those two ops."""
    if importlib.util.find_spec("onnx2torch") is None:
        raise MissingDependencyError("onnx2torch", "an .onnx source on android / ios", "android")
    if "onnx2torch" not in sys.modules:
        if _torchvision_usable():
            import onnx2torch as module
        else:
            module = _import_without_torchvision()
        _extend(module)
    return sys.modules["onnx2torch"]


def _torchvision_usable() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken build raises RuntimeError / OSError, not ImportError
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


def _import_without_torchvision():
    """Import onnx2torch with a stand-in `torchvision.ops` whose functions raise, removed again
    afterwards so nobody else sees it."""
    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision cannot be imported here")

    stand_in, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = unavailable
    stand_in.ops = ops
    sys.modules.update({"torchvision": stand_in, "torchvision.ops": ops})
    try:
        import onnx2torch as module
    finally:
        del sys.modules["torchvision"], sys.modules["torchvision.ops"]
    module.edgeport_without_torchvision = True
    return module


def _extend(module) -> None:
    """Register edgeport's rows in onnx2torch's converter table (its documented extension point,
    `add_converter`): type-only newer versions, Gelu, opset-18 reductions, LSTM and GRU
    (`edgeport.onnx_torch_ops`)."""
    import torch
    from onnx2torch.node_converters.registry import add_converter, get_converter
    from onnx2torch.onnx_node import OnnxNode
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    def known(op: str, version: int) -> bool:
        """A converter registered for exactly this since-version."""
        try:
            get_converter(op, version)
        except NotImplementedError:
            return False
        return True

    for op, versions in TYPE_ONLY_VERSIONS.items():
        older = get_converter(op, min(versions) - 1)  # the newest version before the type-only ones
        for version in versions:
            if not known(op, version):
                add_converter(op, version)(older)

    def gelu(node, graph):
        approximate = node.attributes.get("approximate", "none")
        return OperationConverterResult(torch_module=torch.nn.GELU(approximate=approximate),
                                        onnx_mapping=onnx_mapping_from_node(node))

    add_converter("Gelu", 20)(gelu)

    def reduction_with_axes_attribute(node, graph):
        """Opset-18 reduction (axes as a constant input) through the opset-13 converter."""
        import onnx

        proto = onnx.NodeProto()
        proto.CopyFrom(node.proto)
        del proto.input[1:]
        if len(node.input_values) > 1 and node.input_values[1]:
            axes = graph.initializers[node.input_values[1]].to_torch().tolist()
            proto.attribute.append(onnx.helper.make_attribute("axes", [int(a) for a in axes]))
        return get_converter(node.operation_type, 13)(OnnxNode(proto, node.unique_name), graph)

    for op in AXES_INPUT_REDUCTIONS:
        for version in (18, 20):
            if not known(op, version) and (version == 18 or op in ("ReduceMax", "ReduceMin")):
                add_converter(op, version)(reduction_with_axes_attribute)
    for (op, version), converter in onnx_torch_ops.CONVERTERS.items():
        if not known(op, version):
            add_converter(op, version)(converter)
    for op, version, older in (("Pad", 18, 13), ("Pad", 19, 13), ("Pad", 21, 13), ("Pad", 23, 13),
                               ("Pad", 24, 13), ("Pad", 25, 13), ("Split", 18, 13),
                               ("Resize", 18, 13), ("Resize", 19, 13)):
        if not known(op, version):  # the forms `unsupported_node` lets through read as the older version
            add_converter(op, version)(get_converter(op, older))


def unsupported_node(model) -> tuple[str, str, str] | None:
    """(op, node name, why) of the first node of ONNX `model` (cleaned and normalized) that
    onnx2torch cannot convert, or None."""
    converter = onnx2torch()
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain or "": o.version for o in model.opset_import}
    constants = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        domain = node.domain or ""
        try:
            get_converter(node.op_type, opsets.get(domain, 1), domain)
        except NotImplementedError:
            return node.op_type, node.name, f"{CONVERTER} (opset {opsets.get(domain)})"
        why = _unsupported_form(node, constants, converter)
        if why:
            return node.op_type, node.name, why
    return None


def _unsupported_form(node, constants: set[str], converter) -> str | None:
    """Why this node's attributes or inputs take a form the converters registered for it do not
    read, or None."""
    attrs = {a.name: a for a in node.attribute}
    op, inputs = node.op_type, list(node.input)
    if op in ("Conv", "ConvTranspose") and (len(inputs) < 2 or inputs[1] not in constants
                                             or len(inputs) > 2 and inputs[2] and inputs[2] not in constants):
        return f"{CONVERTER} when the weight or bias is computed, not a constant"
    if op == "Reshape" and "allowzero" in attrs and attrs["allowzero"].i:
        return f"{CONVERTER} with allowzero=1 and a shape that is not a constant without zeros"
    if op in AXES_INPUT_REDUCTIONS and len(inputs) > 1 and inputs[1] and inputs[1] not in constants:
        return f"{CONVERTER} with axes computed in the graph"
    if op == "Pad" and (len(inputs) > 3 and inputs[3] or attrs.get("mode") and attrs["mode"].s == b"wrap"):
        return f"{CONVERTER} with an axes input or mode 'wrap'"
    if op == "Resize" and (attrs.get("antialias") and attrs["antialias"].i or len(attrs.get("axes", [])) or
                           attrs.get("coordinate_transformation_mode")
                           and attrs["coordinate_transformation_mode"].s == b"half_pixel_symmetric"):
        return f"{CONVERTER} with antialias, axes or half_pixel_symmetric coordinates"
    if op in ("LSTM", "GRU"):
        why = onnx_torch_ops.unsupported_form(node, constants)
        return f"{CONVERTER} {why}" if why else None
    if op in ("NonMaxSuppression", "RoiAlign") and getattr(converter, "edgeport_without_torchvision", False):
        return f"{CONVERTER} here: its converter needs torchvision, which cannot be imported"
    return None


def _normalize(model) -> None:
    """Rewrite, in place, nodes into the equivalent form onnx2torch reads: a Reshape to a constant
    shape without zeros does not depend on `allowzero` (torch.onnx writes allowzero=1)."""
    from onnx import numpy_helper

    constants = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in constants:
            continue
        if np.all(numpy_helper.to_array(constants[node.input[1]]) != 0):
            for attr in [a for a in node.attribute if a.name == "allowzero"]:
                node.attribute.remove(attr)
    onnx_torch_ops.fold_recurrent_weights(model)


def _batch_one(model, shapes: dict[str, tuple[int, ...]]) -> None:
    """Fix every graph input's free dims (symbolic, none, or negative) at the input's `shapes`
    entry, else at 1 (the exports are batch 1), so shape chains fold."""
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        shape = shapes.get(value.name, (1,) * len(dims))
        for dim, size in zip(dims, shape if len(shape) == len(dims) else (1,) * len(dims)):
            if not dim.HasField("dim_value") or dim.dim_value < 0:
                dim.Clear()
                dim.dim_value = size
    for value in model.graph.output:  # re-inferred by the clean-up
        value.type.tensor_type.ClearField("shape")


def _prepared(model, shapes: dict[str, tuple[int, ...]] | None = None):
    """ONNX `model` as onnx2torch will read it: its inputs at `shapes` (free dims at 1 where not
    given), cleaned, normalized (a new ModelProto)."""
    import onnx

    from edgeport.graph_cleanup import clean

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _batch_one(copy, shapes or {})
    cleaned = clean(copy)
    _normalize(cleaned)
    return cleaned


def check_convertible(path, target: str) -> None:
    """Refuse, before any work, an .onnx source holding a node onnx2torch cannot convert: one
    line naming the op, the node and the target."""
    from pathlib import Path

    from edgeport.onnx_file import read_onnx

    try:
        onnx2torch()
    except MissingDependencyError as exc:
        raise InputError(f"{target}: {exc}") from None
    missing = unsupported_node(_prepared(read_onnx(Path(path))))
    if missing is not None:
        op, node, why = missing
        raise UnsupportedOpError(op, node, f"{target}: {why}")


def to_torch(model: FloatModel) -> FloatModel:
    """`model` (an ONNX source) with a PyTorch module made from its graph, the example inputs for
    it (batch 1) and a parameter map pairing the module's parameters with the graph's initializers.
    Its ONNX graph, reference and name stay `model`'s."""
    import onnx
    import torch

    converter = onnx2torch()
    graph = _prepared(model.onnx_model(), {spec.name: spec.concrete_shape(1) for spec in model.inputs})
    missing = unsupported_node(graph)
    if missing is not None:
        raise UnsupportedOpError(*missing)
    original = _names_litert_keeps(graph)
    try:
        module = converter.convert(graph, attach_onnx_mapping=True)
    except Exception as exc:  # noqa: BLE001 - onnx2torch raises many types; the node is named below
        raise InputError(f"{model.source}: ONNX -> PyTorch conversion (onnx2torch) failed: "
                         f"{type(exc).__name__}: {_first_line(exc)}") from None
    examples = tuple(torch.zeros(spec.concrete_shape(1), dtype=getattr(torch, spec.dtype)) for spec in model.inputs)
    from onnx2torch.onnx_graph import OnnxGraph

    onnx_graph = OnnxGraph(graph.graph)
    ops = {unique: node.operation_type for unique, node in onnx_graph.nodes.items()}
    module = _linear_matmuls(_specialize(_one_output_per_value(module.eval(), onnx_graph), examples, ops), ops)
    params = _param_map(module, graph, onnx.load_from_string(model.onnx_bytes))
    # each node's module path: onnx2torch names a node's module by its name with '.' read as '/'
    # ('p2o.Conv.3' -> 'p2o/Conv/3'); exporters find the plan's float layers by it
    layers = {**model.layers, **{original.get(node.name, node.name): path for path, node in onnx_graph.nodes.items()
                                 if node.name}}
    return replace(model, torch_module=module, example_inputs=examples, params=params, layers=layers)


def _names_litert_keeps(graph) -> dict[str, str]:
    """Rename the nodes whose names hold '@' (paddle2onnx names its nodes `Conv@39`) with '#'
    instead: onnx2torch names each module after its node, and litert-torch cuts a module name at
    '@' in the .tflite's tensor names (`Conv@39` and `Conv@40` both become `Conv`), so the
    android exporter could not find the plan's layers there. Returns new name -> original."""
    taken = {n.name for n in graph.graph.node}
    renamed = {}
    for node in graph.graph.node:
        new = node.name.replace("@", "#")
        if new != node.name and new not in taken:
            renamed[new] = node.name
            taken.add(new)
            node.name = new
    return renamed


def _linear_matmuls(module, ops: dict[str, str]):
    """Each MatMul by a constant 2-D float weight becomes `torch.nn.Linear` (no bias, the weight
    transposed): the layer the int8 quantizers (PT2E, Core ML's) give int8 weights. onnx2torch
    keeps it a product of two tensors, which stayed float in the int8 .tflite (PP-OCRv4 rec's
    6625 x 120 head: int8 .tflite 1.75x smaller than float, the .onnx 3.4x)."""
    import torch

    users: dict[str, int] = {}
    for node in module.graph.nodes:
        if node.op == "get_attr":
            users[node.target] = users.get(node.target, 0) + len(node.users)
    changed = False
    for node in list(module.graph.nodes):
        if node.op != "call_module" or ops.get(node.target) != "MatMul" or len(node.args) != 2:
            continue
        x, w = node.args
        if not (isinstance(w, torch.fx.Node) and w.op == "get_attr"):
            continue
        weight = module.get_buffer(w.target) if w.target in dict(module.named_buffers()) else None
        if weight is None or weight.ndim != 2 or not weight.is_floating_point():
            continue
        linear = torch.nn.Linear(weight.shape[0], weight.shape[1], bias=False)
        linear.weight = torch.nn.Parameter(weight.detach().T.contiguous().clone(), requires_grad=False)
        parent, _, leaf = node.target.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, leaf, linear)
        node.args = (x,)
        changed = True
        users[w.target] -= 1
        if users[w.target] == 0:  # the constant now lives in the Linear only
            owner, _, name = w.target.rpartition(".")
            delattr(module.get_submodule(owner) if owner else module, name)
            module.graph.erase_node(w)
    if changed:
        module.recompile()
    return module


def _one_output_per_value(module, onnx_graph):
    """`module` returning one tensor per graph output: onnx2torch returns the whole result of a
    node with several outputs (an LSTM's Y, Y_h, Y_c), once, for the graph outputs it gives."""
    import operator

    calls = {n.target: n for n in module.graph.nodes if n.op == "call_module"}
    output = next(n for n in module.graph.nodes if n.op == "output")
    results = []
    with module.graph.inserting_before(output):
        for value in onnx_graph.output_values:
            node, _ = onnx_graph.value_as_node_output(value)
            call = calls[node.unique_name]
            many = len(node.output_values) > 1
            results.append(module.graph.call_function(operator.getitem, (call, node.output_values.index(value)))
                           if many else call)
    output.args = (tuple(results) if len(results) > 1 else results[0],)
    module.recompile()
    return module


def _node_values(module, examples, ops: dict[str, str]) -> dict:
    """fx node -> its value on `examples` (one run of the graph). A module whose onnx2torch forward
    refuses a form torch computes (a reflect Pad of a 2-D tensor) is run in its static form."""
    import torch
    from torch.fx.node import map_arg

    values = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            try:
                values[node] = super().run_node(node)
            except Exception:
                op = ops.get(node.target, "") if node.op == "call_module" else ""
                static = op in RECORDED_STATIC and _static_call(op, node, values, module)
                if not static:
                    raise
                function, args, *kwargs = static
                values[node] = function(*map_arg(args, values.__getitem__),
                                        **map_arg(kwargs[0] if kwargs else {}, values.__getitem__))
            return values[node]

    with torch.no_grad():
        Recorder(module).run(*examples)
    return values


def _static_pad(pads: list[int], onnx_mode: str) -> tuple[list[int], str]:
    """ONNX Pad's pads (all begins, then all ends) and mode as `torch.nn.functional.pad`'s."""
    half = len(pads) // 2
    torch_pads = [int(p) for d in reversed(range(half)) for p in (pads[d], pads[d + half])]
    while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:  # F.pad takes the trailing dims only
        torch_pads = torch_pads[:-2]
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[onnx_mode]
    return torch_pads, mode


def _static_call(op: str, node, values, module):
    """(function, args[, kwargs]) computing `node` with its integer constants as Python numbers, from the
    values one run recorded (the exports are batch 1, so every shape is static), or None when the
    form is not one of these."""
    import operator

    import torch

    data, out = values[node.args[0]], values.get(node)  # no output yet while recording (`_node_values`)
    if op == "PRelu":  # onnx2torch's masked assignment for a [1, C, 1, 1] slope is not exportable
        slope = values[node.args[1]]
        aligned = (1,) * (data.dim() - slope.dim()) + tuple(slope.shape)
        if slope.numel() == 1 or data.dim() > 1 and aligned[1] == slope.numel() == data.shape[1]:
            with module.graph.inserting_before(node):
                flat = module.graph.call_function(torch.reshape, (node.args[1], (-1,)))
            return torch.nn.functional.prelu, (node.args[0], flat)
        return None
    if op in ("Resize", "Upsample"):
        return _static_resize(node, values, module)
    if op == "Gather" and data.dim():  # onnx2torch indexes with the tensor: a scalar index is read by item()
        axis, index = module.get_submodule(node.target)._axis % data.dim(), values[node.args[1]]
        if index.dim() == 0:
            return torch.select, (node.args[0], axis, int(index) % data.shape[axis])
        if index.dim() == 1 and bool((index >= 0).all()):
            return torch.index_select, (node.args[0], axis, node.args[1])
        return None
    if op == "Split":
        axis = module.get_submodule(node.target).axis
        return torch.split, (node.args[0], [int(part.shape[axis]) for part in out], axis)
    if op in ("Reshape", "Unsqueeze", "Squeeze", "Flatten"):
        return torch.reshape, (node.args[0], tuple(out.shape))
    if op == "Expand":
        return torch.Tensor.expand, (node.args[0], tuple(out.shape))
    if op == "Tile" and data.dim() == out.dim():
        return torch.Tensor.repeat, (node.args[0], tuple(o // d for o, d in zip(out.shape, data.shape)))
    if op == "Slice":
        starts, ends, axes, steps = ([int(v) for v in values[a].tolist()] if isinstance(a, torch.fx.Node) else None
                                     for a in (list(node.args[1:]) + [None] * 4)[:4])
        axes = axes if axes is not None else list(range(len(starts)))
        steps = steps if steps is not None else [1] * len(starts)
        if any(step <= 0 for step in steps):
            return None  # a reversed slice has no Python-slice form in torch
        index = [slice(None)] * data.dim()
        for start, end, axis, step in zip(starts, ends, axes, steps):
            index[axis % data.dim()] = slice(start, end, step)
        return operator.getitem, (node.args[0], tuple(index))
    if op == "Pad" and len(node.args) > 1:
        attrs = getattr(module.get_submodule(node.target), "mode", "constant")
        pads = [int(v) for v in values[node.args[1]].tolist()]
        constant = values[node.args[2]] if len(node.args) > 2 and isinstance(node.args[2], torch.fx.Node) else None
        onnx_mode = {"replicate": "edge"}.get(attrs, attrs) if isinstance(attrs, str) else "constant"  # torch's name
        if onnx_mode in ("reflect", "edge") and min(pads, default=0) >= 0:
            return onnx_torch_ops.pad_by_slices, (node.args[0], pads, onnx_mode)
        torch_pads, mode = _static_pad(pads, onnx_mode)
        fill = float(constant.reshape(-1)[0]) if constant is not None and constant.numel() else 0.0
        return torch.nn.functional.pad, (node.args[0], torch_pads, mode, fill if mode == "constant" else None)
    return None


def _static_resize(node, values, module):
    """`F.interpolate` with the scales (or output size) onnx2torch's Resize module reads from a
    tensor at run time as Python numbers: scales as ONNX gives them (torch then samples at the
    same coordinates), sizes as the output's spatial shape."""
    import inspect

    import torch
    from onnx2torch.node_converters.resize import _onnx_mode_to_torch_mode

    wrapper = module.get_submodule(node.target)
    resize = getattr(wrapper, "_resize", wrapper)  # the opset-10 module wraps the later one
    given = inspect.signature(wrapper.forward).bind(*node.args, **node.kwargs).arguments
    known = {k: values[v] for k, v in given.items() if isinstance(v, torch.fx.Node) and k != "input_tensor"}
    data, out = values[node.args[0]], values[node]
    roi = known.get("roi")
    if roi is not None and roi.numel() and not resize.ignore_roi or data.dim() < 3:
        return None
    options = {"mode": _onnx_mode_to_torch_mode(resize.onnx_mode, data.dim() - 2),
               "align_corners": resize.align_corners}
    scales, sizes = known.get("scales"), known.get("sizes")
    if sizes is not None and sizes.numel():
        options["size"] = tuple(out.shape[2:])
    elif scales is not None and scales.numel() and [float(v) for v in scales.tolist()[:2]] == [1.0, 1.0]:
        options["scale_factor"] = tuple(float(v) for v in scales.tolist()[2:])
    else:
        return None
    return torch.nn.functional.interpolate, (node.args[0],), options


def _specialize(module, examples, ops: dict[str, str]):
    """Replace each module that reads an integer constant (a get_attr of an integer buffer: a
    shape, axes, pads, repeats, slice bounds) with the torch function it computes, its constants
    as Python numbers (`_static_call`): torch.export cannot branch on a tensor's values, and
    onnx2torch's modules do. PReLU becomes `F.prelu`, Resize `F.interpolate` (`ALWAYS_STATIC`).
    Modules holding weights (Conv, Linear, norms) read no integer constants and stay as they are.
    `ops`: module name -> ONNX op type."""
    import torch

    values = _node_values(module, examples, ops)
    for node in list(module.graph.nodes):
        if node.op != "call_module" or not node.args:
            continue
        reads_constant = any(isinstance(a, torch.fx.Node) and a.op == "get_attr" and isinstance(values[a], torch.Tensor)
                             and not values[a].is_floating_point() for a in node.args[1:])
        op = ops.get(node.target, "")
        static = (reads_constant or op in ALWAYS_STATIC) and _static_call(op, node, values, module)
        if not static:
            continue
        function, args, *kwargs = static
        with module.graph.inserting_before(node):
            replacement = module.graph.call_function(function, args, *kwargs)
        values[replacement] = values[node]  # a later node reading this one finds its value
        node.replace_all_uses_with(replacement)
        module.graph.erase_node(node)
    module.graph.eliminate_dead_code()
    module.recompile()
    used = {n.target for n in module.graph.nodes if n.op == "get_attr"}
    initializers = getattr(module, "initializers", None)  # none when every constant sits in a layer
    for name in [n for n in getattr(initializers, "_buffers", {}) if f"initializers.{n}" not in used]:
        del initializers._buffers[name]  # constants now written into the graph as numbers
    module.delete_all_unused_submodules()
    return module


def _param_map(module, graph, source) -> ParamMap:
    """Module parameter / buffer path <-> initializer of the source ONNX model: a weight module's
    tensors by `PARAM_INPUTS`, a constant module input (get_attr) by the node input it feeds, any
    other by identical values (unique). Initializers no module tensor holds have no path."""
    import torch
    from onnx import numpy_helper
    from onnx2torch.onnx_graph import OnnxGraph

    inits = {i.name: numpy_helper.to_array(i) for i in source.graph.initializer}
    inits = {n: a for n, a in inits.items() if np.issubdtype(a.dtype, np.floating)}
    prints = {n: fingerprint(a) for n, a in inits.items()}
    pairs: dict[str, str] = {}
    for unique, node in OnnxGraph(graph.graph).nodes.items():
        for param, index in PARAM_INPUTS.get(node.operation_type, {}).items():
            if index < len(node.input_values) and node.input_values[index] in inits:
                pairs[f"{unique}.{param}"] = node.input_values[index]
    for node in module.graph.nodes:
        if node.op != "call_module":
            continue
        mapping = getattr(module.get_submodule(node.target), "onnx_mapping", None)
        for arg, name in zip(node.args, mapping.inputs if mapping is not None else ()):
            if isinstance(arg, torch.fx.Node) and arg.op == "get_attr" and name in inits:
                pairs.setdefault(arg.target, name)
    tensors = dict(module.named_parameters()) | dict(module.named_buffers())
    entries, claimed = [], set()
    for path, tensor in tensors.items():
        if not tensor.is_floating_point():
            continue
        value = tensor.detach().cpu().numpy()
        name = pairs.get(path)
        if name is None or name in claimed:
            same = [n for n in inits if n not in claimed and prints[n] == fingerprint(value)]
            name = same[0] if len(same) == 1 else None
        if name is None:
            entries.append(Param(path, None, tuple(value.shape), fingerprint(value)))
            continue
        claimed.add(name)
        entries.append(Param(path, name, tuple(inits[name].shape), prints[name],
                             rewritten=prints[name] != fingerprint(value)))
    entries += [Param(None, n, tuple(a.shape), prints[n]) for n, a in inits.items() if n not in claimed]
    return ParamMap(tuple(entries))


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
