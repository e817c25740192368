"""Embedding tables int8 per row on every target (#16): the plan's row scales are what each
artifact stores, the lookups compute exactly the scaled int8 rows, and a model made mostly of an
embedding table is at most 0.3x its float size everywhere."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from conftest import load_report, run_cli

from edgeport.exporters.onnx import row_quantized_embeddings
from edgeport.quantizers import qmath
from edgeport.quantizers.embeddings import with_int8_embeddings
from edgeport.quantizers.plan import QuantPlan, WeightParams

RNG = np.random.default_rng(0)
TABLE = (RNG.standard_normal((300, 8)) * RNG.uniform(0.01, 3.0, (300, 1))).astype(np.float32)  # rows of every size
SCALES = qmath.weight_scales(TABLE, 0)
ROWS = qmath.dequantize(qmath.quantize(TABLE, SCALES, np.zeros(300, np.int32), axis=0), SCALES, 0, 0)


def _plan() -> QuantPlan:
    return QuantPlan(scheme="int8", embeddings={"table": WeightParams(SCALES.tolist(), [0] * 300, 0, "embed")})


def test_plan_json_keeps_the_row_scales():
    back = QuantPlan.from_json(_plan().to_json())
    assert np.array_equal(back.embeddings["table"].scale_array(), SCALES)


def test_onnx_lookup_returns_the_scaled_int8_rows():
    import onnxruntime as ort

    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["y"], name="embed")], "g",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 8])],
                              [numpy_helper.from_array(TABLE, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    written = row_quantized_embeddings(model, _plan())
    onnx.checker.check_model(model)
    assert written == ["embed_rows", "embed_cast", "embed_scales", "embed"]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert "table" not in inits and inits["table_quantized"].dtype == np.int8
    ids = RNG.integers(0, 300, (2, 5))
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0]
    assert np.array_equal(y, ROWS[ids])  # bit for bit: the same float32 products


def test_torch_module_looks_up_the_scaled_int8_rows():
    class Params:
        def torch_path(self, name):
            return {"table": "embed.weight"}.get(name)

    module = torch.nn.Sequential()
    module.add_module("embed", torch.nn.Embedding(300, 8))
    with torch.no_grad():
        module.embed.weight.copy_(torch.from_numpy(TABLE))
    rewritten, done, missing = with_int8_embeddings(module, Params(), _plan())
    assert done == ["embed"] and missing == [] and rewritten is not module
    assert isinstance(module.embed, torch.nn.Embedding)  # the original is left as it was
    ids = torch.from_numpy(RNG.integers(0, 300, (2, 5)))
    assert np.array_equal(rewritten(ids).detach().numpy(), ROWS[ids.numpy()])


def _token_data(path, vocab: int):
    """24 samples of 12 token ids below `vocab`, with a padding mask."""
    np.savez(path, input_ids=RNG.integers(0, vocab, (24, 12)),
             attention_mask=(RNG.random((24, 12)) > 0.2).astype(np.int64))
    return path


@pytest.fixture
def text_data(tmp_path):
    return _token_data(tmp_path / "text.npz", 4000)


@pytest.mark.e2e
@pytest.mark.parametrize("quantize", ["int8", "dynamic-int8"])
def test_text_model_is_a_quarter_of_float_on_every_target(tmp_path, text_data, quantize):
    out = tmp_path / "out"
    result = run_cli("export", "testmodels.text:build_large", "--target", "onnx,android,ios,browser-tfjs",
                     "--ios-target", "iOS17", "--quantize", quantize, "--calib", str(text_data),
                     "--out", str(out), "--runs", "2", "--warmup", "0")
    assert result.returncode == 0, result.stderr
    report = load_report(out)
    table = next(iter(QuantPlan.from_json((out / "quant_params.json").read_text()).embeddings.values()))
    assert table.axis == 0 and len(table.scale) == 4000
    for target in report["targets"]:
        checks = target["checks"]
        assert checks["size"]["alpha"] >= 1 / 0.3, (target["target"], checks["size"])
        assert checks["parity"]["cosine"] >= 0.999, target["target"]
        assert any("embedding tables int8" in n for n in target["notes"]), target["target"]
        params = checks["params"]
        assert params["exact"] == params["tensors_checked"] > 0, (target["target"], params)


WIDE = (RNG.standard_normal((300, 48)) * RNG.uniform(0.01, 3.0, (300, 1))).astype(np.float32)
INT4 = WeightParams(qmath.int4_scales(WIDE, 0, None).tolist(), [0] * 300, 0, "embed", bits=4)


def test_onnx_int4_lookup_returns_the_scaled_int4_rows():
    """int4 rows (--embedding-bits 4): GatherBlockQuantized on the int4 table, the row scale
    repeated per block of 16 (48 = 3 blocks), bit for bit the plan's rounded rows."""
    import onnxruntime as ort

    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["y"], name="embed")], "g",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 48])],
                              [numpy_helper.from_array(WIDE, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    written = row_quantized_embeddings(model, QuantPlan(scheme="weight-only-int4", embeddings={"table": INT4}))
    assert written == ["embed"] and model.graph.node[0].op_type == "GatherBlockQuantized"
    inits = {i.name: i for i in model.graph.initializer}
    assert inits["table_quantized"].data_type == TensorProto.INT4
    assert list(inits["table_row_scale"].dims) == [300, 3]
    ids = RNG.integers(0, 300, (2, 5))
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0]
    assert np.array_equal(y, INT4.rounded(WIDE)[ids])
    assert np.abs(INT4.rounded(WIDE) - WIDE).max() <= INT4.scale_array().max() / 2 + 1e-6


def test_int4_rows_only_for_tables_of_whole_blocks_and_int4_recipes():
    from edgeport.errors import InputError
    from edgeport.quantizers import plan_embeddings
    from edgeport.recipe import Recipe

    class Model:
        layers = {}

    tables = [WIDE, TABLE]  # 48 wide: int4 rows; 8 wide: narrower than a block of 16, int8 rows
    graph = helper.make_graph([helper.make_node("Gather", [f"t{i}", "ids"], [f"y{i}"], name=f"e{i}") for i in (0, 1)],
                              "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None) for i in (0, 1)],
                              [numpy_helper.from_array(t, f"t{i}") for i, t in enumerate(tables)])
    planned = plan_embeddings(Model(), helper.make_model(graph), set(), {}, bits=4)
    assert (planned["t0"].bits, planned["t1"].bits) == (4, 8)
    assert Recipe(quantize="weight-only-int4", embedding_bits=4).describe().endswith("int4 embedding rows")
    with pytest.raises(InputError, match="weight-only-int4"):
        Recipe(quantize="int8", embedding_bits=4)
    with pytest.raises(InputError, match="8 or 4"):
        Recipe(quantize="weight-only-int4", embedding_bits=2)


@pytest.fixture
def wide_data(tmp_path):
    return _token_data(tmp_path / "wide.npz", 2000)


def test_ids_beyond_the_table_are_bad_input(tmp_path, text_data):
    result = run_cli("export", "testmodels.text:build_wide", "--target", "onnx", "--calib", str(text_data),
                     "--out", str(tmp_path / "out"), "--runs", "1", "--warmup", "0")
    assert result.returncode == 2, result.stderr
    assert "beyond the 2000 rows of the table" in result.stderr and "node 'node_embedding'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_text_model_int4_rows_below_0_17_of_float(tmp_path, wide_data):
    """weight-only-int4 with --embedding-bits 4: every target that takes int4 holds the table as
    int4 rows and a model made mostly of a table 128 wide is at most 0.17x float."""
    out = tmp_path / "out"
    result = run_cli("export", "testmodels.text:build_wide", "--target", "onnx,android,ios,browser-ort",
                     "--ios-target", "iOS18", "--quantize", "weight-only-int4", "--embedding-bits", "4",
                     "--calib", str(wide_data), "--eval", str(wide_data), "--out", str(out), "--runs", "2",
                     "--warmup", "0")
    assert result.returncode == 0, result.stderr
    table = next(iter(QuantPlan.from_json((out / "quant_params.json").read_text()).embeddings.values()))
    assert table.bits == 4 and len(table.scale) == 2000
    for target in load_report(out)["targets"]:
        checks = target["checks"]
        assert checks["size"]["alpha"] >= 1 / 0.17, (target["target"], checks["size"])
        assert checks["parity"]["cosine"] >= 0.99, (target["target"], checks["parity"])
        assert any("embedding tables int4" in n for n in target["notes"]), target["target"]
        if target["target"] != "android":  # ai-edge-quantizer stores its own (fp16) int4 scales
            params = checks["params"]
            assert params["exact"] == params["tensors_checked"] > 0, (target["target"], params)
    graph = onnx.load(out / "onnx" / "build_wide.onnx")
    assert "GatherBlockQuantized" in {n.op_type for n in graph.graph.node}
