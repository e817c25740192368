"""Compressed storage of int8 weight tensors in the C library: Deep Compression for MCUs.

Han et al., "Deep Compression" (ICLR 2016) shrink a network in three stages: pruning, stored
sparse with small relative indices; weight sharing (k-means), stored as k-bit indices into a
palette of values; and Huffman coding of both index streams. In an int8 .tflite the values are
already decided (pruned and clustered by the recipe, or not): this module only changes how those
exact int8 values are stored, so the kernels multiply the same numbers and the outputs stay
bit-exact with LiteRT.

A weight tensor is a matrix with one row per output channel (`weight_matrix`). Its storage
(`PackedWeights`, what `kernels/ep_compressed.c` reads):

- a value stream: per weight (dense) or per CSR entry, its palette index (`bits` wide) or its
  int8 value as a byte (8 bits wide);
- palette: a table of int8 values (one per tensor, or one per row where that is smaller, e.g.
  when the tensor has over 128 distinct values but each row has few);
- CSR with relative indices: per row, its nonzero weights in order, each with the number of zeros
  skipped before it as a `gap_bits`-wide relative index; a gap over 2^gap_bits - 1 zeros is
  bridged by filler entries of value 0 (as the paper does); a count of entries per row (1 or 2
  bytes, little-endian);
- each stream fixed-width (symbols packed LSB first) or canonical-Huffman-coded (code bits in
  stream order from the code's most significant bit) with a codebook of bytes
  [L, number of codes of length 1..L, symbols in code order].

All functions are pure (NumPy in, NumPy or bytes out); `PackedWeights.decode` and
`huffman_decode` mirror the C decoder, for tests and for the generator's own round-trip check.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from edgeport.errors import InputError

DECODE_MODES = ("kernel", "init")
MAX_PALETTE_BITS = 7          # at most 128 values: a palette of 256 would be no smaller than int8
MAX_GAP_BITS = 8              # the C reader takes fixed-width symbols of up to 8 bits
MAX_CODE_LENGTH = 15          # Huffman code lengths are limited to this (flattening the counts)
MAX_ROW_ENTRIES = 0xFFFF      # CSR entries per row: counts are stored in at most 2 bytes
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclass(frozen=True)
class WeightStorage:
    """How the C library stores its weight tensors (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
    filters). All False: dense int8 arrays, as without a WeightStorage.

    Attributes:
        palette: k-bit indices into a table of the tensor's int8 values (k = 1..7, the smallest
            that fits; a table per output channel where that is smaller, as when only the
            channels have at most 128 values).
        sparse: CSR with relative indices (zeros are not stored).
        huffman: Huffman-code the index streams; on top of palette and/or sparse.
        decode: "kernel": the kernels decode while they compute (no RAM beyond a row of
            scratch); "init": decoded once into a static RAM buffer by `<name>_init()` (or the
            first invoke), then the dense kernels run.
        lowbit: filters whose int8 values are all -1/+1 (binary) or -1/0/+1 (ternary) packed to
            1 or 2 bits per weight (`lowbit`) and computed by add/subtract kernels,
            or XOR/AND + popcount where the layer's input only takes two values (a sign
            function); FULLY_CONNECTED and CONV_2D without groups. Other filters are stored as
            the other attributes say.
    """

    palette: bool = False
    sparse: bool = False
    huffman: bool = False
    decode: str = "kernel"
    lowbit: bool = False

    def __post_init__(self):
        for name in ("palette", "sparse", "huffman", "lowbit"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"weight storage '{name}' must be true or false, got {getattr(self, name)!r}")
        if self.decode not in DECODE_MODES:
            raise InputError(f"unknown weight decode mode '{self.decode}' (known: {', '.join(DECODE_MODES)})")
        if self.huffman and not (self.palette or self.sparse):
            raise InputError("huffman codes the palette-index or sparse streams: combine it with palette and/or sparse")

    @property
    def compresses(self) -> bool:
        return self.palette or self.sparse or self.huffman or self.lowbit


def weight_matrix(op_name: str, data: np.ndarray) -> np.ndarray:
    """A filter as [output channels, weights per channel]: FULLY_CONNECTED [out, in], CONV_2D
    [out_c, k_h * k_w * in_c / groups], DEPTHWISE_CONV_2D [out_c, k_h * k_w] (its [1, k_h, k_w,
    out_c] layout transposed)."""
    data = np.asarray(data)
    if op_name == "DEPTHWISE_CONV_2D":
        return np.ascontiguousarray(np.moveaxis(data, -1, 0).reshape(data.shape[-1], -1))
    return data.reshape(data.shape[0], -1)


# ------------------------------------------------------------------ fixed-width symbols

def pack_bits(symbols, bits: int) -> bytes:
    """Symbols (each < 2**bits) packed `bits` wide, LSB first: symbol i takes bits
    i * bits .. i * bits + bits - 1 of the stream, bit j of a byte being (byte >> j) & 1."""
    symbols = np.asarray(symbols, dtype=np.uint32).ravel()
    if symbols.size and int(symbols.max()) >> bits:
        raise ValueError(f"a symbol does not fit in {bits} bits")
    planes = ((symbols[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(planes.ravel(), bitorder="little").tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """The first `count` symbols of a `pack_bits` stream."""
    flat = np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8), bitorder="little")[:count * bits]
    if flat.size != count * bits:
        raise ValueError(f"stream too short for {count} symbols of {bits} bits")
    return (flat.reshape(count, bits).astype(np.uint32) << np.arange(bits, dtype=np.uint32)).sum(axis=1)


# ------------------------------------------------------------------ palette

@dataclass(frozen=True)
class Palette:
    """Indices into a table of int8 values: `lut` [1, entries] for the whole tensor, or
    [rows, entries] (one table per row, unused entries 0) when `per_channel`."""

    lut: np.ndarray
    indices: np.ndarray
    bits: int
    per_channel: bool


def palette_bits(distinct: int) -> int | None:
    """The smallest k in 1..7 with 2**k >= `distinct`; None for more than 128 values."""
    if distinct > 1 << MAX_PALETTE_BITS:
        return None
    return max(1, (distinct - 1).bit_length())


def palette(values) -> Palette | None:
    """One table for all `values` (sorted distinct values) and each value's index in it, or None
    if there are more than 128 distinct values."""
    values = np.asarray(values, dtype=np.int8).ravel()
    lut = np.unique(values)
    bits = palette_bits(len(lut))
    if bits is None:
        return None
    return Palette(lut[None, :], np.searchsorted(lut, values).astype(np.uint8), bits, False)


def channel_palette(values, counts) -> Palette | None:
    """A table per row: `values` in row order, counts[r] of them in row r. None if a row has more
    than 128 distinct values."""
    values = np.asarray(values, dtype=np.int8).ravel()
    parts = np.split(values, np.cumsum(counts)[:-1])
    luts = [np.unique(part) for part in parts]
    width = max([len(lut) for lut in luts] + [1])
    bits = palette_bits(width)
    if bits is None:
        return None
    table = np.zeros((len(parts), width), dtype=np.int8)
    for row, lut in enumerate(luts):
        table[row, :len(lut)] = lut
    indices = np.concatenate([np.searchsorted(lut, part) for lut, part in zip(luts, parts)] + [np.zeros(0, np.int64)])
    return Palette(table, indices.astype(np.uint8), bits, True)


# ------------------------------------------------------------------ CSR with relative indices

@dataclass(frozen=True)
class RelativeCSR:
    """Per row, its nonzero weights in order as entries (gap, value): `gap` zeros are skipped
    before the entry. A gap over 2**bits - 1 becomes filler entries (gap 2**bits - 1, value 0),
    each of which also stands on a zero, as in Deep Compression."""

    counts: np.ndarray   # entries per row
    gaps: np.ndarray     # relative index per entry, < 2**bits
    values: np.ndarray   # int8 per entry, 0 for fillers
    bits: int


def relative_csr(matrix, bits: int) -> RelativeCSR:
    """The CSR of an int8 matrix [rows, cols] with `bits`-wide relative indices."""
    matrix = np.asarray(matrix, dtype=np.int8)
    rows, _ = matrix.shape
    row, col = np.nonzero(matrix)
    first = np.r_[True, row[1:] != row[:-1]] if row.size else np.zeros(0, bool)
    previous = np.where(first, -1, np.r_[-1, col[:-1]])
    gap = col - previous - 1
    fillers = gap >> bits                     # each filler skips 2**bits - 1 zeros and stands on one
    per_nonzero = fillers + 1
    at = np.cumsum(per_nonzero) - 1           # where each nonzero's own entry lands
    gaps = np.full(int(per_nonzero.sum()), (1 << bits) - 1, dtype=np.int64)
    values = np.zeros(gaps.size, dtype=np.int8)
    gaps[at] = gap & ((1 << bits) - 1)
    values[at] = matrix[row, col]
    counts = np.bincount(row, weights=per_nonzero, minlength=rows).astype(np.int64)
    return RelativeCSR(counts, gaps, values, bits)


def csr_to_dense(csr: RelativeCSR, cols: int) -> np.ndarray:
    """The int8 matrix a RelativeCSR stands for."""
    out = np.zeros((len(csr.counts), cols), dtype=np.int8)
    start = 0
    for row, count in enumerate(csr.counts.tolist()):
        positions = np.cumsum(csr.gaps[start:start + count] + 1) - 1
        if positions.size and positions[-1] >= cols:
            raise ValueError(f"row {row} runs past column {cols}")
        out[row, positions] = csr.values[start:start + count]
        start += count
    return out


def count_bytes(counts) -> int | None:
    """Bytes per CSR row count: 1 up to 255 entries, 2 up to 65535, else None."""
    top = int(np.max(counts, initial=0))
    return 1 if top <= 0xFF else 2 if top <= MAX_ROW_ENTRIES else None


# ------------------------------------------------------------------ canonical Huffman

def huffman_lengths(frequencies, limit: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Huffman code length per symbol (0 for a symbol that does not occur; 1 for a lone symbol).
    Lengths over `limit` are avoided by halving the counts (kept >= 1) until none is over it."""
    freq = np.asarray(frequencies, dtype=np.int64)
    lengths = np.zeros(freq.size, dtype=np.int64)
    used = np.flatnonzero(freq)
    if used.size == 1:
        lengths[used] = 1
    if used.size <= 1:
        return lengths
    weights = freq[used]
    while True:
        depth = np.zeros(used.size, dtype=np.int64)
        heap = [(int(w), i, [i]) for i, w in enumerate(weights)]   # (weight, tie-break, leaves)
        heapq.heapify(heap)
        order = used.size
        while len(heap) > 1:
            w1, _, a = heapq.heappop(heap)
            w2, _, b = heapq.heappop(heap)
            depth[a + b] += 1
            heapq.heappush(heap, (w1 + w2, order, a + b))
            order += 1
        if depth.max() <= limit:
            lengths[used] = depth
            return lengths
        weights = (weights + 1) // 2


