"""Runtimes that execute artifacts for the checks, one module per runtime.

The runtimes are registered in `edgeport.plugins.runtimes()`. A runtime reports whether it can
run here (and why not) without importing its backend, so `edgeport targets` stays fast. The
value types they share (`TensorSpec`, `Session`, `Runtime`) live in `edgeport.tensors`.
"""
