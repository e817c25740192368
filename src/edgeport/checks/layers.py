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
compared by the parity check as shipped. Other formats say why they cannot here.
"""

from __future__ import annotations

import numpy as np

from edgeport.checks import MEASURED, CheckContext, CheckResult, CheckSpec, CheckSettings
from edgeport.errors import RuntimeGap

SAMPLES = 32  # inputs compared (every intermediate of every sample is held in memory)
WORST = 5  # layers named in the table


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
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    exposed = _with_all_outputs(model)
    session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    return dict(zip(names, session.run(None, {k: v for k, v in feeds.items() if k in wanted})))


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
    float_inputs = {out: [i for i in node.input if i] for node in float_model.graph.node for out in node.output}
    rows, nsr_of = [], {}
    for node in float_model.graph.node:
        for name in node.output:
            ref, val = reference.get(name), got.get(seen.get(name, name))
            if ref is None or val is None or ref.shape != val.shape or not np.issubdtype(ref.dtype, np.floating):
                continue
            if name not in producers:
                continue
            sqnr = sqnr_db(ref, val.astype(np.float32))
            nsr = 10.0 ** (-sqnr / 10.0) if np.isfinite(sqnr) else (0.0 if sqnr > 0 else 1.0)
            nsr_of[name] = nsr
            incoming = max((nsr_of[i] for i in float_inputs.get(name, []) if i in nsr_of), default=0.0)
            rows.append({"tensor": name, "node": node.name, "op": node.op_type, "artifact_op": producers[name].op_type,
                         "layer": (layers or {}).get(node.name, ""),
                         "sqnr_db": round(sqnr, 2) if np.isfinite(sqnr) else (999.0 if sqnr > 0 else -999.0),
                         "cosine": round(_cosine(ref, val), 6),
                         "max_abs_err": float(np.max(np.abs(ref.astype(np.float64) - val.astype(np.float64)))),
                         "added_noise": max(nsr - incoming, 0.0)})
    total = sum(r["added_noise"] for r in rows) or 1.0
    for r in rows:
        r["error_share"] = round(r["added_noise"] / total, 4)
        r["added_noise"] = float(f"{r['added_noise']:.4g}")
    return rows


def worst(rows: list[dict], count: int = WORST) -> list[dict]:
    """The layers that add the most noise (relative noise power the layer adds to what its inputs
    already carried): where the error enters, not where it flows through."""
    return sorted((r for r in rows if r["added_noise"] > 0), key=lambda r: r["added_noise"], reverse=True)[:count]


GAPS = {
    "ort": "an .ort file cannot be edited to expose intermediates (the onnx target's .onnx has the same numbers: "
           "export it with --layers)",
}


def check_layers(ctx: CheckContext) -> CheckResult:
    import onnx

    if ctx.artifact.format != "onnx":
        return CheckResult.not_run("layers", GAPS.get(ctx.artifact.format, f"per-layer numerics of "
                                   f"'{ctx.artifact.format}' artifacts are not exposed in this version"))
    if ctx.refs.data is None:
        return CheckResult.not_run("layers", "no input data (give --calib or --eval)")
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
    lines = [f"layers: {values['compared']} tensors compared on {values['samples']} samples; lowest SQNR "
             f"{lowest['sqnr_db']:.1f} dB at {lowest['tensor']} ({lowest['op']}); where the error enters:"]
    for name in values["worst"]:
        r = rows[name]
        where = f", {r['layer']}" if r["layer"] else ""
        lines.append(f"  {100 * r['error_share']:.0f}% of the added noise: {r['node']} ({r['op']}{where}) -> "
                     f"{r['sqnr_db']:.1f} dB, cosine {r['cosine']:.4f}")
    return lines


def _enabled(settings: CheckSettings) -> bool:
    return settings.layers


LAYERS = CheckSpec("layers", check_layers, lines=layers_lines, enabled=_enabled)
