"""Load a model source into a `FloatModel`.

Sources: `package.module:factory` (a callable returning a torch.nn.Module), a `torch.export`
`.pt2` file, an `.onnx` file, or an already quantized `.tflite` file (for Cortex-M targets).
Arbitrary pickled `.pt` files are refused: unpickling runs code.

Each float model carries its `ParamMap` (`edgeport.params`): which PyTorch parameter each ONNX
initializer is, so converters that start from the module find the plan's weights by name.

A PyTorch module that carries quantization numbers learned in training (`edgeport_qparams`, set by
`edgeport.training.qat.convert`) keeps them on the `FloatModel` (`learned_qparams`) for the int8
plan. Only `module:factory` sources can: a `.pt2` program does not keep module attributes.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path

import numpy as np

from edgeport.errors import InputError, MissingDependencyError, UnsupportedOpError
from edgeport.model import FloatModel
from edgeport.params import ParamMap
from edgeport.quiet import quiet_python
from edgeport.tensors import TensorSpec

_NUMPY_OF_ONNX = {1: "float32", 10: "float16", 11: "float64", 3: "int8", 2: "uint8", 6: "int32", 7: "int64"}
_FACTORY_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_factory_ref(source: str) -> bool:
    """Whether `source` has the form of a `package.module:factory` reference (a callable that
    returns a torch.nn.Module); whether it imports is only known when it is loaded."""
    return bool(_FACTORY_REF.match(source))


def load_source(source: str, input_shapes: list[tuple[int, ...]] | None = None,
                input_dtype: str = "float32") -> FloatModel:
    """Load `source` (see module docstring). `input_shapes` is needed for PyTorch sources."""
    path = Path(source)
    if path.suffix == ".onnx":
        return load_onnx(path, input_shapes)
    if path.suffix == ".pt2":
        return _load_pt2(path, input_shapes, input_dtype)
    if path.suffix in {".pt", ".pth", ".ckpt", ".bin"}:
        raise InputError(f"{source}: pickled PyTorch files are not loaded (unpickling runs code); "
                         "give a 'module:factory' reference or a torch.export .pt2 file")
    if path.suffix == ".tflite":
        return load_tflite(path)
    if path.suffix in {".mlpackage", ".mlmodel"}:
        raise InputError(f"{source}: '{path.suffix}' models are not an export source in this version; "
                         "use a PyTorch model or an .onnx file")
    if is_factory_ref(source):
        return _load_factory(source, input_shapes, input_dtype)
    if path.exists():
        raise InputError(f"{source}: unknown model file type (expected .onnx, .pt2 or module:factory)")
    raise InputError(f"{source}: no such file, and not a 'package.module:factory' reference")


# ---------------------------------------------------------------- TFLite (already quantized)

def load_tflite(path: Path) -> FloatModel:
    """An existing .tflite file: exported as is (its quantization is the recipe) to targets that
    take TFLite (Cortex-M); the reference is LiteRT's reference kernels on the same file, with the
    model's own input and output types (int8 stays int8)."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        raise MissingDependencyError("ai-edge-litert", f"{path}: reading a .tflite source", "mcu")
    from edgeport.runtimes.litert import LiteRTSession

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    session = LiteRTSession(str(path), 1, reference_kernels=True)  # InputError when unreadable

    def reference(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One sample at a time: TFLite models have a fixed batch of 1."""
        count = len(next(iter(feeds.values())))
        runs = [session.run_raw({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(count)]
        return [np.concatenate([r[j] for r in runs]) for j in range(len(session.outputs))]

    return FloatModel(name=re.sub(r"\W", "_", path.stem), onnx_bytes=b"", inputs=list(session.inputs),
                      outputs=list(session.outputs), reference=reference,
                      reference_kind="LiteRT reference kernels", source=str(path), tflite_bytes=path.read_bytes())


# ---------------------------------------------------------------- ONNX

def read_onnx(path: Path):
    """Parse and validate an ONNX file; every failure is a one-line InputError."""
    import onnx

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise InputError(f"{path}: file is empty")
    try:
        model = onnx.load_from_string(data)
    except Exception:  # protobuf raises DecodeError or RuntimeError depending on the damage
        raise InputError(f"{path}: not a readable ONNX file (truncated or corrupt)") from None
    if not model.graph.node:
        raise InputError(f"{path}: not a readable ONNX file (truncated or corrupt: the graph has no nodes)")
    check_standard_ops(model)  # first, so an unknown op is named with its node
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{path}: invalid ONNX model: {first}") from None
    return model


def check_standard_ops(model) -> None:
    """Refuse operators outside the ONNX standard (and onnxruntime's own domain), naming op and node."""
    import onnx.defs

    opset = {o.domain or "": o.version for o in model.opset_import}
    for node in model.graph.node:
        domain = node.domain or ""
        if domain in ("", "ai.onnx"):
            if not onnx.defs.has(node.op_type, domain):
                raise UnsupportedOpError(node.op_type, node.name, "not an ONNX standard operator")
        elif domain != "com.microsoft":
            raise UnsupportedOpError(f"{domain}:{node.op_type}", node.name,
                                     f"custom domain '{domain}' (opset {opset.get(domain)}) has no kernels here")


def _specs(values, initializer_names=frozenset()) -> list[TensorSpec]:
    specs = []
    for value in values:
        if value.name in initializer_names:
            continue
        ttype = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim)
        specs.append(TensorSpec(value.name, shape, _NUMPY_OF_ONNX.get(ttype.elem_type, str(ttype.elem_type))))
    return specs


def load_onnx(path: Path, input_shapes: list[tuple[int, ...]] | None = None) -> FloatModel:
    from edgeport.runtimes.onnxruntime import OrtSession

    model = read_onnx(path)
    inits = {i.name for i in model.graph.initializer}
    inputs, outputs = _specs(model.graph.input, inits), _specs(model.graph.output)
    if input_shapes:
        _check_shapes_match(inputs, input_shapes, str(path))
    for spec in inputs:
        if spec.dtype != "float32":
            raise InputError(f"{path}: input '{spec.name}' is {spec.dtype}; export needs a float32 model "
                             "(use 'edgeport check' for an already-quantized model)")
    session = OrtSession(str(path), threads=1)
    return FloatModel(
        name=path.stem, onnx_bytes=model.SerializeToString(), inputs=inputs, outputs=outputs,
        reference=session.run, reference_kind="onnxruntime fp32", layers={n.name: n.name for n in model.graph.node},
        source=str(path), params=ParamMap.build(model))


def _check_shapes_match(inputs: list[TensorSpec], shapes: list[tuple[int, ...]], where: str) -> None:
    if len(shapes) != len(inputs):
        raise InputError(f"{where}: model has {len(inputs)} input(s) but {len(shapes)} --input-shape given")
    for spec, shape in zip(inputs, shapes):
        if len(spec.shape) != len(shape) or any(d is not None and d != s for d, s in zip(spec.shape, shape)):
            raise InputError(f"{where}: input '{spec.name}' has shape {_fmt(spec.shape)}, "
                             f"not {_fmt(shape)}")


def _fmt(shape) -> str:
    return "[" + ",".join("N" if d is None else str(d) for d in shape) + "]"


# ---------------------------------------------------------------- PyTorch

def _torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "a PyTorch model source", "torch") from None
    return torch


