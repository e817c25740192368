"""Hardening (#14): the output folder never loses a user's file, bad data and hostile numbers are
refused in one line (exit 2), internal errors are one line (exit 3), signals stop a run cleanly
(130 / 143), and a wrong artifact does not pass with exit 0."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import CALIB, EVAL, ROOT, load_report, run_cli
from edgeport import cli
from edgeport.budgets import self_checks

e2e = pytest.mark.e2e  # each runs the real CLI in a subprocess


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder.parent)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.parent.rglob("*"))}


def _one_line_exit_2(result, message: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert message in lines[0], lines[0]
    return lines[0]


def _export(float_onnx, out, *extra, **kw):
    return run_cli("export", str(float_onnx), "--out", str(out), "--runs", "2", "--warmup", "0", *extra, **kw)


# ------------------------------------------------------------------ the output folder

@e2e
def test_user_files_in_out_are_refused_and_kept(tmp_path, float_onnx):
    out = tmp_path / "release"
    out.mkdir()
    (out / "report.json").write_text("my own notes")
    (out / "NOTES.md").write_text("keep me")
    before = _snapshot(out)
    _one_line_exit_2(_export(float_onnx, out), "holds files edgeport did not write (NOTES.md, report.json)")
    assert _snapshot(out) == before


@e2e
def test_force_adds_beside_user_files_but_never_replaces_them(tmp_path, float_onnx):
    out = tmp_path / "release"
    out.mkdir()
    (out / "NOTES.md").write_text("keep me")
    result = _export(float_onnx, out, "--force")
    assert result.returncode == 0, result.stderr
    assert (out / "NOTES.md").read_text() == "keep me"
    assert (out / "onnx" / "digits.onnx").is_file()
    assert "NOTES.md" not in load_report(out)["files"]
    (out / "onnx").rename(tmp_path / "elsewhere")
    (out / "onnx").write_text("a user's file named like a target")
    _one_line_exit_2(_export(float_onnx, out, "--force"), "'onnx' is not from an earlier edgeport export")
    assert (out / "onnx").read_text() == "a user's file named like a target"


@e2e
def test_reexport_replaces_only_edgeports_files(tmp_path, float_onnx):
    out = tmp_path / "release"
    assert _export(float_onnx, out).returncode == 0
    files = load_report(out)["files"]
    assert "onnx/digits.onnx" in files and "report.json" in files
    (out / "mine.txt").write_text("mine")  # beside edgeport's entries: kept, no --force needed
    assert _export(float_onnx, out, "--quantize", "fp16").returncode == 0
    assert (out / "mine.txt").read_text() == "mine"
    assert load_report(out)["recipe"]["quantize"] == "fp16"
    (out / "onnx" / "NOTES.md").write_text("a user's note inside edgeport's folder")
    before = _snapshot(out)
    _one_line_exit_2(_export(float_onnx, out), "onnx/NOTES.md was not written by edgeport")
    assert _snapshot(out) == before


@e2e
@pytest.mark.parametrize("where", ["root", "home", "source folder"])
def test_dangerous_out_folders_are_refused(tmp_path, float_onnx, where):
    out = {"root": "/", "home": str(Path.home()), "source folder": str(float_onnx.parent)}[where]
    message = {"root": "filesystem root", "home": "home folder", "source folder": "holds the source model"}[where]
    _one_line_exit_2(_export(float_onnx, out, "--force"), message)


@e2e
def test_out_under_a_file_or_in_a_read_only_folder(tmp_path, float_onnx):
    (tmp_path / "file").write_text("x")
    _one_line_exit_2(_export(float_onnx, tmp_path / "file" / "out"), "a part of the path is a file")
    if os.geteuid() == 0:
        return  # root writes into read-only folders
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _one_line_exit_2(_export(float_onnx, locked / "out"), "permission denied")
    finally:
        locked.chmod(0o755)


@e2e
def test_check_report_goes_to_the_current_folder_and_names_its_path(tmp_path, float_onnx):
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("check", str(float_onnx), "--target", "onnx", "--runs", "2", cwd=work)
    assert result.returncode == 0, result.stderr
    assert f"report: {float_onnx.stem}.report.json" in result.stdout
    assert (work / f"{float_onnx.stem}.report.json").is_file()
    missing = run_cli("check", str(float_onnx), "--target", "onnx", "--report", str(tmp_path / "no" / "r.json"))
    _one_line_exit_2(missing, "does not exist")
    mine = work / "mine.json"
    mine.write_text("not a report")
    _one_line_exit_2(run_cli("check", str(float_onnx), "--target", "onnx", "--report", str(mine)),
                     "exists and is not an edgeport report")
    assert mine.read_text() == "not a report"


# ------------------------------------------------------------------ data

@e2e
@pytest.mark.parametrize("bad", ["nan", "inf", "constant"])
def test_bad_calibration_values_are_refused(tmp_path, float_onnx, bad):
    x = np.random.default_rng(0).random((16, 1, 8, 8), np.float32)
    if bad == "constant":
        x[:] = 0.5
    else:
        x[3, 0, 2, 2] = np.nan if bad == "nan" else np.inf
    path = tmp_path / "calib.npz"
    np.savez(path, x=x)
    out = tmp_path / "out"
    message = {"nan": "holds 1 NaN value(s) (first at sample 3)", "inf": "holds 1 infinite value(s)",
               "constant": "is one constant (0.5)"}[bad]
    _one_line_exit_2(_export(float_onnx, out, "--quantize", "int8", "--calib", str(path)), message)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["calib.npz"]


@e2e
def test_hostile_npy_headers_are_refused_before_allocation(tmp_path, float_onnx):
    huge = tmp_path / "huge.npy"
    with open(huge, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (1 << 20, 1, 8, 1 << 20)})
        f.write(b"\0" * 64)
    _one_line_exit_2(_export(float_onnx, tmp_path / "o", "--calib", str(huge), "--quantize", "int8"),
                     "truncated or corrupt")
    truncated = tmp_path / "t.npy"
    np.save(truncated, np.ones((10, 1, 8, 8), np.float32))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    _one_line_exit_2(_export(float_onnx, tmp_path / "o", "--eval", str(truncated)), "unreadable")


@e2e
def test_calibration_folder_with_mismatched_shapes(tmp_path, float_onnx):
    folder = tmp_path / "calib"
    folder.mkdir()
    np.save(folder / "a.npy", np.random.default_rng(0).random((4, 1, 8, 8), np.float32))
    np.save(folder / "b.npy", np.random.default_rng(1).random((4, 1, 7, 7), np.float32))
    _one_line_exit_2(_export(float_onnx, tmp_path / "o", "--quantize", "int8", "--calib", str(folder)),
                     "sample shape [1, 8, 8] in a.npy but [1, 7, 7] in b.npy")


@e2e
def test_calibration_callable_that_raises(tmp_path, float_onnx):
    (tmp_path / "mydata.py").write_text("def calib():\n    raise ValueError('no data today')\n")
    result = _export(float_onnx, tmp_path / "o", "--quantize", "int8", "--calib", "mydata:calib", cwd=tmp_path)
    _one_line_exit_2(result, "mydata:calib: the function raised ValueError: no data today")


# ------------------------------------------------------------------ numbers and flags

@e2e
@pytest.mark.parametrize("args, message", [
    (["--threads", "100000"], "--threads must be a whole number from 1 to"),
    (["--runs", "-1"], "--runs must be a whole number from 1"),
    (["--max-latency", "nan"], "max_latency: must be a finite number >= 0, not 'nan'"),
    (["--max-size", "inf"], "max_size: cannot read 'inf'"),
    (["--max-flash", "100KB"], "max_flash applies to Cortex-M targets only"),
    (["--input-shape", "1,100000,100000,100000"], "more than this machine can spare"),
])
def test_hostile_numbers_are_refused(tmp_path, args, message):
    out = tmp_path / "o"
    result = run_cli("export", "samples.digits.model:build", "--out", str(out), *args)
    _one_line_exit_2(result, message)
    assert list(tmp_path.iterdir()) == []


def test_internal_error_is_one_line_with_a_log(tmp_path, monkeypatch, capsys):
    import edgeport.pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(edgeport.pipeline, "export", broken)
    monkeypatch.setenv("EDGEPORT_LOG_DIR", str(tmp_path))
    assert cli.main(["export", "samples.digits.model:build", "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgeport: internal error during ")
    assert "ZeroDivisionError: a bug" in err[0] and "please report it" in err[0]
    log = next(tmp_path.glob("edgeport-crash-*.log"))
    assert log.name in err[0] and "Traceback" in log.read_text()


# ------------------------------------------------------------------ self-checks

def test_self_checks_fail_wrong_numbers_unless_allowed():
    measured = {"cortex-m4": {"bit_exact": {"samples": 40, "identical": 7, "bit_exact": False, "max_diff_steps": 67},
                              "parity": {"cosine": 0.42}},
                "onnx": {"parity": {"cosine": float("nan")}}}
    results = self_checks(measured, parity_floor=0.8)
    assert [(r.budget, r.target, r.ok) for r in results] == [
        ("bit_exact", "cortex-m4", False), ("parity", "cortex-m4", False), ("parity", "onnx", False)]
    assert "7/40 outputs bit-exact" in results[0].message and "--allow-mismatch" in results[0].message
    allowed = self_checks(measured, parity_floor=0.8, allow_mismatch=True)
    assert all(r.ok and r.warning for r in allowed)
    assert [r.ok for r in self_checks({"onnx": {"parity": {"cosine": 0.99}}}, 0.8)] == [True]


@e2e
def test_self_checks_are_in_the_report(tmp_path, float_onnx):
    out = tmp_path / "o"
    result = _export(float_onnx, out, "--quantize", "int8", "--calib", CALIB, "--eval", EVAL)
    assert result.returncode == 0, result.stderr
    rows = load_report(out)["self_checks"]
    assert [(r["budget"], r["ok"]) for r in rows] == [("parity", True)]
    assert rows[0]["limit"] == 0.8 and rows[0]["measured"] > 0.99
    assert "OK  self-checks: 1 passed (parity)" in result.stdout


# ------------------------------------------------------------------ signals

@e2e
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_an_export_and_leaves_the_output_as_it_was(tmp_path, float_onnx, signum, code):
    out = tmp_path / "release"
    assert _export(float_onnx, out).returncode == 0
    before = _snapshot(out)
    env = {**os.environ, "EDGEPORT_QUIET": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edgeport", "export", str(float_onnx), "--out", str(out),
                             "--quantize", "int8", "--calib", CALIB, "--eval", EVAL, "--runs", "1000000",
                             "--warmup", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(6)  # well into the latency runs
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "output folder was left as it was" in lines[0], stderr
    assert _snapshot(out) == before


def test_sweep_out_with_user_files_is_refused(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "report.html").write_text("my page")
    assert cli.main(["sweep", "samples.digits.model:build", "--recipes", "fp32", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds files edgeport did not write (report.html)" in err[0]
    assert (out / "report.html").read_text() == "my page" and len(list(out.iterdir())) == 1


@e2e
@pytest.mark.parametrize("case", ["name too long", "failed run"])
def test_a_failed_run_leaves_no_folder_it_made(tmp_path, float_onnx, case):
    if case == "name too long":
        out = tmp_path / "a" / "b" / ("y" * 300)
        result = _export(float_onnx, out)
        _one_line_exit_2(result, "--out")
    else:
        out = tmp_path / "a" / "b" / "out"
        result = _export(float_onnx, out, "--quantize", "int8")  # int8 without --calib: refused after loading
        assert result.returncode == 2, result.stderr
    assert list(tmp_path.iterdir()) == []
