"""Training-time quantizers: QAT, binary / ternary / XNOR layers, distillation.

Pure functions are checked exactly on hand-made tensors; the training paths run on the digits
sample (the committed float CNN is the starting point and the teacher). About 20 s on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
from torch import nn

from edgeport.training.distill import distillation_loss, fit
from edgeport.training.lowbit import (
    BinaryConv2d, BinaryLinear, LowBitConfig, Sign, TernaryConv2d, binarize, binary_activation, convert_lowbit,
    prepare_lowbit, ternarize)
from edgeport.training.qat import (
    ActivationFakeQuant, QATConfig, QATConv2d, QATLinear, affine_qparams, convert, fake_quantize, prepare_qat)

from conftest import TOLERANCES

LAYERS = ("features.0", "features.2", "classifier.1", "classifier.3")  # DigitsCNN's Conv/Linear paths


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: as fast for these tiny models, and immune to the spin-wait slowdowns
    of a thread pool on shared cores; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    from samples.digits.data import digits_split

    return tuple(torch.from_numpy(a) for a in digits_split())


@pytest.fixture(scope="module")
def float_model():
    from samples.digits.model import build

    return build()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).float().mean())


def plain_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {p: m for p, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


# ------------------------------------------------------------------ pure functions, exact

def test_binarize_signs_and_alpha_per_output_channel():
    w = torch.tensor([[0.5, -1.5, 0.0, 2.0], [-0.25, 0.25, -0.5, 0.0]])
    signs, alpha = binarize(w)
    assert torch.equal(signs, torch.tensor([[1.0, -1.0, 1.0, 1.0], [-1.0, 1.0, -1.0, 1.0]]))  # sign(0) = +1
    assert torch.equal(alpha, torch.tensor([1.0, 0.25]))
    _, alpha_in = binarize(w, axis=1)
    assert torch.equal(alpha_in, torch.tensor([0.375, 0.875, 0.25, 1.0]))
    conv = torch.stack([torch.full((2, 3, 3), -0.5), torch.full((2, 3, 3), 0.75)])  # [2, 2, 3, 3]
    signs, alpha = binarize(conv)
    assert torch.equal(alpha, torch.tensor([0.5, 0.75])) and signs.shape == conv.shape


def test_ternarize_threshold_and_alpha():
    # mean|W| = 0.5 -> delta 0.35: 1.0 and -0.5 survive, alpha = 0.75; the zero channel stays 0
    w = torch.tensor([[1.0, -0.5, 0.25, -0.25], [0.0, 0.0, 0.0, 0.0], [-2.0, 2.0, 2.0, -2.0]])
    values, alpha = ternarize(w)
    assert torch.equal(values, torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [-1.0, 1.0, 1.0, -1.0]]))
    assert torch.equal(alpha, torch.tensor([0.75, 0.0, 2.0]))


def test_binary_activation_is_sign_with_clipped_straight_through_gradient():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    y = binary_activation(x)
    y.backward(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))
    assert torch.equal(y.detach(), torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]))
    assert torch.equal(x.grad, torch.tensor([0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]))


def test_binary_weight_gradient_is_xnor_nets():
    # d/dw sum(g * alpha * b) = alpha * g * 1{|w| <= 1} + sign(w) / n * sum(g * b)
    w = torch.tensor([[0.5, -1.5, 0.25, -0.25]], requires_grad=True)
    g = torch.tensor([[1.0, 2.0, -1.0, 0.5]])
    signs, alpha = binarize(w)
    (alpha[:, None] * signs * g).sum().backward()
    # alpha = 0.625, sum(g * b) = -2.5, mask = [1, 0, 1, 1]
    assert torch.equal(w.grad, torch.tensor([[0.625 - 0.625, 0.0 + 0.625, -0.625 - 0.625, 0.3125 + 0.625]]))


def test_fake_quantize_values_and_lsq_gradients():
    x = torch.tensor([0.125, 0.375, 0.875, 100.0, -100.0], requires_grad=True)
    scale = torch.tensor(0.5, requires_grad=True)
    y = fake_quantize(x, scale, 0.0, -127, 127)
    assert torch.equal(y.detach(), torch.tensor([0.0, 0.5, 1.0, 63.5, -63.5]))  # round half to even: 0.25 -> 0
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]))  # identity inside the clip range only
    assert float(scale.grad) == -0.25 + 0.25 + 0.25 + 127.0 - 127.0  # round(v) - v inside, +-Qp outside


def test_affine_qparams_contain_zero_exactly():
    scale, zero_point = affine_qparams(torch.tensor(-1.0), torch.tensor(3.0), 0, 255)
    assert float(scale) == pytest.approx(4.0 / 255.0, rel=1e-7) and float(zero_point) == 64.0
    scale, zero_point = affine_qparams(torch.tensor(0.5), torch.tensor(2.0), 0, 255)  # widened to [0, 2]
    assert float(zero_point) == 0.0 and float(scale) == pytest.approx(2.0 / 255.0, rel=1e-7)


# ------------------------------------------------------------------ QAT

@pytest.mark.e2e
@pytest.mark.parametrize("learn_step", [False, True], ids=["ema", "lsq"])
def test_qat_convert_puts_weights_on_the_grid_and_keeps_accuracy(digits, float_model, learn_step):
    x_train, y_train, x_test, y_test = digits
    before = {k: v.clone() for k, v in float_model.state_dict().items()}
    prepared = prepare_qat(float_model, QATConfig(learn_step=learn_step), x_train[:256])
    assert {p: type(m) for p, m in plain_layers(prepared).items()} == {
        "features.0": QATConv2d, "features.2": QATConv2d, "classifier.1": QATLinear, "classifier.3": QATLinear}
    assert not any(m.training for m in prepared.modules())  # eval in, eval out (quantizers included)
    start_scale = prepared.features[2].weight_quant.current_scale(prepared.features[2].weight).detach().clone()
    prepared, _ = fit(prepared, (x_train, y_train), teacher=float_model, epochs=2, lr=1e-4)
    converted = convert(prepared)

    assert all(torch.equal(v, float_model.state_dict()[k]) for k, v in before.items())  # input untouched
    assert all(type(m) in (nn.Conv2d, nn.Linear) for m in plain_layers(converted).values())
    assert not any(isinstance(m, ActivationFakeQuant) for m in converted.modules())
    qparams = converted.edgeport_qparams
    assert qparams["bits"] == 8 and set(qparams["weights"]) == {f"{p}.weight" for p in LAYERS}
    params = dict(converted.named_parameters())
    for name, entry in qparams["weights"].items():
        w = params[name].detach().double()
        assert entry["axis"] == 0 and len(entry["scale"]) == w.shape[0]
        q = w / torch.tensor(entry["scale"], dtype=torch.float64).reshape([-1] + [1] * (w.ndim - 1))
        assert float((q - q.round()).abs().max()) < 1e-5
        assert float(q.abs().max()) <= 127 + 1e-5
    if learn_step:  # the step sizes were trained, not recomputed from max|w|
        assert not torch.equal(torch.tensor(qparams["weights"]["features.2.weight"]["scale"]), start_scale)

    # activation ranges: contain 0, and the prepared layer's eval outputs lie on that grid
    assert set(qparams["activations"]) == set(LAYERS)
    lo, hi = qparams["activations"]["features.0"]
    assert lo <= 0.0 <= hi
    outputs = []
    hook = prepared.features[0].register_forward_hook(lambda m, i, o: outputs.append(o.detach().double()))
    with torch.no_grad():
        prepared(x_test[:32])
    hook.remove()
    steps = (outputs[0] - lo) / ((hi - lo) / 255)
    assert float((steps - steps.round()).abs().max()) < 1e-3 and float(steps.min()) > -1e-3

    float_acc, qat_acc = accuracy(float_model, x_test, y_test), accuracy(converted, x_test, y_test)
    assert qat_acc >= float_acc - 0.01, (float_acc, qat_acc)
    assert accuracy(prepared, x_test, y_test) >= float_acc - 0.01


def test_qat_skip_per_tensor_and_no_activations(digits, float_model):
    x_train, _, x_test, y_test = digits
    config = QATConfig(per_channel=False, activations=False, skip=("classifier.3",))
    prepared = prepare_qat(float_model, config, x_train[:64])
    assert type(prepared.classifier[3]) is nn.Linear
    converted = convert(prepared)
    qparams = converted.edgeport_qparams
    assert "classifier.3.weight" not in qparams["weights"] and qparams["activations"] == {}
    assert all(len(e["scale"]) == 1 and e["axis"] is None for e in qparams["weights"].values())
    assert torch.equal(converted.classifier[3].weight, float_model.classifier[3].weight)
    # without training, per-tensor int8 weights alone cost well under a point on digits
    assert accuracy(converted, x_test, y_test) >= accuracy(float_model, x_test, y_test) - 0.01


def test_configs_reject_bad_values(float_model):
    with pytest.raises(ValueError, match="bits"):
        QATConfig(bits=9)
    with pytest.raises(ValueError, match="binary, ternary"):
        LowBitConfig(weights="quaternary")
    with pytest.raises(ValueError, match="activations"):
        LowBitConfig(activations="ternary")
    with pytest.raises(TypeError):
        LowBitConfig(keep="first")
    with pytest.raises(ValueError, match="features.9"):
        prepare_qat(float_model, QATConfig(skip=("features.9",)), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="no QAT layers"):
        convert(float_model)


# ------------------------------------------------------------------ binary / ternary

def test_lowbit_keep_selects_layers(float_model):
    default = prepare_lowbit(float_model, LowBitConfig())
    assert {p: type(m) for p, m in plain_layers(default).items()} == {
        "features.0": nn.Conv2d, "features.2": BinaryConv2d, "classifier.1": BinaryLinear, "classifier.3": nn.Linear}
    by_path = prepare_lowbit(float_model, LowBitConfig(weights="ternary", keep=("features.0", "classifier")))
    assert [p for p, m in plain_layers(by_path).items() if isinstance(m, TernaryConv2d)] == ["features.2"]
    assert not isinstance(by_path.classifier[1], BinaryLinear)
    everything = prepare_lowbit(float_model, LowBitConfig(keep=()))
    assert all(type(m) in (BinaryConv2d, BinaryLinear) for m in plain_layers(everything).values())


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_lowbit_weights_convert_exactly(digits, float_model, kind):
    x_train, y_train, x_test, y_test = digits
    prepared = prepare_lowbit(float_model, LowBitConfig(weights=kind))
    prepared, _ = fit(prepared, (x_train, y_train), teacher=float_model, epochs=4, lr=1e-3)
    converted = convert_lowbit(prepared)

    record = converted.edgeport_lowbit
    assert set(record) == {"features.2.weight", "classifier.1.weight"}
    params = dict(converted.named_parameters())
    for name, entry in record.items():
        assert entry["kind"] == kind and entry["axis"] == 0 and entry["binary_input"] is False
        w = params[name].detach()
        alpha = torch.tensor(entry["alpha"])
        for c in range(w.shape[0]):
            magnitudes = set(w[c].abs().flatten().tolist())
            allowed = {float(alpha[c])} if kind == "binary" else {0.0, float(alpha[c])}
            assert magnitudes <= allowed, (name, c, magnitudes, allowed)  # exactly one magnitude (or 0)
        if kind == "ternary":
            assert bool((w == 0).any()) and bool((w != 0).any())
    assert all(type(m) in (nn.Conv2d, nn.Linear) for m in plain_layers(converted).values())
    with torch.no_grad():
        torch.testing.assert_close(converted(x_test), prepared.eval()(x_test), rtol=0, atol=1e-5)
    # recovery from the float teacher: a few points below float at most (float: 98.3 %)
    assert accuracy(converted, x_test, y_test) >= 0.95


class XnorNet(nn.Module):
    """XNOR-Net layout: batch norm (not ReLU) in front of each layer with binary inputs."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512, 64), nn.BatchNorm1d(64), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.mark.e2e
