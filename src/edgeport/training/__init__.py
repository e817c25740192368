"""Training-time helpers for PyTorch models: pruning schedules and structured pruning
(`edgeport.training.pruning`), quantization-aware training and low-bit layers, distillation.

Each module imports torch itself, when used; `import edgeport` never loads it.
"""
