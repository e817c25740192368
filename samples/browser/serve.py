"""Serve the browser sample: the page at `/`, the exported model at `/model/`, TF.js at `/lib/`.

    python -m samples.browser.serve [--model out/digits/browser-tfjs/digits] [--port 8000]

A static server on 127.0.0.1 only: TF.js comes from the repository's node_modules (`npm ci`),
the model from `edgeport export ... --target browser-tfjs`. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from edgeport.errors import EXIT_USAGE, InputError
from edgeport.runtimes.browser import node_modules

HERE = Path(__file__).resolve().parent
PAGE = {"": "index.html", "index.html": "index.html", "app.js": "app.js"}

# What the page loads from lib/, by name -> path inside node_modules. tf-backend-wasm.min.js
# fetches one of the three binaries, whichever the browser supports best.
LIB = {
    "tf.min.js": "@tensorflow/tfjs/dist/tf.min.js",
    "tf-backend-wasm.min.js": "@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js",
    "tfjs-backend-wasm.wasm": "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm",
    "tfjs-backend-wasm-simd.wasm": "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm",
    "tfjs-backend-wasm-threaded-simd.wasm": "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm",
}

MIME = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
        ".json": "application/json", ".wasm": "application/wasm", ".bin": "application/octet-stream"}

DEFAULT_MODEL = Path("out/digits/browser-tfjs/digits")
# --eval gives the input shape and checks the export in Chromium against the test split.
EXPORT_COMMAND = ("edgeport export samples.digits.model:build --target browser-tfjs --eval samples/digits/eval.npz "
                  "--out out/digits")


class _Handler(BaseHTTPRequestHandler):
    server: SampleServer

    def log_message(self, format, *args):  # quiet: one line per file is noise for a sample
        pass

    def do_HEAD(self):
        self.do_GET(body=False)

    def do_GET(self, body: bool = True):
        file = self.server.resolve(urllib.parse.unquote(urllib.parse.urlsplit(self.path).path))
        if file is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", MIME.get(file.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(file.stat().st_size))
        self.send_header("Cache-Control", "no-cache")  # a fresh export shows up on reload
        # Cross-origin isolation lets TF.js pick its multi-threaded wasm build.
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.end_headers()
        if body:
            with open(file, "rb") as f:
                shutil.copyfileobj(f, self.wfile)


class SampleServer(ThreadingHTTPServer):
    """The static server of the sample; `url` is where the page is."""

    daemon_threads = True

    def __init__(self, model_dir: Path, modules: Path, port: int):
        super().__init__(("127.0.0.1", port), _Handler)
        self.model_dir = model_dir.resolve()
        self.modules = modules
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"

    def resolve(self, path: str) -> Path | None:
        """The file behind a URL path, or None (only the page, the model folder and LIB are served)."""
        rest = path.lstrip("/")
        if rest in PAGE:
            return HERE / PAGE[rest]
        if rest.startswith("lib/") and rest[4:] in LIB:
            return self.modules / LIB[rest[4:]]
        if rest.startswith("model/"):
            file = (self.model_dir / rest[6:]).resolve()
            return file if file.is_relative_to(self.model_dir) and file.is_file() else None
        return None


def start_server(model_dir: str | Path = DEFAULT_MODEL, port: int = 0) -> tuple[SampleServer, str]:
    """Serve the sample with the TF.js graph model in `model_dir`, from a daemon thread.

    Args:
        model_dir: Folder holding model.json and its weight shards (or the model.json itself).
        port: Port on 127.0.0.1; 0 picks a free one.

    Returns:
        (server, url of the page); stop it with `server.shutdown(); server.server_close()`.

    Raises:
        InputError: no model.json in `model_dir`, TF.js missing from node_modules, or the port is taken.
    """
    model_dir = Path(model_dir)
    if model_dir.name == "model.json":
        model_dir = model_dir.parent
    if not (model_dir / "model.json").is_file():
        raise InputError(f"no model.json in {model_dir}: export the model first with `{EXPORT_COMMAND}`")
    modules = node_modules()
    missing = [name for name, file in LIB.items() if not (modules / file).is_file()]
    if missing:
        raise InputError(f"TF.js is missing from {modules} ({', '.join(missing)}): run `npm ci` in the edgeport repository")
    try:
        server = SampleServer(model_dir, modules, port)
    except OSError as exc:
        raise InputError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}; pick another --port") from None
    threading.Thread(target=server.serve_forever, name="browser-sample", daemon=True).start()
    return server, server.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samples.browser.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help=f"folder with the exported model.json (default: {DEFAULT_MODEL})")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default: 8000; 0 = any free one)")
    args = parser.parse_args(argv)
    try:
        server, url = start_server(args.model, args.port)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"Serving the digits sample at {url} (Ctrl+C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