def _load_factory(ref: str, input_shapes, input_dtype) -> FloatModel:
    torch = _torch()
    module_name, _, attr = ref.partition(":")
    if os.getcwd() not in sys.path:  # like `python -m`: modules of the current project are importable
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"{ref}: cannot import module '{module_name}': {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"{ref}: module '{module_name}' has no callable '{attr}'")
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{ref}: factory returned {type(model).__name__}, not a torch.nn.Module")
    if not input_shapes:
        raise InputError(f"{ref}: input shape unknown; pass --input-shape (e.g. 1,3,224,224) "
                         "or calibration data")
    return _from_torch(model.eval(), ref, _artifact_name(module_name, attr), input_shapes, input_dtype)


def _artifact_name(module_name: str, attr: str) -> str:
    """`samples.digits.model:build` -> "digits"; `zoo.nets:resnet18` -> "resnet18"."""
    if attr not in {"build", "create", "make", "model", "get_model", "main"}:
        return attr
    parts = [p for p in module_name.split(".") if p not in {"model", "models", "net"}]
    return parts[-1] if parts else attr


def _load_pt2(path: Path, input_shapes, input_dtype) -> FloatModel:
    torch = _torch()
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with quiet_python():  # torch logs recoverable load failures with tracebacks
            program = torch.export.load(str(path))
    except Exception as exc:  # zip/format errors come in several types
        raise InputError(f"{path}: not a readable torch.export .pt2 file ({type(exc).__name__})") from None
    if not input_shapes:
        example = getattr(program, "example_inputs", None)
        if example and example[0]:
            input_shapes = [tuple(t.shape) for t in example[0]]
        else:
            raise InputError(f"{path}: input shape unknown; pass --input-shape")
    return _from_torch(program.module(), str(path), path.stem, input_shapes, input_dtype)


