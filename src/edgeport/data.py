"""Calibration and evaluation data: `.npy`, `.npz`, a folder of them, or a Python callable.

Layouts understood:
  - `.npy`: one array of inputs, batch first (single-input models).
  - `.npz`: arrays named after the model inputs, or `x` / `inputs` / `input` / `data`;
    labels (optional) under `y` / `labels` / `label`.
  - folder: every `.npy` / `.npz` in name order, concatenated along the batch axis; a file
    holding one sample without the batch axis counts as one sample.
  - `package.module:function`: returns an array, a dict of arrays, or an `(inputs, labels)` pair.

Data is checked before it is used: an array header that declares more bytes than the file holds
or the machine can spare, NaN or infinite values, and constant calibration data (from which no
range can be learned) are refused with the file and the array named. Wrong data gives a wrong
artifact, so it must never reach a quantizer.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeport.errors import InputError
from edgeport.limits import available_memory
from edgeport.tensors import TensorSpec, fit_feeds

_INPUT_KEYS = ("x", "inputs", "input", "data")
_LABEL_KEYS = ("y", "labels", "label")


@dataclass
class Dataset:
    """Batched model inputs (by input name), optional integer labels, and where they came from."""

    feeds: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(next(iter(self.feeds.values())))

    def batches(self, size: int):
        """Yield feed dicts of at most `size` samples."""
        for start in range(0, len(self), size):
            yield {k: v[start:start + size] for k, v in self.feeds.items()}

    def samples(self, specs: list[TensorSpec]):
        """Yield one sample's feed dict at a time, as a session with `specs` inputs takes it
        (`fit_feeds`: an input taken whole loses the sample axis)."""
        for i in range(len(self)):
            yield fit_feeds({k: v[i:i + 1] for k, v in self.feeds.items()}, specs)

    def take(self, count: int) -> "Dataset":
        labels = None if self.labels is None else self.labels[:count]
        return Dataset({k: v[:count] for k, v in self.feeds.items()}, labels, self.source)


def random_dataset(inputs: list[TensorSpec], count: int, seed: int = 0) -> Dataset:
    """`count` random samples per input (uniform over the integer range, or [-1, 1) for floats)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        shape = (count, *(spec.concrete_shape(1)[1:] if spec.batched else spec.concrete_shape(1)))
        if np.issubdtype(np.dtype(spec.dtype), np.integer):
            info = np.iinfo(spec.dtype)
            feeds[spec.name] = rng.integers(info.min, info.max + 1, shape).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.uniform(-1, 1, shape).astype(spec.dtype)
    return Dataset(feeds, None, f"{count} random inputs (seed {seed})")


def sample_shape(spec: str, what: str = "data") -> tuple[int, ...] | None:
    """Per-sample input shape of a single-input data source, for inferring the model input shape."""
    specs = sample_specs(spec, what)
    return next(iter(specs.values()))[0] if len(specs) == 1 else None


def sample_specs(spec: str, what: str = "data") -> dict[str, tuple[tuple[int, ...], str]]:
    """Each input array of a data source (labels left out): name -> (per-sample shape, dtype the
    model input gets). Floating arrays give float32 inputs (NumPy saves float64 by default);
    integer and boolean arrays keep their type (token ids, masks)."""
    specs = {}
    for name, array in _read_raw(spec, what).items():
        if name in _LABEL_KEYS or array.ndim == 0:
            continue
        kind = array.dtype
        dtype = "float32" if np.issubdtype(kind, np.floating) else str(kind) if (
            np.issubdtype(kind, np.integer) or kind == np.bool_) else None
        if dtype is None:
            raise InputError(f"{what} {spec}: array '{name}' has dtype {kind}, not numeric")
        specs[name] = (tuple(int(d) for d in array.shape[1:]), dtype)
    return specs


def load_dataset(spec: str, inputs: list[TensorSpec], what: str = "calibration data") -> Dataset:
    """Load `spec` and validate it against the model inputs (shape and dtype)."""
    raw = _read_raw(spec, what)
    labels = next((raw.pop(k) for k in _LABEL_KEYS if k in raw), None)
    feeds = _match_inputs(raw, inputs, spec, what)
    count = {len(v) for v in feeds.values()}
    if len(count) != 1 or 0 in count:
        raise InputError(f"{what} {spec}: inputs have different or zero sample counts {sorted(count)}")
    _check_values(feeds, spec, what)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 2:  # one-hot
            labels = labels.argmax(axis=1)
        if labels.ndim != 1 or len(labels) != count.pop() or not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"{what} {spec}: labels must be integer class ids, one per sample "
                             f"(got {labels.dtype} {list(labels.shape)})")
    return Dataset(feeds, labels, spec)


