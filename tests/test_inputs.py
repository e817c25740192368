"""Inputs keep their names and types (#15): a PyTorch model's inputs are named after `forward()`'s
arguments, and data arrays named after them give the shapes and dtypes, so a model taking
`input_ids` and `attention_mask` exports with no --input-shape or --input-dtype."""

import json

import numpy as np
import onnx
import pytest

from conftest import load_report, run_cli

TEXT = "testmodels.text:build"


@pytest.fixture
def text_data(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "text.npz"
    np.savez(path, input_ids=rng.integers(0, 100, (24, 12)), attention_mask=(rng.random((24, 12)) > 0.2).astype(np.int64))
    return path


@pytest.mark.e2e
@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_named_int64_inputs_from_the_data(tmp_path, text_data, quantize):
    out = tmp_path / "out"
    result = run_cli("export", TEXT, "--target", "onnx", "--quantize", quantize, "--calib", str(text_data),
                     "--out", str(out), "--runs", "2", "--warmup", "0")
    assert result.returncode == 0, result.stderr
    graph = onnx.load(str(out / "onnx" / "text.onnx")).graph
    assert [(i.name, i.type.tensor_type.elem_type) for i in graph.input] == [
        ("input_ids", onnx.TensorProto.INT64), ("attention_mask", onnx.TensorProto.INT64)]
    parity = load_report(out)["targets"][0]["checks"]["parity"]
    assert parity["cosine"] >= (0.99999 if quantize == "none" else 0.98)


@pytest.mark.e2e
def test_onnx_source_with_int64_inputs_and_dims_from_the_data(tmp_path, text_data):
    """An .onnx text model (int64 ids and mask, sequence length left dynamic) exports to ONNX
    Runtime targets with the data keyed by input name, no --input-shape."""
    first = tmp_path / "first"
    assert run_cli("export", TEXT, "--target", "onnx", "--calib", str(text_data), "--out", str(first),
                   "--runs", "2", "--warmup", "0").returncode == 0
    source = onnx.load(str(first / "onnx" / "text.onnx"))
    for value in source.graph.input:  # as exporters write them: batch and sequence dynamic
        value.type.tensor_type.shape.dim[1].dim_param = "sequence"
    model = tmp_path / "text.onnx"
    onnx.save(source, str(model))
    out = tmp_path / "out"
    result = run_cli("export", str(model), "--target", "onnx,browser-ort", "--quantize", "dynamic-int8",
                     "--calib", str(text_data), "--out", str(out), "--runs", "2", "--warmup", "0")
    assert result.returncode == 0, result.stderr
    for target in load_report(out)["targets"]:
        assert target["checks"]["parity"]["cosine"] >= 0.99, target["target"]


@pytest.mark.e2e
def test_shapes_and_dtypes_by_name_from_flags(tmp_path, text_data):
    out = tmp_path / "out"
    result = run_cli("export", TEXT, "--target", "onnx", "--input-shape", "1,12", "--input-shape", "1,12",
                     "--input-dtype", "input_ids=int64", "--input-dtype", "attention_mask=int64",
                     "--eval", str(text_data), "--out", str(out), "--runs", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["targets"][0]["checks"]["parity"]["cosine"] >= 0.99999


@pytest.mark.e2e
@pytest.mark.parametrize("args, message", [
    (["--input-dtype", "token_ids=int64", "--input-shape", "1,12", "--input-shape", "1,12"],
     "--input-dtype names token_ids, but the inputs are input_ids, attention_mask"),
    (["--input-dtype", "int64", "--input-dtype", "mask=int64"], "do not mix DTYPE and NAME=DTYPE"),
])
def test_bad_input_dtypes(tmp_path, args, message):
    result = run_cli("export", TEXT, "--out", str(tmp_path / "o"), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.e2e
def test_data_arrays_that_are_not_the_arguments(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, ids=np.zeros((4, 12), np.int64), mask=np.ones((4, 12), np.int64))
    result = run_cli("export", TEXT, "--eval", str(path), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "the data's arrays (ids, mask) are not the first arguments of forward(input_ids, attention_mask)" \
        in result.stderr


def test_sample_specs_keep_integer_types(text_data):
    from edgeport.data import sample_specs

    assert sample_specs(str(text_data)) == {"input_ids": ((12,), "int64"), "attention_mask": ((12,), "int64")}