def canonical_codes(lengths) -> np.ndarray:
    """Canonical code per symbol: by (length, symbol), each code the previous one plus 1, shifted
    left when the length grows (deflate's assignment)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(lengths.size, dtype=np.int64)
    code, previous = 0, 0
    for symbol in sorted(np.flatnonzero(lengths).tolist(), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[symbol]) - previous
        codes[symbol] = code
        code, previous = code + 1, int(lengths[symbol])
    return codes


def huffman_codebook(lengths) -> bytes:
    """[L, codes of length 1..L (each < 256), symbols in code order] for the C decoder."""
    lengths = np.asarray(lengths, dtype=np.int64)
    top = int(lengths.max(initial=0))
    per_length = np.bincount(lengths[lengths > 0], minlength=top + 1)[1:]
    if np.any(per_length > 0xFF) or lengths.size > 256:
        raise ValueError("a codebook holds at most 255 codes per length and 256 symbols")
    symbols = sorted(np.flatnonzero(lengths).tolist(), key=lambda s: (lengths[s], s))
    return bytes([top, *per_length.tolist(), *symbols])


def huffman_encode(symbols, lengths) -> bytes:
    """The symbols' canonical codes, each from its most significant bit, packed LSB first."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    lengths = np.asarray(lengths, dtype=np.int64)
    size, code = lengths[symbols].astype(np.int32), canonical_codes(lengths)[symbols].astype(np.int32)
    j = np.arange(MAX_CODE_LENGTH + 1, dtype=np.int32)
    keep = j[None, :] < size[:, None]
    bits = (code[:, None] >> np.maximum(size[:, None] - 1 - j[None, :], 0)) & 1
    return np.packbits(bits[keep].astype(np.uint8), bitorder="little").tobytes()


