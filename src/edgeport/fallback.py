"""`--fallback auto`: accuracy-controlled quantization, decided once for every target.

The plan is tuned on the calibration data before any target is exported:

1. the recipe's plan is exported to ONNX (QDQ, the reference format whose every intermediate
   ONNX Runtime can expose) and its outputs compared with the float model's: cosine and SQNR of
   the worst output, top-1 agreement of the first;
2. when every target of the run writes per-layer int16 activations (ONNX, android): the
   per-layer comparison (`edgeport.checks.layers`) ranks the quantized layers by the noise each
   adds to what its inputs carried, and the count of the noisiest moved to int16 is bisected
   (`_bisect`: every layer first, then halves; about log2(layers) measurements; when even
   every layer at int16 does not help, the noise is in the int8 weights and 3 moves to float);
   then, if the goal still does not hold, the same bisection moves layers without weights
   (power spectra, attention products, activations) to float, which costs no weight bits; kept
   only when it meets the aim;
3. while a numeric goal (`min_cosine`, `min_sqnr`, `min_agreement` budgets) still does not hold,
   the per-layer comparison runs again and the layer adding the most moves one precision up
   (int8 -> int16 -> float where int16 is written, else int8 -> float: a float override on its ONNX
   node), then 1 runs again (several at once when the goal asks to remove more noise than the
   worst layer adds: the noisiest layers whose shares of the added noise cover it, at most
   `MAX_BATCH` per step). A step that makes the output worse is undone (a float ReLU, for one,
   splits its convolution's fused output range) and its moves are not tried again;
4. it stops when the goals hold with `HEADROOM_DB` to spare, when no quantized layer is left, or
   when the next move would leave more than `MAX_FLOAT_WEIGHTS` of the weights in float (then the
   budgets report what the final plan reaches).

The headroom: the goal is measured on a few calibration samples, and the budget is then checked on
other data. The noise of a quantized output is heavy-tailed across samples (a classifier's
uncertain inputs carry most of it), so a plan that just meets the goal on the calibration data
often misses it on the eval data (PP-OCR's classifier: cosine 0.998 on 16 calibration samples,
0.965 on 16 others). So the tuner aims at half the noise the goal allows (3 dB), and on each of
`FOLDS` parts of the calibration samples (a goal met on average, thanks to many quiet samples,
is not met: with int16 moves, the classifier met 0.995 on all 64 calibration samples and 0.976 on
the eval data). Both cost a few more moved layers.

Where a layer goes: int16 activations first when every target of the run writes per-layer int16
(ONNX: int16 QDQ around the node; android: ai-edge-quantizer's int16x8 kernels with QUANTIZE ops
at the edges; its weights stay int8, so the move costs no weight bits and is not counted in
`MAX_FLOAT_WEIGHTS`, but int16 kernels are slower: the latency check shows the cost); a layer
already at int16 that is still among the noisiest then moves to float, within the limit.
Otherwise (Core ML, the C library in the run) straight to float: float layers are what every target that takes the plan can write (targets
that cannot leave a layer float refuse `--fallback auto` before any work). The moved layers, where
each went, the measurement that moved it and the goal reached are written to `quant_params.json`
and the report; the budgets are then checked on every target as usual, on the eval data.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeport.checks.layers import compare_onnx, run_onnx
from edgeport.checks.numerics import all_outputs_parity
from edgeport.errors import InputError, first_line
from edgeport.guard import stage
from edgeport.recipe import Overrides, Recipe

GOALS = {  # budget -> (parity value, how it is said)
    "min_cosine": ("cosine", "cosine"),
    "min_sqnr": ("sqnr_db", "SQNR dB"),
    "min_agreement": ("top1_agreement", "top-1 agreement"),
}
MAX_FLOAT_WEIGHTS = 0.10  # share of the quantizable weights a fallback may leave in float
TUNE_SAMPLES = 64  # calibration samples the goal is measured on
LAYER_SAMPLES = 16  # samples the per-layer comparison holds in memory (every intermediate)
MAX_MOVES = 64  # steps (each moves one to MAX_BATCH layers)
MAX_BATCH = 8
HEADROOM_DB = 3.0  # the tuner aims this much below the noise the goals allow (see above)
FOLDS = 4  # the goals must hold on each of this many parts of the calibration samples (see above)
# Ops never moved: they pass values through (their output's grid is their input's, re-measured)
# or, in QDQ graphs, share the output range of the op before them (a ReLU or clip fused into a
# convolution): floating them removes no rounding, and un-fusing a ReLU adds some.
NOT_MOVED = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Concat", "Split", "Gather",
             "Identity", "Relu", "Clip", "MaxPool"}
# A moved layer's output is still rounded when an op reading it is quantized (its input is). So its
# readers without weights move with it, and theirs, up to MAX_FOLLOWERS nodes: the rounding then
# happens where the next layer with weights reads the value (int8 kernels need int8 inputs).
# Shape-like readers are not followed (their outputs are integers, not the layer's values).
MAX_FOLLOWERS = 16
NOT_FOLLOWED = {"Shape", "Size"}


@dataclass
class Fallback:
    """What `--fallback auto` did: the goals, each step's measurement, the layers moved."""

    goals: dict[str, float]
    aimed_at: dict[str, float] = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)
    moved: list[dict] = field(default_factory=list)
    met: bool = False
    float_weights: float = 0.0
    stopped: str = ""

    def to_dict(self) -> dict:
        return {"goals": self.goals, "aimed_at": self.aimed_at, "met": self.met, "stopped": self.stopped,
                "float_weight_share": round(self.float_weights, 4), "moved": self.moved, "steps": self.steps,
                "measured_on": "calibration data"}

    def note(self) -> str:
        first = self.steps[0]
        last = next(s for s in reversed(self.steps) if "reverted" not in s)  # the plan kept
        said = ", ".join(f"{GOALS[g][1]} {_fmt(first.get(GOALS[g][0]))} -> {_fmt(last.get(GOALS[g][0]))}"
                         for g in self.goals)
        if not self.moved:
            return f"fallback auto: no layer moved ({said} on the calibration data)"
        final = self.final_precisions()
        names = ", ".join(list(final)[:6]) + (" ..." if len(final) > 6 else "")
        verdict = (f"goal NOT met ({self.stopped})" if not self.met else
                   f"goal met, without its {HEADROOM_DB:.0f} dB headroom ({self.stopped})" if self.stopped else
                   f"goal met with {HEADROOM_DB:.0f} dB headroom")
        to_int16 = sum(p == "int16" for p in final.values())
        moves = (f"{to_int16} to int16 activations, " if to_int16 else "") + \
            f"{len(final) - to_int16} to float ({100 * self.float_weights:.1f}% of the weights)"
        return f"fallback auto: {len(final)} layer(s) moved, {moves}: {names}; {said} on the calibration data; {verdict}"

    def final_precisions(self) -> dict[str, str]:
        """Moved node -> where it ended ("int16" or "float": a later move may take it further)."""
        return {m["node"]: m["to"] for m in self.moved}