def _first_line(exc: Exception) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # torch colors its messages
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _unsupported_op(text: str) -> str | None:
    """The op named by a torch.onnx conversion failure, e.g. 'aten.fft_r2c' or 'mylib.custom'."""
    match = re.search(r"No ONNX function found for <OpOverload\(op='([\w.]+)'", text)
    if match:
        return match.group(1)
    match = re.search(r"[Uu]nsupported[^\n]*?\b((?:aten|prims)[.:]+\w+)", text)
    return match.group(1) if match else None


def _from_torch(module, ref: str, name: str, input_shapes, input_dtype) -> FloatModel:
    torch = _torch()
    dtype = getattr(torch, input_dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise InputError(f"unknown input dtype '{input_dtype}'")
    examples = tuple(torch.zeros(shape, dtype=dtype) for shape in input_shapes)
    try:
        with torch.no_grad():
            trial = module(*examples)
    except Exception as exc:
        raise InputError(f"{ref}: model rejects input shape {', '.join(_fmt(s) for s in input_shapes)}: "
                         f"{_first_line(exc)}") from None
    count = len(trial) if isinstance(trial, (tuple, list)) else 1
    onnx_bytes = _torch_to_onnx(module, examples, ref, ["output"] if count == 1 else [f"output_{i}" for i in range(count)])
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    layers = _layer_names(model)
    inits = {i.name for i in model.graph.initializer}

    def run_torch(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(*(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in inputs))
        outs = out if isinstance(out, (tuple, list)) else [out]
        return [o.detach().numpy() for o in outs]

    def reference(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if batched:
            return run_torch(feeds)
        count = len(next(iter(feeds.values())))  # a program fixed at batch 1: one sample at a time
        parts = [run_torch({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(count)]
        return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]

    batched = _accepts_batch(module, examples)

    inputs = _specs(model.graph.input, inits)
    return FloatModel(name=name, onnx_bytes=onnx_bytes, inputs=inputs, outputs=_specs(model.graph.output),
                      reference=reference, reference_kind="pytorch", layers=layers, source=ref,
                      torch_module=module, example_inputs=examples, learned_qparams=_learned_qparams(module, ref),
                      params=ParamMap.build(model, module))


def _learned_qparams(module, ref: str) -> dict | None:
    """A copy of `module.edgeport_qparams` (see `FloatModel.learned_qparams`), checked for shape."""
    import copy

    learned = getattr(module, "edgeport_qparams", None)
    if learned is None:
        return None
    weights = learned.get("weights") if isinstance(learned, dict) else None
    activations = learned.get("activations", {}) if isinstance(learned, dict) else None
    if not isinstance(weights, dict) or not isinstance(activations, dict) \
            or any(not isinstance(w, dict) or "scale" not in w for w in weights.values()) \
            or any(not isinstance(r, (list, tuple)) or len(r) != 2 for r in activations.values()):
        raise InputError(f"{ref}: the module's edgeport_qparams is not in the form written by "
                         "edgeport.training.qat.convert ({'bits', 'weights': {path: {'scale', 'axis'}}, "
                         "'activations': {path: [lo, hi]}})")
    return copy.deepcopy(learned)


def rebuild_from_torch(module, like: FloatModel) -> FloatModel:
    """`module` (a restructured copy of `like`'s PyTorch module) as a new float model; the
    reference stays `like`'s, so checks compare with the model the user gave. Its ONNX graph and
    parameter map are made anew from `module`."""
    rebuilt = _from_torch(module, like.source, like.name, [tuple(e.shape) for e in like.example_inputs],
                          str(like.example_inputs[0].dtype).removeprefix("torch."))
    rebuilt.reference, rebuilt.reference_kind = like.reference, like.reference_kind
    rebuilt.learned_qparams = None  # learned for the layers as they were, not for the rebuilt ones
    return rebuilt


def _accepts_batch(module, examples) -> bool:
    """Whether the module runs a batch of 2 (a torch.export program may be fixed at batch 1)."""
    torch = _torch()
    try:
        with torch.no_grad():
            module(*(torch.cat([e, e]) for e in examples))
        return True
    except Exception:  # noqa: BLE001 - guards and shape errors alike mean "no batching"
        return False


def _torch_to_onnx(module, examples, ref: str, output_names: list[str]) -> bytes:
    """torch.onnx (dynamo) export with a dynamic batch dim, falling back to the fixed example shape."""
    torch = _torch()
    if importlib.util.find_spec("onnxscript") is None:
        raise MissingDependencyError("onnxscript", "PyTorch to ONNX export", "torch")
    names = ["input"] if len(examples) == 1 else [f"input_{i}" for i in range(len(examples))]
    batch = torch.export.Dim("batch", min=1, max=4096)
    attempts = [tuple({0: batch} for _ in examples), None]
    last_error: Exception | None = None
    for dynamic in attempts:
        try:
            with quiet_python():  # exporter chatter; failures are reported below
                program = torch.onnx.export(module, examples, dynamo=True, dynamic_shapes=dynamic,
                                            input_names=names, output_names=output_names, optimize=True,
                                            verbose=False)
            return _save_cleaned(program)
        except Exception as exc:  # noqa: BLE001 - any export failure is reported below
            last_error = exc
    text = str(last_error)
    op = _unsupported_op(text)
    if op:
        raise UnsupportedOpError(op, _node_of(text) or "?", "PyTorch to ONNX export has no conversion for it") from None
    raise InputError(f"{ref}: PyTorch to ONNX export failed: {_first_line(last_error)}") from None


def _node_of(text: str) -> str | None:
    match = re.search(r"translating node %(\w+)", text) or re.search(r"%(\w+)\s*:", text)
    return match.group(1) if match else None


def _save_cleaned(program) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model.onnx"
        program.save(str(target))
        import onnx

        model = onnx.load(str(target))
    return _clean(model).SerializeToString()


def _layer_names(model) -> dict[str, str]:
    """ONNX node name -> PyTorch module path, from our own tag or the exporter's name scopes."""
    import ast

    layers = {}
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        path = props.get("edgeport.layer", "")
        if not path and "pkg.torch.onnx.name_scopes" in props:
            try:
                parts = [s for s in ast.literal_eval(props["pkg.torch.onnx.name_scopes"]) if s]
            except (ValueError, SyntaxError):
                parts = []
            # scopes are cumulative module paths, then the op: ['', 'classifier', 'classifier.3', 'linear']
            path = parts[-2] if len(parts) > 1 else "".join(parts)
        layers[node.name] = path or node.name
    return layers


def _clean(model):
    """Record layer names, then drop exporter debug metadata (it holds source file paths)."""
    layers = _layer_names(model)
    for node in model.graph.node:
        layer = layers[node.name]
        del node.metadata_props[:]
        if layer != node.name:
            entry = node.metadata_props.add()
            entry.key, entry.value = "edgeport.layer", layer
    for value in list(model.graph.input) + list(model.graph.output):
        del value.metadata_props[:]
    model.producer_name, model.producer_version = "edgeport", "0.1.0"
    return model
