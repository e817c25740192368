"""Headless Chromium: runs TF.js graph models (tfjs-cpu, tfjs-wasm) and ONNX / ORT-format models
(ort-wasm) in a real browser page, with the runtimes from the repository's node_modules.

One static HTTP server and one headless Chromium per process, both started on first use and
stopped at exit. Each session is one page in its own browser context (so nothing is cached between
sessions), served under its own path prefix `/s/<token>/`, so the server's log tells exactly what
that page downloaded. Playwright's sync API is used: drive all sessions from one thread.

Chromium is driven through the PyPI `playwright` package (the same driver as npm's
`playwright-core`, callable from the check's own Python process) with Debian's Chromium as the
executable, so nothing downloads a browser.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import gzip
import importlib.util
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import numpy as np

from edgeport.errors import InputError, RuntimeGap
from edgeport.tensors import TensorSpec, fit_feeds

BACKENDS = ("tfjs-cpu", "tfjs-wasm", "ort-wasm")

WEB = Path(__file__).resolve().parent / "web"

# Runtime files served under lib/, by name -> path inside node_modules. TF.js is loaded as
# core + converter + one backend (not the 1.5 MB tf.min.js union bundle, which also carries
# layers, data and webgl), so the download numbers are what a graph-model app ships.
LIB = {
    "tf-core.min.js": "@tensorflow/tfjs-core/dist/tf-core.min.js",
    "tf-converter.min.js": "@tensorflow/tfjs-converter/dist/tf-converter.min.js",
    "tf-backend-cpu.min.js": "@tensorflow/tfjs-backend-cpu/dist/tf-backend-cpu.min.js",
    "tf-backend-wasm.min.js": "@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js",
    "tfjs-backend-wasm.wasm": "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm",
    "tfjs-backend-wasm-simd.wasm": "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm",
    # The wasm-only build: ort.min.js would also pull in the WebGPU/WebNN (jsep) wasm.
    "ort.wasm.min.js": "onnxruntime-web/dist/ort.wasm.min.js",
    "ort-wasm-simd-threaded.mjs": "onnxruntime-web/dist/ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm": "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm",
}

# Classic scripts each backend's page loads, in order (wasm binaries are fetched by the scripts).
SCRIPTS = {
    "tfjs-cpu": ("tf-core.min.js", "tf-converter.min.js", "tf-backend-cpu.min.js"),
    "tfjs-wasm": ("tf-core.min.js", "tf-converter.min.js", "tf-backend-wasm.min.js"),
    "ort-wasm": ("ort.wasm.min.js",),
}

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Without the background-networking switches Chromium keeps calling home on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

MIME = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
        ".wasm": "application/wasm", ".json": "application/json"}

TF_DTYPES = {"DT_FLOAT": "float32", "DT_INT32": "int32", "DT_BOOL": "bool", "DT_INT64": "int64",
             "DT_HALF": "float16", "DT_UINT8": "uint8", "DT_INT8": "int8"}


def backends_for(path: str | Path) -> tuple[str, ...]:
    """Backends that can run `path`: TF.js graph models (model.json, or a folder holding one) and
    ONNX (.onnx, .ort)."""
    path = Path(path)
    if path.suffix == ".json" or (path / "model.json").is_file():
        return ("tfjs-cpu", "tfjs-wasm")
    if path.suffix in (".onnx", ".ort"):
        return ("ort-wasm",)
    raise InputError(f"Chromium runtimes cannot run {path.name}: expected a TF.js model.json (or its folder), .onnx or .ort")


def primary_backend(path: str | Path) -> str:
    """The backend a deployment would pick: tfjs-wasm for TF.js, ort-wasm for ONNX."""
    return "tfjs-wasm" if "tfjs-wasm" in backends_for(path) else "ort-wasm"


def node_modules() -> Path:
    """$EDGEPORT_NODE_MODULES, else the nearest node_modules above the working folder holding
    @tensorflow/tfjs, else the one in the repository this file belongs to."""
    if os.environ.get("EDGEPORT_NODE_MODULES"):
        return Path(os.environ["EDGEPORT_NODE_MODULES"])
    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        if (folder / "node_modules" / "@tensorflow" / "tfjs").is_dir():
            return folder / "node_modules"
    return Path(__file__).resolve().parents[3] / "node_modules"


def chromium_executable() -> str | None:
    """$EDGEPORT_CHROMIUM, else the first Chromium on PATH; None when there is none."""
    names = [os.environ["EDGEPORT_CHROMIUM"]] if os.environ.get("EDGEPORT_CHROMIUM") else CHROMIUM_NAMES
    return next((found for found in map(shutil.which, names) if found), None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Handler(BaseHTTPRequestHandler):
    """Serves /s/<token>/{harness.html, harness.js, lib/<runtime file>, m/<model file>}."""

    server: _Server

    def log_message(self, format, *args):  # quiet: the server keeps its own log of what it served
        pass

    def do_GET(self):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        _, prefix, token, rest = (path.split("/", 3) + ["", "", ""])[:4]
        file = self.server.resolve(token, rest) if prefix == "s" else None
        if file is None:
            self.send_error(404)
            return
        size = file.stat().st_size
        self.server.record(token, rest, size)
        self.send_response(200)
        self.send_header("Content-Type", MIME.get(file.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(size))
        self.send_header("Cache-Control", "no-store")
        # Cross-origin isolation: performance.now() gets 5 us resolution instead of 100 us.
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.end_headers()
        with open(file, "rb") as f:
            shutil.copyfileobj(f, self.wfile)


class _Server(ThreadingHTTPServer):
    """The static server on 127.0.0.1, with the model folder of each session and its fetch log."""

    daemon_threads = True

    def __init__(self, modules: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.modules = modules
        self.folders: dict[str, Path] = {}
        self.fetched: dict[str, list[tuple[str, int]]] = {}
        self.lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, name="edgeport-static", daemon=True).start()

    def resolve(self, token: str, rest: str) -> Path | None:
        if token not in self.fetched:
            return None
        if rest in ("harness.html", "harness.js"):
            return WEB / rest
        if rest.startswith("lib/") and rest[4:] in LIB:
            return self.modules / LIB[rest[4:]]
        folder = self.folders.get(token)
        if rest.startswith("m/") and folder is not None:
            file = (folder / rest[2:]).resolve()
            return file if file.is_relative_to(folder) and file.is_file() else None
        return None

    def record(self, token: str, rest: str, size: int) -> None:
        with self.lock:
            self.fetched[token].append((rest, size))

    def handle_error(self, request, client_address) -> None:
        """A page that went away mid-download (Chromium closed, a run stopped) is not an error to
        print: the check that needed the file reports what it missed."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            super().handle_error(request, client_address)

    def add(self, folder: Path) -> str:
        token = secrets.token_hex(8)
        with self.lock:
            self.folders[token] = folder.resolve()
            self.fetched[token] = []
        return token


