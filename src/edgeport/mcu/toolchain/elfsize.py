"""Flash and RAM of a firmware ELF, broken down into weights, code, arena, stack and the rest.

Includes a small reader for 32-bit little-endian ELF files (sections, loadable segments, symbols):
it is all the firmware tools need, and it keeps pyelftools out of the dependencies.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from edgeport.errors import InputError

SHT_NOBITS = 8
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
PT_LOAD = 1
STT_OBJECT, STT_FUNC = 1, 2


@dataclass(frozen=True)
class Section:
    """A section header; `lma` is its load address (where its bytes sit in flash for .data)."""

    name: str
    type: int
    flags: int
    addr: int
    size: int
    lma: int

    @property
    def alloc(self) -> bool:
        return bool(self.flags & SHF_ALLOC)

    @property
    def has_contents(self) -> bool:
        return self.type != SHT_NOBITS


@dataclass(frozen=True)
class Segment:
    vaddr: int
    paddr: int
    data: bytes
    memsz: int


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int
    size: int
    type: int
    section: int


@dataclass(frozen=True)
class ElfImage:
    """The parts of an ELF file the firmware tools use."""

    entry: int
    sections: tuple[Section, ...]
    segments: tuple[Segment, ...]
    symbols: tuple[Symbol, ...]

    def symbol(self, name: str) -> Symbol:
        """The symbol called `name`; KeyError if the ELF has none."""
        for sym in self.symbols:
            if sym.name == name:
                return sym
        raise KeyError(name)

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)


def read_elf(path: Path) -> ElfImage:
    """Parse a 32-bit little-endian ELF file (what arm-none-eabi-gcc links).

    Raises:
        InputError: Not such an ELF file.
    """
    blob = Path(path).read_bytes()
    if blob[:4] != b"\x7fELF" or blob[4] != 1 or blob[5] != 1:
        raise InputError(f"{path} is not a 32-bit little-endian ELF file")
    (_, _, _, _, entry, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum,
     shstrndx) = struct.unpack_from("<16sHHIIIIIHHHHHH", blob, 0)
    raw = [struct.unpack_from("<10I", blob, shoff + i * shentsize) for i in range(shnum)]
    names_at = raw[shstrndx][4]

    def cstr(offset: int) -> str:
        return blob[offset:blob.index(b"\0", offset)].decode("utf-8", "replace")

    segments = []
    for i in range(phnum):
        p_type, offset, vaddr, paddr, filesz, memsz, _, _ = struct.unpack_from("<8I", blob, phoff + i * phentsize)
        if p_type == PT_LOAD and memsz:
            segments.append(Segment(vaddr, paddr, blob[offset:offset + filesz], memsz))

    def load_address(addr: int) -> int:
        for seg in segments:
            if seg.vaddr <= addr < seg.vaddr + seg.memsz:
                return seg.paddr + addr - seg.vaddr
        return addr

    sections = tuple(Section(cstr(names_at + r[0]), r[1], r[2], r[3], r[5], load_address(r[3])) for r in raw)
    symbols = []
    for r in raw:
        if r[1] != 2:  # SHT_SYMTAB
            continue
        strtab = raw[r[6]][4]
        for at in range(r[4], r[4] + r[5], 16):
            st_name, value, size, info, _, shndx = struct.unpack_from("<IIIBBH", blob, at)
            if st_name:
                symbols.append(Symbol(cstr(strtab + st_name), value, size, info & 0xF, shndx))
    return ElfImage(entry, sections, tuple(segments), tuple(symbols))


@dataclass(frozen=True)
class InputSection:
    """One input section placed by the linker, from the map file."""

    output: str
    name: str
    addr: int
    size: int
    source: str


_OUTPUT_RE = re.compile(r"^(\.\S+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+")
_INPUT_RE = re.compile(r"^ (\.\S+)(?:\s+|\n\s+)(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(\S.*)$", re.MULTILINE)


def read_map_sections(map_file: Path) -> list[InputSection]:
    """Input sections with their output section, address, size and object file, from a GNU ld map.

    Only the "Linker script and memory map" part is read (not the discarded sections).
    """
    text = Path(map_file).read_text()
    start = text.find("Linker script and memory map")
    if start < 0:
        raise InputError(f"{map_file} is not a GNU ld map file")
    # ld writes a long section name on its own line and the address/size/file on the next.
    lines = re.sub(r"\n( ?)(\.\S+)\n\s+(0x)", r"\n\1\2 \3", text[start:]).splitlines()
    placed, output = [], ""
    for line in lines:
        head = _OUTPUT_RE.match(line)
        if head:
            output = head.group(1)
            continue
        m = _INPUT_RE.match(line)
        if m and output:
            placed.append(InputSection(output, m.group(1), int(m.group(2), 16), int(m.group(3), 16), m.group(4)))
    return placed


def _object_name(source: str) -> str | None:
    """`libfoo.a(bar.o)` -> `bar.o`; None for objects that are not archive members."""
    m = re.search(r"\(([^()]+)\)$", source)
    return m.group(1) if m else None


def read_map_regions(map_file: Path) -> dict[str, tuple[int, int]]:
    """The linker script's MEMORY regions, {name: (origin, end)}, from a GNU ld map."""
    text = Path(map_file).read_text()
    block = text[text.find("Memory Configuration"):text.find("Linker script and memory map")]
    return {m.group(1): (int(m.group(2), 16), int(m.group(2), 16) + int(m.group(3), 16))
            for m in re.finditer(r"^(\w+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)", block, re.MULTILINE)
            if m.group(1) != "*default*"}


