"""LiteRT (TFLite) interpreter: XNNPACK-accelerated kernels, or the reference kernels.

Sessions take and return float arrays: int8 inputs are quantized with the model's input scale
and zero point, int8 outputs dequantized, so parity and accuracy compare like with like.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgeport.errors import InputError
from edgeport.tensors import TensorSpec


def _spec(detail) -> TensorSpec:
    return TensorSpec(detail["name"], tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]).name)


PROBE_TIMEOUT_S = 120.0
# Run in a fresh interpreter (not a fork of this one: forking a process whose threads hold locks
# can deadlock the child, and Python warns of it on stderr).
_PROBE = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1,
                          experimental_op_resolver_type=getattr(OpResolverType, sys.argv[2]))
interpreter.allocate_tensors()
for detail in interpreter.get_input_details():
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
interpreter.invoke()
"""
_probed: set[tuple] = set()


def _probe(path: str, threads: int, resolver) -> None:
    """Load `path` and run it once on zeros in a child process first: LiteRT aborts the whole
    process (TFLITE_CHECK) on some corrupt models, which must be an exit 2 naming the file, not a
    signal. The child's Python errors are left for the real load to report. Each file is probed
    once per kernel set."""
    import os
    import signal
    import subprocess
    import sys

    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, resolver.name)
    if key in _probed:
        return
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, path, resolver.name], capture_output=True,
                              timeout=PROBE_TIMEOUT_S, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    except subprocess.TimeoutExpired:
        raise InputError(f"{path}: LiteRT did not finish loading and running it in {PROBE_TIMEOUT_S:.0f} s") from None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise InputError(f"{path}: LiteRT crashes ({name}) loading or running it: the file is corrupt or holds "
                         "numbers LiteRT cannot handle")
    _probed.add(key)


class LiteRTSession:
    timing = "wall"

    def __init__(self, path: str, threads: int, reference_kernels: bool = False, preserve_all: bool = False):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from edgeport.mcu.compiler.tflite_ir import validate_tflite
        from edgeport.quiet import quiet_native

        resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
        validate_tflite(data, path)  # LiteRT aborts the process on some bad numbers: refuse them first
        _probe(path, threads, resolver)  # and on some we cannot list: let a child process find out
        try:
            with quiet_native():  # TFLite logs its delegate creation to stderr
                self._interpreter = Interpreter(model_path=path, num_threads=threads,
                                                experimental_op_resolver_type=resolver,
                                                experimental_preserve_all_tensors=preserve_all)
                self._interpreter.allocate_tensors()
            self._in = self._interpreter.get_input_details()
            self._out = self._interpreter.get_output_details()
        except (ValueError, RuntimeError, UnicodeDecodeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"{path}: LiteRT cannot load it ({first})") from None
        self.inputs = [_spec(d) for d in self._in]
        self.outputs = [_spec(d) for d in self._out]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        values = list(feeds.values())
        for detail, value in zip(self._in, values):  # by position: TFLite renames inputs
            value = np.asarray(value)
            if detail["dtype"] in (np.int8, np.uint8, np.int16) and value.dtype.kind == "f":
                scale, zero_point = detail["quantization"]
                info = np.iinfo(detail["dtype"])
                value = np.clip(np.rint(value / scale) + zero_point, info.min, info.max)
            self._interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]).reshape(detail["shape"]))
        self._interpreter.invoke()
        outputs = []
        for detail in self._out:
            value = self._interpreter.get_tensor(detail["index"])
            scale, zero_point = detail["quantization"]
            if value.dtype.kind in "iu" and scale:
                value = (value.astype(np.float32) - zero_point) * np.float32(scale)
            outputs.append(value.astype(np.float32))
        return outputs

    def steps(self) -> list[tuple[str, list[str], list[str]]]:
        """The graph's ops in execution order: (op name, input tensor names, output tensor names)."""
        names = {t["index"]: t["name"] for t in self._interpreter.get_tensor_details()}
        return [(op["op_name"], [names[i] for i in op["inputs"] if i >= 0], [names[i] for i in op["outputs"]])
                for op in self._interpreter._get_ops_details()]

    def intermediates(self) -> dict[str, np.ndarray]:
        """Every op output of the last run, dequantized (a session made with `preserve_all`)."""
        details = {t["index"]: t for t in self._interpreter.get_tensor_details()}
        values = {}
        for op in self._interpreter._get_ops_details():
            for index in op["outputs"]:
                detail = details[index]
                value = self._interpreter.get_tensor(index)
                scales = detail["quantization_parameters"]["scales"]
                if value.dtype.kind in "iu" and len(scales) == 1:
                    zero = detail["quantization_parameters"]["zero_points"][0]
                    value = (value.astype(np.float32) - zero) * np.float32(scales[0])
                values[detail["name"]] = np.array(value)
        return values

    def run_raw(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs as stored (int8 stays int8), for bit-level comparisons."""
        self.run(feeds)
        return [self._interpreter.get_tensor(d["index"]).copy() for d in self._out]


class LiteRTRuntime:
    name = "litert"
    latency_unavailable = None

    def availability(self) -> str | None:
        if importlib.util.find_spec("ai_edge_litert") is None:
            return "Python package 'ai_edge_litert' is not installed (pip install 'edgeport[android]')"
        return None

    def load(self, path: str, threads: int) -> LiteRTSession:
        return LiteRTSession(path, threads)

    def load_reference(self, path: str) -> LiteRTSession:
        """The same model on TFLite's reference kernels (bit-exact semantics, no XNNPACK)."""
        return LiteRTSession(path, 1, reference_kernels=True)
