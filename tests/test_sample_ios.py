"""The Xcode build-phase sample (samples/ios) exports, installs, and fails the build on a breach.

Runs the script as Xcode would, minus Xcode: SRCROOT is a temporary app folder and EDGEPORT is
this interpreter's `-m edgeport`, passed as one multi-word string.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import CALIB, EVAL, ROOT, needs_torch

SCRIPT = ROOT / "samples" / "ios" / "edgeport_build_phase.sh"

pytestmark = [
    pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed"),
    pytest.mark.skipif(" " in sys.executable, reason="the script splits EDGEPORT on spaces"),
    needs_torch,
    pytest.mark.e2e,  # both tests convert with coremltools
]


@pytest.fixture(autouse=True)
def _needs_coremltools():
    if importlib.util.find_spec("coremltools") is None:
        pytest.skip("coremltools is not installed")


def run_phase(srcroot, out, **overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EDGEPORT") and k not in ("CONFIGURATION", "DERIVED_FILE_DIR",
                                                         "IPHONEOS_DEPLOYMENT_TARGET")}
    env.update(SRCROOT=str(srcroot), EDGEPORT=f"{sys.executable} -m edgeport", EDGEPORT_QUIET="1",
               EDGEPORT_OUT=str(out), EDGEPORT_CALIB=CALIB, EDGEPORT_EVAL=EVAL,
               CONFIGURATION="Debug", **overrides)
    return subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(srcroot, work folder, result) after one build phase run with the default budgets."""
    srcroot = tmp_path_factory.mktemp("xcode-project")
    out = tmp_path_factory.mktemp("derived") / "edgeport"
    return srcroot, out, run_phase(srcroot, out)


def test_default_budgets_install_the_package_and_report(installed):
    srcroot, _, result = installed
    assert result.returncode == 0, result.stderr
    models = srcroot / "App" / "Models"
    package = models / "digits.mlpackage"
    assert package.is_dir()
    assert (package / "Manifest.json").is_file()
    report = json.loads((models / "digits.edgeport-report.json").read_text())
    assert report["targets"][0]["target"] == "ios"
    assert sorted(p.name for p in models.iterdir()) == ["digits.edgeport-report.json", "digits.mlpackage"]
    assert f"edgeport: installed {package}" in result.stdout


def test_breached_budget_fails_the_build_and_keeps_the_installed_model(installed):
    srcroot, out, first = installed
    assert first.returncode == 0, first.stderr
    models = srcroot / "App" / "Models"
    manifest = models / "digits.mlpackage" / "Manifest.json"
    report_copy = models / "digits.edgeport-report.json"
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in (manifest, report_copy)]

    result = run_phase(srcroot, out, EDGEPORT_BUDGETS="--max-size 1KB")

    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: edgeport: budget")]
    assert errors, result.stderr
    assert errors[-1] == f"error: edgeport: budget breached, see {out / 'report.json'}"
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in (manifest, report_copy)] == before
    assert sorted(p.name for p in models.iterdir()) == ["digits.edgeport-report.json", "digits.mlpackage"]
