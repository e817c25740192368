"""Build a generated C library into a bare-metal QEMU firmware image, run it, and write the files
that integrate the library into a firmware project (CMake, PlatformIO, an example Makefile).

The library contract: a folder with `<name>.h` (defining `<NAME>_INPUT_SIZE`, `<NAME>_OUTPUT_SIZE`,
`<NAME>_ARENA_SIZE`, declaring `int <name>_invoke(const int8_t *input, int8_t *output)`, or for
several inputs or outputs `<NAME>_INPUTS` / `<NAME>_OUTPUTS` and `<name>_invoke_packed` with the
same two buffers, which the harness then calls), `<name>.c` and kernel sources (`*.c`/`*.h`, also in subfolders), C99, no malloc.

The firmware: the library (compiled with -Wall -Wextra -Werror into `lib<name>.a`), a harness
`main.c` that streams samples from the host through semihosting, the startup code and a linker
script for the core's QEMU memory map (all from `templates/`, filled from `boards.CORES`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from edgeport.errors import EdgeportError, InputError, MissingDependencyError
from edgeport.mcu.toolchain import boards
from edgeport.mcu.toolchain.boards import Core
from edgeport.mcu.toolchain.elfsize import read_elf

GCC = "arm-none-eabi-gcc"
AR = "arm-none-eabi-ar"
QEMU = "qemu-system-arm"
EXAMPLE_DIR = "example"
QEMU_ARGS = ("-nographic", "-monitor", "none", "-serial", "none",
             "-semihosting-config", "enable=on,target=native")
LIBRARY_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror")
HARNESS_CFLAGS = ("-std=gnu99", "-Wall", "-Wextra", "-Werror")
COMMON_CFLAGS = ("-ffunction-sections", "-fdata-sections")
LDFLAGS = ("--specs=rdimon.specs", "-Wl,--gc-sections")

# Harness exit statuses (templates/harness_main.c); 1 is the fault handler's semihosting exit.
EXIT_MEANINGS = {
    1: "the firmware crashed (fault exception: bad memory access, stack overflow or illegal instruction)",
    2: "the harness could not open input.bin/output.bin through semihosting",
    3: "the input file ended in the middle of a sample",
    4: "<name>_invoke returned non-zero",
    5: "the harness could not write output.bin",
}

_PLACEHOLDER = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)@")


class MissingToolchainError(MissingDependencyError):
    """A program (cross compiler, newlib, QEMU) is missing; the message says how to install it."""

    def __init__(self, hints: list[str]):
        self.hints = hints
        EdgeportError.__init__(self, "Cortex-M toolchain incomplete: " + "; ".join(hints))


class FirmwareBuildError(RuntimeError):
    """The library or the firmware around it did not compile or link.

    Generated C that does not build is a bug in edgeport, not bad input: this is not an
    `EdgeportError`, so the top-level guard reports it as an internal error (exit 3). The message
    is one line: what failed, the compiler's first error with its file, and the log file holding
    the compiler's whole output (`log`).
    """

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


class FirmwareRunError(EdgeportError):
    """The firmware failed in QEMU: crashed, reported an error, or did not finish in time."""


@dataclass(frozen=True)
class Firmware:
    """A built firmware image and what is needed to run it.

    Attributes:
        elf: The linked image (`app.elf`); `map_file` is its linker map (`app.map`).
        name: Library name; board: board it was built for; core: its core name.
        qemu_machine: QEMU machine that runs it.
        input_size / output_size: Bytes per sample (`<NAME>_INPUT_SIZE` / `_OUTPUT_SIZE`).
    """

    elf: Path
    map_file: Path
    name: str
    board: str
    core: str
    qemu_machine: str
    input_size: int
    output_size: int


def toolchain_missing(need_qemu: bool = True) -> list[str]:
    """Install hints for the missing parts of the Cortex-M toolchain; empty when all is present.

    Args:
        need_qemu: Also require `qemu-system-arm` (building alone does not).
    """
    hints = []
    if shutil.which(GCC) is None or shutil.which(AR) is None:
        hints.append(f"{GCC} not found: apt-get install gcc-arm-none-eabi")
    elif not Path(_gcc_output("-print-file-name=rdimon.specs")).is_absolute():
        hints.append("newlib (rdimon.specs) not found: apt-get install libnewlib-arm-none-eabi")
    if need_qemu and shutil.which(QEMU) is None:
        hints.append(f"{QEMU} not found: apt-get install qemu-system-arm")
    return hints


def _gcc_output(*args: str) -> str:
    return subprocess.run([GCC, *args], check=False, capture_output=True, text=True).stdout.strip()


def _require_toolchain(need_qemu: bool) -> None:
    hints = toolchain_missing(need_qemu)
    if hints:
        raise MissingToolchainError(hints)


def fill_template(text: str, values: dict[str, object]) -> str:
    """Replace every `@key@` in `text` by `values[key]`.

    Raises:
        KeyError: A placeholder has no value (a template and its caller disagree).
    """
    def value(m: re.Match) -> str:
        return str(values[m.group(1)])

    return _PLACEHOLDER.sub(value, text)


def read_template(name: str) -> str:
    """Text of `edgeport/mcu/toolchain/templates/<name>`."""
    return resources.files("edgeport.mcu.toolchain").joinpath("templates").joinpath(name).read_text()


def template_values(name: str, board_name: str) -> dict[str, object]:
    """Values for the templates' placeholders: library name, board, core flags and memory map."""
    core = boards.core_of(board_name)
    return {
        "name": name, "NAME": name.upper(), "board": board_name, "machine": core.qemu_machine,
        "cpu": core.name, "gcc_flags": " ".join(core.gcc_flags),
        "flash_origin": f"0x{core.flash.origin:08X}", "flash_length": f"0x{core.flash.length:X}",
        "ram_origin": f"0x{core.ram.origin:08X}", "ram_length": f"0x{core.ram.length:X}",
        "stack_size": f"0x{core.stack_bytes:X}", "heap_size": f"0x{core.heap_bytes:X}",
    }


