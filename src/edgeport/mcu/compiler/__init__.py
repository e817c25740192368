"""int8 .tflite -> standalone C library: `codegen.generate_library` reads the model (`tflite_ir`),
lowers each op to a kernel call (`lowerings`, with one module per op family), plans the arena
(`planner`), stores the weights (`storage`, `lowbit`) and writes the C with the kernel sources of
`kernels/`."""