def _check_values(feeds: dict[str, np.ndarray], spec: str, what: str) -> None:
    """NaN / inf anywhere, or calibration data that is one constant, is refused."""
    for name, array in feeds.items():
        if not np.issubdtype(array.dtype, np.floating):
            continue
        finite = np.isfinite(array)
        if not finite.all():
            bad = int(array.size - np.count_nonzero(finite))
            kind = "NaN" if np.isnan(array).any() else "infinite"
            raise InputError(f"{what} {spec}: array for input '{name}' holds {bad} {kind} value(s) "
                             f"(first at sample {int(np.argwhere(~finite)[0][0])}); clean the data")
        if what == "calibration data" and array.size and array.min() == array.max():
            raise InputError(f"{what} {spec}: array for input '{name}' is one constant ({array.flat[0]:g}); "
                             "calibration needs the values the model sees in use")


def check_lookup_ids(dataset: Dataset | None, model) -> None:
    """Refuse integer data that indexes past a table `model` (a FloatModel) looks it up in: an
    input read as the indices of a Gather on a constant table (token ids into an embedding) must
    lie within the table's rows (negative ids count from the end, as ONNX's Gather allows). The
    graph is read only for data with integer inputs (an int8 .tflite source has none)."""
    if dataset is None or not model.onnx_bytes or \
            not any(np.issubdtype(a.dtype, np.integer) for a in dataset.feeds.values()):
        return
    onnx_model = model.onnx_model()
    tables = {i.name: i.dims[0] for i in onnx_model.graph.initializer if i.dims}
    for node in onnx_model.graph.node:
        if node.op_type != "Gather" or len(node.input) < 2 or node.input[0] not in tables:
            continue
        if any(a.name == "axis" and a.i != 0 for a in node.attribute):
            continue
        ids, rows = dataset.feeds.get(node.input[1]), tables[node.input[0]]
        if ids is None or not np.issubdtype(ids.dtype, np.integer) or not ids.size:
            continue
        bad = (ids >= rows) | (ids < -rows)
        if bad.any():
            raise InputError(f"{dataset.source}: input '{node.input[1]}' holds id {int(ids[bad].flat[0])}, beyond the "
                             f"{rows} rows of the table '{node.input[0]}' it is looked up in (node "
                             f"'{node.name}'); {int(bad.sum())} value(s) out of range: is the data for this "
                             "model's vocabulary?")


def _match_inputs(raw: dict[str, np.ndarray], inputs: list[TensorSpec], spec: str, what: str):
    if all(s.name in raw for s in inputs):
        chosen = {s.name: raw[s.name] for s in inputs}
    elif len(inputs) == 1 and len(raw) == 1:
        chosen = {inputs[0].name: next(iter(raw.values()))}
    elif len(inputs) == 1 and any(k in raw for k in _INPUT_KEYS):
        chosen = {inputs[0].name: raw[next(k for k in _INPUT_KEYS if k in raw)]}
    else:
        names = ", ".join(s.name for s in inputs)
        raise InputError(f"{what} {spec}: arrays {sorted(raw)} do not match the model inputs ({names})")
    feeds = {}
    for s in inputs:
        array = np.asarray(chosen[s.name])
        # a batched input's array is [N, *shape[1:]]; one taken whole per sample (a scalar, or a
        # state whose batch axis is not first) is [N, *shape]
        want = s.shape[1:] if s.batched else s.shape
        if array.ndim != len(want) + 1 or any(d is not None and d != a for d, a in zip(want, array.shape[1:])):
            shape = "[N" + "".join("," + ("?" if d is None else str(d)) for d in want) + "]"
            whole = "" if s.batched else f" (input shape {list(s.shape)} has no batch axis first: one whole array per sample)"
            raise InputError(f"{what} {spec}: array for input '{s.name}' has shape {list(array.shape)}, "
                             f"model expects {shape}{whole}")
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise InputError(f"{what} {spec}: array for input '{s.name}' has dtype {array.dtype}, not numeric")
        feeds[s.name] = np.ascontiguousarray(array, dtype=np.dtype(s.dtype))
    return feeds


def _read_raw(spec: str, what: str) -> dict[str, np.ndarray]:
    path = Path(spec)
    if path.is_dir():
        return _read_folder(path, what)
    if path.suffix in (".npy", ".npz"):
        return _read_file(path, what)
    if re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", spec):
        return _call(spec, what)
    if path.exists():
        raise InputError(f"{what} {spec}: expected .npy, .npz, a folder of them, or module:function")
    raise InputError(f"{what} {spec}: no such file or folder")


