"""Binary / ternary layers on the ios target: 1-bit / 2-bit Core ML palettes (constexpr_lut_to_dense).

The committed factories of samples/digits_lowbit (middle conv + linear low-bit, first and last
layers float) export with the int8 recipe (W8A8, iOS17), with `--quantize none` (iOS16, fp16
compute) and with fp32 compute; the NumPy MIL evaluator runs each package on
samples/digits/eval.npz (359 samples) against PyTorch. About 40 s (eleven exports).

Tolerances on the logits (conftest's TOLERANCES "float32-lowbit", "float16", "int8-lowbit"; measured
in brackets; the logits reach |25.6|):
  - fp32 compute: max abs error <= 1e-4 [binary 8.6e-6, ternary 7.2e-6, xnor 3.8e-6]. The
    package holds the ±1 integers and α exactly, so only float summation order differs.
  - fp16 compute: <= 0.05 [0.019 both]. fp16's step at 16..32 is 2^-6 = 0.016: the error is about
    one step of the largest logits; the same models stored dense in fp16 (iOS15) measure 0.014 / 0.017,
    the palette layers add one rounding each (the separate mul and add).
  - W8A8: <= 0.3 [binary 0.232, ternary 0.227]: int8 activations dominate; the same layers stored
    as int8 weights (constexpr_affine_dequantize, before palettes) measured 0.240.
  - top-1 agreement >= 0.99 [1.0 everywhere but xnor W8A8: 0.997, one sample].
  - bytes of the low-bit layers vs their int8 storage (int8 values + one scale per channel):
    binary <= 1/6 [0.130: 1 bit of 8, plus LUT and α], ternary <= 1/3 [0.254: 2 bits of 8].
XNOR: its Sign modules become greater_equal + select in Core ML; a sign flips where its input lies
within fp16 rounding of 0, which moves the logits by up to 1 [0.97 in fp16, 0.98 with dense fp16
weights on iOS15; 2.35 in W8A8, whose int8 input to the first conv moves more values across 0]:
its bounds are top-1 and, in fp16, that every flipped sign had an input within 2e-3 of 0
[measured 1.9e-4, 25 flips in 735k signs].
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import CALIB, EVAL, TOLERANCES, load_report, needs_torch

pytestmark = [needs_torch, pytest.mark.skipif(importlib.util.find_spec("coremltools") is None,
                                              reason="coremltools is not installed")]

SAMPLES = "samples.digits_lowbit.model"
VARIANTS = {
    "w8a8": ("--quantize", "int8", "--ios-target", "iOS17"),
    "fp16": (),  # --quantize none, iOS16, fp16 compute (the defaults)
    "fp32": ("--ios-precision", "fp32"),
    "w8a8-ios18": ("--quantize", "int8", "--ios-target", "iOS18"),
    "ios15": ("--ios-target", "iOS15"),
}
MAX_ABS_ERR = {"fp32": TOLERANCES["float32-lowbit"].abs_err, "fp16": TOLERANCES["float16"].abs_err,
               "w8a8": TOLERANCES["int8-lowbit"].abs_err, "w8a8-ios18": TOLERANCES["int8-lowbit"].abs_err}
BITS = {"binary": 1, "ternary": 2}
INT8_FRACTION = {"binary": 1 / 6, "ternary": 1 / 3}
SIGN_FLIP_INPUT = 2e-3  # |input| of a first-layer sign that fp16 compute may flip


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """(factory, variant) -> (ios target report, package path), each exported once in-process."""
    from edgeport.cli import main

    made = {}

    def get(factory: str, variant: str):
        if (factory, variant) not in made:
            out = tmp_path_factory.mktemp(f"{factory}-{variant}")
            assert main(["export", f"{SAMPLES}:{factory}", "--target", "ios", "--calib", CALIB, "--eval", EVAL,
                         "--out", str(out), "--json", *VARIANTS[variant]]) == 0
            (target,) = load_report(out)["targets"]
            made[factory, variant] = target, out / "ios" / f"{factory}.mlpackage"
        return made[factory, variant]

    return get


@pytest.fixture(scope="module")
def lowbit_weights():
    """factory -> {parameter path: (float32 weight, α per output channel)} of its low-bit layers.

    α is read off the weights (each output channel holds one magnitude): the factories'
    `edgeport_lowbit` record is made before the trained weights are loaded, so its α are not these."""
    from samples.digits_lowbit import model as samples

    def weights(factory: str):
        params = dict(getattr(samples, factory)().named_parameters())
        found = {}
        for name in ("features.2.weight", "classifier.1.weight"):
            w = params[name].detach().numpy()
            magnitudes = np.abs(w).reshape(len(w), -1)
            assert (np.isin(magnitudes, [0.0]) | (magnitudes == magnitudes.max(axis=1, keepdims=True))).all()
            found[name] = w, magnitudes.max(axis=1)
        return found

    return weights


def _palettes(path) -> dict[str, dict]:
    """LUT ops of a package by name: index bits, stored index bytes, decoded weight, stored α."""
    from edgeport.exporters.coreml import _stored_bytes, consumers_of
    from edgeport.exporters.coreml_lowbit import lut_bits, stored_alpha
    from edgeport.runtimes.coreml import MilSession, load_program

    _, program = load_program(str(path))
    ops = list(program.functions["main"].operations)
    consumers = consumers_of(ops)
    session = MilSession(str(path))
    env = session.run_all({s.name: np.zeros(s.shape, np.float32) for s in session.inputs})
    return {op.name: {"bits": lut_bits(op), "index_bytes": _stored_bytes(op.indices, np.asarray(op.indices.val)),
                      "decoded": env[op.outputs[0].name].astype(np.float32), "alpha": stored_alpha(op, consumers),
                      "lut": np.asarray(op.lut.val)}
            for op in ops if op.op_type == "constexpr_lut_to_dense"}


def _key(name: str, kind: str) -> str:
    return f"{name.replace('.', '_')}_{kind}"


# ------------------------------------------------------------------ pure functions, exact

def test_power_of_two_lut_keeps_alpha_to_one_rounding():
    from edgeport.exporters.coreml_lowbit import power_of_two_at_least

    alpha = np.random.default_rng(0).uniform(1e-3, 0.3, size=64).astype(np.float32)
    m = power_of_two_at_least(float(alpha.max()))
    assert m == 0.5 and alpha.max() <= m
    for dtype in (np.float16, np.float32):  # m·fp(α/m) == fp(α): dividing by 2^e is exact
        np.testing.assert_array_equal(np.float32(m) * (alpha / np.float32(m)).astype(dtype).astype(np.float32),
                                      alpha.astype(dtype).astype(np.float32))


def test_find_lowbit_follows_the_plan_or_the_values():
    from edgeport.exporters.coreml_lowbit import find_lowbit, lut_indices
    from edgeport.quantizers.plan import QuantPlan, WeightParams
    from edgeport.recipe import Recipe

    binary = np.float32([[0.5, -0.5, 0.5], [-0.25, -0.25, 0.25]])
    ternary = np.float32([[0.5, 0.0, -0.5], [0.0, 0.25, 0.0]])
    plain = np.float32([[0.5, -0.4, 0.5], [0.1, 0.2, 0.3]])

    def job(quantize="none", plan=None, **recipe):
        return SimpleNamespace(recipe=Recipe(quantize=quantize, **recipe), plan=plan or QuantPlan(scheme=quantize))

    low = find_lowbit(binary, "w", job())
    assert low.kind == "binary" and low.bits == 1 and low.alpha.tolist() == [0.5, 0.25] and not low.from_plan
    assert lut_indices(low.signs, "binary").tolist() == [[1, 0, 1], [0, 0, 1]]  # LUT (-1, +1)
    low = find_lowbit(ternary, "w", job("fp16"))
    assert low.kind == "ternary" and low.bits == 2
    assert lut_indices(low.signs, "ternary").tolist() == [[2, 1, 0], [1, 2, 1]]  # LUT (-1, 0, +1, 0)
    assert find_lowbit(plain, "w", job()) is None
    plan = QuantPlan(scheme="int8", weights={"w": WeightParams([0.5, 0.25], [0, 0], 0, "layer")},
                     origin={"w": "binary"})
    low = find_lowbit(binary, "w", job("int8", plan))
    assert low.from_plan and low.alpha.tolist() == [0.5, 0.25]
    assert find_lowbit(binary, "other", job("int8", plan)) is None  # kept float by the recipe: not in the plan
    assert find_lowbit(binary, None, job("int8", plan)).kind == "binary"  # fused by Core ML: the values decide
    assert find_lowbit(binary, "w", job("dynamic-int8")) is None
    assert find_lowbit(binary, "w", job(palettize=4)) is None


def test_evaluator_reads_ios18_grouped_luts_and_masks_as_coremltools():
    from coremltools.converters.mil.mil.ops.defs.iOS18 import compression

    from edgeport.runtimes.mil_ops import OPS

    rng = np.random.default_rng(0)
    cases = [  # (index bits, weight shape, LUTs along each axis): per channel, per tensor, grouped
        (1, (8, 6, 3, 3), (8, 1, 1, 1)), (2, (8, 6, 3, 3), (8, 1, 1, 1)), (2, (8, 6, 3, 3), (1, 1, 1, 1)),
        (4, (8, 6, 3, 3), (2, 3, 1, 1)), (1, (4, 10), (4, 1))]
    for bits, shape, groups in cases:
        indices = rng.integers(0, 2 ** bits, size=shape).astype(np.uint8)
        lut = rng.normal(size=(*groups, 2 ** bits, 1)).astype(np.float16)
        np.testing.assert_array_equal(OPS["constexpr_lut_to_dense"](indices=indices, lut=lut),
                                      compression.constexpr_lut_to_dense.decompress(indices, lut, None))
    mask = (rng.random((6, 9)) > 0.5).astype(np.uint8)
    data = rng.normal(size=int(mask.sum())).astype(np.float16)
    np.testing.assert_array_equal(OPS["constexpr_sparse_to_dense"](nonzero_data=data, mask=mask),
                                  compression.constexpr_sparse_to_dense.decompress(data, mask))


# ------------------------------------------------------------------ exported packages

@pytest.mark.e2e
@pytest.mark.parametrize("factory", ["binary", "ternary"])
@pytest.mark.parametrize("variant", ["w8a8", "fp16", "fp32"])
def test_lowbit_layers_are_palettes_that_match_pytorch(export, lowbit_weights, factory, variant):
    target, path = export(factory, variant)
    checks, bits = target["checks"], BITS[factory]
    weights = lowbit_weights(factory)
    palettes = _palettes(path)
    dtype = np.float32 if variant == "fp32" else np.float16
    int8_bytes = 0
    for name, (w, alpha) in weights.items():
        stored = palettes[_key(name, factory)]  # the weight constant is a constexpr_lut_to_dense op
        assert stored["bits"] == bits and stored["lut"].size == 2 ** bits
        assert stored["index_bytes"] == -(-w.size * bits // 8)
        # the integers exactly, α rounded once to the program's dtype
        np.testing.assert_array_equal(np.sign(stored["decoded"]), np.sign(w))
        np.testing.assert_array_equal(stored["alpha"], alpha.astype(dtype).astype(np.float32))
        int8_bytes += w.size + len(alpha) * np.dtype(dtype).itemsize  # int8 values + a scale per channel
    structure = checks["structure"]
    assert structure["ops"]["constexpr_lut_to_dense"] == 2 and structure["ops"]["mul"] == 2
    assert structure["weight_bytes"][f"lut {bits}-bit"] <= int8_bytes * INT8_FRACTION[factory]
    note = next(n for n in target["notes"] if n.startswith("binary/ternary weights as palettes"))
    assert f"features.2 {bits}-bit, classifier.1 {bits}-bit" in note
    parity = checks["parity"]
    assert parity["samples"] == 359 and parity["reference"] == "pytorch"
    assert parity["top1_agreement"] >= 0.99 and parity["max_abs_err"] <= MAX_ABS_ERR[variant]
    if variant == "w8a8":  # int8 activations still around every conv / linear, the plan's α in the package
        assert structure["ops"]["quantize"] == 4 and structure["ops"]["dequantize"] == 4
        assert checks["params"]["honored"] and checks["params"]["lowbit_palettes"] == 2
        assert checks["params"]["tensors_checked"] == 4
        assert "α and integers from the plan" in note


@pytest.mark.e2e
def test_ios18_uses_one_lut_per_output_channel(export, lowbit_weights):
    target, path = export("binary", "w8a8-ios18")
    checks = target["checks"]
    assert "mul" not in checks["structure"]["ops"] and checks["structure"]["ops"]["constexpr_lut_to_dense"] == 2
    palettes = _palettes(path)
    for name, (w, alpha) in lowbit_weights("binary").items():
        stored = palettes[_key(name, "binary")]
        assert stored["lut"].shape == (len(alpha), *[1] * (w.ndim - 1), 2, 1)
        np.testing.assert_array_equal(stored["decoded"], np.sign(w) * alpha.astype(np.float16)[(...,) + (None,) * (w.ndim - 1)])
    assert checks["params"]["honored"] and checks["params"]["lowbit_palettes"] == 2
    assert checks["parity"]["top1_agreement"] >= 0.99 and checks["parity"]["max_abs_err"] <= MAX_ABS_ERR["w8a8-ios18"]


@pytest.mark.e2e
def test_ios15_keeps_lowbit_layers_dense_and_says_why(export):
    target, _ = export("binary", "ios15")
    assert "constexpr_lut_to_dense" not in target["checks"]["structure"]["ops"]
    assert ("binary/ternary layers stored dense (features.2, classifier.1): 1-bit / 2-bit palettes need "
            "--ios-target iOS16 or later") in target["notes"]


@pytest.mark.e2e
@pytest.mark.parametrize("variant", ["w8a8", "fp16", "fp32"])
def test_xnor_signs_run_in_the_evaluator(export, variant):
    target, _ = export("xnor", variant)
    checks = target["checks"]
    ops = checks["structure"]["ops"]
    assert ops["greater_equal"] == 2 and ops["select"] == 2  # the two Sign modules
    assert ops["constexpr_lut_to_dense"] == 2 and checks["structure"]["weight_bytes"]["lut 1-bit"] > 0
    assert checks["parity"]["top1_agreement"] >= 0.99
    if variant == "fp32":
        assert checks["parity"]["max_abs_err"] <= MAX_ABS_ERR["fp32"]


@pytest.mark.e2e
def test_xnor_fp16_flips_only_signs_of_inputs_near_zero(export):
    import torch

    from edgeport.runtimes.coreml import MilSession
    from samples.digits_lowbit.model import xnor

    _, path = export("xnor", "fp16")
    session = MilSession(str(path))
    first_sign = next(op for op in session.ops if op.op_type == "greater_equal").outputs[0].name
    x = np.load(EVAL)["x"].astype(np.float32)
    with torch.no_grad():
        before_sign = xnor().features[0](torch.from_numpy(x)).numpy()
    flipped = []
    for i in range(len(x)):
        signs = session.run_all({session.inputs[0].name: x[i:i + 1]})[first_sign][0]
        flipped.append(before_sign[i][signs != (before_sign[i] >= 0)])
    flipped = np.concatenate(flipped)
    assert flipped.size < 1e-3 * before_sign.size and np.abs(flipped).max(initial=0.0) <= SIGN_FLIP_INPUT