def test_xnor_binary_inputs_convert_and_export(digits, float_model, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    x_train, y_train, x_test, y_test = digits
    torch.manual_seed(0)
    prepared = prepare_lowbit(XnorNet(), LowBitConfig(weights="binary", activations="binary"))
    prepared, _ = fit(prepared, (x_train, y_train), teacher=float_model, epochs=8, lr=3e-3)
    converted = convert_lowbit(prepared)

    assert set(converted.edgeport_lowbit) == {"features.2.1.weight", "classifier.1.1.weight"}
    assert all(e["binary_input"] for e in converted.edgeport_lowbit.values())
    assert isinstance(converted.features[2][0], Sign) and isinstance(converted.classifier[1][0], Sign)
    inputs = []
    hooks = [converted.features[2][1].register_forward_pre_hook(lambda m, a: inputs.append(a[0])),
             converted.classifier[1][1].register_forward_pre_hook(lambda m, a: inputs.append(a[0]))]
    with torch.no_grad():
        out = converted(x_test)
        torch.testing.assert_close(out, prepared.eval()(x_test), rtol=0, atol=1e-5)
    for hook in hooks:
        hook.remove()
    assert all(set(t.unique().tolist()) == {-1.0, 1.0} for t in inputs)
    assert accuracy(converted, x_test, y_test) >= 0.9

    path = tmp_path / "xnor.onnx"
    torch.onnx.export(converted, (x_test[:4],), str(path), dynamo=True,
                      dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x_test[:32].numpy()})[0]
    np.testing.assert_allclose(got, out[:32].numpy(), rtol=0, atol=TOLERANCES["float32-runtime"].abs_err)


