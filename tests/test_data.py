"""Calibration / eval data sources: .npy, .npz, a folder of them, a Python callable."""

import numpy as np
import pytest

from edgeport.data import load_dataset, sample_shape
from edgeport.errors import InputError
from edgeport.tensors import TensorSpec

from conftest import ROOT, run_cli

INPUTS = [TensorSpec("input", (None, 1, 8, 8), "float32")]


def test_npy_and_npz_with_labels(tmp_path):
    x = np.random.default_rng(0).random((5, 1, 8, 8))  # float64 on disk: converted to the model dtype
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", x=x, y=np.eye(10)[[1, 2, 3, 4, 5]])  # one-hot labels
    a = load_dataset(str(tmp_path / "a.npy"), INPUTS)
    b = load_dataset(str(tmp_path / "b.npz"), INPUTS)
    assert a.feeds["input"].dtype == np.float32 and len(a) == 5 and a.labels is None
    np.testing.assert_array_equal(b.labels, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(a.feeds["input"], b.feeds["input"])
    assert sample_shape(str(tmp_path / "b.npz")) == (1, 8, 8)


def test_npz_keyed_by_input_name(tmp_path):
    np.savez(tmp_path / "named.npz", input=np.random.default_rng(0).random((3, 1, 8, 8), np.float32), labels=np.arange(3))
    data = load_dataset(str(tmp_path / "named.npz"), INPUTS)
    assert len(data) == 3 and data.labels.tolist() == [0, 1, 2]


def test_folder_of_single_samples_and_batches(tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(3):  # one sample per file, no batch axis
        np.save(folder / f"{i:02d}.npy", np.full((1, 8, 8), i, np.float32))
    np.save(folder / "10.npy", np.full((2, 1, 8, 8), 9, np.float32))  # a batch of two
    data = load_dataset(str(folder), INPUTS)
    assert len(data) == 5
    assert data.feeds["input"][:, 0, 0, 0].tolist() == [0, 1, 2, 9, 9]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="folder has no .npy or .npz files"):
        load_dataset(str(tmp_path / "empty"), INPUTS)


def test_python_callable(monkeypatch):
    monkeypatch.chdir(ROOT)
    data = load_dataset("samples.digits.data:evaluation", INPUTS, "eval data")
    assert len(data) == 359 and data.labels is not None and data.feeds["input"].shape == (359, 1, 8, 8)
    with pytest.raises(InputError, match="cannot load callable"):
        load_dataset("samples.digits.data:nothing_here", INPUTS)


def test_ort_missing_kernel_is_named_with_its_node(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Acosh", ["x"], ["y"], name="acosh_node")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 4])])
    path = tmp_path / "acosh.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    result = run_cli("check", str(path), "--target", "onnx")
    assert result.returncode == 2
    assert result.stderr.strip() == ("edgeport: error: unsupported op 'Acosh' at node 'acosh_node': "
                                     "onnxruntime has no kernel for it")


STATEFUL = [TensorSpec("input", (None, 16), "float32"), TensorSpec("state", (2, None, 4), "float32"),
            TensorSpec("sr", (), "int64")]


def test_inputs_without_a_batch_axis_first_are_given_whole_per_sample(tmp_path):
    """A recurrent state [2, batch, 4] and a scalar sample rate (silero-vad's inputs): their arrays
    are [N, *shape], one whole tensor per sample, next to a batched [N, 16] input."""
    from edgeport.tensors import fit_feeds

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "vad.npz", input=rng.random((3, 16)), state=rng.random((3, 2, 1, 4)), sr=np.full(3, 16000))
    data = load_dataset(str(tmp_path / "vad.npz"), STATEFUL)
    assert len(data) == 3 and data.feeds["sr"].dtype == np.int64
    one = fit_feeds(next(data.batches(1)), STATEFUL)
    assert one["input"].shape == (1, 16) and one["state"].shape == (2, 1, 4) and one["sr"].shape == ()
    assert isinstance(one["sr"], np.ndarray)  # a 0-d array (runtimes refuse NumPy scalars)


def test_a_whole_input_of_the_wrong_shape_names_the_shape_it_needs(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "vad.npz", input=rng.random((3, 16)), state=rng.random((3, 1, 4)), sr=np.full(3, 16000))
    with pytest.raises(InputError, match=r"array for input 'state' has shape \[3, 1, 4\], model expects "
                                         r"\[N,2,\?,4\] \(input shape \[2, None, 4\] has no batch axis first"):
        load_dataset(str(tmp_path / "vad.npz"), STATEFUL)
