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
import inspect
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeport.errors import InputError, MissingDependencyError, UnsupportedOpError
from edgeport.model import FloatModel
from edgeport.onnx_file import read_onnx
from edgeport.params import ParamMap
from edgeport.quiet import quiet_python
from edgeport.tensors import TensorSpec, fit_feeds

_NUMPY_OF_ONNX = {1: "float32", 10: "float16", 11: "float64", 3: "int8", 2: "uint8", 6: "int32", 7: "int64"}
_FACTORY_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_factory_ref(source: str) -> bool:
    """Whether `source` has the form of a `package.module:factory` reference (a callable that
    returns a torch.nn.Module); whether it imports is only known when it is loaded."""
    return bool(_FACTORY_REF.match(source))


def load_source(source: str, input_shapes: list[tuple[int, ...]] | None = None,
                input_dtype: str | dict[str, str] | None = None,
                data_specs: dict[str, tuple[tuple[int, ...], str]] | None = None) -> FloatModel:
    """Load `source` (see module docstring).

    PyTorch sources need their inputs' shapes and dtypes: `input_shapes` (one per input, batch
    first) and `input_dtype` (one for all, or by input name; default float32), or else the named
    arrays of the data (`data_specs`, from `edgeport.data.sample_specs`), matched to the names of
    `forward()`'s arguments.
    """
    path = Path(source)
    if path.suffix == ".onnx":
        return load_onnx(path, input_shapes, data_specs)
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
        return _load_factory(source, input_shapes, input_dtype, data_specs)
    if path.exists():
        raise InputError(f"{source}: unknown model file type (expected .onnx, .pt2 or module:factory)")
    raise InputError(f"{source}: no such file, and not a 'package.module:factory' reference")


# ---------------------------------------------------------------- TFLite (already quantized)

