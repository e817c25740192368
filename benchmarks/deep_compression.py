"""Deep Compression figures on LeNet-300-100 (digits): bytes, α and accuracy per stage, and the
cost of each way of decoding on a Cortex-M4.

    .venv/bin/python benchmarks/deep_compression.py

Stages as in Han et al. (2016): float32 -> pruned (CSR with relative indices) -> clustered
(4-bit shared-value indices) -> Huffman-coded. The anchor is the paper's ~40x on LeNet-300-100
(MNIST) with no accuracy loss; the target here is >= 30x within 0.5 points on the digits.
The last table compares the C library storing dense int8, Huffman-coded weights decoded on the
fly, and decoded once at init: flash, RAM and the estimated latency (unicorn instruction count
x the M4 cycle table; see edgeport.mcu.toolchain.boards).
"""

from __future__ import annotations

from common import ROOT  # noqa: F401,E402  (sets up the repository root first)

from samples.deep_compression.compress import print_table, stage_table  # noqa: E402


def main() -> None:
    kernel = stage_table("kernel")
    print_table(kernel)
    init = stage_table("init")
    print("\nCortex-M4 C library, int8, bit-exact with LiteRT in every row:")
    header = f"{'weights stored as':<40}{'const data B':>13}{'flash B':>10}{'RAM B':>9}{'instructions':>14}{'est. ms':>9}"
    print(header)
    print("-" * len(header))
    rows = (("dense int8", kernel["library"]["dense"]),
            ("CSR + palette + Huffman, decoded on the fly", kernel["library"]["huffman"]),
            ("CSR + palette + Huffman, decoded at init", init["library"]["huffman"]))
    for label, lib in rows:
        ram = lib["arena_bytes"] + lib["decoded_bytes"]
        latency = lib["latency"]
        print(f"{label:<40}{lib['weight_bytes']:>13,}{lib['flash']:>10,}{ram:>9,}"
              f"{latency.get('instructions', 0):>14,}{latency.get('p50_ms', float('nan')):>9.2f}")


if __name__ == "__main__":
    main()