CHOICES = ("minmax", "percentile", "mse")  # what `--calibration auto` chooses among


def choose_calibration(model, recipe: Recipe, calib, make_plan, export_onnx) -> tuple[Recipe, object, dict]:
    """`--calibration auto`: the calibration method whose ONNX artifact's worst output has the best
    SQNR against the float model on the calibration data (each measured, not guessed). Returns the
    recipe with that method, its plan, and the measurements."""
    import onnx

    data = calib.take(min(len(calib), TUNE_SAMPLES))
    float_graph = onnx.load_from_string(model.onnx_bytes)
    reference = run_onnx(float_graph, data.feeds)
    names = [o.name for o in float_graph.graph.output]
    measured, best = {}, None
    with tempfile.TemporaryDirectory(prefix="edgeport-calibration-") as tmp:
        for method in CHOICES:
            with stage(f"calibration auto: {method}"):
                candidate = replace(recipe, calibration=method)
                plan = make_plan(candidate)
                artifact = onnx.load(str(export_onnx(candidate, plan, Path(tmp) / method)))
                outputs = run_onnx(artifact, data.feeds)
                metrics = all_outputs_parity([reference[n] for n in names], [outputs[n] for n in names], names)
                sqnr = metrics.get("sqnr_db")
                measured[method] = {"sqnr_db": sqnr, "cosine": metrics.get("cosine")}
                score = sqnr if sqnr is not None and math.isfinite(sqnr) else -math.inf
                if best is None or score > best[0]:
                    best = (score, candidate, plan)
    _, chosen, plan = best
    record = {"chose": chosen.calibration, "measured": measured, "samples": len(data)}
    plan.calibration["auto"] = record
    said = ", ".join(f"{m} {_fmt(v['sqnr_db'])} dB" for m, v in measured.items())
    plan.notes.append(f"calibration auto: {chosen.calibration} chosen by the output SQNR on the calibration data "
                      f"({said})")
    return chosen, plan, record


