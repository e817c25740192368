"""The Gradle step of the Android sample (samples/android) exports, installs, and fails on a breach.

Runs the script the `edgeportExport` task runs, minus Gradle: the assets folder and the work
folder are temporary, and EDGEPORT is this interpreter's `-m edgeport`, passed as one multi-word
string.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import CALIB, EVAL, ROOT

SCRIPT = ROOT / "samples" / "android" / "edgeport_export.sh"
INSTALLED = ["digits.edgeport-report.json", "digits.tflite", "labels.txt"]

pytestmark = [
    pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed"),
    pytest.mark.skipif(" " in sys.executable, reason="the script splits EDGEPORT on spaces"),
]


@pytest.fixture(autouse=True)
def _needs_litert_torch():
    for module in ("torch", "litert_torch"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


def run_export(assets, out, **overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPORT")}
    env.update(EDGEPORT=f"{sys.executable} -m edgeport", EDGEPORT_QUIET="1", EDGEPORT_OUT=str(out),
               EDGEPORT_CALIB=CALIB, EDGEPORT_EVAL=EVAL)
    env.update(overrides)
    return subprocess.run(["bash", str(SCRIPT), str(assets)], cwd=ROOT, env=env, capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(assets folder, work folder, result) after one run with the default recipe and budgets."""
    assets = tmp_path_factory.mktemp("app") / "src" / "main" / "assets"
    out = tmp_path_factory.mktemp("build") / "edgeport"
    return assets, out, run_export(assets, out)


@pytest.mark.e2e
def test_default_budgets_install_the_model_labels_and_report(installed):
    assets, _, result = installed
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in assets.iterdir()) == INSTALLED
    assert (assets / "digits.tflite").read_bytes()[4:8] == b"TFL3"
    assert (assets / "labels.txt").read_text().splitlines() == [str(d) for d in range(10)]
    report = json.loads((assets / "digits.edgeport-report.json").read_text())
    target = report["targets"][0]
    assert target["target"] == "android"
    assert report["recipe"]["quantize"] == "int8"
    assert target["checks"]["accuracy"]["accuracy_drop_points"] <= 0.5
    assert f"edgeport: installed {assets / 'digits.tflite'}" in result.stdout


@pytest.mark.e2e
def test_breached_budget_fails_the_build_and_keeps_the_installed_model(installed):
    assets, out, first = installed
    assert first.returncode == 0, first.stderr
    files = [assets / name for name in INSTALLED]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in files]

    result = run_export(assets, out, EDGEPORT_BUDGETS="--max-size 1KB")

    assert result.returncode == 1, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert any(line.startswith("edgeport: budget max_size exceeded on android") for line in lines), lines
    assert result.stderr.splitlines()[-1] == f"edgeport: budget breached, see {out / 'report.json'}"
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in files] == before
    assert sorted(p.name for p in assets.iterdir()) == INSTALLED


def test_bad_input_exits_2_with_one_message_and_installs_nothing(tmp_path):
    assets = tmp_path / "assets"
    result = run_export(assets, tmp_path / "out", EDGEPORT_CALIB=str(tmp_path / "missing.npz"))

    assert result.returncode == 2, result.stderr
    errors = result.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith("edgeport: error: ") and "missing.npz" in errors[0], errors
    assert not assets.exists()
