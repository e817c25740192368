"""Budgets turn measurements into exit codes through the real command line."""

import json

from conftest import EVAL, load_report, run_cli


def test_breached_budgets_exit_1_and_name_value_and_limit(tmp_path, float_onnx):
    out = tmp_path / "out"
    result = run_cli("export", str(float_onnx), "--quantize", "fp16", "--eval", EVAL, "--out", str(out),
                     "--max-size", "10KB", "--max-latency", "0.000001", "--min-agreement", "0.5", "--runs", "5")
    assert result.returncode == 1, result.stderr
    failures = result.stderr.strip().splitlines()
    assert len(failures) == 2
    size = load_report(out)["targets"][0]["checks"]["size"]["size_bytes"]
    assert failures[0] == (f"edgeport: budget max_size exceeded on onnx: artifact size {size:,} B "
                           "(limit <= 10,000 B)")
    assert failures[1].startswith("edgeport: budget max_latency exceeded on onnx: p50 latency ")
    assert failures[1].endswith("(limit <= 1e-06 ms)")
    report = load_report(out)
    assert report["exit_code"] == 1
    assert {b["budget"]: b["ok"] for b in report["budgets"]} == {
        "max_size": False, "max_latency": False, "min_agreement": True}
    assert (out / "onnx" / "digits.onnx").is_file()  # artifacts are kept for inspection
    assert "FAIL budget max_size" in result.stdout


def test_budgets_met_exit_0(tmp_path, float_onnx):
    out = tmp_path / "out"
    result = run_cli("export", str(float_onnx), "--eval", EVAL, "--out", str(out), "--max-size", "10MB",
                     "--min-agreement", "99%", "--max-accuracy-drop", "0.5", "--runs", "5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [b["ok"] for b in report["budgets"]] == [True, True, True]
    assert report["targets"][0]["checks"]["parity"]["top1_agreement"] == 1.0


def test_targets_lists_every_profile_with_reasons():
    result = run_cli("targets", "--json")
    assert result.returncode == 0
    targets = {t["name"]: t for t in json.loads(result.stdout)}
    assert {"onnx", "onnx-mobile", "android", "ios", "browser-tfjs", "browser-ort", "cortex-m4",
            "nrf52840"} <= set(targets)
    assert targets["onnx"]["available"] and targets["onnx"]["why_not"] == []
    assert targets["cortex-m4"]["format"] == "c" and targets["cortex-m4"]["runtime"] == "qemu"
    assert targets["nrf52840"]["flash_bytes"] == 1024 * 1024 and targets["nrf52840"]["ram_bytes"] == 256 * 1024
    table = run_cli("targets").stdout
    assert "onnx-mobile" in table and "yes" in table