def goals_from(budgets: dict[str, float]) -> dict[str, float]:
    goals = {name: budgets[name] for name in GOALS if name in budgets}
    if not goals:
        raise InputError("--fallback auto needs a numeric goal to reach: --min-cosine (e.g. 0.99), --min-sqnr "
                         "(dB) or --min-agreement")
    return goals


def tune(model, recipe: Recipe, calib, goals: dict[str, float], make_plan, export_onnx,
         int16: bool = False) -> tuple[Recipe, object, Fallback]:
    """The recipe (with the overrides it needed) and its plan. `make_plan(recipe)` plans a recipe;
    `export_onnx(recipe, plan, folder)` writes its ONNX artifact and returns the path. `int16`:
    every target of the run writes per-layer int16 activations, so layers move there first (see
    `_bisect`), then layers without weights to float when that meets the aim, then one step at a
    time as below."""
    import onnx

    data = calib.take(min(len(calib), TUNE_SAMPLES))
    float_graph = onnx.load_from_string(model.onnx_bytes)
    folds = _folds(data.feeds)
    references = [run_onnx(float_graph, fold) for fold in folds]
    names = [o.name for o in float_graph.graph.output]
    totals = _weight_sizes(float_graph)
    aim = with_headroom(goals)
    result = Fallback(goals, aim)
    small = {k: v[:LAYER_SAMPLES] for k, v in data.feeds.items()}

    with tempfile.TemporaryDirectory(prefix="edgeport-fallback-") as tmp:
        def measure(candidate: Recipe) -> Measured:
            with stage(f"fallback auto: step {len(result.steps) + 1}"):
                plan = make_plan(candidate)
                try:
                    artifact = onnx.load(str(export_onnx(candidate, plan, Path(tmp) / f"step{len(result.steps)}")))
                    runs = [run_onnx(artifact, f) for f in folds]
                except InputError:
                    raise
                except Exception as exc:  # noqa: BLE001 - onnxruntime's quantizer or session refusing this mix
                    # (seen: a QuantizeLinear whose zero point type differs from its output type
                    # in a mixed int8 / int16 graph): the step is undone like one that made it worse
                    return Measured(-math.inf, candidate, plan, None, {},
                                    {"failed": f"{type(exc).__name__}: {first_line(str(exc))}"[:300]})
                metrics = _worst_fold([all_outputs_parity([reference[n] for n in names], [run[n] for n in names], names)
                                       for reference, run in zip(references, runs)])
                entry = {"float_nodes": len(plan.float_nodes), "int16_nodes": len(plan.precisions),
                         "float_weight_share": round(_share(plan.float_nodes, float_graph, totals), 4),
                         **{GOALS[g][0]: metrics.get(GOALS[g][0]) for g in goals}}
                return Measured(_score(metrics, aim), candidate, plan, artifact, metrics, entry)

        def rows_of(state: Measured) -> list[dict]:
            if state.rows is None:  # once per plan: the weightless probe and the next step read the same rows
                with stage(f"fallback auto: per-layer noise after step {len(result.steps)}"):
                    state.rows = _onto_producers(compare_onnx(float_graph, state.artifact, small, model.layers),
                                                 float_graph, model.layers)
            return state.rows

        best = measure(recipe)
        if best.artifact is None:  # the recipe's own plan: nothing to fall back from
            raise RuntimeError(f"the int8 ONNX artifact of the plan did not run: {best.entry['failed']}")
        result.steps.append(best.entry)
        if int16 and not _holds_all(best.metrics, aim):
            ranked = _quantized_by_noise(rows_of(best), best.plan)
            bisected = _bisect(best, ranked, "int16", measure, result, float_graph, totals, aim)
            # int16 activations did not help even on every noisy layer: the noise is in the
            # weights (int16 moves keep them int8), so the steps go to float (PP-OCR's classifier)
            int16, best = bisected is not best, bisected
        if not _holds_all(best.metrics, aim):
            # layers without weights cost no weight bits in float: all of them at once, kept only
            # if that meets the aim, then the fewest (silero-vad: the STFT's power spectrum, whose
            # small bins int8 / int16 grids round to zero, shows its noise only in the next conv)
            ranked = _weightless(_quantized_by_noise(rows_of(best), best.plan, every=True), totals)
            best = _bisect(best, ranked, "float", measure, result, float_graph, totals, aim, partial=False)
        tried: set[str] = set()  # moves that made things worse (not tried again)
        for _ in range(MAX_MOVES):
            if _holds_all(best.metrics, aim):
                break
            plan = best.plan
            candidates = [{**r, "to": _next_precision(r["node"], plan, int16, tried)}
                          for r in _quantized_by_noise(rows_of(best), plan)]
            candidates = [r for r in candidates if _move_key(r["node"], r["to"]) not in tried]
            if not candidates:
                result.stopped = "no quantized layer left whose move helps"
                break
            fits = [r for r in candidates if r["to"] != "float"
                    or _share([*plan.float_nodes, r["node"]], float_graph, totals) <= MAX_FLOAT_WEIGHTS]
            if not fits:
                result.stopped = (f"moving any other layer would leave more than {100 * MAX_FLOAT_WEIGHTS:.0f}% "
                                  "of the weights in float")
                break
            needed = 0.0 if tried else _noise_to_remove(best.metrics, aim)
            picks = _batch(fits, needed, plan.float_nodes, float_graph, totals)
            candidate, pending = _moved(best.recipe, picks, plan, float_graph, totals, len(result.steps) + 1)
            measured = measure(candidate)
            if not measured.score > best.score:
                # moving these made the output worse (e.g. a float ReLU un-fuses its conv's output
                # range): undo, never try them again, go on one layer at a time
                tried.update(_move_key(m["node"], m["to"]) for m in pending)
                result.steps.append({**measured.entry, "reverted": [m["node"] for m in pending]})
            else:
                result.moved += pending
                result.steps.append(measured.entry)
                best = measured
        else:
            if not _holds_all(best.metrics, aim):
                result.stopped = f"{MAX_MOVES} steps taken"
    result.float_weights = _share(best.plan.float_nodes, float_graph, totals)
    result.met = _holds_all(best.metrics, goals)
    return best.recipe, best.plan, result


