"""Seeds and mutations: small models built here (or the MLPerf Tiny KWS model), and the byte-level
and structural edits applied to them (see the package docstring)."""

from __future__ import annotations

import io
import math
import os
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
KWS = ROOT / "tests" / "data" / "mlperf-tiny" / "kws_ref_model.tflite"
TIMEOUT_S = 60.0
# edgeport refuses any tensor over a quarter of the memory available (limits.py); a model just
# under that bound legitimately needs a few GB in the runtimes (two sessions, their arenas).
MAX_RSS_MB = 8192
HOSTILE_FLOATS = [math.nan, math.inf, -math.inf, 0.0, -1.0, -0.0, 1e-45, 3.4e38, 1e30]
HOSTILE_INTS = [-1, -2, 0, 2 ** 31 - 1, -2 ** 31, 2 ** 20, 65536, 1 << 40]
HOSTILE_NAMES = [b"\xff\xfe\xfd", b"caf\xc3", b"\x00nul", b"a" * 5000, b"../../etc/passwd", b"\xed\xa0\x80"]


# ------------------------------------------------------------------ seeds

def tiny_onnx() -> bytes:
    """float32 [N,1,6,6] -> Conv 3x3 (2 channels) -> Relu -> Flatten -> Gemm -> [N,4]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (2, 1, 3, 3)).astype(np.float32), "conv_w"),
             numpy_helper.from_array(rng.normal(0, 0.1, 2).astype(np.float32), "conv_b"),
             numpy_helper.from_array(rng.normal(0, 0.3, (32, 4)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "fc_b")]
    nodes = [helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["c"], name="conv", kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["output"], name="fc")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 6, 6])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def qdq_onnx() -> bytes:
    """A QDQ model (float I/O): Q/DQ on the input, an int8 Conv weight through DequantizeLinear."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(3, np.int8), "x_zero_point"),
             numpy_helper.from_array(rng.integers(-127, 128, (2, 1, 3, 3)).astype(np.int8), "w_q"),
             numpy_helper.from_array(np.array([0.01, 0.02], np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros(2, np.int8), "w_zero_point")]
    nodes = [helper.make_node("QuantizeLinear", ["input", "x_scale", "x_zero_point"], ["xq"], name="quant_in"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero_point"], ["xd"], name="dequant_in"),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero_point"], ["w"], name="dequant_w", axis=0),
             helper.make_node("Conv", ["xd", "w"], ["output"], name="conv", kernel_shape=[3, 3])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 6, 6])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 2, 4, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def tiny_tflite() -> bytes:
    """int8 [1,6,6,2] -> CONV_2D -> MAX_POOL -> FULLY_CONNECTED -> SOFTMAX, built with the schema."""
    sys.path.insert(0, str(ROOT / "tests"))
    from testmodels.tflite_graphs import GraphBuilder

    g = GraphBuilder(5)
    x = g.activation("input", (1, 6, 6, 2), 0.05, 3)
    c = g.conv(x, 4, k=(3, 3), padding="SAME", act="RELU")
    p = g.pool(c, "MAX_POOL_2D")
    f = g.fully_connected(g.reshape(p, (1, 36)), 5, per_channel=True)
    return g.build([x], [g.softmax(f)])


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def data_npz(n: int = 8, seed: int = 2) -> bytes:
    rng = np.random.default_rng(seed)
    return npz_bytes({"x": rng.normal(0, 1, (n, 1, 6, 6)).astype(np.float32), "y": rng.integers(0, 4, n)})


_SEEDS: dict[str, bytes] = {}


def seed(name: str) -> bytes:
    """The seed file `name` (built once per process)."""
    if name not in _SEEDS:
        makers = {"tiny.onnx": tiny_onnx, "qdq.onnx": qdq_onnx, "tiny.tflite": tiny_tflite,
                  "kws.tflite": KWS.read_bytes, "data.npz": data_npz}
        _SEEDS[name] = makers[name]()
    return _SEEDS[name]


# ------------------------------------------------------------------ byte-level mutations

def mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One byte-level damage; positions favour the first and last KB (headers, tables, flatbuffer
    vtables) over the weight bytes in between."""
    buf = bytearray(data)
    n = len(buf)

    def pos() -> int:
        where = rng.random()
        if where < 0.35:
            return rng.randrange(min(n, 1024))
        if where < 0.6:
            return n - 1 - rng.randrange(min(n, 1024))
        return rng.randrange(n)

    kind = rng.choice(["truncate", "bitflip", "bytes", "zero", "splice", "delete", "insert", "ff"])
    if kind == "truncate":
        cut = rng.choice([0, 1, 4, 8, 16, rng.randrange(n), n - 1])
        return bytes(buf[:cut]), f"truncate at {cut}"
    if kind == "bitflip":
        spots = [pos() for _ in range(rng.choice([1, 1, 2, 8]))]
        for p in spots:
            buf[p] ^= 1 << rng.randrange(8)
        return bytes(buf), f"bit flips at {spots}"
    if kind in ("bytes", "ff", "zero"):
        p, length = pos(), rng.choice([1, 2, 4, 8, 64, 512])
        fill = {"bytes": lambda: rng.randrange(256), "ff": lambda: 0xFF, "zero": lambda: 0}[kind]
        for i in range(p, min(n, p + length)):
            buf[i] = fill()
        return bytes(buf), f"{kind} x{length} at {p}"
    if kind == "splice":
        a, b = sorted((pos(), pos()))
        p = pos()
        return bytes(buf[:p] + buf[a:b] + buf[p:]), f"splice [{a}:{b}] at {p}"
    if kind == "delete":
        p, length = pos(), rng.choice([1, 4, 16, 256])
        return bytes(buf[:p] + buf[p + length:]), f"delete {length} at {p}"
    p = pos()
    return bytes(buf[:p] + bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 32]))) + buf[p:]), f"insert at {p}"


# ------------------------------------------------------------------ ONNX structural mutations

def _onnx_edits(rng: random.Random, model, folder: Path) -> str:
    """Edit one field of `model` (an onnx.ModelProto) in place; return what was done."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    kind = rng.choice(["input_dim", "input_dim", "elem_type", "init_dims", "init_type", "init_value", "qparam",
                       "qparam", "zero_point", "node_input", "node_output", "drop_node", "attribute", "opset",
                       "ir_version", "external", "external", "duplicate_output", "drop_output", "no_input"])
    if kind == "input_dim":
        dims = graph.input[0].type.tensor_type.shape.dim
        d = dims[rng.randrange(len(dims))]
        value = rng.choice([0, -1, -7, 1 << 20, 1 << 31, 1 << 40, 1 << 62])
        d.dim_value = value
        if rng.random() < 0.3:  # TiB-sized: every dim huge
            for d in dims:
                d.dim_value = 1 << 14
        return f"input dim -> {value}"
    if kind == "elem_type":
        value = rng.choice([0, 2, 3, 6, 7, 8, 9, 10, 11, 16, 17, 99])
        rng.choice([graph.input, graph.output])[0].type.tensor_type.elem_type = value
        return f"elem_type -> {value}"
    if not graph.initializer and kind.startswith(("init", "qparam", "zero", "external")):
        kind = "opset"
    if kind == "init_dims":
        init = rng.choice(graph.initializer)
        if init.dims:
            init.dims[rng.randrange(len(init.dims))] = rng.choice([0, -1, 1 << 40, 3])
        else:
            init.dims.append(rng.choice([0, 5, 1 << 30]))
        return f"initializer {init.name} dims -> {list(init.dims)}"
    if kind == "init_type":
        init = rng.choice(graph.initializer)
        init.data_type = rng.choice([0, 2, 3, 6, 7, 8, 10, 11, 16, 17, 25])
        return f"initializer {init.name} data_type -> {init.data_type}"
    if kind in ("init_value", "qparam", "zero_point"):
        names = {"init_value": None, "qparam": "scale", "zero_point": "zero_point"}[kind]
        pool = [i for i in graph.initializer if names is None or names in i.name] or list(graph.initializer)
        init = rng.choice(pool)
        array = numpy_helper.to_array(init).copy()
        if array.size:
            if array.dtype.kind == "f":
                array.flat[rng.randrange(array.size)] = rng.choice(HOSTILE_FLOATS)
            else:
                info = np.iinfo(array.dtype)
                array.flat[rng.randrange(array.size)] = rng.choice([info.min, info.max, 0])
            if kind == "zero_point" and array.dtype.kind in "iu" and rng.random() < 0.5:  # stored in a wider type
                array = array.astype(np.int32) + 300
        init.CopyFrom(numpy_helper.from_array(array, init.name))
        return f"initializer {init.name} value edited"
    if kind in ("node_input", "node_output"):
        node = rng.choice(graph.node)
        field_ = node.input if kind == "node_input" else node.output
        if field_:
            field_[rng.randrange(len(field_))] = rng.choice(["", "missing_tensor", "input", "output", node.name])
        return f"node {node.name} {kind} edited"
    if kind == "drop_node":
        del graph.node[rng.randrange(len(graph.node))]
        return "node dropped"
    if kind == "attribute":
        node = rng.choice(graph.node)
        from onnx import helper

        name = rng.choice(["kernel_shape", "strides", "pads", "dilations", "group", "axis", "transB", "alpha"])
        value = rng.choice([0, -1, 1 << 31, [0, 0], [-1, -1], [1 << 20, 1], [1, 1, 1, 1]])
        for i, attr in enumerate(node.attribute):
            if attr.name == name:
                del node.attribute[i]
                break
        node.attribute.append(helper.make_attribute(name, value))
        return f"node {node.name} attribute {name}={value}"
    if kind == "opset":
        model.opset_import[0].version = rng.choice([0, 1, 6, 99, 1 << 30])
        return f"opset -> {model.opset_import[0].version}"
    if kind == "ir_version":
        model.ir_version = rng.choice([0, 1, 3, 99])
        return f"ir_version -> {model.ir_version}"
    if kind == "external":
        init = rng.choice(graph.initializer)
        raw = numpy_helper.to_array(init).tobytes()
        location = rng.choice(["weights.bin", "../outside.bin", "/etc/hostname", "sub/../weights.bin",
                               "missing.bin", "link.bin", "hard.bin", "", "weights.bin\x00x"])
        offset = rng.choice([0, 0, 8, 1 << 40, -1])
        length = rng.choice([len(raw), len(raw), len(raw) + 1, 1 << 40, 0])
        (folder / "weights.bin").write_bytes(b"\0" * 8 + raw) if offset == 8 else (folder / "weights.bin").write_bytes(raw)
        outside = folder.parent / "outside.bin"
        outside.write_bytes(raw)
        if location == "link.bin":
            os.symlink(outside, folder / "link.bin")
        if location == "hard.bin":
            os.link(outside, folder / "hard.bin")
        init.ClearField("raw_data")
        for f in ("float_data", "int32_data", "int64_data", "double_data"):
            init.ClearField(f)
        init.data_location = TensorProto.EXTERNAL
        del init.external_data[:]
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
            entry = init.external_data.add()
            entry.key, entry.value = key, value
        return f"initializer {init.name} external at {location!r} offset {offset} length {length}"
    if kind == "duplicate_output":
        graph.output.add().CopyFrom(graph.output[0])
        return "output duplicated"
    if kind == "drop_output":
        del graph.output[:]
        return "outputs dropped"
    del graph.input[:]
    return "inputs dropped"


