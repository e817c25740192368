"""TF.js graph-model exporter: `model.json` plus binary weight shards of 4 MB (at most 6 of them).

The graph comes from edgeport's own ONNX -> TF op conversion (`tfjs_graph`). Weight storage
follows the recipe:

- `none`: float32, or TF.js's own weight compression chosen with the browser option
  `tfjs_weights` (`float16`, or per-tensor affine `uint8` / `uint16`, as the tensorflowjs
  converter writes them);
- `fp16`: float16;
- `dynamic-int8`, `weight-only-int8`, `int8`, `int16x8`: the plan's int8 weights, integer for integer. TF.js stores
  them in its uint8 format (q + 128, one scale per tensor); per-channel scales are applied by a
  Mul after the layer. TF.js has no integer kernels, so activations run in float32.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from edgeport import __version__
from edgeport.exporters import Artifact, Exporter, ExportJob, Refusal, Refuse
from edgeport.exporters.reproducible import source_label
from edgeport.exporters.tfjs_graph import TfGraph, TfWeight, convert
from edgeport.quantizers.plan import QuantPlan, embedding_note
from edgeport.schemes import DynamicInt8, Float32, Fp16, Int8Static, Int16x8, WeightOnlyInt4, WeightOnlyInt8
from edgeport.targets import Target
from edgeport.targets.options import BrowserOptions

SHARD_BYTES = 4 * 1024 * 1024
# TF.js 4.x awaits the response of every shard before it reads any body; over HTTP/1.x Chromium opens
# 6 connections per host, so a 7th shard waits for a connection that a 4 MB body never frees, and
# the model never loads. A larger model gets larger shards instead of more of them.
MAX_SHARDS = 6


# ------------------------------------------------------------------ weight encoding (pure functions)

def affine_quantize(values: np.ndarray, dtype: str) -> tuple[np.ndarray, float, float]:
    """TF.js's per-tensor affine weight quantization: value = q * scale + min, q in uint8/uint16.

    The range is widened to contain 0 and `min` nudged so 0.0 is exactly representable (pruned
    weights stay exactly zero), as the tensorflowjs converter does.
    """
    levels = 255 if dtype == "uint8" else 65535
    lo, hi = min(float(values.min(initial=0.0)), 0.0), max(float(values.max(initial=0.0)), 0.0)
    scale = (hi - lo) / levels if hi > lo else 1.0
    zero = round(-lo / scale)
    q = np.clip(np.rint(values / scale) + zero, 0, levels)
    return q.astype(np.uint8 if dtype == "uint8" else np.uint16), scale, -zero * scale


def encode_weight(weight: TfWeight, storage: str) -> tuple[bytes, dict]:
    """Bytes and manifest entry of one weight. `storage` applies to float weights that the plan
    does not cover (int8 plan weights and int32 shape constants keep their own)."""
    entry = {"name": weight.name, "shape": list(weight.values.shape), "dtype": "float32"}
    values = weight.values
    if weight.stored == "int32":
        entry["dtype"] = "int32"
        return values.astype("<i4").tobytes(), entry
    if weight.stored == "int8":
        entry["quantization"] = {"dtype": "uint8", "scale": weight.scale, "min": weight.min,
                                 "original_dtype": "float32"}
        return (values.astype(np.int16) + 128).astype(np.uint8).tobytes(), entry
    if storage == "float16":
        entry["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
        return values.astype("<f2").tobytes(), entry
    if storage in ("uint8", "uint16") and values.size > 1:
        q, scale, lo = affine_quantize(values, storage)
        entry["quantization"] = {"dtype": storage, "scale": scale, "min": lo, "original_dtype": "float32"}
        return q.astype("<u2" if storage == "uint16" else np.uint8).tobytes(), entry
    return values.astype("<f4").tobytes(), entry


def write_graph_model(graph: TfGraph, folder: Path, storage: str, metadata: dict) -> Path:
    """Write `model.json` and `group1-shard{i}of{n}.bin` into `folder`; returns model.json."""
    blobs, entries = zip(*(encode_weight(w, storage) for w in graph.weights)) if graph.weights else ((), ())
    data = b"".join(blobs)
    shard = max(SHARD_BYTES, -(-len(data) // MAX_SHARDS))
    count = max(1, -(-len(data) // shard))
    paths = [f"group1-shard{i + 1}of{count}.bin" for i in range(count)]
    for i, name in enumerate(paths):
        (folder / name).write_bytes(data[i * shard:(i + 1) * shard])

    def spec(name: str, shape) -> dict:
        return {"name": f"{name}:0", "dtype": graph.dtypes.get(name, "DT_FLOAT"),
                "tensorShape": {"dim": [{"size": str(int(d))} for d in shape]}}

    model = {
        "format": "graph-model",
        "generatedBy": f"edgeport {__version__}",
        "convertedBy": f"edgeport {__version__}",
        "signature": {"inputs": {f"{n}:0": spec(n, s) for n, s in graph.inputs},
                      "outputs": {f"{n}:0": spec(n, s) for n, s in graph.outputs}},
        "modelTopology": {"node": graph.nodes, "library": {}, "versions": {"producer": 1808}},
        "weightsManifest": [{"paths": paths, "weights": list(entries)}],
        "userDefinedMetadata": {"edgeport": metadata},
    }
    path = folder / "model.json"
    path.write_text(json.dumps(model, separators=(",", ":")))
    return path


class TFJSExporter(Exporter):
    """Writes `<target>/<model>/model.json` + shards; the float build is the α / δ baseline."""

    format = "tfjs"
    suffix = ""
    options_type = BrowserOptions
    # scheme config -> weight storage: float32 / float16, or "int8" (the plan's integers). TF.js
    # has float kernels only, so every int8 scheme stores int8 weights and computes in float32.
    schemes = {Float32: "float32", Fp16: "float16", DynamicInt8: "int8", WeightOnlyInt8: "int8",
               Int8Static: "int8", Int16x8: "int8",
               WeightOnlyInt4: Refuse("TF.js stores weights as float32, float16, uint8 or uint16, not int4; "
                                      "browser-ort takes weight-only-int4")}
    refusals = (
        Refusal(lambda recipe, options: options.tfjs_weights not in (None, "float32")
                and not isinstance(recipe.scheme, Float32),
                "tfjs_weights '{options.tfjs_weights}' applies to recipe quantize=none; "
                "the '{recipe.quantize}' recipe already sets the weight storage"),
    )

    def _export(self, job: ExportJob, target: Target, path: Path) -> Artifact:
        storage = self.options(job.options, target).tfjs_weights or self.handler(job.recipe)
        onnx_model, cleanup_notes = _cleaned(job.model.onnx_model(), job.model.inputs)
        graph = convert(onnx_model, {**job.plan.weights, **job.plan.embeddings}, int8_weights=storage == "int8")
        metadata = {"recipe": job.recipe.describe(), "weights": storage, "source": source_label(job.model.source),
                    "planned_weights": graph.planned}
        path.mkdir()
        write_graph_model(graph, path, storage, metadata)
        notes = cleanup_notes
        if storage == "int8":
            notes.append("TF.js runs float32 kernels: the plan's int8 weights are stored as integers "
                         "(uint8 format, q + 128) and dequantized at load; activations stay float32")
            if job.plan.embeddings:
                notes.append(embedding_note(job.plan))
        elif storage in ("uint8", "uint16"):
            notes.append(f"weights in TF.js's per-tensor affine {storage} format")
        if job.plan.compression:
            notes.append("pruned / palettized weights are stored dense in TF.js's format")
        # the float build: α and δ compare with TF.js float32 on the same backend, not with ONNX
        baseline = Path(tempfile.mkdtemp(prefix=".baseline-", dir=path.parent.parent)) / path.name
        baseline.mkdir()
        float_graph = convert(_cleaned((job.original or job.uncompressed).onnx_model(), job.model.inputs)[0]
                              if job.original or job.uncompressed else onnx_model, {}, False)
        write_graph_model(float_graph, baseline, "float32", {"recipe": "fp32 baseline", "weights": "float32"})
        return Artifact(target.name, self.format, path, job.recipe.describe(), notes=notes, baseline=baseline)

    def describe(self, path: Path) -> dict | None:
        model = _read_model_json(path)
        ops: dict[str, int] = {}
        for node in model["modelTopology"]["node"]:
            if node["op"] not in ("Const", "Placeholder"):
                ops[node["op"]] = ops.get(node["op"], 0) + 1
        weight_bytes: dict[str, int] = {}
        for group in model["weightsManifest"]:
            for w in group["weights"]:
                kind = w.get("quantization", {}).get("dtype", w["dtype"])
                size = int(np.prod(w["shape"])) * {"uint8": 1, "uint16": 2, "float16": 2}.get(kind, 4)
                weight_bytes[kind] = weight_bytes.get(kind, 0) + size
        return {"ops": ops, "weight_bytes": weight_bytes}

    def read_params(self, path: Path, plan: QuantPlan) -> dict | None:
        """Decode each planned weight from the shards and compare its scales with the plan's and
        its values with int8 integers."""
        model = _read_model_json(path)
        planned = model.get("userDefinedMetadata", {}).get("edgeport", {}).get("planned_weights", {})
        if not planned:
            return None
        weights = read_weights(path)
        differ, checked = [], 0
        for name, entry in planned.items():
            params = plan.weights.get(name) or plan.embeddings.get(name)
            if params is None:
                differ.append(f"{name}: not in the plan")
                continue
            scales = weights[entry["scale_const"]].ravel() if entry["scale_const"] else None
            per_tensor_scale = _stored_scale(model, entry["const"]) if scales is None else 1.0
            values = weights[entry["const"]].astype(np.float64) / (per_tensor_scale or 1.0)
            q = np.rint(values)
            stored = scales if scales is not None else np.array([per_tensor_scale])
            ok = (scales is not None) == (params.axis is not None) and stored.shape == params.scale_array().shape
            ok = ok and np.allclose(stored, params.scale_array(), rtol=1e-6, atol=0)
            ok = ok and np.allclose(values, q, atol=1e-3) and np.abs(q).max(initial=0) <= 127
            checked += 1
            if not ok:
                differ.append(name)
        return {"tensors_checked": checked, "exact": checked - len(differ), "differ": differ,
                "storage": "int8 integers in TF.js's uint8 format (q + 128)"}


def _cleaned(onnx_model, specs=()) -> tuple[object, list[str]]:
    """The graph after edgeport's clean-up (`edgeport.graph_cleanup`: static shape chains folded,
    identities removed; weights keep their names, so the plan still finds them), and a note when
    the clean-up's package is not installed.

    A graph that still reads the shape of a tensor (`Shape`, typically of the dynamic batch dim:
    attention heads reshaped to [batch, tokens, heads, dim]) or holds an RNN (unrolled over a known
    sequence length) gets its unknown input dims pinned: the batch to 1, any other dim to the
    model's input spec (`specs`: the data's shapes for an `.onnx` source with dynamic image sizes)
    and is cleaned again, until nothing more folds: a TF.js graph model of one sample then, rather
    than shape arithmetic on int32 tensors in the page."""
    from edgeport.errors import MissingDependencyError
    from edgeport.graph_cleanup import clean

    try:
        cleaned = clean(onnx_model)
    except MissingDependencyError as exc:
        return onnx_model, [f"graph converted as given, without clean-up: {exc}"]
    notes = []
    # an input taken whole per sample (a recurrent state [2, batch, 128]) makes the model run one
    # sample at a time anyway: every batch dim is 1 then
    whole = any(not spec.batched for spec in specs)
    pinned = _pin_unknown_dims(cleaned, {spec.name: spec.shape if spec.batched else spec.concrete_shape(1)
                                         for spec in specs}, all_dims=whole or _reads_shapes(cleaned))
    if pinned:
        notes.append(f"input dims fixed in the TF.js model ({', '.join(pinned)}): the sizes of the check's "
                     "data; TF.js graphs take static sizes for image resizes, shape arithmetic and unrolled RNNs")
        cleaned = clean(cleaned)
    for _ in range(MAX_CLEANUPS):  # one clean-up can leave chains that the next one folds
        if not any(node.op_type in ("Shape", "Size") for node in cleaned.graph.node):
            break
        again = clean(cleaned)
        if len(again.graph.node) == len(cleaned.graph.node):
            break
        cleaned = again
    return cleaned, notes


MAX_CLEANUPS = 3
# ops that need static dims: shape reads (folded once the dims are known), RNNs (unrolled)
SHAPE_READERS = ("Shape", "Size", "LSTM", "GRU")


def _reads_shapes(onnx_model) -> bool:
    return any(node.op_type in SHAPE_READERS for node in onnx_model.graph.node)


def _pin_unknown_dims(onnx_model, shapes: dict[str, tuple], all_dims: bool) -> list[str]:
    """Set unknown input dims (in place) to their size in `shapes` (input name -> dims, `None` for
    the dynamic batch) and, with `all_dims`, every other unknown dim (the batch) to 1; forget the
    inferred shapes that depended on them. One "name[axis]=size" per pinned dim."""
    pinned = []
    for value in onnx_model.graph.input:
        known = shapes.get(value.name, ())
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            size = known[axis] if axis < len(known) else None
            if dim.HasField("dim_value") or not (size or all_dims):
                continue
            dim.dim_value = size or 1
            pinned.append(f"{value.name}[{axis}]={size or 1}")
    if pinned:
        for value in onnx_model.graph.output:
            for dim in value.type.tensor_type.shape.dim:
                if not dim.HasField("dim_value"):
                    dim.Clear()
        del onnx_model.graph.value_info[:]
    return pinned


def _read_model_json(path: Path) -> dict:
    file = path / "model.json" if path.is_dir() else path
    return json.loads(file.read_text())


def _stored_scale(model: dict, const: str) -> float | None:
    for group in model["weightsManifest"]:
        for w in group["weights"]:
            if w["name"] == const:
                return w.get("quantization", {}).get("scale")
    return None


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """Decode every weight of a TF.js graph model as TF.js does at load (dequantized values)."""
    model = _read_model_json(path)
    folder = path if path.is_dir() else path.parent
    out = {}
    for group in model["weightsManifest"]:
        data = b"".join((folder / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            count = int(np.prod(w["shape"]))
            quant = w.get("quantization")
            dtype = {"uint8": np.uint8, "uint16": "<u2", "float16": "<f2"}.get(
                quant["dtype"] if quant else "", "<i4" if w["dtype"] == "int32" else "<f4")
            raw = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            offset += raw.nbytes
            if quant and quant["dtype"] in ("uint8", "uint16"):
                raw = raw.astype(np.float64) * quant["scale"] + quant["min"]
            out[w["name"]] = raw.astype(np.int32 if w["dtype"] == "int32" else np.float32).reshape(w["shape"])
    return out