def _read_file(path: Path, what: str) -> dict[str, np.ndarray]:
    try:
        if path.suffix == ".npy":
            with open(path, "rb") as f:
                _check_npy_header(f, path.stat().st_size, f"{what} {path}")
            return {"x": np.load(path, allow_pickle=False)}
        with zipfile.ZipFile(path) as archive:
            _check_npz_members(archive, f"{what} {path}")
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except FileNotFoundError:
        raise InputError(f"{what} {path}: no such file") from None
    except PermissionError:
        raise InputError(f"{what} {path}: permission denied") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path}: is a folder, not a .npy / .npz file") from None
    except MemoryError:
        raise InputError(f"{what} {path}: too large to load into memory") from None
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile,
            UnicodeDecodeError, NotImplementedError) as exc:
        raise InputError(f"{what} {path}: unreadable ({_short(exc)})") from None


def _check_npy_header(f, available: int, where: str) -> None:
    """Read a .npy header and refuse arrays whose data the file cannot hold or memory cannot take,
    before numpy allocates them."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unknown .npy version {version}")
    if dtype.hasobject:
        raise ValueError("holds Python objects, which are not loaded (allow_pickle is off)")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > available - f.tell():
        raise ValueError(f"header declares {list(shape)} {dtype} = {nbytes:,} bytes, but the file holds "
                         f"{max(available - f.tell(), 0):,} (truncated or corrupt)")
    if nbytes > available_memory() // 2:
        raise ValueError(f"{list(shape)} {dtype} needs {nbytes:,} bytes, more than this machine can spare")


def _check_npz_members(archive: zipfile.ZipFile, where: str) -> None:
    """Each member of an .npz: a sane header and an uncompressed size memory can take."""
    spare = available_memory() // 2
    total = 0
    for info in archive.infolist():
        total += info.file_size
        if total > spare:
            raise ValueError(f"arrays expand to more than {spare:,} bytes (more than this machine can spare)")
        with archive.open(info) as member:
            if info.filename.endswith(".npy"):
                _check_npy_header(member, info.file_size, where)


def _read_folder(folder: Path, what: str) -> dict[str, np.ndarray]:
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix in (".npy", ".npz"))
    except OSError as exc:
        raise InputError(f"{what} {folder}: cannot read the folder ({exc.strerror or exc})") from None
    if not files:
        raise InputError(f"{what} {folder}: folder has no .npy or .npz files")
    parts = [_read_file(p, what) for p in files]
    keys = set(parts[0])
    if any(set(p) != keys for p in parts):
        raise InputError(f"{what} {folder}: files hold different array names")
    ndim = {k: max(p[k].ndim for p in parts) for k in keys}
    merged = {}
    for k in keys:
        samples = [p[k] if p[k].ndim == ndim[k] else p[k][None] for p in parts]
        shapes = {s.shape[1:] for s in samples}
        if len(shapes) > 1:
            first, other = samples[0].shape[1:], next(s for s in samples if s.shape[1:] != samples[0].shape[1:])
            culprit = files[next(i for i, s in enumerate(samples) if s is other)]
            raise InputError(f"{what} {folder}: array '{k}' has sample shape {list(first)} in {files[0].name} "
                             f"but {list(other.shape[1:])} in {culprit.name}")
        merged[k] = np.concatenate(samples)
    return merged


def _call(spec: str, what: str) -> dict[str, np.ndarray]:
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # noqa: BLE001 - an import error or the module's own code failing
        raise InputError(f"{what} {spec}: cannot load callable ({_short(exc)})") from None
    if not callable(fn):
        raise InputError(f"{what} {spec}: '{attr}' is not callable")
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - the user's code failed, not edgeport
        raise InputError(f"{what} {spec}: the function raised {type(exc).__name__}: {_short(exc)}") from None
    try:
        return _as_arrays(result)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} {spec}: the function returned {type(result).__name__}, not arrays "
                         f"({_short(exc)})") from None


def _as_arrays(result) -> dict[str, np.ndarray]:
    if isinstance(result, tuple) and len(result) == 2:
        inputs, labels = result
        out = {k: np.asarray(v) for k, v in inputs.items()} if isinstance(inputs, dict) else {"x": np.asarray(inputs)}
        out["y"] = np.asarray(labels)
        return out
    if isinstance(result, dict):
        return {k: np.asarray(v) for k, v in result.items()}
    return {"x": np.asarray(result)}


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
