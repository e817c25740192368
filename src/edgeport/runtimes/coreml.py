"""Core ML runtimes: the NumPy MIL evaluator (any OS) and Core ML itself (macOS only).

The evaluator reads the saved .mlpackage (program and weight blobs, parsed with coremltools'
protobuf loader) and runs each op with `mil_ops.OPS`. An op it does not implement is reported
by name when the package is loaded.
"""

from __future__ import annotations

import importlib.util
import platform

import numpy as np

from edgeport.errors import InputError, RuntimeGap
from edgeport.tensors import TensorSpec
from edgeport.quiet import quiet
from edgeport.runtimes.mil_ops import OPS

_ARRAY_TYPES = {65568: "float32", 65552: "float16", 131104: "int32", 65600: "float64"}  # ArrayDataType enum


def load_program(path: str):
    """(spec, MIL program) of a saved .mlpackage."""
    with quiet():  # coremltools prints version warnings and progress bars
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

        try:
            model = ct.models.MLModel(path, skip_model_load=True)
            spec = model.get_spec()
            program = load_milproto(spec, spec.specificationVersion, model.weights_dir)
        except Exception as exc:  # noqa: BLE001 - coremltools raises many types for a bad package
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"{path}: not a readable Core ML ML Program package ({first})") from None
    return spec, program


def _specs(features) -> list[TensorSpec]:
    out = []
    for feature in features:
        array = feature.type.multiArrayType
        out.append(TensorSpec(feature.name, tuple(int(d) for d in array.shape),
                              _ARRAY_TYPES.get(array.dataType, str(array.dataType))))
    return out


def _dtype_name(var) -> str | None:
    from coremltools.converters.mil.mil import types

    dtype = var.dtype
    try:
        return types.builtin_to_string(dtype)
    except Exception:  # noqa: BLE001 - non-tensor types (lists, strings) have no array dtype
        return None


_NUMPY = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int8": np.int8, "uint8": np.uint8,
          "bool": np.bool_}


class MilSession:
    """Runs an ML Program with the NumPy op table."""

    timing = "wall"  # the latency check does not time it: its runtime says why (`latency_unavailable`)

    def __init__(self, path: str):
        spec, program = load_program(path)
        self.inputs = _specs(spec.description.input)
        self.outputs = _specs(spec.description.output)
        function = program.functions["main"]
        self.ops = list(function.operations)
        # Unknown ops are reported when the program is run, so the I/O and structure stay readable.
        self.unsupported = [(op.op_type, op.name) for op in self.ops if op.op_type != "const" and op.op_type not in OPS]
        self.op_types = sorted({op.op_type for op in self.ops if op.op_type != "const"})
        self._consts = {op.outputs[0].name: op.outputs[0].val for op in self.ops if op.op_type == "const"}
        self._input_dtypes = {v.name: _dtype_name(v) for v in function.inputs.values()}
        self._plan = [self._compile(op) for op in self.ops if op.op_type != "const" and op.op_type in OPS]

    def _compile(self, op):
        params = {}
        for key, value in op.inputs.items():
            params[key] = [v.name for v in value] if isinstance(value, (list, tuple)) else value.name
        outputs = [(v.name, _dtype_name(v)) for v in op.outputs]
        return op.op_type, op.name, params, outputs

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        env = self.run_all(feeds)
        return [env[spec.name].astype(np.float32) for spec in self.outputs]

    def run_all(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every value of the program (by var name) for one input."""
        if self.unsupported:
            names = ", ".join(f"'{t}' (node '{n}')" for t, n in self.unsupported[:5])
            raise RuntimeGap(f"the MIL evaluator does not support op {names}")
        env = dict(self._consts)
        for spec in self.inputs:
            dtype = _NUMPY.get(self._input_dtypes.get(spec.name) or "", np.float32)
            env[spec.name] = np.asarray(feeds[spec.name]).astype(dtype)
        for op_type, name, params, outputs in self._plan:
            args = {k: ([env[n] for n in v] if isinstance(v, list) else env[v]) for k, v in params.items()}
            args = {k: (v.item() if isinstance(v, np.ndarray) and v.ndim == 0 and k not in ("x", "y") else v)
                    for k, v in args.items()}
            try:
                result = OPS.get(op_type)(**args)
            except (NotImplementedError, TypeError) as exc:
                raise RuntimeGap(f"the MIL evaluator cannot run op '{op_type}' (node '{name}'): {exc}") from None
            results = result if isinstance(result, tuple) else (result,)
            for (out_name, dtype), value in zip(outputs, results):
                value = np.asarray(value)
                env[out_name] = value.astype(_NUMPY[dtype]) if dtype in _NUMPY else value
        return env


class CoreMLMilRuntime:
    """NumPy evaluator of ML Programs: numerics on any OS, no timing (it is not Core ML)."""

    name = "coreml-mil"
    latency_unavailable = "Core ML latency is measured with Core ML on macOS; not measured on this OS"

    def availability(self) -> str | None:
        if importlib.util.find_spec("coremltools") is None:
            return "Python package 'coremltools' is not installed (pip install 'edgeport[ios]')"
        return None

    def load(self, path: str, threads: int) -> MilSession:
        return MilSession(path)


def coreml_predict_unavailable() -> str | None:
    """Why `MLModel.predict` cannot run here (None on macOS with coremltools)."""
    if platform.system() != "Darwin":
        return f"Core ML predict needs macOS (this is {platform.system()})"
    if importlib.util.find_spec("coremltools") is None:
        return "Python package 'coremltools' is not installed"
    return None
