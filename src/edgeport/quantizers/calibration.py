"""Activation statistics of the float ONNX graph over calibration data.

Every float tensor of the graph is exposed as an output and run through onnxruntime: pass 1
records min/max; `percentile` and `mse` take a second pass that fills a histogram per tensor
over that range, then pick the range with the pure functions of `qmath`.
"""

from __future__ import annotations

import numpy as np

from edgeport.data import Dataset
from edgeport.progress import progress
from edgeport.quantizers import qmath

_FLOAT = 1  # onnx.TensorProto.FLOAT


def _with_all_float_outputs(model):
    """Copy of `model` whose graph outputs include every float tensor (inputs and node outputs)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    names += [o for n in model.graph.node for o in n.output if o]
    names = [n for n in dict.fromkeys(names) if types.get(n) == _FLOAT]
    return _with_outputs(model, names), names


def _with_outputs(model, names):
    """Copy of `model` whose graph outputs include the float tensors `names`."""
    import onnx

    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    existing = {o.name for o in augmented.graph.output}
    for name in names:
        if name not in existing:
            augmented.graph.output.append(onnx.helper.make_tensor_value_info(name, _FLOAT, None))
    return augmented


_LAST: list = []  # [(key, result)]: the last calibration, reused when the same model and data come again


def activation_ranges(model, data: Dataset, method: str, percentile: float, batch_size: int = 32
                      ) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    """Calibrated (lo, hi) per float tensor of `model`, and the raw (min, max) observed. The same
    model, data and method give the same ranges: planning a recipe again with other overrides
    (`--fallback auto` does at each step) reuses the last calibration."""
    import hashlib

    digest = hashlib.sha1(model.SerializeToString())
    for name in sorted(data.feeds):
        array = np.ascontiguousarray(data.feeds[name])
        digest.update(f"{name}{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    key = (digest.hexdigest(), method, percentile, batch_size)
    if not (_LAST and _LAST[0][0] == key):
        _LAST[:] = [(key, _calibrate(model, data, method, percentile, batch_size))]
    ranges, observed = _LAST[0][1]
    return dict(ranges), dict(observed)


def _session(augmented, batch_size: int):
    """An onnxruntime session of `augmented` and the batch size it takes: 1 when the graph fixes
    the batch or an input is taken whole per sample (a state)."""
    from edgeport.runtimes.onnxruntime import OrtSession
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "calibration.onnx")
        with open(path, "wb") as fh:
            fh.write(augmented.SerializeToString())
        session = OrtSession(path, threads=os.cpu_count() or 1)
    if not all(spec.shape and spec.shape[0] is None for spec in session.inputs):
        batch_size = 1
    return session, batch_size


def channel_statistics(model, data: Dataset, axes: dict[str, int], batch_size: int = 32
                       ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(mean, max |x|) per channel of each float tensor in `axes` (tensor name -> its channel
    axis, negative from the end) over the calibration data, from the float graph `model`.
    Cross-layer rewrites (`edgeport.equalize`) scale and correct per channel by these."""
    session, batch_size = _session(_with_outputs(model, axes), batch_size)
    index = {s.name: i for i, s in enumerate(session.outputs)}
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    peaks: dict[str, np.ndarray] = {}
    for batch in progress(data.batches(batch_size), total=max(1, -(-len(data) // batch_size)),
                          desc="channel statistics"):
        outputs = session.run(batch)
        for name, axis in axes.items():
            values = np.moveaxis(np.asarray(outputs[index[name]], dtype=np.float64), axis, -1)
            flat = values.reshape(-1, values.shape[-1])
            sums[name] = sums.get(name, 0.0) + flat.sum(axis=0)
            counts[name] = counts.get(name, 0) + len(flat)
            peaks[name] = np.maximum(peaks.get(name, 0.0), np.abs(flat).max(axis=0, initial=0.0))
    return {name: (sums[name] / max(counts[name], 1), peaks[name]) for name in sums}


def _calibrate(model, data: Dataset, method: str, percentile: float, batch_size: int):
    augmented, names = _with_all_float_outputs(model)
    session, batch_size = _session(augmented, batch_size)
    out_names = [s.name for s in session.outputs]
    index = {n: out_names.index(n) for n in names}
    passes = 1 if method == "minmax" else 2
    batches = max(1, -(-len(data) // batch_size))

    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for batch in progress(data.batches(batch_size), total=batches, desc=f"calibrating 1/{passes}"):
        outputs = session.run(batch)
        for n in names:
            values = outputs[index[n]]
            if values.size:
                lo[n], hi[n] = min(lo[n], float(values.min())), max(hi[n], float(values.max()))
    ranges = {n: (lo[n], hi[n]) for n in names if np.isfinite(lo[n])}
    if method == "minmax":
        return ranges, ranges

    hists = {n: np.zeros(qmath.HIST_BINS, dtype=np.float64) for n in ranges}
    edges = {n: np.linspace(min(r[0], 0.0), max(r[1], 0.0), qmath.HIST_BINS + 1) for n, r in ranges.items()}
    for batch in progress(data.batches(batch_size), total=batches, desc=f"calibrating 2/{passes}"):
        outputs = session.run(batch)
        for n in ranges:
            counts, _ = np.histogram(outputs[index[n]], bins=edges[n])
            hists[n] += counts
    choose = (lambda h, e: qmath.range_percentile(h, e, percentile)) if method == "percentile" else qmath.range_mse
    return {n: choose(hists[n], edges[n]) for n in ranges}, ranges