def library_sources(lib_dir: Path, name: str) -> list[Path]:
    """C sources of the library: every `*.c` under `lib_dir` except the example firmware's.

    Raises:
        InputError: `name` is not a C identifier or `<name>.h`/`<name>.c` is missing.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise InputError(f"library name '{name}' is not a valid C identifier")
    lib_dir = Path(lib_dir)
    for needed in (f"{name}.h", f"{name}.c"):
        if not (lib_dir / needed).is_file():
            raise InputError(f"{lib_dir} has no {needed} (not a generated '{name}' library)")
    return sorted(p for p in lib_dir.rglob("*.c") if p.relative_to(lib_dir).parts[0] != EXAMPLE_DIR)


def include_dirs(lib_dir: Path) -> list[Path]:
    """Folders of the library's headers (the example firmware's left out), for -I."""
    dirs = {p.parent for p in Path(lib_dir).rglob("*.h") if p.relative_to(lib_dir).parts[0] != EXAMPLE_DIR}
    return sorted(dirs | {Path(lib_dir)})


_GCC_DIAGNOSTIC = re.compile(r"^(?P<file>[^:\s][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)? (?:fatal )?error: (?P<msg>.*)$")


def first_error(output: str) -> str:
    """The compiler's or linker's first error, as one line (`file:line:col: error: ...`).

    gcc's own diagnostics first; then the first line naming an error that is not collect2's
    summary; then the linker's first message (`ld: ... will not fit in region ...`); else the
    first line.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        m = _GCC_DIAGNOSTIC.match(line)
        if m:
            where = f"{Path(m['file']).name}:{m['line']}" + (f":{m['col']}" if m["col"] else "")
            return f"{where}: error: {m['msg']}"
    for pick in (lambda t: "error" in t.lower() and not t.startswith("collect2"), lambda t: " ld: " in f" {t}"):
        for line in lines:
            if pick(line):
                return line
    return lines[0] if lines else "no output"


def write_log(text: str, prefix: str) -> str:
    """`text` into a new log file (EDGEPORT_LOG_DIR, else the temp folder); its path, or ''."""
    for folder in (os.environ.get("EDGEPORT_LOG_DIR"), tempfile.gettempdir()):
        if not folder:
            continue
        try:
            fd, path = tempfile.mkstemp(prefix=prefix, suffix=".log", dir=folder)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            return path
        except OSError:
            continue
    return ""