def huffman_decode(data: bytes, codebook: bytes, count: int) -> np.ndarray:
    """`count` symbols from a Huffman stream: a line-by-line mirror of ep_read_huffman in
    kernels/ep_compressed.c (one bit at a time, as zlib's puff.c)."""
    longest, per_length, symbols = codebook[0], codebook[1:1 + codebook[0]], codebook[1 + codebook[0]:]
    out, bit = np.zeros(count, dtype=np.int64), 0
    for i in range(count):
        code = first = index = 0
        for length in range(longest):
            code |= (data[bit >> 3] >> (bit & 7)) & 1
            bit += 1
            if code - first < per_length[length]:
                out[i] = symbols[index + code - first]
                break
            index += per_length[length]
            first = (first + per_length[length]) << 1
            code <<= 1
        else:
            raise ValueError(f"no code matches at symbol {i}")
    return out


# ------------------------------------------------------------------ streams and packed tensors

@dataclass(frozen=True)
class Stream:
    """A symbol stream as stored: `count` symbols of an alphabet of 2**width, packed `width`
    bits each, or Huffman-coded when `codebook` is set."""

    data: bytes
    width: int
    count: int
    codebook: bytes | None = None

    @property
    def nbytes(self) -> int:
        return len(self.data) + len(self.codebook or b"")

    def symbols(self) -> np.ndarray:
        if self.codebook is None:
            return unpack_bits(self.data, self.width, self.count).astype(np.int64)
        return huffman_decode(self.data, self.codebook, self.count)


