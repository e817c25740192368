"""Test models that cover op families: PyTorch models (random weights, fixed seeds) and TFLite graphs built op by op.

Imported as `testmodels` (the tests folder is on the path), e.g. `testmodels.zoo:build_dscnn`."""