class _Host:
    """The process's static server and headless Chromium, closed at exit."""

    def __init__(self):
        self.server = _Server(node_modules())
        self.playwright = None
        self.browser = None
        # Chromium's own temporary files go into a folder of ours, removed on close: a browser
        # killed by a stopped run never removes its singleton socket folder itself.
        self.tmp = Path(tempfile.mkdtemp(prefix="edgeport-chromium-"))
        atexit.register(self.close)

    def launch(self):
        """The browser, launched on first use (and again if it went away, e.g. crashed)."""
        if self.browser is None or not self.browser.is_connected():
            from playwright.sync_api import Error, sync_playwright

            if self.playwright is None:
                self.playwright = sync_playwright().start()
            try:
                self.browser = self.playwright.chromium.launch(
                    executable_path=chromium_executable(), headless=True, args=CHROMIUM_ARGS,
                    env={**os.environ, "TMPDIR": str(self.tmp)})
            except Error as exc:
                raise RuntimeGap(f"Chromium failed to launch ({_first_line(exc)}); install Debian package 'chromium'") from None
        return self.browser

    def close(self) -> None:
        if self.playwright is not None:
            from playwright.sync_api import Error

            with contextlib.suppress(Error):  # at exit the driver may already be gone
                if self.browser is not None:
                    self.browser.close()
                self.playwright.stop()
            self.browser = self.playwright = None
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.tmp, ignore_errors=True)


_host: _Host | None = None


def _shared_host() -> _Host:
    global _host
    if _host is None:
        _host = _Host()
    return _host


def shared_browser():
    """The process's headless Chromium (a Playwright Browser), launched on first use."""
    return _shared_host().launch()