def encode_stream(symbols, width: int, huffman: bool = False) -> Stream:
    """Symbols packed `width` bits each; with `huffman`, Huffman-coded instead where that is
    smaller with its codebook (one bit per symbol is the least a code can take, so a stream of
    one repeated symbol, or of evenly spread symbols, stays fixed-width)."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    fixed = Stream(pack_bits(symbols, width), width, symbols.size)
    if not huffman or symbols.size == 0:
        return fixed
    lengths = huffman_lengths(np.bincount(symbols, minlength=1 << width))
    coded = -(-int(lengths[symbols].sum()) // 8) + 1 + int(lengths.max()) + int(np.count_nonzero(lengths))
    if coded >= fixed.nbytes:
        return fixed
    return Stream(huffman_encode(symbols, lengths), width, symbols.size, huffman_codebook(lengths))


@dataclass(frozen=True)
class PackedWeights:
    """An int8 matrix [rows, cols] as stored for ep_compressed.c (see the module docstring)."""

    rows: int
    cols: int
    values: Stream
    lut: np.ndarray | None = None     # int8 [1 or rows, entries]
    per_channel: bool = False
    gaps: Stream | None = None        # CSR relative indices; None: one value per weight
    counts: np.ndarray | None = None  # CSR entries per row

    @property
    def sparse(self) -> bool:
        return self.gaps is not None

    @property
    def count_bytes(self) -> int:
        return count_bytes(self.counts) if self.sparse else 0

    @property
    def lut_stride(self) -> int:
        """Table entries per row in the C struct; 0 when one table serves every row."""
        return int(self.lut.shape[1]) if self.lut is not None and self.per_channel else 0

    @property
    def huffman(self) -> bool:
        return any(s is not None and s.codebook is not None for s in (self.values, self.gaps))

    @property
    def format(self) -> str:
        """"palette 4-bit", "csr", "csr+palette 4-bit", "csr+palette+huffman", ..."""
        parts = (["csr"] if self.sparse else []) + (["palette"] if self.lut is not None else [])
        text = "+".join(parts + (["huffman"] if self.huffman else []))
        if self.lut is not None and not self.huffman:
            text += f" {self.values.width}-bit"
        return text + (" per-channel" if self.per_channel else "")

    @property
    def nbytes(self) -> int:
        """Bytes of the const arrays: streams, codebooks, palette table, row counts."""
        table = 0 if self.lut is None else self.lut.size
        rows = len(self.counts) * self.count_bytes if self.sparse else 0
        return self.values.nbytes + (self.gaps.nbytes if self.sparse else 0) + table + rows

    def decode(self) -> np.ndarray:
        """The int8 matrix: a mirror of ep_decode_row in kernels/ep_compressed.c."""
        symbols = self.values.symbols()
        if self.sparse:
            counts = np.asarray(self.counts)
            row_of = np.repeat(np.arange(self.rows), counts)
        else:
            counts = np.full(self.rows, self.cols)
            row_of = np.repeat(np.arange(self.rows), self.cols)
        if self.lut is None:
            values = symbols.astype(np.uint8).view(np.int8)
        else:
            values = self.lut[row_of if self.per_channel else 0, symbols]
        if not self.sparse:
            return values.reshape(self.rows, self.cols)
        return csr_to_dense(RelativeCSR(counts, self.gaps.symbols(), values, self.gaps.width), self.cols)


def _value_stream(values, counts, use_palette: bool, huffman: bool) -> tuple[Stream, Palette | None]:
    """Values (row order, counts[r] in row r) as palette indices (one table, else one per row)
    where that is smaller than int8 values with its table, else as int8 bytes."""
    values = np.asarray(values, dtype=np.int8)
    best = encode_stream(values.view(np.uint8), 8, huffman), None
    for table in (palette(values), channel_palette(values, counts)) if use_palette else ():
        if table is not None:
            stream = encode_stream(table.indices, table.bits, huffman)
            if stream.nbytes + table.lut.size < best[0].nbytes + (0 if best[1] is None else best[1].lut.size):
                best = stream, table
    return best


def csr_weights(matrix, use_palette: bool = False, huffman: bool = False) -> PackedWeights | None:
    """The matrix as CSR, relative index width (1..8 bits) chosen for the fewest fixed-width
    bytes, values as palette indices where `use_palette` and a palette fits, both streams
    Huffman-coded where `huffman` and that is smaller. None if a row needs over 65535 entries."""
    matrix = np.asarray(matrix, dtype=np.int8)
    best = None
    for bits in range(1, MAX_GAP_BITS + 1):
        csr = relative_csr(matrix, bits)
        if count_bytes(csr.counts) is None:
            continue
        values, table = _value_stream(csr.values, csr.counts, use_palette, False)
        packed = PackedWeights(*matrix.shape, values, None if table is None else table.lut,
                               table is not None and table.per_channel, encode_stream(csr.gaps, bits), csr.counts)
        if best is None or packed.nbytes < best[0].nbytes:
            best = packed, csr
    if best is None:
        return None
    packed, csr = best
    if not huffman:
        return packed
    values, table = _value_stream(csr.values, csr.counts, use_palette, True)
    return PackedWeights(*matrix.shape, values, None if table is None else table.lut,
                         table is not None and table.per_channel, encode_stream(csr.gaps, csr.bits, True), csr.counts)


def palette_weights(matrix, huffman: bool = False) -> PackedWeights | None:
    """The matrix as palette indices, with one table or one per row, whichever is smaller;
    Huffman-coded where `huffman` and that is smaller; None if no palette of <= 128 values fits."""
    matrix = np.asarray(matrix, dtype=np.int8)
    tables = (palette(matrix), channel_palette(matrix.ravel(), np.full(matrix.shape[0], matrix.shape[1])))
    packed = [PackedWeights(*matrix.shape, encode_stream(t.indices, t.bits, huffman), t.lut, t.per_channel)
              for t in tables if t is not None]
    return min(packed, key=lambda p: p.nbytes, default=None)


def pack_weights(matrix, storage: WeightStorage) -> tuple[PackedWeights | None, list[str]]:
    """The storage of one weight matrix [rows, cols] under `storage`, and notes on what was not
    applied and why. Each requested feature is used where it applies and pays off: palette when
    the values fit in a palette (one per output channel where that is smaller) and that is smaller
    than dense, CSR when smaller than
    without it, Huffman per stream when smaller; None (dense int8) when nothing is smaller.
    With Huffman, CSR values may be coded as int8 symbols rather than palette indices: the codes
    are the same and the codebook's symbols then serve as the palette (no table to store)."""
    matrix = np.asarray(matrix, dtype=np.int8)
    dense, notes = matrix.size, []
    distinct = len(np.unique(matrix))
    chosen = palette_weights(matrix, storage.huffman) if storage.palette else None
    if storage.palette and (chosen is None or chosen.nbytes >= dense):
        why = "over 128 in an output channel" if chosen is None else f"a palette would take {chosen.nbytes} B"
        notes.append(f"{distinct} distinct values, {why} (dense {dense} B): no palette")
        chosen = None
    if storage.sparse:
        sparse = csr_weights(matrix, storage.palette, storage.huffman)
        without = chosen.nbytes if chosen is not None else dense
        if sparse is not None and sparse.nbytes < without:
            if storage.palette and chosen is not None and sparse.lut is None:
                notes.append(f"{distinct} distinct values: a palette would not make the CSR values smaller")
            chosen = sparse
        else:
            zeros = 1 - np.count_nonzero(matrix) / max(matrix.size, 1)
            size = "a row over 65535 entries" if sparse is None else f"{sparse.nbytes} B"
            notes.append(f"{zeros:.0%} zeros: CSR would take {size}, not less than {without} B: not sparse")
    if storage.huffman and chosen is not None and not chosen.huffman:
        notes.append("Huffman coding would not make its streams smaller: fixed-width codes")
    if chosen is not None and chosen.nbytes >= dense:
        notes.append(f"{chosen.format} would take {chosen.nbytes} B, dense {dense} B: stays dense")
        chosen = None
    return chosen, notes