# ------------------------------------------------------------------ distillation

def test_distillation_loss_matches_hand_computation():
    student = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]])
    teacher = torch.tensor([[3.0, -1.0, 0.0], [0.2, 2.0, -0.5]])
    labels = torch.tensor([0, 2])
    s, t, T, a = student.double().numpy(), teacher.double().numpy(), 4.0, 0.3

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    ce = -np.mean(log_softmax(s)[np.arange(2), labels.numpy()])
    p_t, log_p_t, log_p_s = np.exp(log_softmax(t / T)), log_softmax(t / T), log_softmax(s / T)
    kl = np.sum(p_t * (log_p_t - log_p_s)) / 2
    expected = (1 - a) * ce + a * T * T * kl
    got = distillation_loss(student, teacher, labels, temperature=T, alpha=a)
    assert float(got) == pytest.approx(expected, abs=1e-6)

    mse = np.mean((s - t) ** 2)
    got = distillation_loss(student, teacher, labels, temperature=T, alpha=a, logit_regression=True)
    assert float(got) == pytest.approx((1 - a) * ce + a * mse, abs=1e-6)
    assert float(distillation_loss(student, teacher, None, temperature=T)) == pytest.approx(T * T * kl, abs=1e-6)
    assert float(distillation_loss(student, student, None)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.e2e
def test_fit_lowers_the_loss_deterministically(digits):
    from samples.digits.model import build_untrained

    x_train, y_train, _, _ = digits
    data = (x_train[:512], y_train[:512])
    first, history = fit(build_untrained(), data, epochs=3, lr=1e-2)
    second, again = fit(build_untrained(), data, epochs=3, lr=1e-2)
    assert history[0] > history[1] > history[2] and history[2] < 0.5 * history[0], history
    assert history == again
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert not first.training

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data), batch_size=128, shuffle=True)
    _, from_loader = fit(build_untrained(), loader, epochs=2, lr=1e-2, optimizer="sgd")
    assert len(from_loader) == 2 and from_loader[1] < from_loader[0]
    with pytest.raises(TypeError, match="re-iterable"):
        fit(build_untrained(), iter(loader), epochs=1, lr=1e-3)
    with pytest.raises(ValueError, match="epochs"):
        fit(build_untrained(), data, epochs=0, lr=1e-3)


def test_import_edgeport_training_loads_no_torch():
    code = "import sys, edgeport, edgeport.training; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
