"""Bad input: one clear line on stderr, exit code 2, no traceback, output folder untouched."""

import os
import textwrap

import numpy as np
import pytest
from onnx import TensorProto, helper

from conftest import CALIB, DIGITS, EVAL, ROOT, needs_torch, run_cli


@pytest.fixture
def out(tmp_path):
    """An output folder holding earlier results, which a failed run must leave exactly as they were."""
    folder = tmp_path / "out"
    (folder / "onnx").mkdir(parents=True)
    (folder / "onnx" / "digits.onnx").write_bytes(b"earlier artifact")
    (folder / "report.json").write_text('{"edgeport_report": 1, "files": ["onnx/digits.onnx", "report.json"]}')
    return folder


def _snapshot(folder):
    return {str(p.relative_to(folder.parent)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.parent.rglob("*"))}


def assert_clean_failure(result, message, before, out):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgeport: error: ") and "Traceback" not in result.stderr
    assert message in lines[0], lines[0]
    assert _snapshot(out) == before  # nothing written, nothing lost, no temp folders left


def _model_with_node(tmp_path, op_type, domain=""):
    node = helper.make_node(op_type, ["x"], ["y"], name="mystery_node", domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    path = tmp_path / f"{op_type}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_missing_model_file(tmp_path, out):
    before = _snapshot(out)
    result = run_cli("export", str(tmp_path / "nope.onnx"), "--out", str(out))
    assert_clean_failure(result, "nope.onnx: no such file", before, out)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_onnx(tmp_path, out, float_onnx, damage):
    data = float_onnx.read_bytes()
    bad = {"truncated": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b""}[damage]
    path = tmp_path / "damaged.onnx"
    path.write_bytes(bad)
    before = _snapshot(out)
    result = run_cli("export", str(path), "--out", str(out))
    expected = "file is empty" if damage == "empty" else "not a readable ONNX file (truncated or corrupt"
    assert_clean_failure(result, expected, before, out)


def test_damaged_onnx_for_check(tmp_path, float_onnx):
    path = tmp_path / "damaged.onnx"
    path.write_bytes(float_onnx.read_bytes()[:1000])
    result = run_cli("check", str(path), "--target", "onnx", cwd=tmp_path)
    assert result.returncode == 2 and "not a readable ONNX file" in result.stderr
    assert not (tmp_path / "damaged.report.json").exists()


@pytest.mark.parametrize("op_type,domain,message", [
    ("FancyOp", "", "unsupported op 'FancyOp' at node 'mystery_node': not an ONNX standard operator"),
    ("Mystery", "com.example", "unsupported op 'com.example:Mystery' at node 'mystery_node'"),
])
def test_unsupported_onnx_op(tmp_path, out, op_type, domain, message):
    path = _model_with_node(tmp_path, op_type, domain)
    before = _snapshot(out)
    assert_clean_failure(run_cli("export", str(path), "--out", str(out)), message, before, out)


@needs_torch
def test_unsupported_torch_op_names_op_and_node(tmp_path, out):
    (tmp_path / "mysterymodel.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        @torch.library.custom_op("edgeport_test::mystery", mutates_args=())
        def mystery(x: torch.Tensor) -> torch.Tensor:
            return x * 2

        @mystery.register_fake
        def _(x):
            return torch.empty_like(x)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)

            def forward(self, x):
                return mystery(self.fc(x))

        def build():
            return Net().eval()
    '''))
    before = _snapshot(out)
    result = run_cli("export", "mysterymodel:build", "--input-shape", "1,4", "--out", str(out), cwd=tmp_path)
    assert_clean_failure(result, "unsupported op 'edgeport_test.mystery' at node 'mystery'", before, out)


def test_wrong_input_shape_for_onnx(out, float_onnx):
    before = _snapshot(out)
    result = run_cli("export", str(float_onnx), "--input-shape", "1,1,9,9", "--out", str(out))
    assert_clean_failure(result, "input 'input' has shape [N,1,8,8], not [1,1,9,9]", before, out)


@needs_torch
def test_wrong_input_shape_for_torch(out):
    before = _snapshot(out)
    result = run_cli("export", DIGITS, "--input-shape", "1,1,12,12", "--out", str(out))
    assert_clean_failure(result, "model rejects input shape [1,1,12,12]", before, out)


def test_calibration_data_of_wrong_shape(tmp_path, out, float_onnx):
    bad = tmp_path / "calib.npz"
    np.savez(bad, x=np.zeros((10, 1, 7, 7), dtype=np.float32))
    before = _snapshot(out)
    result = run_cli("export", str(float_onnx), "--quantize", "int8", "--calib", str(bad), "--out", str(out))
    assert_clean_failure(result, "has shape [10, 1, 7, 7], model expects [N,1,8,8]", before, out)


@pytest.mark.parametrize("kind", ["corrupt", "missing", "not-numeric", "bad-labels"])
def test_unreadable_calibration_or_eval_data(tmp_path, out, float_onnx, kind):
    path = tmp_path / "data.npz"
    if kind == "corrupt":
        path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    elif kind == "not-numeric":
        np.save(tmp_path / "data.npy", np.array([["a"] * 64] * 3).reshape(3, 1, 8, 8))
        path = tmp_path / "data.npy"
    elif kind == "bad-labels":
        np.savez(path, x=np.zeros((4, 1, 8, 8), np.float32), y=np.zeros(3, np.int64))
    flag = "--eval" if kind == "bad-labels" else "--calib"
    before = _snapshot(out)
    result = run_cli("export", str(float_onnx), "--quantize", "int8", "--calib", CALIB, flag, str(path),
                     "--out", str(out))
    expected = {"corrupt": "unreadable", "missing": "no such file", "not-numeric": "not numeric",
                "bad-labels": "labels must be integer class ids, one per sample"}[kind]
    assert_clean_failure(result, expected, before, out)


@pytest.mark.parametrize("args,message", [
    (["--target", "gameboy"], "unknown target 'gameboy' (known: android, browser-ort, browser-tfjs, "
                              "cortex-m0, cortex-m3, cortex-m33, cortex-m4, cortex-m55, cortex-m7, ios, "
                              "nrf52840, onnx, onnx-mobile, rp2040, stm32f746, stm32l4r5; groups: browser)"),
    (["--quantize", "int3"], "unknown recipe 'int3' (known: none, fp16, dynamic-int8, int8, int16x8, weight-only-int8, weight-only-int4)"),
    (["--quantize", "int8", "--calibration", "entropy", "--calib", CALIB], "unknown calibration method 'entropy'"),
    (["--quantize", "int8"], "recipe 'int8' needs calibration data (--calib FILE)"),
    (["--max-size", "huge"], "max_size: cannot read 'huge'"),
    (["--max-accuracy-drop", "0.5"], "max_accuracy_drop needs labeled eval data (--eval)"),
    (["--runs", "0"], "--runs must be a whole number from 1 to 1,000,000, not 0"),
    (["--keep-float", "no_such_layer", "--quantize", "fp16"], "keep_float: 'no_such_layer' matches no layer"),
])
def test_bad_options(out, float_onnx, args, message):
    before = _snapshot(out)
    assert_clean_failure(run_cli("export", str(float_onnx), "--out", str(out), *args), message, before, out)


def test_source_a_target_cannot_start_from_is_refused_with_reason(out):
    before = _snapshot(out)
    tflite = ROOT / "tests" / "data" / "mlperf-tiny" / "kws_ref_model.tflite"
    result = run_cli("export", str(tflite), "--target", "android", "--out", str(out))
    assert_clean_failure(result, "an existing .tflite file exports to Cortex-M targets only", before, out)


def test_a_float_recipe_for_the_c_library_is_refused_with_reason(out, float_onnx):
    before = _snapshot(out)
    result = run_cli("export", str(float_onnx), "--target", "cortex-m4", "--out", str(out))
    assert_clean_failure(result, "cortex-m4: the C library runs int8 kernels", before, out)


@pytest.mark.parametrize("source,message", [
    ("weights.pt", "pickled PyTorch files are not loaded (unpickling runs code)"),
    ("samples.digits.model:nope", "module 'samples.digits.model' has no callable 'nope'"),
    ("no_such_pkg.model:build", "cannot import module 'no_such_pkg.model'"),
    ("broken.pt2", "not a readable torch.export .pt2 file"),
])
def test_bad_sources(tmp_path, out, source, message):
    if source.endswith((".pt", ".pt2")):
        (tmp_path / source).write_bytes(b"\x80\x04 not what it claims")
        source = str(tmp_path / source)
    before = _snapshot(out)
    result = run_cli("export", source, "--input-shape", "1,1,8,8", "--out", str(out))
    if "torch" in result.stderr and "needs the Python package" in result.stderr:
        pytest.skip("torch is not installed")
    assert_clean_failure(result, message, before, out)


def test_unknown_subcommand_and_flag_are_usage_errors():
    for args in (["frobnicate"], ["export", "--no-such-flag"]):
        result = run_cli(*args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith("edgeport: error: ")


def test_eval_file_used_for_success_path_is_valid():
    data = np.load(EVAL)
    assert data["x"].shape[1:] == (1, 8, 8) and len(data["x"]) == len(data["y"]) == 359
