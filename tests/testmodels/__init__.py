"""Small PyTorch models that cover op families in tests (random weights, fixed seeds).

Imported as `testmodels` (the tests folder is on the path), e.g. `testmodels.zoo:build_dscnn`."""