def mutate_onnx(rng: random.Random, data: bytes, folder: Path) -> tuple[bytes, str]:
    import onnx

    model = onnx.load_from_string(data)
    done = []
    for _ in range(rng.choice([1, 1, 1, 2])):
        try:
            done.append(_onnx_edits(rng, model, folder))
        except Exception:  # noqa: BLE001 - the edit does not apply to this model (e.g. its data is external)
            done.append("edit skipped")
    what = "; ".join(done)
    out = model.SerializeToString()
    if rng.random() < 0.15:  # a non-UTF-8 name: protobuf strings hold bytes, so patch them in
        name = rng.choice([b"conv_w", b"input", b"conv", b"output", b"x_scale"])
        if name in out:
            bad = rng.choice(HOSTILE_NAMES[:3])[:len(name)].ljust(len(name), b"\xff")
            out = out.replace(name, bad, 1)
            what += f"; name {name.decode()} -> {bad!r}"
    return out, what


# ------------------------------------------------------------------ TFLite structural mutations

def _tflite_edits(rng: random.Random, model, schema) -> str:
    """Edit one field of `model` (a schema.ModelT) in place; return what was done."""
    graph = model.subgraphs[0]
    tensors = graph.tensors
    quantized = [t for t in tensors if t.quantization is not None and t.quantization.scale is not None
                 and len(t.quantization.scale)]
    kind = rng.choice(["scale", "scale", "scale", "zero_point", "zero_point", "qdim", "scale_count", "shape",
                       "shape", "tib_input", "op_index", "op_index", "io_index", "name", "name", "type",
                       "buffer", "buffer_data", "opcode", "builtin", "options", "subgraphs", "custom"])
    if kind in ("scale", "zero_point", "qdim", "scale_count") and quantized:
        t = rng.choice(quantized)
        q = t.quantization
        if kind == "scale":
            scales = np.array(q.scale, dtype=np.float32)
            scales[rng.randrange(len(scales))] = rng.choice(HOSTILE_FLOATS)
            q.scale = scales
        elif kind == "zero_point":
            zp = np.array(q.zeroPoint if q.zeroPoint is not None else np.zeros(len(q.scale)), dtype=np.int64)
            zp[rng.randrange(len(zp))] = rng.choice([128, -129, 255, 300, -1000, 1 << 40, 70000])
            q.zeroPoint = zp
        elif kind == "qdim":
            q.quantizedDimension = rng.choice([-1, 4, 7, 1 << 20])
        else:
            q.scale = np.resize(np.array(q.scale, np.float32), rng.choice([0, 2, 3, 1000]))
        return f"tensor {t.name!r} {kind} edited"
    if kind == "shape" or kind in ("scale", "zero_point", "qdim", "scale_count"):
        t = rng.choice(tensors)
        shape = list(t.shape if t.shape is not None else [])
        if shape and rng.random() < 0.7:
            shape[rng.randrange(len(shape))] = rng.choice(HOSTILE_INTS)
        else:
            shape = rng.choice([[], [1], [1, 1, 1, 1, 1, 1, 1], [-1, 4]])
        t.shape = np.array(shape, dtype=np.int64).astype(np.int32)
        return f"tensor {t.name!r} shape -> {shape}"
    if kind == "tib_input":
        t = tensors[graph.inputs[0]]
        t.shape = np.array([1, 1 << 15, 1 << 15, 1 << 10], dtype=np.int32)
        return "input shape -> TiB"
    if kind == "op_index":
        op = rng.choice(graph.operators)
        which = rng.choice(["inputs", "outputs"])
        values = np.array(getattr(op, which), dtype=np.int32)
        if len(values):
            values[rng.randrange(len(values))] = rng.choice([-1, -2, len(tensors), 1 << 30])
        setattr(op, which, values)
        return f"op {which} -> {values.tolist()}"
    if kind == "io_index":
        which = rng.choice(["inputs", "outputs"])
        setattr(graph, which, np.array([rng.choice([-1, len(tensors), 1 << 30, 0])] if rng.random() < 0.8 else [],
                                       dtype=np.int32))
        return f"subgraph {which} -> {getattr(graph, which).tolist()}"
    if kind == "name":
        t = rng.choice(tensors)
        t.name = rng.choice(HOSTILE_NAMES)
        return f"tensor {t.name[:20]!r} renamed"
    if kind == "type":
        t = rng.choice(tensors)
        t.type = rng.choice([0, 1, 2, 3, 4, 7, 9, 10, 17, 99])
        return f"tensor type -> {t.type}"
    if kind == "buffer":
        t = rng.choice(tensors)
        t.buffer = rng.choice([0, len(model.buffers), 1 << 30, rng.randrange(len(model.buffers))])
        return f"tensor buffer -> {t.buffer}"
    if kind == "buffer_data":
        full = [b for b in model.buffers if b.data is not None and len(b.data)]
        if full:
            b = rng.choice(full)
            b.data = np.asarray(b.data)[: rng.randrange(len(b.data))] if rng.random() < 0.6 \
                else np.concatenate([np.asarray(b.data, np.uint8), np.zeros(7, np.uint8)])
        return "buffer data resized"
    if kind == "opcode":
        op = rng.choice(graph.operators)
        op.opcodeIndex = rng.choice([len(model.operatorCodes), 1 << 20])
        return f"op opcode index -> {op.opcodeIndex}"
    if kind == "builtin":
        code = rng.choice(model.operatorCodes)
        code.builtinCode = rng.choice([0, 3, 9, 22, 25, 32, 127, 150, 255])
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        return f"opcode -> {code.builtinCode}"
    if kind == "options":
        op = rng.choice(graph.operators)
        opts = op.builtinOptions
        if opts is not None:
            keys = [k for k, v in vars(opts).items() if isinstance(v, (int, float))]
            if keys:
                key = rng.choice(keys)
                setattr(opts, key, rng.choice([0, -1, 1 << 30, 99]) if isinstance(getattr(opts, key), int)
                        else rng.choice(HOSTILE_FLOATS))
                return f"op options {key} edited"
        return "no options"
    if kind == "subgraphs":
        if rng.random() < 0.5:
            model.subgraphs = []
        else:
            model.subgraphs.append(model.subgraphs[0])
        return f"{len(model.subgraphs)} subgraphs"
    code = rng.choice(model.operatorCodes)
    code.builtinCode = code.deprecatedBuiltinCode = 32
    code.customCode = rng.choice([b"\xff\xfeX", b"MyOp", b""])
    return f"custom op {code.customCode!r}"


