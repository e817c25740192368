"""`edgeport sweep`: the Pareto frontier math, the recipe table, the executors, and one real sweep
of the digits CNN (onnx + android, workers in processes) whose report.html is opened in headless
Chromium."""

from __future__ import annotations

import json
import math
import sys
import types

import pytest
from conftest import CALIB, DIGITS, EVAL, run_cli

from edgeport.cli import main
from edgeport.recipe import Recipe
from edgeport.sweep.executors import EXECUTORS, run_local, run_ray
from edgeport.sweep.grid import RECIPES, RecipeJob, run_recipe
from edgeport.sweep.pareto import dominators, pareto_front
from edgeport.sweep.plots import breakdown_segments
from edgeport.sweep.records import FAILED, OK, REFUSED, Configuration, layer_of
from edgeport.sweep.report import summarize

# ---------------------------------------------------------------- pareto (pure)


def test_single_point_is_the_frontier():
    assert pareto_front([(10.0, 0.9)]) == [0]
    assert dominators([(10.0, 0.9)], 0) == []


def test_dominated_points_are_off_the_frontier():
    # (cost, quality): 1 and 3 are smaller and better than 0; 2 is bigger and better (a trade-off);
    # 3 is as good as 1 but bigger
    points = [(100.0, 0.95), (50.0, 0.96), (200.0, 0.99), (60.0, 0.96)]
    assert pareto_front(points) == [1, 2]
    assert dominators(points, 0) == [1, 3]
    assert dominators(points, 3) == [1]
    assert dominators(points, 2) == []


def test_ties():
    # identical points: neither beats the other, both stay on the frontier
    assert pareto_front([(50.0, 0.9), (50.0, 0.9)]) == [0, 1]
    # same cost, lower quality: dominated; same quality, higher cost: dominated
    assert pareto_front([(50.0, 0.9), (50.0, 0.8)]) == [0]
    assert pareto_front([(60.0, 0.9), (50.0, 0.9)]) == [1]


def test_unmeasured_points_take_no_part_and_order_is_by_cost():
    points = [None, (30.0, 0.7), (10.0, 0.5), (20.0, float("nan")), (40.0, 0.9)]
    assert pareto_front(points) == [2, 1, 4]
    assert dominators(points, 0) == [] and dominators(points, 3) == []
    assert pareto_front([]) == []


def _config(recipe, target, size, latency, accuracy=None, agreement=None, status=OK, estimate=False):
    return Configuration(recipe, target, status, size_bytes=size, latency_ms=latency, accuracy=accuracy,
                         agreement=agreement, latency_estimate=estimate)


def test_summary_picks_the_metric_and_names_who_dominates():
    configs = [_config("fp32", "onnx", 160_000, 0.02, 0.983), _config("fp16", "onnx", 80_000, 0.03, 0.983),
               _config("int8", "onnx", 49_000, 0.017, 0.983), _config("pal4", "onnx", None, None, status=REFUSED),
               _config("int8", "cortex-m4", 43_000, 120.0, agreement=1.0, estimate=True)]
    onnx = summarize("onnx", configs)
    assert onnx.metric == "accuracy"
    assert onnx.fronts == {"size": ["int8"], "latency": ["int8"]}
    assert onnx.dominated_by["size"] == {"fp32": ["fp16", "int8"], "fp16": ["int8"]}
    mcu = summarize("cortex-m4", configs)
    assert mcu.metric == "agreement" and mcu.latency_estimate and mcu.fronts["latency"] == ["int8"]


def test_layer_names_and_breakdown_segments():
    assert layer_of("features.0.weight_quantized") == "features.0"
    assert layer_of("classifier.3.bias") == "classifier.3"
    assert layer_of("onnx::Conv_12", "Conv_0") == "Conv_0"
    assert layer_of("val_6") == "other"
    bars = [{f"l{i}": 10 * (i + 1) for i in range(5)}, {"l0": 1, "l4": 5}]
    assert breakdown_segments(bars, limit=12) == [(f"l{i}", [10 * (i + 1), [1, 0, 0, 0, 5][i]]) for i in range(5)]
    kept = breakdown_segments(bars, limit=3)  # the 2 largest + the rest summed
    assert kept == [("l3", [40, 0]), ("l4", [50, 5]), ("3 smaller", [60, 1])]


