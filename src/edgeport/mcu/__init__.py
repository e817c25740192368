"""Cortex-M: a standalone C library (no interpreter) generated from an int8 .tflite, and the boards
and emulators that build, size and run it. Two halves, which do not import each other:

- `compiler`: the int8 .tflite -> C library (TFLite reader, op lowerings, memory planner, weight
  storage, C code generator) and the C kernels it ships (`compiler/kernels/`).
- `toolchain`: the boards table, the firmware build (arm-none-eabi-gcc, `toolchain/templates/`) and
  QEMU runner, the ELF size breakdown, the instruction counter, and the library's manifest.

The C exporter (`edgeport.exporters.c`) joins them; the QEMU runtime uses the toolchain only.
"""
