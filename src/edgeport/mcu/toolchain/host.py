"""Build a generated C library for the host (x86_64 gcc) under AddressSanitizer and
UndefinedBehaviorSanitizer (with float-cast-overflow, which gcc's `undefined` leaves out), run
it on inputs and read its outputs back.

The library contract is the one `firmware` builds for Cortex-M (`<name>.h` with
`<NAME>_INPUT_SIZE` / `<NAME>_OUTPUT_SIZE` and `<name>_invoke`, optionally `<name>_invoke_f32`
with the model's own I/O types). The harness (`templates/host_main.c`) gives every sample
buffers of exactly its size on the heap, fills the output with a pattern, checks that the input
was left unchanged and prints the outputs as text. With `-fno-sanitize-recover=all` the first
finding ends the run: `run_host` raises `SanitizerError` with one line (the finding and where)
and the path of the full report. The DSP path of the kernels runs on the host with
`-DEP_EMULATE_DSP` (plain-C models of the ACLE intrinsics), the `dsp-emulated` variant.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeport.errors import InputError
from edgeport.mcu.compiler.codegen import KERNEL_DIR
from edgeport.mcu.toolchain.firmware import (
    MissingToolchainError,
    include_dirs,
    write_log,
    fill_template,
    library_sources,
    read_template,
    run_tool,
)

HOST_CC = "gcc"
# gcc's `undefined` leaves out float-cast-overflow (a float out of an integer's range converted to
# it), which is undefined in C too
SANITIZE = ("-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer")
HOST_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-g")
# kernel variants the host can run: the plain C path and the DSP path on emulated intrinsics
# (kernels/ep_dsp_emulation.h, which a library does not ship: taken from edgeport's kernels)
VARIANTS = {"plain": (), "dsp-emulated": ("-DEP_EMULATE_DSP", f"-I{KERNEL_DIR}")}
SANITIZER_ENV = {
    "ASAN_OPTIONS": "halt_on_error=1:abort_on_error=0:detect_leaks=1:detect_stack_use_after_return=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
}
EXIT_MEANINGS = {  # templates/host_main.c
    2: "the harness got bad arguments or ran out of memory",
    3: "the input file ended in the middle of a sample",
    4: "{fn} returned non-zero",
    6: "{fn} modified its input buffer",
}
_DTYPES = {"int8_t": "int8", "float": "float32"}
_UBSAN = re.compile(r"(?P<file>[^\s:]+):(?P<pos>\d+(?::\d+)?): runtime error: (?P<msg>.*)$")


class HostRunError(RuntimeError):
    """The host build exited with an error: the harness's status or a crash. Like a firmware that
    does not build, a library that fails on the host is a bug in edgeport (`log`: full output)."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


class SanitizerError(HostRunError):
    """AddressSanitizer or UndefinedBehaviorSanitizer found an error; `finding` is its one line."""

    def __init__(self, message: str, finding: str, log: str = ""):
        super().__init__(message, log)
        self.finding = finding


@dataclass(frozen=True)
class HostBuild:
    """A host executable of one library and how to feed it.

    Attributes:
        exe: The executable; name: library name; function: the entry point it calls.
        input_dtype / output_dtype: "int8" or "float32", per value.
        input_size / output_size: values per sample.
        sanitized: built with AddressSanitizer and UndefinedBehaviorSanitizer.
        variant: key of `VARIANTS`.
    """

    exe: Path
    name: str
    function: str
    input_dtype: str
    output_dtype: str
    input_size: int
    output_size: int
    sanitized: bool
    variant: str


def host_missing() -> list[str]:
    """Install hints for what the sanitizer build needs (gcc, libasan, libubsan); empty when present."""
    return list(_probe_sanitizers(shutil.which(HOST_CC)))


@functools.lru_cache(maxsize=None)
def _probe_sanitizers(gcc: str | None) -> tuple[str, ...]:
    if gcc is None:
        return (f"{HOST_CC} not found: apt-get install gcc",)
    with tempfile.TemporaryDirectory(prefix="edgeport-host-") as tmp:
        probe = Path(tmp, "probe.c")
        probe.write_text("int main(void) { return 0; }\n")
        done = subprocess.run([HOST_CC, *SANITIZE, str(probe), "-o", str(Path(tmp, "probe"))], check=False,
                              capture_output=True, text=True)
    if done.returncode != 0:
        return (f"{HOST_CC} cannot link -fsanitize=address,undefined: apt-get install libasan8 libubsan1 "
                "(the ones of this gcc's version)",)
    return ()


