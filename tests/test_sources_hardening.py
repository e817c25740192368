"""Malformed model files and sources: exit 2, one line naming the file (and the tensor, node or
factory), nothing written. ONNX external data: resolved beside the model, never outside it."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import fuzzing
from conftest import needs_litert, needs_torch
from edgeport.cli import main

ONNX_FLAGS = ["--target", "onnx", "--runs", "2", "--warmup", "0"]


def run(argv: list[str], capfd) -> tuple[int, list[str]]:
    """`edgeport` in-process; the exit code and the stderr lines (file descriptor 2, so native
    libraries' log lines count too)."""
    code = main(argv)
    err = capfd.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def refused(argv: list[str], capfd, *expected: str, out: Path | None = None) -> str:
    code, lines = run(argv, capfd)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("edgeport: error: ") and "Traceback" not in lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    if out is not None:
        assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".out")]
    return lines[0]


# ------------------------------------------------------------------ ONNX external data

def _external_model(folder: Path, location: str = "weights.bin") -> Path:
    from onnx.external_data_helper import convert_model_to_external_data

    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load_from_string(fuzzing.tiny_onnx())
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location=location, size_threshold=0)
    onnx.save(model, str(folder / "model.onnx"))
    return folder / "model.onnx"


@pytest.mark.parametrize("cwd", ["model folder", "elsewhere"])
@pytest.mark.parametrize("quantize", ["none", "fp16"])
def test_external_data_resolved_beside_the_model(tmp_path, monkeypatch, capfd, cwd, quantize):
    model = _external_model(tmp_path / "m")
    monkeypatch.chdir(model.parent if cwd == "model folder" else tmp_path)
    out = tmp_path / "out"
    code, lines = run(["export", str(model.relative_to(Path.cwd())) if cwd == "model folder" else str(model),
                       *ONNX_FLAGS, "--quantize", quantize, "--out", str(out)], capfd)
    assert code == 0 and not lines, lines
    exported = out / "onnx" / "model.onnx"
    assert exported.is_file() and not (out / "onnx" / "weights.bin").exists()  # self-contained
    import onnx

    assert not any(t.data_location == TensorProto.EXTERNAL for t in onnx.load(str(exported)).graph.initializer)


def _pointing(tmp_path: Path, how: str) -> Path:
    """A model whose external data is reached in a way that leaves its folder."""
    outside = tmp_path / "secret.bin"
    model = _external_model(tmp_path / "m")
    (model.parent / "weights.bin").rename(outside)
    if how == "dotdot":
        _relocate(model, "../secret.bin")
    elif how == "absolute":
        _relocate(model, str(outside))
    elif how == "symlink":
        os.symlink(outside, model.parent / "weights.bin")
    elif how == "hardlink":
        os.link(outside, model.parent / "weights.bin")
    elif how == "missing":
        pass
    return model


def _relocate(model: Path, location: str) -> None:
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(proto, str(model))


@pytest.mark.parametrize("how,message", [
    ("dotdot", "outside the model's folder"),
    ("absolute", "give a relative path inside the model's folder"),
    ("symlink", "outside the model's folder"),
    ("hardlink", "hard links"),
    ("missing", "does not exist"),
])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, capfd, how, message):
    model = _pointing(tmp_path, how)
    out = tmp_path / "out"
    line = refused(["export", str(model), *ONNX_FLAGS, "--out", str(out)], capfd, str(model), message, out=out)
    assert "tensor '" in line


def test_external_data_past_the_end_of_its_file(tmp_path, capfd):
    model = _external_model(tmp_path / "m")
    (model.parent / "weights.bin").write_bytes((model.parent / "weights.bin").read_bytes()[:100])
    refused(["export", str(model), *ONNX_FLAGS, "--out", str(tmp_path / "out")], capfd, "outside the file")


# ------------------------------------------------------------------ damaged ONNX

def _save(tmp_path: Path, data: bytes, name: str = "model.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_onnx_name_not_utf8(tmp_path, capfd):
    path = _save(tmp_path, fuzzing.tiny_onnx().replace(b"conv_w", b"\xff\xfe_w\xff\xff", 1))
    refused(["export", str(path), *ONNX_FLAGS], capfd, str(path), "is not valid UTF-8")


def _edited(edit) -> bytes:
    import onnx

    model = onnx.load_from_string(fuzzing.qdq_onnx())
    edit(model)
    return model.SerializeToString()


def _set_init(name, value):
    def edit(model):
        for i, init in enumerate(model.graph.initializer):
            if init.name == name:
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.asarray(value), name))
    return edit


@pytest.mark.parametrize("value", [np.float32("nan"), np.float32("inf"), np.float32(0), np.float32(-0.5)])
def test_qdq_scale_not_finite_positive(tmp_path, capfd, value):
    path = _save(tmp_path, _edited(_set_init("x_scale", value)))
    refused(["export", str(path), *ONNX_FLAGS], capfd, str(path), "'quant_in'", "scale 'x_scale'", "finite and positive")


def test_qdq_per_channel_scale_nan(tmp_path, capfd):
    path = _save(tmp_path, _edited(_set_init("w_scale", np.array([0.01, np.nan], np.float32))))
    refused(["export", str(path), *ONNX_FLAGS], capfd, "'dequant_w'", "scale 'w_scale'")


def test_onnx_without_outputs(tmp_path, capfd):
    path = _save(tmp_path, _edited(lambda m: m.graph.ClearField("output")))
    refused(["export", str(path), *ONNX_FLAGS], capfd, str(path), "declares no outputs")


