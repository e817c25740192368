"""`import edgeport` and `edgeport --help` must stay fast: no model backend gets imported."""

import subprocess
import sys

HEAVY = ("torch", "tensorflow", "coremltools", "onnx", "onnxruntime", "ai_edge_litert", "litert_torch")

PROBE = """
import sys
{body}
heavy = [m for m in {heavy!r} if m in sys.modules]
print(",".join(heavy))
"""


def _loaded(body: str) -> list[str]:
    code = PROBE.format(body=body, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return [m for m in out.strip().split(",") if m]


def test_import_edgeport_loads_no_backend():
    assert _loaded("import edgeport; edgeport.__version__") == []


def test_help_loads_no_backend():
    body = ("from edgeport.cli import main\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "    main(['targets'])\n    try:\n        main(['export', '--help'])\n    except SystemExit:\n        pass")
    assert _loaded(body) == []


def test_help_teaches_examples_and_exit_codes():
    out = subprocess.run([sys.executable, "-m", "edgeport", "export", "--help"], capture_output=True, text=True).stdout
    assert "--quantize" in out and "examples:" in out and "exit codes" in out