def _encode(array: np.ndarray, dtype: str) -> dict:
    # np.array, not np.ascontiguousarray: that makes a scalar (a sample rate) an array of shape [1]
    data = np.array(array, dtype=np.dtype(dtype).newbyteorder("<"), order="C")
    return {"dtype": dtype, "shape": list(data.shape), "b64": base64.b64encode(data.tobytes()).decode("ascii")}


def _decode(tensor: dict) -> np.ndarray:
    dtype = np.dtype(tensor["dtype"])
    data = np.frombuffer(base64.b64decode(tensor["b64"]), dtype=dtype.newbyteorder("<"))
    return data.astype(dtype).reshape(tensor["shape"])


def _page_spec(entry: dict) -> TensorSpec:
    shape = tuple(None if d is None or d < 0 else d for d in entry["shape"] or ())
    return TensorSpec(entry["name"], shape, entry["dtype"] or "float32")


def _signature_spec(key: str, entry: dict) -> TensorSpec:
    dims = entry.get("tensorShape", {}).get("dim", [])
    shape = tuple(None if int(d.get("size", 0)) < 0 else int(d.get("size", 0)) for d in dims)
    return TensorSpec(key.removesuffix(":0"), shape, TF_DTYPES.get(entry.get("dtype"), "float32"))


def _model_file(path: Path, backend: str) -> Path:
    if backend.startswith("tfjs-") and path.is_dir():
        return path / "model.json"
    return path


