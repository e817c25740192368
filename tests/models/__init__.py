"""Small PyTorch models that cover op families in tests (random weights, fixed seeds)."""