def load_tflite(path: Path) -> FloatModel:
    """An existing .tflite file: exported as is (its quantization is the recipe) to targets that
    take TFLite (Cortex-M); the reference is LiteRT's reference kernels on the same file, with the
    model's own input and output types (int8 stays int8).

    The flatbuffer is read and its quantization parameters and declared input sizes validated
    before LiteRT sees it (LiteRT aborts the process on some corrupt files), and one inference on
    zeros proves it runs: a file that fails any of these is bad input, named in one line."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        raise MissingDependencyError("ai-edge-litert", f"{path}: reading a .tflite source", "mcu")
    from edgeport.limits import check_tensor
    from edgeport.mcu.compiler.tflite_ir import read_tflite
    from edgeport.runtimes.litert import LiteRTSession

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = path.read_bytes()
    graph = read_tflite(data, str(path))  # InputError when corrupt or its numbers are not sane
    for index in graph.inputs:
        tensor = graph.tensors[index]
        check_tensor(f"{path}: input '{tensor.label}'", tensor.shape, tensor.dtype if tensor.dtype != "bool" else "uint8")
    for index in graph.outputs:
        tensor = graph.tensors[index]
        check_tensor(f"{path}: output '{tensor.label}'", tensor.shape, tensor.dtype if tensor.dtype != "bool" else "uint8")
    session = LiteRTSession(str(path), 1, reference_kernels=True)  # InputError when unreadable
    outputs = _trial_run(session.run_raw, session.inputs, path, "LiteRT")
    for index, value in zip(graph.outputs, outputs):  # the C library sizes its buffers from the declared shape
        tensor = graph.tensors[index]
        if tuple(value.shape) != tuple(tensor.shape):
            raise InputError(f"{path}: output '{tensor.label}' declares shape {list(tensor.shape)} but LiteRT "
                             f"computes {list(value.shape)}")

    def reference(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One sample at a time: TFLite models have a fixed batch of 1."""
        count = len(next(iter(feeds.values())))
        runs = [session.run_raw({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(count)]
        return [np.concatenate([r[j] for r in runs]) for j in range(len(session.outputs))]

    return FloatModel(name=re.sub(r"\W", "_", path.stem), onnx_bytes=b"", inputs=list(session.inputs),
                      outputs=list(session.outputs), reference=reference,
                      reference_kind="LiteRT reference kernels", source=str(path), tflite_bytes=data)


# input types of a float model: a quantized (int8 / uint8) or half (float16) input means the model
# is already converted, and gets `edgeport check` instead
FLOAT_MODEL_INPUTS = ("float32", "int64", "int32", "bool")


def _trial_run(run, inputs: list[TensorSpec], path: Path, runtime: str) -> list[np.ndarray]:
    """One inference on zeros (batch 1): a model that loads but cannot run is bad input."""
    feeds = {spec.name: np.zeros(tuple(1 if d is None else d for d in spec.shape), dtype=spec.dtype)
             for spec in inputs}
    try:
        return run(feeds)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - runtimes raise their own types; all mean "cannot run it"
        raise InputError(f"{path}: {runtime} loads it but cannot run it: {_first_line(exc)}") from None


# ---------------------------------------------------------------- ONNX (file checks: edgeport.onnx_file)

def _specs(values, initializer_names=frozenset()) -> list[TensorSpec]:
    specs = []
    for value in values:
        if value.name in initializer_names:
            continue
        ttype = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None for d in ttype.shape.dim)
        specs.append(TensorSpec(value.name, shape, _NUMPY_OF_ONNX.get(ttype.elem_type, str(ttype.elem_type))))
    return specs


def load_onnx(path: Path, input_shapes: list[tuple[int, ...]] | None = None,
              data_specs: dict[str, tuple[tuple[int, ...], str]] | None = None) -> FloatModel:
    """An `.onnx` source. Its dynamic dims (a `dim_param`, none, or -1 as paddle2onnx writes them)
    other than the batch are taken from `input_shapes`, else from the data's array of the same
    name (`data_specs`); the batch stays dynamic (the exports are batch 1)."""
    from edgeport.limits import check_tensor
    from edgeport.runtimes.onnxruntime import OrtSession

    from edgeport.graph_cleanup import clean, fold_into_convs, fuse_hard_swish

    model = read_onnx(path)  # parsed and validated (edgeport.onnx_file)
    _negative_dims_dynamic(model)
    model = _at_least_opset(model, MIN_OPSET)
    model = clean(model)  # once, before the plan: every converter sees the simplest graph
    fold_into_convs(model)  # Conv -> BatchNormalization / Mul / Add by constants as one convolution
    fuse_hard_swish(model)  # x * clip(x + 3, 0, 6) / 6 as one op
    inits = {i.name for i in model.graph.initializer}
    inputs, outputs = _specs(model.graph.input, inits), _specs(model.graph.output)
    if not inputs:
        raise InputError(f"{path}: the graph declares no inputs (every graph input is an initializer)")
    if input_shapes:
        _check_shapes_match(inputs, input_shapes, str(path))
        inputs = [replace(spec, shape=spec.shape[:1] + tuple(shape)[1:]) for spec, shape in zip(inputs, input_shapes)]
    elif data_specs:
        inputs = [_dims_from_data(spec, data_specs.get(spec.name)) for spec in inputs]
    for spec in inputs:
        if spec.dtype not in FLOAT_MODEL_INPUTS:  # token ids, masks and indices are integers in float models too
            raise InputError(f"{path}: input '{spec.name}' is {spec.dtype}; export needs a float32 model "
                             "(use 'edgeport check' for an already-quantized model)")
        check_tensor(f"{path}: input '{spec.name}'", spec.shape, spec.dtype)  # before anything is allocated
    _check_intermediates(model, path)
    onnx_bytes = model.SerializeToString()  # external data inlined: the model as validated
    session = OrtSession(str(path), threads=1, model_bytes=onnx_bytes)
    _trial_run(session.run, inputs, path, "onnxruntime")
    fixed_batch = any(not spec.batched or spec.shape[0] == 1 for spec in inputs)
    return FloatModel(
        name=path.stem, onnx_bytes=onnx_bytes, inputs=inputs, outputs=outputs,
        reference=_one_at_a_time(session.run) if fixed_batch else session.run, reference_kind="onnxruntime fp32",
        layers={n.name: n.name for n in model.graph.node},
        source=str(path), params=ParamMap.build(model))


# per-channel DequantizeLinear (13) and HardSwish (14): older graphs are upgraded once, before the plan
MIN_OPSET = 14


def _at_least_opset(model, minimum: int):
    """`model` upgraded to ONNX opset `minimum` when it is older (paddle2onnx writes 10-12).

    Int8 weights per channel need a DequantizeLinear with `axis` (opset 13); a hard-swish written
    as four ops becomes one HardSwish (14, `graph_cleanup.fuse_hard_swish`). Upgrading here, before
    the plan, means the plan calibrates the graph the exporters write: the upgrade rewrites some ops
    with new tensors (a Softmax before opset 13 becomes Shape -> Flatten -> Softmax -> Reshape), and
    a tensor the plan never saw would be quantized without calibrated numbers. A graph the version
    converter cannot upgrade stays as it is (the exporters then say why int8 weights need 13)."""
    from onnx import version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), minimum)
    if opset >= minimum:
        return model
    try:
        return version_converter.convert_version(model, minimum)
    except Exception:  # noqa: BLE001 - kept as written; exporters that need 13 say so in one line
        return model


