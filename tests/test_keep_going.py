"""Several targets, one failure (#15): with --keep-going every target that can be made is exported
and checked, the failed ones are listed with their one-line messages, and the exit code is 2 (3
for an internal error); without it the run stays all-or-nothing."""

import pytest

from conftest import CALIB, DIGITS, load_report, run_cli


@pytest.mark.e2e
def test_keep_going_exports_the_others_and_exits_2(tmp_path):
    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "onnx,cortex-m4", "--quantize", "int16x8", "--calib", CALIB,
                     "--out", str(out), "--runs", "2", "--warmup", "0", "--keep-going")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeport: error: 1 of 2 target(s) failed: cortex-m4 (")
    report = load_report(out)
    assert [(t["target"], t["status"]) for t in report["targets"]] == [("onnx", "exported"), ("cortex-m4", "failed")]
    assert "int8 kernels" in report["targets"][1]["reason"] and report["exit_code"] == 2
    assert (out / "onnx" / "digits.onnx").is_file() and not (out / "cortex-m4").exists()
    assert "cortex-m4: FAILED: " in result.stdout


@pytest.mark.e2e
def test_without_keep_going_the_run_is_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "onnx,cortex-m4", "--quantize", "int16x8", "--calib", CALIB,
                     "--out", str(out))
    assert result.returncode == 2 and not out.exists()


def test_an_internal_error_fails_its_target_with_exit_3(tmp_path, monkeypatch):
    from edgeport import plugins
    from edgeport.checks import CheckSettings
    from edgeport.pipeline import export

    def broken(job, target, path):
        raise ZeroDivisionError("converter bug")

    monkeypatch.setattr(plugins.exporters().get("ort"), "_export", broken)
    report = export("samples.digits.model:build", targets="onnx,onnx-mobile", out=tmp_path / "out",
                    input_shapes=[(1, 1, 8, 8)], settings=CheckSettings(runs=2, warmup=0), keep_going=True)
    failed = report.target("onnx-mobile")
    assert failed.status == "failed" and failed.failure == "internal"
    assert failed.reason == "internal error: ZeroDivisionError: converter bug (a bug in edgeport)"
    assert report.target("onnx").status == "exported" and report.exit_code == 3
    assert not (tmp_path / "out" / "onnx-mobile").exists()
