"""ONNX Runtime (CPU execution provider): runs .onnx and .ort artifacts."""

from __future__ import annotations

import importlib.util

import numpy as np

from edgeport.errors import InputError, UnsupportedOpError
from edgeport.tensors import TensorSpec, fit_feeds

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))


def raise_for_ort_error(exc: Exception, path: str) -> None:
    """Turn an onnxruntime load failure into a one-line InputError (naming op and node when known)."""
    import re

    text = str(exc)
    missing = re.search(r"implementation for (\w+)\((\d+)\) node with name '([^']*)'", text)
    if missing:
        raise UnsupportedOpError(missing.group(1), missing.group(3), "onnxruntime has no kernel for it") from None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    raise InputError(f"onnxruntime cannot load {path}: {first}") from None


class OrtSession:
    """An onnxruntime CPU session on `path` (or on `model_bytes`, the same model already read and
    validated, with `path` naming it in messages). onnxruntime logs errors only: what goes wrong
    comes back as an exception and becomes one line; its warnings are not the user's business."""

    timing = "wall"

    def __init__(self, path: str, threads: int, model_bytes: bytes | None = None):
        import onnxruntime as ort

        ort.set_default_logger_severity(4)  # the environment's logger, shared by every session made after
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 4  # fatal only: errors come back as exceptions
        options.log_verbosity_level = 0
        try:
            self._session = ort.InferenceSession(model_bytes if model_bytes is not None else path, options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types; all mean "cannot load"
            raise_for_ort_error(exc, path)
        self.inputs = [_spec(a) for a in self._session.get_inputs()]
        self.outputs = [_spec(a) for a in self._session.get_outputs()]
        self._options = ort.RunOptions()
        self._options.log_severity_level = 4

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, fit_feeds(feeds, self.inputs), self._options)


class OnnxRuntime:
    name = "onnxruntime"
    latency_unavailable = None

    def availability(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "Python package 'onnxruntime' is not installed"
        return None

    def load(self, path: str, threads: int) -> OrtSession:
        return OrtSession(path, threads)