def _one_at_a_time(run):
    """`run` over a batch of samples, one sample at a time: a model whose input has a fixed batch
    of 1 (the checks run the reference on many samples at once)."""
    def reference(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        count = len(next(iter(feeds.values())))
        runs = [run({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(count)]
        return [np.concatenate([r[j] for r in runs]) for j in range(len(runs[0]))]

    return reference


def _negative_dims_dynamic(model) -> None:
    """Graph input and output dims written as a negative number (-1: paddle2onnx's "any") become
    symbolic dims, as the ONNX standard writes a dynamic dim."""
    for value in list(model.graph.input) + list(model.graph.output):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value < 0:
                dim.Clear()
                dim.dim_param = f"{value.name}_dim{axis}"


def _dims_from_data(spec: TensorSpec, sample: tuple[tuple[int, ...], str] | None) -> TensorSpec:
    """`spec` with its dynamic dims after the batch taken from a data array's per-sample shape of
    the same rank (the batch axis left dynamic); `spec` as it is otherwise."""
    if sample is None or len(sample[0]) != len(spec.shape) - 1 or all(d is not None for d in spec.shape[1:]):
        return spec
    return replace(spec, shape=spec.shape[:1] + tuple(s if d is None else d for d, s in zip(spec.shape[1:], sample[0])))


def _check_intermediates(model, path: Path) -> None:
    """Refuse, before running anything, a graph whose shape-inferred tensors (at batch 1) would not
    fit in memory: a declared input can be small while a layer's output is huge (a corrupt or hostile
    channel count). Tensors whose shapes inference cannot tell are not counted."""
    import onnx

    from edgeport.limits import check_tensor

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference gives up on some valid graphs; then the trial run decides
        return
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        ttype = value.type.tensor_type
        if not ttype.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in ttype.shape.dim]
        dtype = _NUMPY_OF_ONNX.get(ttype.elem_type, "float32")
        check_tensor(f"{path}: tensor '{value.name}'", dims, dtype if dtype in _SIZED else "float32")


_SIZED = {"float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64"}


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


def _load_factory(ref: str, input_shapes, input_dtype, data_specs=None) -> FloatModel:
    torch = _torch()
    module_name, _, attr = ref.partition(":")
    if os.getcwd() not in sys.path:  # like `python -m`: modules of the current project are importable
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"{ref}: cannot import module '{module_name}': {exc}") from None
    except (Exception, SystemExit) as exc:  # the user's module failed while importing: their code, not edgeport
        raise InputError(f"{ref}: importing module '{module_name}' failed: {type(exc).__name__}: "
                         f"{_first_line(exc)}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"{ref}: module '{module_name}' has no callable '{attr}'")
    try:
        inspect.signature(factory).bind()
    except TypeError as exc:
        raise InputError(f"{ref}: factory '{attr}' cannot be called without arguments ({_first_line(exc)}); "
                         "give a callable that takes none") from None
    except ValueError:  # no signature to inspect (some builtins): just call it
        pass
    try:
        model = factory()
    except (Exception, SystemExit) as exc:
        raise InputError(f"{ref}: factory '{attr}' raised {type(exc).__name__}: {_first_line(exc)} "
                         "(an error in the model's code)") from None
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{ref}: factory returned {type(model).__name__}, not a torch.nn.Module")
    names, input_shapes, dtypes = _resolve_inputs(ref, _forward_names(model), input_shapes, input_dtype, data_specs)
    return _from_torch(model.eval(), ref, _artifact_name(module_name, attr), input_shapes, dtypes, names)


def _forward_names(module) -> list[str]:
    """The names of `module.forward`'s positional arguments, in order (empty when it has none to read)."""
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _resolve_inputs(ref: str, forward: list[str], shapes, dtype, data_specs) -> tuple[list[str], list, list[str]]:
    """(input names, shapes, dtypes) of a PyTorch source, from the flags or else the data.

    Names: a single input is `input` (the name apps have always used); several inputs keep
    their `forward()` argument names (`input_ids`, `attention_mask`), or `input_<i>` when the
    signature does not say. Data arrays named after `forward()`'s first arguments give the
    shapes and dtypes; one unnamed array gives the single input's."""
    if shapes:
        count = len(shapes)
        names = _input_names(forward, count)
    elif data_specs:
        keys = list(data_specs)
        if len(keys) == 1:
            names, picked = _input_names(forward, 1), keys
        elif set(keys) == set(forward[:len(keys)]):
            picked = forward[:len(keys)]
            names = _input_names(forward, len(keys))
        else:
            raise InputError(f"{ref}: the data's arrays ({', '.join(keys)}) are not the first arguments of "
                             f"forward({', '.join(forward)}); name them after the arguments or pass --input-shape")
        shapes = [(1, *data_specs[k][0]) for k in picked]
        if dtype is None:  # the data's own types (--input-dtype overrides)
            dtype = dict(zip(names, (data_specs[k][1] for k in picked)))
    else:
        raise InputError(f"{ref}: input shape unknown; pass --input-shape (e.g. 1,3,224,224) or data "
                         "(--calib / --eval) whose arrays give it")
    if dtype is None or isinstance(dtype, str):
        dtypes = [dtype or "float32"] * len(shapes)
    else:
        unknown = set(dtype) - set(names)
        if unknown:
            raise InputError(f"{ref}: --input-dtype names {', '.join(sorted(unknown))}, but the inputs are "
                             f"{', '.join(names)}")
        dtypes = [dtype.get(n, "float32") for n in names]
    return names, list(shapes), dtypes


def _input_names(forward: list[str], count: int) -> list[str]:
    if count == 1:
        return ["input"]
    return forward[:count] if len(forward) >= count else [f"input_{i}" for i in range(count)]


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
    count = len(input_shapes)
    names = _input_names([], count)
    if isinstance(input_dtype, dict):
        _, _, dtypes = _resolve_inputs(str(path), names, input_shapes, input_dtype, None)
    else:
        dtypes = [input_dtype or "float32"] * count
    return _from_torch(program.module(), str(path), path.stem, input_shapes, dtypes, names)


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


def _from_torch(module, ref: str, name: str, input_shapes, input_dtypes: list[str],
                input_names: list[str]) -> FloatModel:
    torch = _torch()
    examples = []
    for shape, dtype_name in zip(input_shapes, input_dtypes):
        dtype = getattr(torch, str(dtype_name), None)
        if not isinstance(dtype, torch.dtype):
            raise InputError(f"unknown input dtype '{dtype_name}' (e.g. float32, int64, int32, bool)")
        examples.append(torch.zeros(shape, dtype=dtype))
    examples = tuple(examples)
    try:
        with torch.no_grad():
            trial = module(*examples)
    except Exception as exc:
        raise InputError(f"{ref}: model rejects input shape {', '.join(_fmt(s) for s in input_shapes)}: "
                         f"{_first_line(exc)}") from None
    count = len(trial) if isinstance(trial, (tuple, list)) else 1
    onnx_bytes = _torch_to_onnx(module, examples, ref, ["output"] if count == 1 else [f"output_{i}" for i in range(count)],
                                input_names)
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    layers = _layer_names(model)
    inits = {i.name for i in model.graph.initializer}

    def run_torch(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        feeds = fit_feeds(feeds, inputs)
        try:
            with torch.no_grad():
                out = module(*(torch.from_numpy(np.array(feeds[s.name], order="C")) for s in inputs))
        except Exception as exc:  # noqa: BLE001 - the user's model on the user's data
            hint = " (token ids beyond an embedding table's rows?)" if isinstance(exc, IndexError) else ""
            raise InputError(f"{ref}: the model fails on the given data: {type(exc).__name__}: "
                             f"{_first_line(exc)}{hint}") from None
        outs = out if isinstance(out, (tuple, list)) else [out]
        return [o.detach().numpy() for o in outs]

    def reference(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if batched:
            return run_torch(feeds)
        count = len(next(iter(feeds.values())))  # a program fixed at batch 1: one sample at a time
        parts = [run_torch({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(count)]
        return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]

    inputs = _specs(model.graph.input, inits)
    batched = all(spec.batched for spec in inputs) and _accepts_batch(module, examples)
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
                          [str(e.dtype).removeprefix("torch.") for e in like.example_inputs],
                          [spec.name for spec in like.inputs])
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


def _torch_to_onnx(module, examples, ref: str, output_names: list[str], names: list[str]) -> bytes:
    """torch.onnx (dynamo) export with a dynamic batch dim, falling back to the fixed example shape."""
    torch = _torch()
    if importlib.util.find_spec("onnxscript") is None:
        raise MissingDependencyError("onnxscript", "PyTorch to ONNX export", "torch")
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