def test_onnx_declaring_a_tib_input(tmp_path, capfd):
    def edit(model):
        for d, v in zip(model.graph.input[0].type.tensor_type.shape.dim, [1, 1 << 14, 1 << 14, 1 << 14]):
            d.dim_value = v
    path = _save(tmp_path, _edited(edit))
    refused(["export", str(path), *ONNX_FLAGS], capfd, str(path), "input 'input'")


def test_onnx_that_loads_but_cannot_run(tmp_path, capfd):
    """A Reshape to a shape its input cannot take: onnxruntime loads it, inference fails."""
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["output"], name="reshape")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 6])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [5, 7])],
                              [numpy_helper.from_array(np.array([5, 7], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = _save(tmp_path, model.SerializeToString())
    refused(["export", str(path), *ONNX_FLAGS], capfd, str(path), "onnxruntime loads it but cannot run it")


def test_onnxruntime_warnings_stay_off_stderr(tmp_path, capfd):
    """An unused initializer makes onnxruntime log a warning at its default severity."""
    def edit(model):
        model.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "unused"))
    path = _save(tmp_path, _edited(edit))
    code, lines = run(["export", str(path), *ONNX_FLAGS, "--out", str(tmp_path / "out")], capfd)
    assert code == 0 and lines == []


# ------------------------------------------------------------------ damaged TFLite

def _tflite_edit(tmp_path: Path, edit) -> Path:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(fuzzing.tiny_tflite()), 0)
    edit(model.subgraphs[0])
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return _save(tmp_path, bytes(builder.Output()), "model.tflite")


def _tensor(graph, name: str):
    return next(t for t in graph.tensors if t.name == name.encode())


def _quant(name: str, scale=None, zero_point=None):
    def edit(graph):
        q = _tensor(graph, name).quantization
        if scale is not None:
            q.scale = np.full(len(q.scale), scale, np.float32)
        if zero_point is not None:
            q.zeroPoint = np.full(len(q.scale), zero_point, np.int64)
    return edit


@needs_litert
@pytest.mark.parametrize("edit,message", [
    (_quant("fc9", scale=np.nan), "tensor 'fc9' (index 9): quantization scale nan is not finite and positive"),
    (_quant("conv3", scale=0.0), "tensor 'conv3' (index 3): quantization scale 0.0"),
    (_quant("w1", scale=-1.0), "tensor 'w1' (index 1): quantization scale -1.0"),
    (_quant("input", zero_point=300), "tensor 'input' (index 0): zero point 300 is outside the range of int8"),
    (_quant("softmax10", zero_point=-129), "zero point -129"),
    (lambda g: setattr(g.operators[0], "inputs", np.array([-1, 1, 2], np.int32)), ""),
    (lambda g: setattr(g, "inputs", np.array([-1], np.int32)), "tensor -1"),
    (lambda g: setattr(_tensor(g, "input"), "name", b"\xff\xfe\xfd"), "LiteRT cannot load it"),
    (lambda g: setattr(_tensor(g, "input"), "shape", np.array([1, 1 << 15, 1 << 15, 1 << 10], np.int32)),
     "input '"),
    (lambda g: setattr(g.operators[-1].builtinOptions, "beta", float("nan")), "option beta = nan"),
], ids=["nan-scale", "zero-scale", "negative-weight-scale", "zero-point-300", "zero-point--129", "op-input--1",
        "graph-input--1", "name-not-utf8", "tib-input", "nan-softmax-beta"])
def test_bad_tflite_refused(tmp_path, capfd, edit, message):
    path = _tflite_edit(tmp_path, edit)
    out = tmp_path / "out"
    refused(["export", str(path), "--target", "cortex-m4", "--out", str(out)], capfd, str(path), message, out=out)


@needs_litert
def test_bad_tflite_refused_by_check(tmp_path, capfd):
    path = _tflite_edit(tmp_path, _quant("fc9", scale=np.nan))
    refused(["check", str(path), "--target", "android", "--report", str(tmp_path / "r.json")], capfd,
            "tensor 'fc9'", "not finite and positive")


# ------------------------------------------------------------------ PyTorch factories

FACTORIES = {
    "raises": ("import torch\ndef build():\n    raise RuntimeError('weights file missing\\nsecond line')\n",
               "factory 'build' raised RuntimeError: weights file missing"),
    "needs_args": ("import torch\ndef build(width, depth=2):\n    return torch.nn.Linear(width, 2)\n",
                   "factory 'build' cannot be called without arguments"),
    "import_fails": ("import torch\nraise ValueError('bad config at import')\ndef build():\n    pass\n",
                     "importing module '{module}' failed: ValueError: bad config at import"),
    "syntax_error": ("def build(:\n    pass\n", "importing module '{module}' failed: SyntaxError"),
    "exits": ("import sys\nsys.exit('no GPU')\n", "importing module '{module}' failed: SystemExit: no GPU"),
}


@needs_torch
@pytest.mark.parametrize("kind", list(FACTORIES))
def test_factory_failures(tmp_path, monkeypatch, capfd, kind):
    code_text, message = FACTORIES[kind]
    module = f"fuzz_factory_{kind}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(code_text))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    refused(["export", f"{module}:build", "--input-shape", "1,4", *ONNX_FLAGS, "--out", str(out)], capfd,
            f"{module}:build", message.format(module=module), out=out)