def mutate_tflite(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    done = []
    for _ in range(rng.choice([1, 1, 1, 2])):
        if not model.subgraphs:  # an earlier edit removed them
            break
        try:
            done.append(_tflite_edits(rng, model, schema))
        except (IndexError, ValueError):  # the edit does not apply to this model (e.g. no such field)
            done.append("edit skipped")
    try:
        builder = flatbuffers.Builder(len(data) + 1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    except (TypeError, ValueError, OverflowError):  # a value the schema's type cannot hold
        data, what = mutate_bytes(rng, data)
        return data, f"(unpackable edit) {what}"
    return bytes(builder.Output()), "; ".join(done)


# ------------------------------------------------------------------ .npz and TOML

def mutate_npz(rng: random.Random) -> tuple[bytes, str]:
    base = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 1, (8, 1, 6, 6)).astype(np.float32)
    kind = rng.choice(["nan", "inf", "constant", "shape", "dtype", "empty", "no_x", "object", "bytes", "huge_header",
                       "labels", "scalar", "many_keys"])
    arrays: dict = {"x": base, "y": np.arange(8) % 4}
    if kind in ("nan", "inf"):
        base.flat[rng.randrange(base.size)] = math.nan if kind == "nan" else math.inf
    elif kind == "constant":
        arrays["x"] = np.full_like(base, rng.choice([0.0, 1e38]))
    elif kind == "shape":
        arrays["x"] = np.zeros(rng.choice([(8, 6, 6), (8, 1, 6, 7), (0, 1, 6, 6), (8, 2, 6, 6), (1,)]), np.float32)
    elif kind == "dtype":
        arrays["x"] = base.astype(rng.choice([np.float16, np.float64, np.int8, np.complex64, np.bool_]))
    elif kind == "empty":
        arrays = {}
    elif kind == "no_x":
        arrays = {"data": base}
    elif kind == "object":
        arrays["x"] = np.array([{"a": 1}, None], dtype=object)
    elif kind == "labels":
        arrays["y"] = rng.choice([np.full(8, -1), np.full(8, 1 << 40), np.arange(3), np.full(8, np.nan)])
    elif kind == "scalar":
        arrays["x"] = np.float32(1.0)
    elif kind == "many_keys":
        arrays = {f"k{i}": base for i in range(5)}
    data = npz_bytes(arrays)
    if kind == "bytes":
        data, what = mutate_bytes(rng, npz_bytes({"x": base}))
        return data, f"npz {what}"
    if kind == "huge_header":  # a .npy header declaring a TiB array, zipped as x.npy
        import zipfile

        header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1, 6, 6), }"
        npy = b"\x93NUMPY\x01\x00" + len(header.ljust(118) + "\n").to_bytes(2, "little") + \
            (header.ljust(118) + "\n").encode() + b"\0" * 64
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("x.npy", npy)
        data = buf.getvalue()
    return data, f"npz {kind}"


