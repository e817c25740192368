"""The fuzz harness in CI (issue #14): mutated `.onnx`, `.tflite`, `.npz` and TOML inputs and
hostile CLI arguments. Every run ends with exit 0, 1 or 2, one stderr line on exit 2, no traceback,
no signal, no hang, nothing left in or beside the output folder on failure, bounded memory.

`tests/fuzzing.py` makes and runs the cases; `benchmarks/fuzz.py` runs thousands of them. A failing
case reproduces from its index: `fuzzing.make_case(SEED, index)`.
"""

from __future__ import annotations

import importlib.util
import itertools

import pytest

import fuzzing

SEED = 14
CASES = 240          # in forked children (edgeport imported once)
SUBPROCESS_CASES = 12  # the same checks through a real `python -m edgeport`

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                reason="ai-edge-litert is not installed (the .tflite seeds need its schema)")


@pytest.fixture(scope="module")
def parent():
    fuzzing.prepare_parent()


def _report(outcomes) -> str:
    lines = []
    for o in outcomes:
        last = (o.stderr.strip().splitlines() or [""])[-1][:200]
        lines.append(f"case {o.case.index} [{o.case.kind}] {o.case.what[:120]}: {fuzzing.problems(o)} | "
                     f"argv {o.case.argv} | stderr: {last}")
    return "\n".join(lines)


@pytest.mark.e2e
def test_mutated_inputs(parent, tmp_path):
    outcomes = [fuzzing.run_case(fuzzing.make_case(SEED, i), tmp_path / f"case{i}") for i in range(CASES)]
    bad = [o for o in outcomes if fuzzing.problems(o)]
    assert not bad, f"{len(bad)} of {CASES} cases broke the promise:\n{_report(bad)}"
    codes = {o.exit_code for o in outcomes}
    assert {0, 2} <= codes  # the mutations reach both refusals and successful exports


@pytest.mark.e2e
def test_mutated_inputs_in_real_processes(tmp_path):
    """A sample through the real entry point: its real stderr, exit status and signals."""
    indices = range(CASES, CASES + SUBPROCESS_CASES)
    outcomes = [fuzzing.run_case(fuzzing.make_case(SEED, i), tmp_path / f"case{i}", subprocess_run=True)
                for i in indices]
    bad = [o for o in outcomes if fuzzing.problems(o)]
    assert not [o for o in bad if not _outside(o)], _report(bad)


def test_cases_are_deterministic():
    a, b = fuzzing.make_case(SEED, 7), fuzzing.make_case(SEED, 7)
    assert (a.what, a.argv, a.files) == (b.what, b.argv, b.files)
    kinds = {fuzzing.make_case(SEED, i).kind for i in range(60)}
    assert kinds == {"onnx", "qdq", "tflite", "npz", "toml", "path"}


# ------------------------------------------------------------------ CLI arguments (Hypothesis)

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

NUMBERS = st.one_of(
    st.integers(-3, 5).map(str),
    st.sampled_from(["0", "-1", "100000", "2147483648", "9223372036854775808", "1e400", "nan", "inf", "-inf",
                     "", "abc", "0x10", "1_000", "1e-320", "٣"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
SIZES = st.sampled_from(["100KB", "0", "-5MB", "nan", "1e400KB", "99999999999999999999GB", "KB", "1.5", "inf"])
SHAPES = st.one_of(st.sampled_from(["1,1,6,6", "1,1,6,7", "0,1,6,6", "-1,1,6,6", "1,99999999,99999,9999",
                                    "1,1,6", "", "a,b", "1,,6,6", "2147483648,1,6,6", "1,1,6,6,1"]),
                   st.lists(st.integers(-2, 1 << 40), min_size=1, max_size=6).map(lambda d: ",".join(map(str, d))))
PATHS = st.sampled_from(["out", "o ut", "-o", "/", ".", "..", "model", "model/model.onnx", "data.npz/x", "~",
                         "out/../out", "\u00fc", "x" * 300, "/proc/self/out", "out\nx"])
FLAGS = {
    "--threads": NUMBERS, "--runs": NUMBERS, "--warmup": NUMBERS, "--calib-samples": NUMBERS,
    "--max-latency": NUMBERS, "--min-agreement": st.one_of(NUMBERS, st.sampled_from(["99%", "101%", "-1%", "%"])),
    "--max-accuracy-drop": NUMBERS, "--max-size": SIZES, "--max-flash": SIZES, "--max-ram": SIZES,
    "--percentile": NUMBERS, "--prune": NUMBERS, "--palettize": NUMBERS, "--input-shape": SHAPES,
    "--quantize": st.sampled_from(["none", "fp16", "int8", "dynamic-int8", "int4", "", "NONE"]),
    "--target": st.sampled_from(["onnx", "onnx,onnx", "nope", "", ",", "all-but"]),
    "--out": PATHS, "--calib": PATHS, "--eval": PATHS, "--keep-float": st.sampled_from(["conv", "", "x" * 500]),
    "--override": st.sampled_from(["conv=int16", "conv=", "=float", "op_type:Conv=float", "x=y"]),
}
SWITCHES = ["--per-tensor", "--json", "--quiet", "--force"]

@st.composite
def cli_args(draw) -> list[str]:
    argv = ["export", "model/model.onnx", "--runs", "2", "--warmup", "0"]
    for flag in draw(st.lists(st.sampled_from(sorted(FLAGS)), min_size=1, max_size=4, unique=True)):
        argv += [flag, draw(FLAGS[flag])]
    argv += draw(st.lists(st.sampled_from(SWITCHES), max_size=2, unique=True))
    if "--out" not in argv:
        argv += ["--out", "out"]
    return argv


_counter = itertools.count()


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=cli_args())
def test_cli_arguments(parent, tmp_path, argv):
    case = fuzzing.Case(next(_counter), "cli", " ".join(argv), {"model/model.onnx": fuzzing.seed("tiny.onnx"),
                                                               "data.npz": fuzzing.seed("data.npz")}, argv)
    outcome = fuzzing.run_case(case, tmp_path / f"cli{case.index}")
    assert not fuzzing.problems(outcome), _report([outcome])