# ------------------------------------------------------------------ the stages of a model

def deep_compression_stages(matrix) -> dict:
    """Bytes of one int8 weight matrix at each Deep Compression stage: `dense` (int8); `pruned`
    (CSR: int8 values, relative indices, row counts); `clustered` (the same CSR with palette
    indices and the palette; None if no palette of <= 128 values fits or it is not smaller than
    int8 values); `huffman` (the clustered
    CSR, or the pruned one without a palette, with both streams Huffman-coded where smaller,
    codebooks included). Relative index widths as `csr_weights` chooses them."""
    matrix = np.asarray(matrix, dtype=np.int8)
    pruned = csr_weights(matrix)
    clustered = csr_weights(matrix, use_palette=True)
    clustered = clustered if clustered is not None and clustered.lut is not None else None
    coded = csr_weights(matrix, use_palette=clustered is not None, huffman=True)
    return {"dense": int(matrix.size), "pruned": None if pruned is None else pruned.nbytes,
            "clustered": None if clustered is None else clustered.nbytes,
            "huffman": None if coded is None else coded.nbytes,
            "index_bits": None if pruned is None else pruned.gaps.width,
            "palette_bits": None if clustered is None else clustered.values.width}


def storage_stages(tflite_bytes: bytes, source: str = "model.tflite") -> list[dict]:
    """Per weight tensor of an int8 .tflite (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
    filters), the bytes of each Deep Compression stage computed from its int8 values.

    The stage figures are the weight tensors alone: biases and requantization tables are not in
    them (each row's `bias_bytes` gives the op's int32 bias; `stage_totals` sums everything).

    Args:
        tflite_bytes: the .tflite file's content.
        source: the file's name, for error messages.

    Returns:
        One dict per tensor: `op` (index), `op_name`, `layer` (node label), `tensor`, `shape`,
        `count`, `nonzeros`, `dense`, `pruned`, `clustered`, `huffman` (bytes; see
        `deep_compression_stages`), `index_bits`, `palette_bits`, `bias_bytes`.
    """
    from edgeport.mcu.compiler.tflite_ir import read_tflite

    graph = read_tflite(tflite_bytes, source)
    rows = []
    for op in graph.ops:
        if op.name not in WEIGHT_OPS or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        tensor = graph.tensors[op.inputs[1]]
        if tensor.dtype != "int8" or not tensor.is_constant:
            continue
        bias = graph.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        matrix = weight_matrix(op.name, tensor.data)
        rows.append({"op": op.index, "op_name": op.name, "layer": graph.node_label(op), "tensor": tensor.label,
                     "shape": list(tensor.shape), "count": tensor.size, "nonzeros": int(np.count_nonzero(matrix)),
                     **deep_compression_stages(matrix), "bias_bytes": 0 if bias is None else bias.nbytes})
    return rows


def stage_totals(rows: list[dict]) -> dict:
    """Sums of `storage_stages` rows per stage; a stage that does not apply to a tensor (None)
    counts it at its previous stage's bytes. `bias_bytes` sums the biases, not in the stages."""
    totals = dict.fromkeys(("dense", "pruned", "clustered", "huffman", "bias_bytes"), 0)
    for row in rows:
        last = row["dense"]
        for stage in ("dense", "pruned", "clustered", "huffman"):
            last = row[stage] if row[stage] is not None else last
            totals[stage] += last
        totals["bias_bytes"] += row["bias_bytes"]
    return totals