# ---------------------------------------------------------------- recipes, executors, errors


def test_recipe_table():
    assert RECIPES.get("fp32") == Recipe()
    assert RECIPES.get("int8-per-tensor") == Recipe(quantize="int8", per_channel=False)
    assert RECIPES.get("pal2") == Recipe(palettize=2) and RECIPES.get("prune80") == Recipe(prune=0.8)
    assert set(RECIPES.names()) >= {"fp16", "dynamic-int8", "int8", "int16x8", "pal4", "prune50"}


def test_unknown_recipe_is_bad_input(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", DIGITS, "--recipes", "fp32,int4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown sweep recipe 'int4' (known: " in err and "pal4" in err
    assert not out.exists()


def test_ray_missing_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "sweep"
    code = main(["sweep", DIGITS, "--targets", "onnx", "--recipes", "fp32", "--eval", EVAL, "--out", str(out),
                 "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "edgeport: error: --executor ray needs the Python package 'ray' (pip install 'edgeport[ray]')\n"
    assert not out.exists()


def test_local_executor_runs_jobs_in_processes_and_keeps_errors():
    results = dict(run_local(math.factorial, [3, 4, -1, 5], workers=2))  # -1: ValueError in the worker
    assert {k: v for k, v in results.items() if k != -1} == {3: 6, 4: 24, 5: 120}
    assert isinstance(results[-1], ValueError)
    assert dict(run_local(math.factorial, [3, 4], workers=1)) == {3: 6, 4: 24}


class FakeRay(types.ModuleType):
    """Just enough of Ray's API to drive the executor: tasks run when they are submitted."""

    def __init__(self):
        super().__init__("ray")
        self.initialized, self.in_flight = None, 0

    def is_initialized(self):
        return self.initialized is not None

    def init(self, **kwargs):
        self.initialized = kwargs

    def remote(self, fn):
        fake = self

        class Task:
            @staticmethod
            def remote(job):
                fake.in_flight += 1
                try:
                    return ("ok", fn(job))
                except Exception as exc:  # noqa: BLE001
                    return ("error", exc)

        return Task

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        self.in_flight -= 1
        kind, value = ref
        if kind == "error":
            raise value
        return value


def test_ray_executor_is_the_same_interface(monkeypatch):
    """The Ray wiring against a stand-in module (ray itself is not installed here)."""
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert EXECUTORS.get("ray") is run_ray
    results = dict(run_ray(math.factorial, [3, 4, -1], workers=2))
    assert results[3] == 6 and results[4] == 24 and isinstance(results[-1], ValueError)
    assert fake.initialized == {"num_cpus": 2} and fake.in_flight == 0
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    fake.initialized = None
    list(run_ray(math.factorial, [3], workers=1))
    assert fake.initialized == {"address": "auto"}


def test_a_failing_recipe_is_recorded_per_target(tmp_path):
    """An export error is each target's error (tried together, then alone), not a crash."""
    from edgeport.checks import CheckSettings

    job = RecipeJob("fp32", Recipe(), ("onnx", "android"), DIGITS, str(tmp_path), str(tmp_path / "missing.npz"),
                    None, None, CheckSettings())
    results = run_recipe(job)
    assert [(c.target, c.status) for c in results] == [("onnx", FAILED), ("android", FAILED)]
    assert all("missing.npz" in c.error and "no such file" in c.error for c in results)


# ---------------------------------------------------------------- a real sweep


@pytest.fixture(scope="module")
def sweep_out(tmp_path_factory):
    """The digits CNN: fp32, fp16, int8 and pal4 x onnx, android, cortex-m4 (which refuses all but
    int8: the C library runs int8 kernels); 2 workers."""
    pytest.importorskip("torch", reason="torch is not installed (the exports need it)")
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'edgeport[sweep]')")
    out = tmp_path_factory.mktemp("sweep") / "out"
    result = run_cli("sweep", DIGITS, "--targets", "onnx,android,cortex-m4", "--recipes", "fp32,fp16,int8,pal4",
                     "--calib", CALIB, "--eval", EVAL, "--out", str(out), "--workers", "2", "--runs", "10")
    assert result.returncode == 0, result.stderr
    assert "refused: pal4 x cortex-m4" in result.stdout
    return out


@pytest.mark.e2e
def test_sweep_json_has_every_configuration(sweep_out):
    data = json.loads((sweep_out / "sweep.json").read_text())
    configs = {(c["recipe"], c["target"]): c for c in data["configurations"]}
    assert set(configs) == {(r, t) for r in ("fp32", "fp16", "int8", "pal4")
                            for t in ("onnx", "android", "cortex-m4")}
    for recipe in ("fp32", "fp16", "pal4"):
        refused = configs[(recipe, "cortex-m4")]
        assert refused["status"] == REFUSED and "the C library runs int8 kernels" in refused["error"]
    for key, c in configs.items():
        if key[1] == "cortex-m4" and key[0] != "int8":
            continue
        assert c["status"] == OK, c
        assert c["size_bytes"] > 0 and c["latency_ms"] > 0 and 0.9 < c["accuracy"] <= 1.0
        assert (sweep_out / c["report"]).is_file()
    # int8 is the smallest artifact on both targets: always on the size frontier
    for target in ("onnx", "android"):
        assert "int8" in data["frontiers"][target]["fronts"]["size"]
    # per-layer bytes of the ONNX artifacts add up to the structure check's weight bytes
    onnx_int8 = configs[("int8", "onnx")]
    assert "classifier.1" in onnx_int8["layer_bytes"]
    assert sum(onnx_int8["layer_bytes"].values()) == sum(onnx_int8["weight_bytes"].values())
    assert configs[("fp32", "onnx")]["report"] == "fp32/report.json"


@pytest.mark.e2e
def test_report_html_renders_in_chromium(sweep_out, tmp_path):
    from edgeport.runtimes import browser

    reason = browser.ChromiumRuntime().availability()
    if reason:
        pytest.skip(f"headless Chromium unavailable: {reason}")
    html = (sweep_out / "report.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    context = browser.shared_browser().new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto((sweep_out / "report.html").as_uri(), wait_until="load")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        images = page.evaluate("() => Array.from(document.querySelectorAll('img.plot')).map(img => ({id: img.id, "
                               "alt: img.alt, complete: img.complete, width: img.naturalWidth}))")
        tables = page.evaluate("() => Array.from(document.querySelectorAll('table.configurations'))"
                               ".map(t => [t.dataset.target, t.rows.length])")
        problems = page.inner_text("#problems")
    finally:
        context.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert {img["id"] for img in images} == {f"plot-{t}-{k}" for t in ("onnx", "android", "cortex-m4")
                                             for k in ("accuracy-vs-size", "accuracy-vs-latency", "size-breakdown")}
    for img in images:
        assert img["complete"] and img["width"] > 0 and img["alt"], img
    assert sorted(tables) == [["android", 5], ["cortex-m4", 5], ["onnx", 5]]  # header + 4 recipes each
    assert "pal4" in problems and "the C library runs int8 kernels" in problems
    assert all(url.startswith("file://") for url in requests), requests


def test_trained_variants_are_rows_of_the_grid(tmp_path):
    """--variant adds a trained model (here the binary-weight digits CNN) as one more row."""
    pytest.importorskip("torch", reason="torch is not installed (the exports need it)")
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'edgeport[sweep]')")
    out = tmp_path / "out"
    binary = "samples.digits_lowbit.model:binary"
    result = run_cli("sweep", DIGITS, "--targets", "onnx", "--recipes", "int8", "--variant", f"binary={binary}",
                     "--calib", CALIB, "--eval", EVAL, "--out", str(out), "--workers", "1", "--runs", "5")
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "sweep.json").read_text())
    assert data["recipes"]["binary"]["source"] == binary and data["recipes"]["binary"]["quantize"] == "int8"
    rows = {c["recipe"]: c for c in data["configurations"]}
    assert set(rows) == {"int8", "binary"} and all(c["status"] == OK for c in rows.values())
    assert rows["binary"]["accuracy"] >= rows["int8"]["accuracy"] - 0.03
    assert binary in (out / "report.html").read_text()
    bad = run_cli("sweep", DIGITS, "--variant", "no-source", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "NAME=SOURCE[@RECIPE]" in bad.stderr
