"""Per-layer numerics (`--layers`): where in the graph the artifact's error enters.

The float model and the artifact run on the same inputs with every intermediate tensor exposed as
an extra graph output; each tensor both graphs compute under the same name (a layer's output:
quantized exports keep the float model's tensor names) is compared: SQNR in dB, cosine and max
error against the float tensor. `added_noise` is what the layer itself adds: its relative noise
power (10^(-SQNR/10)) minus the largest of its inputs', and `error_share` that as a fraction of
all layers' — so the worst layers are the ones where the error enters, not the ones it flows
through.

ONNX Runtime artifacts (`.onnx`: the onnx and browser-ort targets) can expose intermediates this
way. Exposing a tensor keeps ORT from fusing the Q/DQ pair around it, so the values are those of
the same arithmetic unfused (within one rounding of the shipped kernels); the final outputs are
compared by the parity check as shipped. LiteRT artifacts (`.tflite`, android) run with every
tensor preserved next to the float `.tflite` the exporter converted from the same module: the
tensors carry the module-scoped names litert-torch gives them, so both files name the same
layer's output alike. The C library (cortex-m targets) exposes no intermediates; it is
generated from an int8 `.tflite` and is bit-exact with LiteRT's int8 reference kernels on it
(its bit_exact check), so its rows are those kernels' on that file, against a float `.tflite`
of the same module. Core ML artifacts (`.mlpackage`, ios) run in edgeport's MIL evaluator next
to the fp32 program of the same traced module (`layers_coreml`). Other formats say why they
cannot here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from edgeport.checks import MEASURED, CheckContext, CheckResult, CheckSpec, CheckSettings
from edgeport.errors import RuntimeGap
from edgeport.exporters.tflite_names import tensor_module_path, tensor_scopes

SAMPLES = 32  # inputs compared (every intermediate of every sample is held in memory)
COVERED = 0.8  # the layers named are those adding this share of the noise (the noisiest first)
SHOWN = 8  # of which the table prints at most this many (the JSON report has them all)


def sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when identical, -inf when the signal is zero)."""
    ref, val = reference.astype(np.float64).ravel(), value.astype(np.float64).ravel()
    noise = float(np.sum((ref - val) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0.0:
        return float("inf")
    return float("-inf") if signal == 0.0 else 10.0 * float(np.log10(signal / noise))


def _cosine(reference: np.ndarray, value: np.ndarray) -> float:
    ref, val = reference.astype(np.float64).ravel(), value.astype(np.float64).ravel()
    denom = float(np.linalg.norm(ref) * np.linalg.norm(val))
    return float(ref @ val / denom) if denom > 0 else (1.0 if np.array_equal(ref, val) else 0.0)


def _with_all_outputs(model):
    """A copy of the ONNX model whose every node output is also a graph output."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    for node in copy.graph.node:
        for name in node.output:
            if name and name not in present:
                copy.graph.output.append(onnx.ValueInfoProto(name=name))
                present.add(name)
    return copy


def _run_all(model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return run_onnx(_with_all_outputs(model), feeds)


def run_onnx(model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of `model` on `feeds` (one sample per row), by name: in one call, or one sample
    at a time when the graph fixes a batch size the feeds do not have (an exporter pinned it, or an
    input has no batch axis), the results stacked."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    inputs = [i for i in session.get_inputs() if i.name in feeds]
    feeds = {i.name: feeds[i.name] for i in inputs}
    count = len(next(iter(feeds.values()))) if feeds else 1
    fixed = any(i.shape and isinstance(i.shape[0], int) and i.shape[0] != count for i in inputs)
    if not fixed:
        return dict(zip(names, session.run(None, feeds)))
    ranks = {i.name: len(i.shape) for i in inputs}  # an input without a sample axis takes one sample whole
    # (np.asarray: one sample of a scalar input is a numpy scalar, which onnxruntime refuses)
    runs = [session.run(None, {k: np.asarray(v[j]) if ranks[k] == v.ndim - 1 else v[j:j + 1] for k, v in feeds.items()})
            for j in range(count)]
    return {name: np.concatenate([np.atleast_1d(run[i]) for run in runs]) for i, name in enumerate(names)}


def _as_seen_downstream(model) -> dict[str, str]:
    """Tensor -> the name of its value as the next layers see it: a quantized op's float output
    goes through QuantizeLinear -> DequantizeLinear, which also applies the ReLU the quantizer
    folded into the output range (the tensor before it is pre-activation)."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen = {}
    for name, nodes in consumers.items():
        quant = [n for n in nodes if n.op_type == "QuantizeLinear"]
        if len(quant) == 1:
            dequant = [n for n in consumers.get(quant[0].output[0], []) if n.op_type == "DequantizeLinear"]
            if dequant:
                seen[name] = dequant[0].output[0]
    return seen


def compare_onnx(float_model, artifact_model, feeds: dict[str, np.ndarray], layers: dict[str, str] | None = None) -> list[dict]:
    """One row per float tensor the artifact also computes (same name, same shape), in graph order."""
    reference, got = _run_all(float_model, feeds), _run_all(artifact_model, feeds)
    producers = {out: node for node in artifact_model.graph.node for out in node.output}
    seen = _as_seen_downstream(artifact_model)
    steps = []
    for node in float_model.graph.node:
        for name in node.output:
            if name in producers:
                steps.append(Step(name, seen.get(name, name), node.name, node.op_type, producers[name].op_type,
                                  (layers or {}).get(node.name, ""), [i for i in node.input if i]))
    return _rows(steps, reference, got)


@dataclass
class Step:
    """One tensor both graphs compute: its name in the float graph (`tensor`) and in the artifact
    (`seen`), the node and op computing it, its layer, and the tensors it is computed from."""

    tensor: str
    seen: str
    node: str
    op: str
    artifact_op: str
    layer: str
    inputs: list[str]


def _rows(steps: list[Step], reference: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> list[dict]:
    """Per step in graph order: SQNR, cosine and max error of the artifact's tensor against the float
    one, and the noise the step adds to the largest its inputs carried (a step whose tensor is not
    compared passes its inputs' noise on)."""
    rows, nsr_of = [], {}
    for step in steps:
        ref, val = reference.get(step.tensor), got.get(step.seen)
        incoming = max((nsr_of[i] for i in step.inputs if i in nsr_of), default=0.0)
        if ref is None or val is None or ref.shape != val.shape or not np.issubdtype(ref.dtype, np.floating):
            nsr_of[step.tensor] = incoming
            continue
        sqnr = sqnr_db(ref, val.astype(np.float32))
        nsr = 10.0 ** (-sqnr / 10.0) if np.isfinite(sqnr) else (0.0 if sqnr > 0 else 1.0)
        nsr_of[step.tensor] = nsr
        rows.append({"tensor": step.tensor, "node": step.node, "op": step.op, "artifact_op": step.artifact_op,
                     "layer": step.layer,
                     "sqnr_db": round(sqnr, 2) if np.isfinite(sqnr) else (999.0 if sqnr > 0 else -999.0),
                     "cosine": round(_cosine(ref, val), 6),
                     "max_abs_err": float(np.max(np.abs(ref.astype(np.float64) - val.astype(np.float64)))),
                     "added_noise": max(nsr - incoming, 0.0)})
    total = sum(r["added_noise"] for r in rows) or 1.0
    for r in rows:
        r["error_share"] = round(r["added_noise"] / total, 4)
        r["added_noise"] = float(f"{r['added_noise']:.4g}")
    return rows


def compare_tflite(float_path: str, artifact_path: str, samples) -> list[dict]:
    """One row per op output of the artifact that the float .tflite (converted from the same
    PyTorch module, so its tensors carry the same module-scoped names) also computes, in execution
    order; both run with every tensor preserved, one sample at a time."""
    from edgeport.runtimes.litert import LiteRTSession

    # reference kernels: a delegate (XNNPACK) would replace the ops by one node and hide their
    # outputs; LiteRT's int8 reference kernels compute the same integers (the reference_kernels check)
    float_session = LiteRTSession(float_path, 1, reference_kernels=True, preserve_all=True)
    artifact = LiteRTSession(artifact_path, 1, reference_kernels=True, preserve_all=True)
    reference: dict[str, list] = {}
    got: dict[str, list] = {}
    for feeds in samples:
        for session, into in ((float_session, reference), (artifact, got)):
            session.run(feeds)
            for name, value in session.intermediates().items():
                into.setdefault(name, []).append(value)
    stacked = [{k: np.concatenate([np.asarray(v).reshape(1, -1) for v in vs]) for k, vs in d.items()}
               for d in (reference, got)]
    # a name is compared when one op computes it in each file; (de)quantize ops carry the scope of
    # the layer they feed, not its output, and pass their input's noise on
    counts = [Counter(out for _, _, outputs in session.steps() for out in outputs)
              for session in (float_session, artifact)]
    # ... and when it names a module (or a model output): tensors litert-torch names after its
    # export wrapper alone (a split's slices) are not told apart the same way in the two files
    steps = [Step(out, out if op not in CONVERSIONS and counts[0][out] == counts[1][out] == 1
                  and (tensor_module_path(out) or out.startswith("serving_default")) else "",
                  _short(out), op, op, tensor_module_path(out), inputs)
             for op, inputs, outputs in artifact.steps() for out in outputs]
    return _rows(steps, *stacked)


CONVERSIONS = ("QUANTIZE", "DEQUANTIZE", "CAST")


def _short(tensor: str) -> str:
    """A tensor's name without its scopes (`Conv2d_0`), for the table."""
    scopes = tensor_scopes(tensor)
    return scopes[-1].rsplit(".", 1)[-1] if scopes else tensor.split(";")[0].rsplit("/", 1)[-1] or tensor


def worst(rows: list[dict], covered: float = COVERED) -> list[dict]:
    """The layers that add the most noise (relative noise power the layer adds to what its inputs
    already carried), the noisiest first, until together they add `covered` of it: where the error
    enters, not where it flows through."""
    chosen, total = [], 0.0
    for row in sorted((r for r in rows if r["added_noise"] > 0), key=lambda r: r["added_noise"], reverse=True):
        if total >= covered:
            break
        chosen.append(row)
        total += row["error_share"]
    return chosen


GAPS = {
    "ort": "an .ort file cannot be edited to expose intermediates (the onnx target's .onnx has the same numbers: "
           "export it with --layers)",
}


def _float_reference(ctx: CheckContext):
    """The float model in the artifact's format that the exporter wrote for per-layer numerics
    (written now: only --layers asks for it), else its float baseline, else None."""
    if ctx.artifact.layers_reference is not None:
        try:
            return ctx.artifact.layers_reference()
        except Exception as exc:  # noqa: BLE001 - a converter's error: the check says so, the export stands
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RuntimeGap(f"the float model to compare with could not be converted ({first[:300]})") from None
    baseline = ctx.artifact.baseline
    return baseline if baseline is not None and baseline.exists() else None


def _check_tflite(ctx: CheckContext) -> CheckResult:
    c_library = ctx.artifact.format == "c"
    if c_library and ctx.artifact.layers_reference is None:
        return CheckResult.not_run("layers", "the C library was made from a given int8 .tflite: there is no float "
                                             "model to compare its layers with")
    reference = _float_reference(ctx)
    if reference is None:
        return CheckResult.not_run("layers", "no float .tflite of the same module to compare with (export the "
                                             "android target with --layers)")
    if c_library:  # the library's constants and kernels come from this file (edgeport.exporters.c)
        from edgeport.mcu.toolchain.manifest import read_manifest

        artifact = ctx.artifact.path / f"{read_manifest(ctx.artifact.path)['name']}.tflite"
    else:
        artifact = ctx.artifact.path
    data = ctx.refs.data.take(SAMPLES)
    specs = ctx.refs.model.inputs if ctx.refs.model is not None else ctx.session.inputs
    rows = compare_tflite(str(reference), str(artifact), data.samples(specs))
    if not rows:
        return CheckResult.not_run("layers", "the .tflite computes none of the float .tflite's tensors under "
                                             "their names")
    how = ("LiteRT's reference kernels with every tensor preserved, against the float .tflite converted "
           "from the same module (tensors matched by name and shape)")
    if c_library:
        how = ("LiteRT's int8 reference kernels on the .tflite the C library was compiled from (the library is "
               "bit-exact with them: its bit_exact check), every tensor preserved, against the float .tflite "
               "converted from the same module (tensors matched by name and shape); not the library's own "
               "intermediates, which it does not expose")
    return CheckResult("layers", MEASURED, {
        "samples": len(data), "compared": len(rows), "worst": [r["tensor"] for r in worst(rows)], "layers": rows,
        "how": how})


def _check_mlpackage(ctx: CheckContext) -> CheckResult:
    from edgeport.checks.layers_coreml import compare_mlpackage

    reference = _float_reference(ctx)
    if reference is None:
        return CheckResult.not_run("layers", "no float ML Program of the same module to compare with (export the "
                                             "ios target with --layers)")
    data = ctx.refs.data.take(SAMPLES)
    samples = ({k: v[i:i + 1] for k, v in data.feeds.items()} for i in range(len(data)))
    rows, matched, unmatched = compare_mlpackage(str(reference), str(ctx.artifact.path), samples)
    if not rows:
        return CheckResult.not_run("layers", "the ML Program computes none of the float program's ops under "
                                             "their names")
    how = ("edgeport's MIL evaluator (NumPy, not Core ML on a device) on the artifact's ML Program with every "
           "op output kept, against the fp32 program coremltools converts from the same traced module (ops "
           "matched by name")
    how += f": {matched} of {matched + unmatched} float ops; the others are not compared)" if unmatched else ")"
    return CheckResult("layers", MEASURED, {
        "samples": len(data), "compared": len(rows), "worst": [r["tensor"] for r in worst(rows)], "layers": rows,
        "unmatched_ops": unmatched, "how": how})


def check_layers(ctx: CheckContext) -> CheckResult:
    import onnx

    if ctx.artifact.format not in ("onnx", "tflite", "c", "mlpackage"):
        return CheckResult.not_run("layers", GAPS.get(ctx.artifact.format, f"per-layer numerics of "
                                   f"'{ctx.artifact.format}' artifacts are not exposed in this version"))
    if ctx.refs.data is None:
        return CheckResult.not_run("layers", "no input data (give --calib or --eval)")
    if ctx.artifact.format in ("tflite", "c"):
        return _check_tflite(ctx)
    if ctx.artifact.format == "mlpackage":
        return _check_mlpackage(ctx)
    float_path = ctx.refs.float_artifact
    if float_path is None:
        return CheckResult.not_run("layers", "no float ONNX model to compare with (give --reference)")
    try:
        float_model, artifact_model = onnx.load(str(float_path)), onnx.load(str(ctx.artifact.path))
    except Exception as exc:  # noqa: BLE001 - a model ORT runs but onnx cannot parse: say so
        raise RuntimeGap(f"cannot read the models' graphs ({type(exc).__name__})") from None
    data = ctx.refs.data.take(SAMPLES)
    feeds = {k: v for k, v in data.feeds.items()}
    layers = ctx.refs.model.layers if ctx.refs.model is not None else None
    rows = compare_onnx(float_model, artifact_model, feeds, layers)
    if not rows:
        return CheckResult.not_run("layers", "the artifact computes none of the float model's tensors under "
                                             "their names")
    return CheckResult("layers", MEASURED, {
        "samples": len(data), "compared": len(rows), "worst": [r["tensor"] for r in worst(rows)], "layers": rows,
        "how": "every intermediate exposed as a graph output in ONNX Runtime (unfused), against the float model"})


def layers_lines(values: dict) -> list[str]:
    rows = {r["tensor"]: r for r in values["layers"]}
    lowest = min(values["layers"], key=lambda r: r["sqnr_db"])
    named = [rows[name] for name in values["worst"]]
    share = sum(r["error_share"] for r in named)
    lines = [f"layers: {values['compared']} tensors compared on {values['samples']} samples; lowest SQNR "
             f"{lowest['sqnr_db']:.1f} dB at {lowest['node'] or lowest['tensor']} ({lowest['op']}); {len(named)} layer(s) add "
             f"{100 * share:.0f}% of the noise, where the error enters:"]
    for name in values["worst"][:SHOWN]:
        r = rows[name]
        where = f", {r['layer']}" if r["layer"] else ""
        lines.append(f"  {100 * r['error_share']:.0f}% of the added noise: {r['node']} ({r['op']}{where}) -> "
                     f"{r['sqnr_db']:.1f} dB, cosine {r['cosine']:.4f}")
    if len(named) > SHOWN:
        rest = sum(r["error_share"] for r in named[SHOWN:])
        lines.append(f"  ... {len(named) - SHOWN} more layer(s) adding {100 * rest:.0f}% (all in the JSON report: "
                     "checks.layers.worst)")
    if values.get("unmatched_ops"):
        lines.append(f"  {values['unmatched_ops']} op(s) of the float program have no op of the same name in the "
                     "artifact: not compared")
    return lines


def _enabled(settings: CheckSettings) -> bool:
    return settings.layers


LAYERS = CheckSpec("layers", check_layers, lines=layers_lines, enabled=_enabled)
