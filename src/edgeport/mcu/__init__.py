"""Cortex-M: a standalone C library (no interpreter) generated from an int8 .tflite, the .tflite
as a C array for TensorFlow Lite Micro users, and the boards and emulators that check them."""
