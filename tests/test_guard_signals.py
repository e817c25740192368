"""Signals around the output folder's final renames (issue #14): a signal before the last rename
leaves the folder exactly as it was (exit 130 / 143), one after it is too late to stop the run
(the export's own exit code); the line names the stage the signal came in."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from edgeport import guard
from edgeport.output import OutputFolder


def _folders(tmp_path: Path, existing: bool = True) -> tuple[Path, Path]:
    out, work = tmp_path / "out", tmp_path / ".out.edgeport-test"
    for folder, what in ([(out, "old")] if existing else []) + [(work, "new")]:
        for name in ("android", "cortex-m4", "onnx"):
            (folder / name).mkdir(parents=True)
            (folder / name / "model.bin").write_text(f"{what} {name}")
        (folder / "report.json").write_text(f"{what} report")
    return out, work


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("after", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_the_renames_puts_the_folder_back(tmp_path, monkeypatch, capsys, after, signum, code):
    out, work = _folders(tmp_path)
    before = _snapshot(out)
    replace, count = os.replace, [0]

    def replace_then_signal(src, dst):
        replace(src, dst)
        count[0] += 1
        if count[0] == after:
            os.kill(os.getpid(), signum)

    def run():
        with guard.stage("writing the output"):
            monkeypatch.setattr(os, "replace", replace_then_signal)
            OutputFolder(out, set()).commit(work)
        return 0

    assert guard.guarded(run) == code
    monkeypatch.setattr(os, "replace", replace)
    assert _snapshot(out) == before
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "during writing the output; the output folder was left as it was" in err[0]


def test_a_new_output_folder_is_removed_again(tmp_path, monkeypatch, capsys):
    out, work = _folders(tmp_path, existing=False)
    replace = os.replace

    def replace_then_signal(src, dst):
        replace(src, dst)
        os.kill(os.getpid(), signal.SIGINT)

    def run():
        monkeypatch.setattr(os, "replace", replace_then_signal)
        OutputFolder(out).commit(work)
        return 0

    assert guard.guarded(run) == 130
    assert not out.exists() and sorted(p.name for p in work.iterdir()) == ["android", "cortex-m4", "onnx",
                                                                         "report.json"]


def test_a_signal_after_the_output_is_written_does_not_stop_the_run(tmp_path, capsys):
    out, work = _folders(tmp_path)

    def run():
        with guard.stage("writing the output"):
            OutputFolder(out, set()).commit(work)
        os.kill(os.getpid(), signal.SIGTERM)  # the clean-up after the commit goes on
        with guard.stage("after"):
            pass
        return 1

    assert guard.guarded(run) == 1
    assert _snapshot(out)["onnx/model.bin"] == "new onnx" and capsys.readouterr().err == ""


def test_the_line_names_the_stage_the_signal_came_in(capsys):
    def run():
        with guard.stage("loading the model"):
            with guard.stage("export to ios"):
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # the handler runs at the next bytecode
                    pass
        return 0

    assert guard.guarded(run) == 130
    assert "interrupted (SIGINT) during export to ios;" in capsys.readouterr().err


def test_an_internal_error_names_its_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEPORT_LOG_DIR", str(tmp_path))

    def run():
        with guard.stage("checks on cortex-m4"):
            raise ZeroDivisionError("a bug")

    assert guard.guarded(run) == 3
    assert "internal error during checks on cortex-m4: ZeroDivisionError" in capsys.readouterr().err