class BrowserSession:
    """One model loaded in one Chromium page on one backend."""

    timing = "self"  # `time_runs` times inference in the page, without the cost of driving it from Python

    def __init__(self, path: str | Path, backend: str, threads: int = 1):
        if backend not in backends_for(path):
            raise InputError(f"backend '{backend}' cannot run {Path(path).name} (it can: {', '.join(backends_for(path))})")
        self.backend = backend
        self.requested_threads = threads  # wasm always runs single-threaded here; see self.threads
        self.console: list[str] = []  # console errors and uncaught page errors, for diagnostics
        self._file = _model_file(Path(path), backend)
        if not self._file.is_file():
            raise InputError(f"{self._file} does not exist")
        self._host = _shared_host()
        self._token = self._host.server.add(self._file.parent)
        self._download: dict | None = None
        self._page = None
        try:
            with self._page_errors():
                self._page = self._host.launch().new_page()  # own context: fresh cache and storage
                self._page.on("console", lambda m: m.type == "error" and self.console.append(m.text))
                self._page.on("pageerror", lambda e: self.console.append(_first_line(e)))
                self._page.goto(f"{self._host.server.url}/s/{self._token}/harness.html")
            info = self._call("load", {"backend": backend, "url": f"m/{self._file.name}",
                                       "scripts": list(SCRIPTS[backend])})
            self.load_ms: float = info["load_ms"]
            self.threads: int = info["threads"]
            self._specs(info)
            # the first inference, timed: on zeros now when every size but the batch is known, else
            # on the first real feed (an image model of any size: zeros of size 1 may not even run)
            self.first_run_ms: float | None = None
            if all(d is not None for spec in self.inputs for d in spec.shape[1:]):
                self._run({s.name: np.zeros(s.concrete_shape(1), s.dtype) for s in self.inputs})
        except BaseException:
            self.close()
            raise

    def _specs(self, info: dict) -> None:
        """Inputs/outputs and the names the page knows them by: the model.json signature for TF.js
        (':0' dropped from the names), the page's view of the model otherwise."""
        signature = {}
        if self.backend.startswith("tfjs-"):
            signature = json.loads(self._file.read_text()).get("signature") or {}
        if signature.get("inputs") and signature.get("outputs"):
            self.inputs = [_signature_spec(k, v) for k, v in signature["inputs"].items()]
            self.outputs = [_signature_spec(k, v) for k, v in signature["outputs"].items()]
            self._input_keys = list(signature["inputs"])
            self._output_keys = list(signature["outputs"])
        else:
            self.inputs = [_page_spec(e) for e in info["inputs"]]
            self.outputs = [_page_spec(e) for e in info["outputs"]]
            self._input_keys = [s.name for s in self.inputs]
            self._output_keys = [s.name for s in self.outputs]

    @contextlib.contextmanager
    def _page_errors(self):
        """Playwright's errors (page crashed or closed, harness did not load, ...) as a RuntimeGap."""
        from playwright.sync_api import Error

        try:
            yield
        except Error as exc:
            raise RuntimeGap(f"{self.backend} in Chromium failed: {_first_line(exc)}") from None

    def _call(self, method: str, args: dict | None = None):
        if self._page is None:
            raise ValueError("the Chromium session is closed")
        with self._page_errors():
            reply = self._page.evaluate(f"(args) => window.edgeport.{method}(args)", args or {})
        if "error" in reply:
            raise RuntimeGap(f"{self.backend} in Chromium failed: {reply['error']}")
        return reply["ok"]

    def _feeds(self, feeds: dict[str, np.ndarray]) -> dict:
        missing = [s.name for s in self.inputs if s.name not in feeds]
        if missing:
            raise InputError(f"missing input(s) {', '.join(missing)} (the model takes: {', '.join(s.name for s in self.inputs)})")
        feeds = fit_feeds(feeds, self.inputs)
        return {key: _encode(feeds[s.name], s.dtype) for key, s in zip(self._input_keys, self.inputs)}

    def _run(self, feeds: dict[str, np.ndarray]) -> tuple[float, list[np.ndarray]]:
        reply = self._call("run", {"feeds": self._feeds(feeds), "outputs": self._output_keys})
        outputs = [_decode(t) for t in reply["outputs"]]
        if self.first_run_ms is None:
            self.first_run_ms = reply["ms"]
            self.outputs = [s if s.shape or o.ndim == 0 else TensorSpec(s.name, o.shape, str(o.dtype))
                            for s, o in zip(self.outputs, outputs)]
        return reply["ms"], outputs

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run once; outputs in the order of `self.outputs`."""
        return self._run(feeds)[1]

    def time_runs(self, feeds: dict[str, np.ndarray], runs: int, warmup: int) -> list[float]:
        """Seconds per inference, timed in the page with performance.now() around one inference
        including reading its outputs back; `warmup` untimed runs first."""
        if self.first_run_ms is None:
            self._run(feeds)
        times = self._call("time", {"feeds": self._feeds(feeds), "outputs": self._output_keys,
                                    "runs": runs, "warmup": warmup})
        return [ms / 1000 for ms in times]

    def download(self) -> dict:
        """What the page fetched, from the static server's log: model files (raw and gzip -9 bytes),
        runtime files (JS and wasm under lib/), and every served path with its bytes."""
        if self._download is None:
            files: dict[str, int] = {}
            for rest, size in self._host.server.fetched[self._token]:
                files[rest] = files.get(rest, 0) + size
            model = [rest for rest in files if rest.startswith("m/")]
            self._download = {
                "model_bytes": sum(files[rest] for rest in model),
                "model_gzip_bytes": sum(len(gzip.compress((self._file.parent / rest[2:]).read_bytes(), 9))
                                        for rest in model),
                "runtime_bytes": sum(size for rest, size in files.items() if rest.startswith("lib/")),
                "files": files,
            }
        return self._download

    def close(self) -> None:
        """Close the page and its browser context; download() still answers afterwards."""
        page, self._page = self._page, None
        self._host.server.folders.pop(self._token, None)
        if page is not None:
            from playwright.sync_api import Error

            with contextlib.suppress(Error):  # the browser may be gone already (crash, exit)
                page.context.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_session(path: str | Path, backend: str, threads: int = 1) -> BrowserSession:
    """Load `path` in a new Chromium page on `backend` (one of BACKENDS)."""
    reason = ChromiumRuntime().availability()
    if reason:
        raise RuntimeGap(reason)
    return BrowserSession(path, backend, threads)


class ChromiumRuntime:
    """Headless Chromium with TF.js and onnxruntime-web; `load` picks the model's primary backend."""

    name = "chromium"
    latency_unavailable = None

    def availability(self) -> str | None:
        """None when usable; else one reason naming what to install. Imports nothing heavy."""
        if chromium_executable() is None:
            return "Chromium is not installed (Debian package 'chromium': apt-get install chromium)"
        if importlib.util.find_spec("playwright") is None:
            return "Python package 'playwright' is not installed (pip install 'edgeport[browser]')"
        modules = node_modules()
        if not all((modules / file).is_file() for file in LIB.values()):
            return ("npm packages for the browser runtimes are missing: run 'npm ci' in the edgeport repository "
                    "(needs @tensorflow/tfjs, @tensorflow/tfjs-backend-wasm, onnxruntime-web)")
        return None

    def load(self, path: str, threads: int) -> BrowserSession:
        """A session on the model's primary backend."""
        return open_session(path, primary_backend(path), threads)
