"""Numeric checks: recipe parameters honored, parity with the float reference, accuracy."""

from __future__ import annotations

import numpy as np

from edgeport.checks import MEASURED, CheckContext, CheckResult, CheckSpec


def parity_metrics(reference: np.ndarray, output: np.ndarray) -> dict:
    """Max abs error, cosine similarity and SQNR in dB (over all values; SQNR 999 when identical)
    and top-1 agreement (for [N, C] outputs)."""
    ref = reference.astype(np.float64).reshape(len(reference), -1)
    out = output.astype(np.float64).reshape(len(output), -1)
    denom = np.linalg.norm(ref) * np.linalg.norm(out)
    values = {
        "samples": int(len(ref)),
        "max_abs_err": float(np.max(np.abs(ref - out))) if ref.size else 0.0,
        "cosine": float(np.sum(ref * out) / denom) if denom > 0 else (1.0 if np.array_equal(ref, out) else 0.0),
        "sqnr_db": _sqnr_db(ref, out),
    }
    if ref.shape[1] > 1:
        values["top1_agreement"] = float(np.mean(ref.argmax(axis=1) == out.argmax(axis=1)))
    return values


def _sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    noise, signal = float(np.sum((ref - out) ** 2)), float(np.sum(ref ** 2))
    if noise == 0.0 or not np.isfinite(noise):
        return 999.0 if noise == 0.0 else -999.0
    return round(max(-999.0, min(999.0, 10.0 * float(np.log10(signal / noise)) if signal > 0 else -999.0)), 2)


def all_outputs_parity(references: list[np.ndarray], outputs: list[np.ndarray], names: list[str]) -> dict:
    """Parity over every output the model has: the first output's metrics (top-1 agreement reads
    class scores there), with cosine and SQNR the worst over all outputs, and, for a model with
    several outputs, one row per output (a detector's boxes matter as much as its scores)."""
    rows = [dict(parity_metrics(r, o), output=n) for r, o, n in zip(references, outputs, names)]
    values = {k: v for k, v in rows[0].items() if k != "output"}
    if len(rows) > 1:
        values["cosine"] = min(r["cosine"] for r in rows)
        values["sqnr_db"] = min(r["sqnr_db"] for r in rows)
        values["max_abs_err"] = max(r["max_abs_err"] for r in rows)
        values["outputs"] = [{k: r[k] for k in ("output", "cosine", "sqnr_db", "max_abs_err")} for r in rows]
    return values


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(outputs.reshape(len(outputs), -1).argmax(axis=1) == labels))


def check_params(ctx: CheckContext) -> CheckResult:
    """Read the quantization parameters back from the artifact and compare them with the plan."""
    plan = ctx.plan
    if plan is None or not (plan.weights or plan.activations):
        return CheckResult.not_run("params", "recipe has no quantization parameters")
    values = ctx.exporter.read_params(ctx.artifact.path, plan) if ctx.exporter is not None else None
    if values is None:
        return CheckResult.not_run("params", f"reading parameters back from '{ctx.artifact.format}' "
                                             "files is not supported")
    values["honored"] = not values["differ"] and values["tensors_checked"] > 0
    return CheckResult("params", MEASURED, values)


PARAMS = CheckSpec("params", check_params, needs_runtime=False)


def check_parity(ctx: CheckContext) -> CheckResult:
    refs = ctx.refs
    if refs.data is None:
        return CheckResult.not_run("parity", "no input data (give --calib or --eval)")
    outputs = ctx.outputs  # first: an artifact the runtime cannot run says why, naming the op
    if refs.outputs is None:
        return CheckResult.not_run("parity", "no float reference for this model (give --reference)")
    count = min(len(refs.outputs), len(outputs))
    names = [o.name for o in refs.model.outputs] if refs.model is not None else []
    names = (names + [f"output {i}" for i in range(len(names), count)])[:count]
    values = all_outputs_parity(refs.outputs[:count], outputs[:count], names)
    values["reference"] = refs.model.reference_kind
    values["data"] = refs.data.source
    return CheckResult("parity", MEASURED, values)


def parity_lines(values: dict) -> list[str]:
    """One line per output for a model with several (the table's columns show the worst)."""
    return [f"parity {r['output']}: cosine {r['cosine']:.5f}, SQNR {r['sqnr_db']:.1f} dB, max |err| "
            f"{r['max_abs_err']:.3g}" for r in values.get("outputs", [])]


PARITY = CheckSpec("parity", check_parity, lines=parity_lines)


def check_accuracy(ctx: CheckContext) -> CheckResult:
    refs = ctx.refs
    if refs.data is None or refs.data.labels is None:
        return CheckResult.not_run("accuracy", "no labeled eval data (give --eval with labels)")
    labels = refs.data.labels
    values = {"samples": int(len(labels)), "accuracy": accuracy(ctx.outputs[0], labels)}
    if refs.outputs is not None:
        values["float_accuracy"] = accuracy(refs.outputs[0], labels)
        values["accuracy_drop_points"] = round(100 * (values["float_accuracy"] - values["accuracy"]), 4)
    return CheckResult("accuracy", MEASURED, values)


ACCURACY = CheckSpec("accuracy", check_accuracy)


def cross_target_parity(contexts: list[CheckContext], plan) -> list[dict]:
    """Outputs of each artifact against the first one's, on the same inputs: same recipe, same numbers?

    Where the recipe quantizes the model output, the difference is also given in steps of the
    output's quantization scale.
    """
    from edgeport.errors import RuntimeGap

    outputs = []
    for ctx in contexts:
        try:
            outputs.append((ctx.target.name, ctx.outputs))
        except RuntimeGap:
            continue  # that target's checks already say why it could not run
    outputs = [(name, out) for name, out in outputs if out is not None]
    if len(outputs) < 2:
        return []
    (base_name, base), rows = outputs[0], []
    out_name = contexts[0].session.outputs[0].name
    step = plan.activations[out_name].scale if plan is not None and out_name in plan.activations else None
    for name, out in outputs[1:]:
        metrics = parity_metrics(base[0], out[0])
        row = {"base": base_name, "target": name, "samples": metrics["samples"],
               "max_abs_diff": metrics["max_abs_err"], "cosine": metrics["cosine"]}
        if "top1_agreement" in metrics:
            row["top1_agreement"] = metrics["top1_agreement"]
        if step:
            row["max_diff_steps"] = round(metrics["max_abs_err"] / step, 3)
        rows.append(row)
    return rows