def elf_breakdown(elf: Path, name: str) -> dict:
    """Flash and RAM of a firmware image built by `build_firmware`, with a breakdown.

    Method: totals come from the ELF section headers placed in the linker script's FLASH and
    RAM regions (read from the map file `<elf>.map` next to the ELF): flash holds every allocated
    section whose load address is in FLASH and that has contents (code, constants, constructor
    tables, the initial image of .data); RAM every allocated section whose run address is in RAM
    (.data, .bss, .heap, .stack). The breakdown attributes input sections with the same map: the
    library is linked from the archive `lib<name>.a`, so each of its input sections names its
    object. Model objects are `<name>.o` and `<name>_*.o`; the other library objects are kernels.

    - weights: read-only data (`.rodata*`) of the model objects: the `static const` weights.
    - code: the library's code (`.text*` of every library object).
    - library_const: the library's other flash data (kernel tables, .data initial values).
    - arena: size of the library's arena symbol (an object whose name contains `arena`).
    - library_ram: the library's other .data/.bss.
    - stack / heap: the `.stack` and minimum `.heap` reservations of the linker script.
    - harness_libc: the rest (startup, harness, newlib, libgcc, alignment padding).

    Args:
        elf: Firmware ELF; its map file must be next to it with suffix `.map`.
        name: Library name (`<name>.h`, `<name>_invoke`).

    Returns:
        {"flash_bytes", "ram_bytes", "flash": {part: bytes}, "ram": {part: bytes}, "arena_symbol",
        "method"}; each breakdown sums to its total.
    """
    elf = Path(elf)
    image = read_elf(elf)
    map_file = elf.with_suffix(".map")
    if not map_file.is_file():
        raise InputError(f"no linker map next to {elf} (expected {map_file.name})")
    regions = read_map_regions(map_file)
    if "FLASH" not in regions or "RAM" not in regions:
        raise InputError(f"{map_file} has no FLASH and RAM memory regions (not built by build_firmware?)")
    placed = read_map_sections(map_file)

    def inside(region: str, addr: int) -> bool:
        return regions[region][0] <= addr < regions[region][1]

    sections = {s.name: s for s in image.sections if s.alloc and s.size}
    in_flash = {n for n, s in sections.items() if s.has_contents and inside("FLASH", s.lma)}
    in_ram = {n for n, s in sections.items() if inside("RAM", s.addr)}
    archive = f"lib{name}.a("
    model_objects = re.compile(rf"^{re.escape(name)}(_\w+)?\.o$")

    weights = code = library_const = library_ram = 0
    library_ranges = []
    for item in placed:
        if archive not in item.source or item.output not in sections:
            continue
        library_ranges.append((item.addr, item.addr + item.size))
        if item.output in in_ram:
            library_ram += item.size
            if item.output in in_flash:  # .data: its initial values are in flash too
                library_const += item.size
        elif sections[item.output].flags & SHF_EXECINSTR:
            code += item.size
        elif item.name.startswith(".rodata") and model_objects.match(_object_name(item.source) or ""):
            weights += item.size
        else:
            library_const += item.size

    arena_symbols = [s for s in image.symbols if "arena" in s.name and s.type == STT_OBJECT
                     and any(lo <= s.value < hi for lo, hi in library_ranges)]
    arena = sum(s.size for s in arena_symbols)
    flash_total = sum(sections[n].size for n in in_flash)
    ram_total = sum(sections[n].size for n in in_ram)
    flash = {"weights": weights, "code": code, "library_const": library_const}
    flash["harness_libc"] = flash_total - sum(flash.values())
    ram = {"arena": arena, "library_ram": library_ram - arena,
           "stack": sections[".stack"].size if ".stack" in sections else 0,
           "heap": sections[".heap"].size if ".heap" in sections else 0}
    ram["harness_libc"] = ram_total - sum(ram.values())
    return {
        "flash_bytes": flash_total,
        "ram_bytes": ram_total,
        "flash": flash,
        "ram": ram,
        "arena_symbol": ",".join(s.name for s in arena_symbols) or None,
        "method": "ELF section headers in the linker map's FLASH/RAM regions for totals; map input "
                  "sections of lib<name>.a members and the symbol table for the breakdown",
    }
