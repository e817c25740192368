"""The browser sample (samples/browser): its server hands out the page, the exported model and
TF.js, and digits drawn with the mouse on the page's canvas in headless Chromium are read right by
the exported TF.js model, from the 8x8 input the page shows."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import DIGITS, TOLERANCES

from edgeport.errors import InputError
from edgeport.runtimes import browser
from samples.browser import serve


def ellipse(cx: float, cy: float, rx: float, ry: float, segments: int = 24) -> list[tuple[float, float]]:
    """A closed polyline around (cx, cy), starting and ending at the top."""
    angles = (2 * math.pi * i / segments - math.pi / 2 for i in range(segments + 1))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# Strokes in pad pixels (the pad is 256x256), each one mouse-down ... mouse-up polyline. The 7 is
# crossed, as most of the data set's are: a plain one is read as a 3 about as often as not.
DRAWINGS = {
    0: [ellipse(128, 128, 60, 88)],
    1: [[(128, 40), (128, 216)]],
    4: [[(150, 40), (70, 150), (190, 150)], [(150, 90), (150, 216)]],
    7: [[(70, 45), (185, 45), (110, 215)], [(95, 130), (175, 130)]],
}
MIN_PROBABILITY = 0.9


class SamplePage:
    """The sample page in Chromium, drawn on with the mouse; keeps the page's errors."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))

    def draw(self, strokes: list[list[tuple[float, float]]]) -> int:
        """Clear the pad, draw `strokes`, and return the class the page predicts for all of them."""
        self.page.click("#clear")
        left, top = self.page.evaluate(
            "() => { const pad = document.getElementById('pad'), r = pad.getBoundingClientRect();"
            " return [r.left + pad.clientLeft, r.top + pad.clientTop]; }")
        for (x, y), *rest in strokes:
            self.page.mouse.move(left + x, top + y)
            self.page.mouse.down()
            for x, y in rest:
                self.page.mouse.move(left + x, top + y, steps=4)
            self.page.mouse.up()
        prediction = self.page.wait_for_selector(f"#prediction[data-strokes='{len(strokes)}']", timeout=10_000)
        return int(prediction.get_attribute("data-class"))

    def probabilities(self) -> np.ndarray:
        return np.array(json.loads(self.page.get_attribute("#bars", "data-probabilities")))

    def seen(self) -> np.ndarray:
        """The 8x8 input as the page shows it (gray = value * 255), back as the model's [0, 1] values."""
        red = self.page.evaluate("() => Array.from(document.getElementById('seen').getContext('2d')"
                                 ".getImageData(0, 0, 8, 8).data.filter((_, i) => i % 4 === 0))")
        return (np.round(np.array(red).reshape(8, 8) * 16 / 255) / 16).astype(np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The digits CNN exported to a TF.js graph model (float32)."""
    pytest.importorskip("torch", reason="torch is not installed (the export needs it)")
    from edgeport.checks import CheckSettings
    from edgeport.pipeline import export

    out = tmp_path_factory.mktemp("browser-sample")
    report = export(DIGITS, targets="browser-tfjs", out=out, input_shapes=[(1, 1, 8, 8)],
                    settings=CheckSettings(runs=5, warmup=1))
    assert report.exit_code == 0
    return out / "browser-tfjs" / "digits"


@pytest.fixture(scope="module")
def sample_url(model_dir):
    try:
        server, url = serve.start_server(model_dir)
    except InputError as exc:  # the model is there and port 0 is free: TF.js is what is missing
        pytest.skip(str(exc))
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def sample(sample_url):
    reason = browser.ChromiumRuntime().availability()
    if reason:
        pytest.skip(reason)
    page = browser.shared_browser().new_page()  # its own browser context, closed below
    try:
        opened = SamplePage(page)
        page.goto(sample_url)
        page.wait_for_selector("body[data-ready=true]", timeout=20_000)
        yield opened
    finally:
        page.context.close()


def fetch(url: str) -> tuple[int, str, bytes]:
    """GET from the sample's own server on 127.0.0.1 (started by the test; nothing leaves the machine)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, "", b""


@pytest.mark.e2e
def test_server_serves_page_model_and_tfjs_only(sample_url, model_dir):
    modules = browser.node_modules()
    expected = {"": ("text/html", (serve.HERE / "index.html").read_bytes()),
                "app.js": ("text/javascript", (serve.HERE / "app.js").read_bytes()),
                "model/model.json": ("application/json", (model_dir / "model.json").read_bytes()),
                "lib/tf.min.js": ("text/javascript", (modules / serve.LIB["tf.min.js"]).read_bytes())}
    expected.update({f"lib/{name}": ("application/wasm", (modules / file).read_bytes())
                     for name, file in serve.LIB.items() if name.endswith(".wasm")})
    for path, (mime, body) in expected.items():
        status, content_type, got = fetch(sample_url + path)
        assert (status, content_type.split(";")[0]) == (200, mime), path
        assert got == body, path
    for path in ("serve.py", "README.md", "model/../serve.py", "lib/tf.js", "model/nothing.bin"):
        assert fetch(sample_url + path)[0] == 404, path


@pytest.mark.e2e
def test_page_loads_the_model_on_wasm(sample):
    assert "wasm backend" in sample.page.text_content("#status")
    assert sample.errors == []


@pytest.mark.e2e
@pytest.mark.parametrize("digit", sorted(DRAWINGS))
def test_a_drawn_digit_is_recognized(sample, digit):
    import torch

    from samples.digits.model import build

    predicted = sample.draw(DRAWINGS[digit])
    probabilities = sample.probabilities()
    assert predicted == digit, f"drew {digit}, page says {predicted}: {np.round(probabilities, 3)}"
    assert probabilities[digit] >= MIN_PROBABILITY

    # The page shows the input it gave the model, normalized as the digits data: the ink spans all
    # 8 rows and at most the middle 6 columns, about 310 of 1024 pixels (19.4 of 64 after / 16).
    seen = sample.seen()
    assert seen[0].any() and seen[7].any() and not seen[:, [0, 7]].any()
    assert seen.sum() == pytest.approx(310 / 16, abs=2)
    # ... and that input is what the model read: PyTorch agrees with the page's probabilities.
    with torch.no_grad():
        reference = torch.softmax(build()(torch.from_numpy(seen[None, None])), 1)[0].numpy()
    np.testing.assert_allclose(probabilities, reference, rtol=0, atol=TOLERANCES["float32-runtime"].abs_err)
    assert sample.errors == []


@pytest.mark.e2e
def test_clear_empties_the_pad_and_the_prediction(sample):
    sample.draw(DRAWINGS[1])
    sample.page.click("#clear")
    assert sample.page.get_attribute("#prediction", "data-class") == ""
    assert not sample.seen().any()


def test_serve_without_a_model_names_the_export_command(tmp_path, capsys):
    assert serve.main(["--model", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no model.json in ")
    assert "edgeport export samples.digits.model:build --target browser-tfjs" in err


def test_serve_without_node_modules_asks_for_npm_ci(tmp_path, monkeypatch, capsys):
    (tmp_path / "model.json").write_text("{}")
    monkeypatch.setenv("EDGEPORT_NODE_MODULES", str(tmp_path / "node_modules"))
    assert serve.main(["--model", str(tmp_path / "model.json"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "npm ci" in err