TOML_VALUES = ['"nan"', "nan", "inf", "-1", "0", "1e400", "100000", '"/"', '".."', '"\\u0000"', "[]", "{}",
               '"~"', "true", '"1,1,8,8"', '"9999999999,1,6,6"', '"int8"', '"none"', '"all"']
TOML_KEYS = {"export": ["source", "targets", "out", "calib", "eval", "input_shape", "bogus"],
             "recipe": ["quantize", "per_channel", "calibration", "percentile", "palettize", "prune", "keep_float"],
             "budgets": ["max_size", "max_latency", "min_agreement", "max_accuracy_drop", "max_flash"],
             "checks": ["runs", "warmup", "threads", "batch_size"]}


def toml_text(source: str, out: str, extra: dict[str, dict[str, str]] | None = None) -> str:
    sections = {"export": {"source": f'"{source}"', "targets": '"onnx"', "out": f'"{out}"'},
                "checks": {"runs": "3", "warmup": "0"}}
    for section, values in (extra or {}).items():
        sections.setdefault(section, {}).update(values)
    return "".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items()) for s, kv in sections.items())


def mutate_toml(rng: random.Random, source: str, out: str) -> tuple[bytes, str]:
    section = rng.choice(list(TOML_KEYS))
    key, value = rng.choice(TOML_KEYS[section]), rng.choice(TOML_VALUES)
    text = toml_text(source, out, {section: {key: value}})
    if rng.random() < 0.3:
        data, what = mutate_bytes(rng, text.encode())
        return data, f"toml [{section}] {key} = {value}; {what}"
    return text.encode(), f"toml [{section}] {key} = {value}"