def run_tool(args: list[str], what: str) -> None:
    """Run a compiler, archiver or linker; on failure raise `FirmwareBuildError` in one line.

    Raises:
        FirmwareBuildError: `<what> failed: <first error> (<tool> exited with N; full log: <path>)`;
            the log holds the command and the tool's whole output.
    """
    done = subprocess.run(args, check=False, capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C"})  # plain quotes in the messages
    if done.returncode != 0:
        output = "\n".join(part for part in (done.stderr.strip(), done.stdout.strip()) if part)
        log = write_log(f"{what} failed\ncommand: {subprocess.list2cmdline(args)}\nexit status: "
                         f"{done.returncode}\n\n{output}\n", "edgeport-build-")
        tool = Path(args[0]).name
        where = f"full log: {log}" if log else "no log file could be written"
        raise FirmwareBuildError(f"{what} failed: {first_error(output)} ({tool} exited with {done.returncode}; "
                                 f"{where})", log)


def build_firmware(lib_dir: Path, name: str, board: str, out_dir: Path, opt: str = "-O2") -> Firmware:
    """Compile the library and the QEMU test harness into `out_dir/app.elf` for `board`'s core.

    Args:
        lib_dir: Folder of the generated library.
        name: Library name (`<name>.h`, `<name>_invoke`).
        board: Board name from `boards.BOARDS`; the image targets its core's QEMU machine.
        out_dir: Build folder (created); holds the objects, `lib<name>.a`, `app.elf`, `app.map`.
        opt: gcc optimisation flag.

    Returns:
        The built `Firmware`.

    Raises:
        MissingToolchainError: arm-none-eabi-gcc or newlib is not installed.
        InputError: Bad library folder or name, unknown board.
        FirmwareBuildError: A compile or link error (an edgeport bug for generated C): one line with
            the first error, its file and the path of the full log.
    """
    core = boards.core_of(board)
    _require_toolchain(need_qemu=False)
    lib_dir, out_dir = Path(lib_dir).resolve(), Path(out_dir).resolve()
    sources = [s for s in library_sources(lib_dir, name) if out_dir not in s.parents]
    out_dir.mkdir(parents=True, exist_ok=True)
    values = template_values(name, board)
    for template, target in (("startup.c", "startup.c"), ("link.ld", "link.ld"), ("harness_main.c", "main.c")):
        (out_dir / target).write_text(fill_template(read_template(template), values))

    includes = [f"-I{d}" for d in include_dirs(lib_dir)]
    cflags = [*core.gcc_flags, opt, *COMMON_CFLAGS, *includes]
    obj_dir = out_dir / "obj"
    obj_dir.mkdir(exist_ok=True)
    # Object names keep the source's relative path so kernels/conv.c and conv.c cannot collide.
    library_objects = [obj_dir / "__".join(src.relative_to(lib_dir).with_suffix(".o").parts) for src in sources]
    jobs = [([GCC, *cflags, *LIBRARY_CFLAGS, "-c", str(src), "-o", str(obj)],
             f"compiling {src.relative_to(lib_dir)} for {core.name}") for src, obj in zip(sources, library_objects, strict=True)]
    jobs += [([GCC, *cflags, *HARNESS_CFLAGS, "-c", str(out_dir / src), "-o", str(out_dir / f"{src[:-2]}.o")],
              f"compiling the harness {src} for {core.name}") for src in ("main.c", "startup.c")]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for future in [pool.submit(run_tool, args, what) for args, what in jobs]:
            future.result()

    archive = out_dir / f"lib{name}.a"
    archive.unlink(missing_ok=True)
    run_tool([AR, "rcs", str(archive), *map(str, library_objects)], f"archiving lib{name}.a")
    elf, map_file = out_dir / "app.elf", out_dir / "app.map"
    run_tool([GCC, *core.gcc_flags, *LDFLAGS, "-T", str(out_dir / "link.ld"), f"-Wl,-Map={map_file}",
               str(out_dir / "main.o"), str(out_dir / "startup.o"), str(archive), "-o", str(elf)],
              f"linking {name} for {board} (QEMU {core.qemu_machine}: FLASH {core.flash.length // 1024} KB at "
              f"0x{core.flash.origin:08x}, RAM {core.ram.length // 1024} KB at 0x{core.ram.origin:08x}, "
              f"{core.stack_bytes // 1024} KB of it stack)")
    return _firmware(elf, map_file, name, board, core)


def _firmware(elf: Path, map_file: Path, name: str, board_name: str, core: Core) -> Firmware:
    image = read_elf(elf)
    return Firmware(elf, map_file, name, board_name, core.name, core.qemu_machine,
                    image.symbol("ep_input").size, image.symbol("ep_output").size)


def run_qemu(firmware: Firmware, inputs: np.ndarray, timeout: float = 60) -> np.ndarray:
    """Run the firmware in QEMU on every sample and return its outputs.

    Args:
        firmware: From `build_firmware`.
        inputs: int8 array of shape (N, input_size) (a single sample may be 1-D).
        timeout: Seconds before QEMU is killed.

    Returns:
        int8 array of shape (N, output_size).

    Raises:
        MissingToolchainError: qemu-system-arm is not installed.
        InputError: `inputs` has the wrong dtype or size.
        FirmwareRunError: The firmware crashed, reported an error or timed out.
    """
    _require_toolchain(need_qemu=True)
    inputs = np.asarray(inputs)
    if inputs.dtype != np.int8:
        raise InputError(f"firmware inputs must be int8, got {inputs.dtype}")
    if inputs.ndim == 1:
        inputs = inputs[None, :]
    if inputs.ndim != 2 or inputs.shape[1] != firmware.input_size:
        raise InputError(f"firmware inputs must have shape (N, {firmware.input_size}), got {inputs.shape}")
    command = [QEMU, "-M", firmware.qemu_machine, *QEMU_ARGS, "-kernel", str(Path(firmware.elf).resolve())]
    with tempfile.TemporaryDirectory(prefix="edgeport-qemu-") as tmp:
        Path(tmp, "input.bin").write_bytes(np.ascontiguousarray(inputs).tobytes())
        try:
            done = subprocess.run(command, check=False, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FirmwareRunError(f"{firmware.name} on QEMU {firmware.qemu_machine} did not finish in {timeout:g} s "
                                   f"({len(inputs)} samples); killed (hung, or too slow for this timeout)") from None
        console = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            meaning = EXIT_MEANINGS.get(done.returncode, "unknown failure").replace("<name>", firmware.name)
            raise FirmwareRunError(f"{firmware.name} on QEMU {firmware.qemu_machine} exited with "
                                   f"{done.returncode}: {meaning}\n{console}")
        out = Path(tmp, "output.bin")
        got = out.read_bytes() if out.is_file() else b""
    expected = len(inputs) * firmware.output_size
    if len(got) != expected:
        raise FirmwareRunError(f"{firmware.name} on QEMU {firmware.qemu_machine} wrote {len(got)} output bytes, "
                               f"expected {expected}\n{console}")
    return np.frombuffer(got, dtype=np.int8).reshape(len(inputs), firmware.output_size).copy()


def write_integration_files(lib_dir: Path, name: str, board: str) -> list[Path]:
    """Write the files that integrate the library into a firmware project, into `lib_dir`.

    - `CMakeLists.txt`: an `add_library(<name> STATIC ...)` target for a firmware CMake project.
    - `library.json`: a PlatformIO library manifest.
    - `example/`: `main.c`, `Makefile`, `startup.c`, `link.ld`: `make run` builds an image for the
      board's core and runs it in its QEMU machine, printing the outputs through semihosting.

    Returns:
        The written files.
    """
    lib_dir = Path(lib_dir)
    sources = [p.relative_to(lib_dir).as_posix() for p in library_sources(lib_dir, name)]
    includes = [d.relative_to(lib_dir).as_posix() for d in include_dirs(lib_dir)]
    values = {
        **template_values(name, board),
        "board_description": board_description(board),
        "cmake_sources": "\n    ".join(sources),
        "cmake_includes": " ".join("${CMAKE_CURRENT_SOURCE_DIR}" + ("" if d == "." else f"/{d}") for d in includes),
        "make_sources": " ".join(f"../{s}" for s in sources),
        "make_includes": " ".join("-I.." + ("" if d == "." else f"/{d}") for d in includes),
    }
    plan = {"CMakeLists.txt": "CMakeLists.txt", "library.json": "library.json",
            f"{EXAMPLE_DIR}/main.c": "example_main.c", f"{EXAMPLE_DIR}/Makefile": "example.mk",
            f"{EXAMPLE_DIR}/startup.c": "startup.c", f"{EXAMPLE_DIR}/link.ld": "link.ld"}
    (lib_dir / EXAMPLE_DIR).mkdir(exist_ok=True)
    written = []
    for target, template in plan.items():
        path = lib_dir / target
        path.write_text(fill_template(read_template(template), values))
        written.append(path)
    return written


def board_description(board_name: str) -> str:
    """One line naming the board and its core, for generated files."""
    spec = boards.board(board_name)
    return f"{spec.description}, {spec.core}"
