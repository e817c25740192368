"""The layer contracts hold: `lint-imports` (contracts in pyproject.toml) and a value type that
loads no runtime, exporter or check."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str | None:
    """The `lint-imports` script of this Python's environment (import-linter, in the `test` extra)."""
    beside = Path(sys.executable).with_name("lint-imports")
    return str(beside) if beside.is_file() else shutil.which("lint-imports")


def test_import_contracts_are_kept():
    command = _lint_imports()
    if command is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    done = subprocess.run([command, "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_importing_a_value_type_loads_no_runtime_exporter_or_check():
    code = "import edgeport.data, sys; print(' '.join(sorted(m for m in sys.modules if m.startswith('edgeport'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "edgeport.data" in out
    assert [m for m in out if m.startswith(("edgeport.runtimes", "edgeport.exporters", "edgeport.checks"))] == []
