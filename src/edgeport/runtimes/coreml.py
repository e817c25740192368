"""Core ML runtimes: the NumPy MIL evaluator (any OS) and Core ML itself (macOS only).

The evaluator reads the saved .mlpackage (program and weight blobs, parsed with coremltools'
protobuf loader) and runs each op with `MIL_OPS`: the tables of `mil_ops` (convolution, pooling,
matmul, quantization, simple elementwise ops), `mil_ops_nn` (activations, math, normalizations,
resizing) and `mil_ops_tensor` (slicing, padding, gathering, reductions). An op it does not
implement is reported by name when the program is run.
"""

from __future__ import annotations

import importlib.util
import platform

import numpy as np

from edgeport.errors import InputError, RuntimeGap
from edgeport.tensors import TensorSpec, fit_feeds
from edgeport.quiet import quiet
from edgeport.registry import Registry
from edgeport.runtimes.mil_ops import OPS
from edgeport.runtimes.mil_ops_nn import NN_OPS
from edgeport.runtimes.mil_ops_tensor import TENSOR_OPS


def _merged(*tables: Registry) -> Registry:
    """One table of every op family's ops (an op defined in two families raises)."""
    merged: Registry = Registry("MIL op")
    for table in tables:
        for name in table.names():
            merged.add(name, table.get(name))
    return merged


MIL_OPS = _merged(OPS, NN_OPS, TENSOR_OPS)

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


_NUMPY = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int16": np.int16, "uint16": np.uint16,
          "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}


class _Block:
    """A compiled MIL block: its input var names, its op plans, its output var names."""

    def __init__(self, block, unsupported: list):
        inputs = block.inputs.values() if isinstance(block.inputs, dict) else block.inputs  # a function's are named
        self.inputs = [v.name for v in inputs]
        self.plan = []
        for op in block.operations:
            if op.op_type == "const":
                # bound in program order, as a step: coremltools can write two consts of the same
                # name (a GRU's unused zeros after a weight), and the later must not shadow the earlier
                self.plan.append(("const", op.name, op.outputs[0].val, [(op.outputs[0].name, None)], []))
            elif op.op_type in CONTROL_FLOW:
                self.plan.append(_compile(op, [_Block(b, unsupported) for b in op.blocks]))
            elif op.op_type in MIL_OPS:
                self.plan.append(_compile(op, []))
            else:
                unsupported.append((op.op_type, op.name))
        self.outputs = [v.name for v in block.outputs]


def _compile(op, blocks: list[_Block]):
    params = {}
    for key, value in op.inputs.items():
        params[key] = [v.name for v in value] if isinstance(value, (list, tuple)) else value.name
    outputs = [(v.name, _dtype_name(v)) for v in op.outputs]
    return op.op_type, op.name, params, outputs, blocks


def _run_block(block: _Block, env: dict[str, np.ndarray], inputs=()) -> list[np.ndarray]:
    """Run `block` in a scope that sees `env` (the enclosing values) and binds its inputs; its outputs."""
    scope = {**env, **dict(zip(block.inputs, inputs))}
    for op_type, name, params, outputs, blocks in block.plan:
        if op_type == "const":
            scope[outputs[0][0]] = params
            continue
        args = {k: ([scope[n] for n in v] if isinstance(v, list) else scope[v]) for k, v in params.items()}
        if blocks:
            results = CONTROL_FLOW[op_type](blocks, scope, **args)
        else:
            args = {k: (v.item() if isinstance(v, np.ndarray) and v.ndim == 0 and k not in ("x", "y") else v)
                    for k, v in args.items()}
            try:
                result = MIL_OPS.get(op_type)(**args)
            except (NotImplementedError, TypeError) as exc:
                raise RuntimeGap(f"the MIL evaluator cannot run op '{op_type}' (node '{name}'): {exc}") from None
            results = result if isinstance(result, tuple) else (result,)
        for (out_name, dtype), value in zip(outputs, results):
            value = np.asarray(value)
            scope[out_name] = value.astype(_NUMPY[dtype]) if dtype in _NUMPY else value
    env.update((k, v) for k, v in scope.items() if k not in block.inputs)  # values the caller may read back
    return [scope[n] for n in block.outputs]


MAX_LOOP_ITERATIONS = 1_000_000  # a loop that never ends is a bad program, not a hang


def _while_loop(blocks: list[_Block], env, loop_vars):
    """MIL `while_loop`: blocks[0] maps the loop vars to a bool, blocks[1] to the next loop vars."""
    condition, body = blocks
    values = list(loop_vars)
    for _ in range(MAX_LOOP_ITERATIONS):
        if not bool(np.asarray(_run_block(condition, dict(env), values)[0]).reshape(-1)[0]):
            return tuple(values)
        values = _run_block(body, dict(env), values)
    raise RuntimeGap(f"the MIL evaluator stopped a while_loop after {MAX_LOOP_ITERATIONS} iterations")


def _cond(blocks: list[_Block], env, pred):
    """MIL `cond`: the outputs of blocks[0] when `pred` holds, else of blocks[1]."""
    return tuple(_run_block(blocks[0] if bool(np.asarray(pred).reshape(-1)[0]) else blocks[1], dict(env)))


# Ops that hold blocks: the session runs their blocks itself.
CONTROL_FLOW = {"while_loop": _while_loop, "cond": _cond}


class MilSession:
    """Runs an ML Program with the NumPy op tables (and `CONTROL_FLOW` for ops holding blocks)."""

    timing = "wall"  # the latency check does not time it: its runtime says why (`latency_unavailable`)

    def __init__(self, path: str):
        spec, program = load_program(path)
        self.inputs = _specs(spec.description.input)
        self.outputs = _specs(spec.description.output)
        function = program.functions["main"]
        self.ops = list(function.operations)
        # Unknown ops (also inside loops) are reported when the program is run, so the I/O and
        # structure stay readable.
        self.unsupported: list[tuple[str, str]] = []
        self._main = _Block(function, self.unsupported)
        self.op_types = sorted({op.op_type for op in self.ops if op.op_type != "const"})
        self._input_dtypes = {v.name: _dtype_name(v) for v in function.inputs.values()}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        env = self.run_all(feeds)
        return [env[spec.name].astype(np.float32) for spec in self.outputs]

    def run_all(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every value of the program's main block (by var name) for one input."""
        if self.unsupported:
            names = ", ".join(f"'{t}' (node '{n}')" for t, n in self.unsupported[:5])
            raise RuntimeGap(f"the MIL evaluator does not support op {names}")
        env = {}
        names = [spec.name for spec in self.inputs]
        if any(n not in feeds for n in names) and len(feeds) == len(names):
            # coremltools renames inputs that are not valid MIL names ('state', 'input.1'): by position
            feeds = dict(zip(names, feeds.values()))
        feeds = fit_feeds(feeds, self.inputs)
        for spec in self.inputs:
            dtype = _NUMPY.get(self._input_dtypes.get(spec.name) or "", np.float32)
            env[spec.name] = np.asarray(feeds[spec.name]).astype(dtype)
        _run_block(self._main, env)
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
