"""Static memory plan for activation tensors: one arena, an offset per tensor.

Pure functions. Lifetimes come from the op order (a tensor lives from the op that writes it
to the last op that reads it, both included, so an op's output never shares bytes with its
inputs). Tensors that alias another (a RESHAPE output is the same bytes as its input) are
folded into their root, whose lifetime grows to cover them. Placement is greedy by size:
largest first, each at the lowest 16-byte aligned offset that overlaps no placed tensor
alive at the same time (first fit).
"""

from __future__ import annotations

from dataclasses import dataclass

ALIGNMENT = 16
BEFORE_FIRST_OP = -1


@dataclass(frozen=True)
class Lifetime:
    """A buffer to place: `key` (tensor index), bytes, first and last op index using it.

    `start` is BEFORE_FIRST_OP for a buffer filled before the first op runs (a graph input);
    `end` is the number of ops for a buffer read after the last op (a graph output).
    """

    key: int
    size: int
    start: int
    end: int

    def overlaps(self, other: Lifetime) -> bool:
        return self.start <= other.end and other.start <= self.end


@dataclass(frozen=True)
class ArenaPlan:
    offsets: dict[int, int]  # root tensor -> byte offset in the arena
    size: int                # arena bytes (a multiple of the alignment)


def align_up(value: int, alignment: int = ALIGNMENT) -> int:
    return (value + alignment - 1) // alignment * alignment


def resolve_alias(key: int, aliases: dict[int, int]) -> int:
    """Follow alias links (tensor -> tensor it shares bytes with) to the root tensor."""
    seen = set()
    while key in aliases:
        if key in seen:
            raise ValueError(f"alias cycle through tensor {key}")
        seen.add(key)
        key = aliases[key]
    return key


def lifetimes(op_io: list[tuple[tuple[int, ...], tuple[int, ...]]], sizes: dict[int, int],
              aliases: dict[int, int] | None = None, live_at_start: frozenset[int] = frozenset(),
              live_at_end: frozenset[int] = frozenset()) -> list[Lifetime]:
    """Lifetimes of the tensors in `sizes` (the ones to place), from each op's (inputs, outputs).

    Args:
        op_io: per op in execution order, its input and output tensor indices.
        sizes: bytes of each tensor to place; tensors not listed (constants, caller buffers)
            are ignored.
        aliases: tensor -> tensor whose bytes it reuses; an alias takes no space of its own.
        live_at_start: tensors written before the first op (graph inputs held in the arena).
        live_at_end: tensors read after the last op (graph outputs held in the arena).

    Returns:
        One Lifetime per root tensor that some op uses.
    """
    aliases = aliases or {}
    spans: dict[int, list[int]] = {}

    def touch(tensor: int, when: int) -> None:
        root = resolve_alias(tensor, aliases)
        if root not in sizes:
            return
        span = spans.setdefault(root, [when, when])
        span[0], span[1] = min(span[0], when), max(span[1], when)

    for tensor in live_at_start:
        touch(tensor, BEFORE_FIRST_OP)
    for tensor in live_at_end:
        touch(tensor, len(op_io))
    for index, (inputs, outputs) in enumerate(op_io):
        for tensor in (*inputs, *outputs):
            if tensor >= 0:
                touch(tensor, index)
    return [Lifetime(key, sizes[key], start, end) for key, (start, end) in spans.items()]


def place(buffers: list[Lifetime], alignment: int = ALIGNMENT) -> ArenaPlan:
    """Greedy placement: largest buffer first, each at the first aligned offset where it fits
    between the buffers already placed that are alive at the same time."""
    order = sorted(buffers, key=lambda b: (-b.size, b.start, b.key))
    placed: list[tuple[Lifetime, int]] = []
    for buffer in order:
        offset = 0
        for other, other_offset in sorted(((o, off) for o, off in placed if o.overlaps(buffer)), key=lambda p: p[1]):
            if offset + buffer.size <= other_offset:
                break
            offset = max(offset, align_up(other_offset + other.size, alignment))
        placed.append((buffer, offset))
    size = max((align_up(off + b.size, alignment) for b, off in placed if b.size), default=0)
    return ArenaPlan({b.key: off for b, off in placed}, size)


def conflicts(buffers: list[Lifetime], plan: ArenaPlan) -> list[tuple[int, int]]:
    """Pairs of tensors alive at the same time whose bytes overlap (empty for a valid plan)."""
    bad = []
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if a.size and b.size and a.overlaps(b):
                a0, b0 = plan.offsets[a.key], plan.offsets[b.key]
                if a0 < b0 + b.size and b0 < a0 + a.size:
                    bad.append((a.key, b.key))
    return bad


def lower_bound(buffers: list[Lifetime]) -> int:
    """The most bytes alive at any one op: no plan can use less."""
    times = {t for b in buffers for t in (b.start, b.end)}
    return max((sum(b.size for b in buffers if b.start <= t <= b.end) for t in times), default=0)