def _folds(feeds: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The calibration samples in `FOLDS` contiguous parts (fewer when there are few samples)."""
    count = len(next(iter(feeds.values()))) if feeds else 0
    parts = max(1, min(FOLDS, count // 2))
    bounds = np.linspace(0, count, parts + 1).astype(int)
    return [{k: v[a:b] for k, v in feeds.items()} for a, b in zip(bounds, bounds[1:])]


def _worst_fold(per_fold: list[dict]) -> dict:
    """Each goal's value on the fold where it is worst (the goal must hold on every part)."""
    worst = dict(per_fold[0])
    for metrics in per_fold[1:]:
        for key in {goal for goal, _ in GOALS.values()}:
            value = metrics.get(key)
            if value is not None and (worst.get(key) is None or not value >= worst[key]):
                worst[key] = value
    return worst


@dataclass
class Measured:
    """One plan measured on the calibration data."""

    score: float
    recipe: Recipe
    plan: object
    artifact: object
    metrics: dict
    entry: dict  # its line in `Fallback.steps`
    rows: list[dict] | None = None  # its per-layer comparison, once made


def _bisect(base: Measured, ranked: list[dict], to: str, measure, result: Fallback, graph, totals,
            aim: dict[str, float], partial: bool = True) -> Measured:
    """The fewest of the `ranked` layers that, moved `to` int16 activations (or to float, for
    layers without weights), meet the aim: such moves cost no weight bits, so instead of one step
    per few layers (a detector's noise is spread over a hundred layers adding 1-2% each), the
    layers are ranked once by the noise they add and the count is bisected: every layer first
    (if that misses the aim but helps, and `partial`, the steps go on from there; if it does not
    help, the noise is in the int8 weights and the steps go to float), then halves, about
    log2(layers) measurements. Assumes that more moved layers never add noise, which holds up to
    measurement noise; the plan kept is one measured to meet the aim."""
    if not ranked:
        return base
    probes: dict[int, tuple[Measured, list[dict]]] = {}
    key = f"{to}_probe"

    def probe(count: int) -> Measured:
        step = len(result.steps) + 1
        candidate, moves = _moved(base.recipe, [{**r, "to": to} for r in ranked[:count]], base.plan, graph,
                                  totals, step)
        measured = measure(candidate)
        result.steps.append({**measured.entry, key: count})
        probes[count] = (measured, moves)
        return measured

    every = probe(len(ranked))
    if not _holds_all(every.metrics, aim):
        chosen = len(ranked) if partial and every.score > base.score else 0
    else:
        low, high = 0, len(ranked)  # low misses the aim (the base plan), high meets it
        while high - low > 1:
            middle = (low + high) // 2
            if _holds_all(probe(middle).metrics, aim):
                high = middle
            else:
                low = middle
        chosen = high
    for count, (_, moves) in probes.items():
        if count != chosen:
            entry = next(s for s in result.steps if s.get(key) == count)
            entry["reverted"] = f"{to} probe of the {count} noisiest layers, not kept"
    if not chosen:
        return base
    kept, moves = probes[chosen]
    result.moved += moves
    return kept


def _moved(recipe: Recipe, picks: list[dict], plan, graph, totals, step: int) -> tuple[Recipe, list[dict]]:
    """`recipe` with each pick (a per-layer row with its "to" precision) and its followers moved,
    and the moves as `Fallback.moved` records."""
    layer = dict(recipe.overrides.layer)
    moves = []
    for pick in picks:
        to = pick["to"]
        followers = [n for n in _followers(graph, pick["node"], totals)
                     if n not in plan.float_nodes and layer.get(n) != to and not (to == "int16" and n in layer)]
        moves.append({"node": pick["node"], "op": pick["op"], "layer": pick["layer"], "to": to,
                      "sqnr_db": pick["sqnr_db"], "error_share": pick["error_share"], "step": step,
                      "why": f"added {100 * pick['error_share']:.0f}% of the quantization noise "
                             f"(its output at {pick['sqnr_db']:.1f} dB SQNR)",
                      **({"with": followers} if followers else {})})
        layer[pick["node"]] = to
        layer.update((name, to) for name in followers)
    return replace(recipe, overrides=Overrides(recipe.overrides.op_type, tuple(layer.items()))), moves


def _holds_all(metrics: dict, limits: dict[str, float]) -> bool:
    return all(_holds(metrics.get(GOALS[g][0]), limit) for g, limit in limits.items())


def with_headroom(goals: dict[str, float]) -> dict[str, float]:
    """The goals with `HEADROOM_DB` less noise: cosine's 1 - c and SQNR's noise power scaled by
    10^(-HEADROOM_DB / 10); top-1 agreement as given (it has no noise to scale)."""
    factor = 10 ** (-HEADROOM_DB / 10)
    aim = {}
    for goal, limit in goals.items():
        if goal == "min_cosine":
            aim[goal] = 1 - (1 - limit) * factor
        elif goal == "min_sqnr":
            aim[goal] = limit + HEADROOM_DB
        else:
            aim[goal] = limit
    return aim


def _score(metrics: dict, goals: dict[str, float]) -> float:
    """How far the worst goal is from its limit, comparable across steps (dB for SQNR and cosine,
    whose noise 2(1 - cosine) is put in dB; points for agreement): higher is better."""
    margins = []
    for goal, limit in goals.items():
        value = metrics.get(GOALS[goal][0])
        if value is None or not math.isfinite(value):
            return -math.inf
        if goal == "min_cosine":
            value, limit = (-10 * math.log10(max(1 - v, 1e-12)) for v in (value, limit))
        elif goal == "min_agreement":
            value, limit = 100 * value, 100 * limit
        margins.append(value - limit)
    return min(margins)


def _noise_to_remove(metrics: dict, goals: dict[str, float]) -> float:
    """The share of the output's noise power the goals ask to remove (cosine ~ 1 - NSR/2 for small
    noise); 0 when it cannot be told (top-1 agreement), and then one layer moves per step."""
    needed = 0.0
    for goal, limit in goals.items():
        value = metrics.get(GOALS[goal][0])
        if value is None or not math.isfinite(value):
            continue
        if goal == "min_sqnr":
            now, wanted = 10 ** (-value / 10), 10 ** (-limit / 10)
        elif goal == "min_cosine":
            now, wanted = 2 * (1 - value), 2 * (1 - limit)
        else:
            continue
        if now > 0:
            needed = max(needed, 1 - wanted / now)
    return min(max(needed, 0.0), 1.0)


def _batch(fits: list[dict], needed: float, floated, graph, totals) -> list[dict]:
    """The noisiest layers whose added noise together covers `needed` of it (at least one, at
    most MAX_BATCH), within the float-weight limit: fewer steps for a deep model, each re-measured."""
    chosen, covered = [], 0.0
    for row in fits:
        if chosen and (covered >= needed or len(chosen) >= MAX_BATCH):
            break
        to_float = [r["node"] for r in (*chosen, row) if r["to"] == "float"]
        if row["to"] == "float" and _share([*floated, *to_float], graph, totals) > MAX_FLOAT_WEIGHTS:
            continue
        chosen.append(row)
        covered += row["error_share"]
    return chosen


FUSED_ACTIVATIONS = {"Relu", "Clip"}  # rounded where they write, but fused into the layer before


def _onto_producers(rows: list[dict], graph, layers: dict[str, str] | None = None) -> list[dict]:
    """`rows` with the noise a ReLU / Clip adds given to the layer computing its input: a conv's
    output is rounded only after its fused activation, so the activation's row shows the noise
    the conv's output grid causes, and moving the conv (which takes its activation along, see
    `_followers`) is what removes it (silero-vad's encoder: four Conv -> Relu, every one of them
    noisy at the Relu)."""
    producers = {out: node for node in graph.graph.node for out in node.output}
    nodes = {node.name: node for node in graph.graph.node if node.name}
    by_node = {r["node"]: r for r in rows if r["node"]}
    merged = []
    for row in rows:
        node = nodes.get(row["node"]) if row["op"] in FUSED_ACTIVATIONS else None
        source = producers.get(node.input[0]) if node is not None and node.input else None
        if source is None or source.op_type in NOT_MOVED or not source.name:
            merged.append(row)
            continue
        target = by_node.get(source.name)
        if target is None:
            target = by_node[source.name] = {**row, "node": source.name, "op": source.op_type,
                                             "layer": (layers or {}).get(source.name, source.name),
                                             "added_noise": 0.0, "error_share": 0.0}
            merged.append(target)
        target["added_noise"] += row["added_noise"]
        target["error_share"] = round(target["error_share"] + row["error_share"], 4)
        merged.append({**row, "added_noise": 0.0, "error_share": 0.0})
    return merged


def _quantized_by_noise(rows: list[dict], plan, every: bool = False) -> list[dict]:
    """Rows of the quantized nodes that add noise (`every`: also those adding none), the most first."""
    floated = set(plan.float_nodes)
    ops = set(plan.quantized_ops)
    candidates = [r for r in rows if (every or r["added_noise"] > 0) and r["node"] and r["node"] not in floated
                  and (not ops or r["op"] in ops) and r["op"] not in NOT_MOVED]
    return sorted(candidates, key=lambda r: r["added_noise"], reverse=True)


def _weightless(rows: list[dict], totals) -> list[dict]:
    """The rows of nodes that read no weight (a float move costs no weight bits), one per node."""
    _, reads = totals
    kept: dict[str, dict] = {}
    for row in rows:
        if not reads.get(row["node"]):
            kept.setdefault(row["node"], row)
    return list(kept.values())


def _next_precision(node: str, plan, int16: bool, tried: set[str] = frozenset()) -> str:
    """Where a quantized node moves: int16 activations when the run's targets write them, it is
    not there yet and that move was not undone before; else float."""
    to_int16 = int16 and plan.precisions.get(node) != "int16" and _move_key(node, "int16") not in tried
    return "int16" if to_int16 else "float"


def _move_key(node: str, to: str) -> str:
    return f"{node} -> {to}"


def _followers(graph, node: str, weights) -> list[str]:
    """The nodes that move with `node` (see MAX_FOLLOWERS): its readers without weights, theirs,
    breadth first. A node reads a value also through its sub-graphs (an If branch reading a tensor
    of the outer graph)."""
    _, reads = weights
    readers: dict[str, list] = {}
    for candidate in graph.graph.node:
        for name in {*candidate.input, *_subgraph_reads(candidate)}:
            readers.setdefault(name, []).append(candidate)
    by_name = {n.name: n for n in graph.graph.node}
    found, queue = [], list(by_name[node].output) if node in by_name else []
    while queue and len(found) < MAX_FOLLOWERS:
        for reader in readers.get(queue.pop(0), []):
            if (reader.name in found or reader.name == node or not reader.name or reads.get(reader.name)
                    or reader.op_type in NOT_FOLLOWED):
                continue
            found.append(reader.name)
            queue.extend(reader.output)
            if len(found) >= MAX_FOLLOWERS:
                break
    return found


def _subgraph_reads(node) -> set[str]:
    from edgeport.graph_cleanup import all_nodes

    subgraphs = [a.g for a in node.attribute if a.HasField("g")] + [g for a in node.attribute for g in a.graphs]
    return {name for sub in subgraphs for inner in all_nodes(sub) for name in inner.input}


def _holds(value, limit: float) -> bool:
    return value is not None and math.isfinite(value) and value >= limit


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _weight_sizes(graph) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Elements of each weight initializer (rank >= 2), and node name -> the weights it reads."""
    sizes = {i.name: int(np.prod(i.dims)) for i in graph.graph.initializer if len(i.dims) >= 2}
    return sizes, {n.name: {i for i in n.input if i in sizes} for n in graph.graph.node}


def _share(float_nodes, graph, weights) -> float:
    """Share of the weights read by `float_nodes` (each initializer counted once)."""
    sizes, reads = weights
    total = sum(sizes.values())
    kept = set().union(*(reads.get(n, set()) for n in float_nodes)) if float_nodes else set()
    return sum(sizes[w] for w in kept) / total if total else 0.0