def library_interface(lib_dir: Path, name: str) -> dict:
    """Sizes and entry points declared in `<name>.h`: {"input_size", "output_size", "functions":
    {function: (input C type, output C type)}}.

    Raises:
        InputError: the header lacks the sizes or `<name>_invoke`.
    """
    header = (Path(lib_dir) / f"{name}.h").read_text()
    sizes = {}
    for key in ("INPUT", "OUTPUT"):
        m = re.search(rf"#define {name.upper()}_{key}_SIZE (\d+)", header)
        if m is None:
            raise InputError(f"{name}.h does not define {name.upper()}_{key}_SIZE (not a generated library)")
        sizes[f"{key.lower()}_size"] = int(m.group(1))
    # entry points of one input and one output buffer (several ports: `_invoke_packed`)
    prototype = re.compile(rf"int ({name}_invoke(?:_f32|_packed)?)\(const (int8_t|float) \*\w+, (int8_t|float) \*\w+\);")
    functions = {m.group(1): (m.group(2), m.group(3)) for m in prototype.finditer(header)}
    if not re.search(rf"int {name}_invoke\(", header):
        raise InputError(f"{name}.h does not declare int {name}_invoke(const int8_t *, ..., int8_t *)")
    return {**sizes, "functions": functions}


def build_host(lib_dir: Path, name: str, out_dir: Path, *, float_api: bool = False, variant: str = "plain",
               sanitize: bool = True, opt: str = "-O1", cache_dir: Path | None = None) -> HostBuild:
    """Compile the library and the harness with the host gcc into `out_dir/<function>-<variant>`.

    Args:
        lib_dir: Folder of the generated library.
        name: Library name.
        out_dir: Build folder (created).
        float_api: Call `<name>_invoke_f32` (the model's own I/O types) instead of `<name>_invoke`.
        variant: Key of `VARIANTS` (the plain C kernels, or the DSP path on emulated intrinsics).
        sanitize: Build with AddressSanitizer and UndefinedBehaviorSanitizer (`SANITIZE`).
        opt: gcc optimisation flag.
        cache_dir: Folder of compiled objects kept across builds, keyed by the source, every
            header of the library, the flags and the compiler (kernels compile once per variant).

    Raises:
        MissingToolchainError: gcc or its sanitizer runtimes are missing.
        InputError: Bad library folder or name, unknown variant, no `<name>_invoke_f32`.
        FirmwareBuildError: A compile or link error (one line, full log in a file).
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown host variant '{variant}' (known: {', '.join(VARIANTS)})")
    lib_dir, out_dir = Path(lib_dir).resolve(), Path(out_dir).resolve()
    sources = [s for s in library_sources(lib_dir, name) if out_dir not in s.parents]
    interface = library_interface(lib_dir, name)
    packed = f"{name}_invoke_packed" in interface["functions"]
    function = f"{name}_invoke_f32" if float_api else f"{name}_invoke_packed" if packed else f"{name}_invoke"
    if function not in interface["functions"]:
        why = "several inputs or outputs: the host harness runs the int8 entry point" if packed else \
            "the model's I/O is int8"
        raise InputError(f"{name}.h does not declare {function} with one input and one output buffer ({why}: "
                         "use float_api=False)")
    if sanitize and (missing := host_missing()):
        raise MissingToolchainError(missing)
    in_t, out_t = interface["functions"][function]
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{function}-{variant}{'-san' if sanitize else ''}"
    main = out_dir / f"{tag}.c"
    main.write_text(fill_template(read_template("host_main.c"), {
        "name": name, "NAME": name.upper(), "fn": function, "in_t": in_t, "out_t": out_t,
        "out_fmt": '"%.9g"' if out_t == "float" else '"%d"', "out_cast": "(double)" if out_t == "float" else "(int)"}))

    cflags = [*HOST_CFLAGS, opt, *(SANITIZE if sanitize else ()), *(f"-I{d}" for d in include_dirs(lib_dir)),
              *VARIANTS[variant]]
    obj_dir = out_dir / f"obj-{variant}{'-san' if sanitize else ''}"
    obj_dir.mkdir(exist_ok=True)
    folders = [*include_dirs(lib_dir), *(Path(f[2:]) for f in VARIANTS[variant] if f.startswith("-I"))]
    headers = {p: p.name.encode() + p.read_bytes() for d in folders for p in sorted(d.glob("*.h"))}
    shared = b"".join(text for p, text in headers.items() if p.name != f"{name}.h")  # what a kernel can include
    jobs, objects = [], []
    for src in [*sources, main]:
        what = f"compiling {src.name} for the host ({variant}{', sanitizers' if sanitize else ''})"
        obj = obj_dir / "__".join(src.relative_to(src.parent if src == main else lib_dir).with_suffix(".o").parts)
        objects.append(obj)
        own = src == main or src.name == f"{name}.c"
        jobs.append((src, obj, cflags, what, b"".join(headers.values()) if own else shared, cache_dir))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for future in [pool.submit(_compile, *job) for job in jobs]:
            future.result()
    exe = out_dir / tag
    run_tool([HOST_CC, *(SANITIZE if sanitize else ()), *map(str, objects), "-o", str(exe)],
             f"linking the host build of {name} ({variant})")
    return HostBuild(exe, name, function, _DTYPES[in_t], _DTYPES[out_t], interface["input_size"],
                     interface["output_size"], sanitize, variant)


def _compile(src: Path, obj: Path, cflags: list[str], what: str, headers: bytes, cache_dir: Path | None) -> None:
    if cache_dir is None:
        run_tool([HOST_CC, *cflags, "-c", str(src), "-o", str(obj)], what)
        return
    flags = " ".join(f for f in cflags if not f.startswith("-I"))  # the headers' text stands for the folders
    key = hashlib.sha256(b"\0".join([src.read_bytes(), headers, flags.encode(), _compiler_id()]))
    cached = Path(cache_dir) / f"{src.stem}-{key.hexdigest()[:32]}.o"
    if not cached.is_file():
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.{id(obj)}.tmp")
        run_tool([HOST_CC, *cflags, "-c", str(src), "-o", str(partial)], what)
        os.replace(partial, cached)
    shutil.copyfile(cached, obj)


_COMPILER_ID: list[bytes] = []


def _compiler_id() -> bytes:
    if not _COMPILER_ID:
        done = subprocess.run([HOST_CC, "--version"], check=False, capture_output=True)
        _COMPILER_ID.append(done.stdout)
    return _COMPILER_ID[0]


def run_host(build: HostBuild, inputs: np.ndarray, timeout: float = 300) -> np.ndarray:
    """Run the host build on every sample and return its outputs.

    Args:
        build: From `build_host`.
        inputs: Array of shape (N, input_size) of the build's input dtype (a single sample may be 1-D).
        timeout: Seconds before the run is killed.

    Returns:
        Array of shape (N, output_size) of the build's output dtype.

    Raises:
        InputError: `inputs` has the wrong dtype or size.
        SanitizerError: a sanitizer reported an error (one line: the finding; full report in a file).
        HostRunError: the harness failed otherwise, crashed, timed out or printed the wrong count.
    """
    inputs = np.asarray(inputs)
    if inputs.dtype != np.dtype(build.input_dtype):
        raise InputError(f"host inputs of {build.function} must be {build.input_dtype}, got {inputs.dtype}")
    if inputs.ndim == 1:
        inputs = inputs[None, :]
    inputs = inputs.reshape(len(inputs), -1)
    if inputs.shape[1] != build.input_size:
        raise InputError(f"host inputs must have shape (N, {build.input_size}), got {inputs.shape}")
    label = f"{build.function} on the host ({build.variant}{', sanitizers' if build.sanitized else ''})"
    with tempfile.TemporaryDirectory(prefix="edgeport-host-") as tmp:
        feed = Path(tmp, "inputs.bin")
        feed.write_bytes(np.ascontiguousarray(inputs).tobytes())
        try:
            done = subprocess.run([str(build.exe), str(feed)], check=False, capture_output=True, text=True,
                                  timeout=timeout, env={**os.environ, **SANITIZER_ENV})
        except subprocess.TimeoutExpired:
            raise HostRunError(f"{label} did not finish in {timeout:g} s ({len(inputs)} samples); killed") from None
    if done.returncode != 0:
        log = write_log(f"{label}\ncommand: {build.exe} <{len(inputs)} samples>\nexit status: {done.returncode}\n\n"
                         f"{done.stderr}\n", "edgeport-host-")
        where = f"full report: {log}" if log else "no log file could be written"
        finding = _finding(done.stderr)
        if finding:
            raise SanitizerError(f"{label}: {finding} ({where})", finding, log)
        meaning = EXIT_MEANINGS.get(done.returncode, "crashed" if done.returncode < 0 else "failed")
        raise HostRunError(f"{label} exited with {done.returncode}: {meaning.format(fn=build.function)} ({where})", log)
    dtype = np.dtype(build.output_dtype)
    try:
        rows = [np.array(line.split(), dtype=np.float64 if dtype.kind == "f" else np.int64)
                for line in done.stdout.splitlines()]
        out = np.array(rows, dtype=dtype).reshape(len(rows), -1) if rows else np.zeros((0, build.output_size), dtype)
    except ValueError:
        out = None
    if out is None or out.shape != (len(inputs), build.output_size):
        raise HostRunError(f"{label} printed {len(done.stdout.splitlines())} lines for {len(inputs)} samples of "
                           f"{build.output_size} values, or a malformed one")
    return out


def _finding(stderr: str) -> str:
    """The sanitizer's one line: UBSan's `file:line:col: runtime error: ...`, else ASan's summary
    (kind, file:line, function), else its ERROR line; folders left out."""
    lines = [line.strip() for line in stderr.splitlines()]
    for line in lines:
        m = _UBSAN.search(line)
        if m:
            return f"{Path(m['file']).name}:{m['pos']}: runtime error: {m['msg']}"
    for wanted in ("SUMMARY: ", "ERROR: "):
        for line in lines:
            if line.startswith(wanted) and "Sanitizer" in line:
                return re.sub(r"/\S*/", "", line)
    return ""
