"""Recipe validation, edgeport.toml reading and budget parsing."""

import pytest

from edgeport.budgets import evaluate, parse_budgets, parse_size
from edgeport.config import load_config
from edgeport.errors import InputError
from edgeport.recipe import Recipe
from edgeport.registry import Registry


def test_recipe_defaults_and_validation():
    recipe = Recipe(quantize="int8")
    assert recipe.per_channel and recipe.calibration == "minmax" and recipe.needs_calibration
    with pytest.raises(InputError, match="unknown recipe 'int4'.*known: none, fp16, dynamic-int8, int8"):
        Recipe(quantize="int4")
    with pytest.raises(InputError, match="unknown calibration method 'kl'"):
        Recipe(quantize="int8", calibration="kl")
    with pytest.raises(InputError, match="percentile"):
        Recipe(quantize="int8", calibration="percentile", percentile=20)


def test_registry_rejects_duplicates_and_lists_known_names():
    registry = Registry("widget")
    registry.add("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.add("a", 2)
    with pytest.raises(InputError, match=r"unknown widget 'b' \(known: a\)"):
        registry.get("b")


def test_config_reads_all_sections(tmp_path):
    path = tmp_path / "edgeport.toml"
    path.write_text('[export]\nsource = "m.onnx"\ntargets = ["onnx"]\n[recipe]\nquantize = "fp16"\n'
                    '[budgets]\nmax_size = "1MB"\n[checks]\nruns = 5\n')
    cfg = load_config(path)
    assert cfg["export"]["source"] == "m.onnx" and cfg["recipe"]["quantize"] == "fp16"
    assert cfg["budgets"]["max_size"] == "1MB" and cfg["checks"]["runs"] == 5


@pytest.mark.parametrize("text,message", [
    ("[recipe]\nquantise = 'int8'\n", "unknown key.*quantise"),
    ("[export]\nsource = \n", "invalid TOML"),
    ("[extras]\na = 1\n", "unknown section"),
])
def test_config_errors_are_one_line(tmp_path, text, message):
    path = tmp_path / "edgeport.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_config(path)


def test_budget_parsing():
    assert parse_size("250KB") == 250_000 and parse_size("1.5MiB") == 1.5 * 1024**2 and parse_size(2048) == 2048
    budgets = parse_budgets({"max_size": "100KB", "max_latency": "2.5ms", "min_agreement": "99%",
                             "max_accuracy_drop": 0.5, "other": None} | {})
    assert budgets == {"max_size": 100_000, "max_latency": 2.5, "min_agreement": 0.99, "max_accuracy_drop": 0.5}
    with pytest.raises(InputError, match="unknown budget"):
        parse_budgets({"max_rom": 1})
    assert parse_budgets({"max_flash": "64KiB", "max_ram": 2048}) == {"max_flash": 65536, "max_ram": 2048}
    with pytest.raises(InputError, match="max_size"):
        parse_budgets({"max_size": "big"})


def test_budget_evaluation_names_value_and_limit():
    measured = {"onnx": {"size": {"size_bytes": 120_000}, "parity": {"top1_agreement": 0.995}}}
    results = evaluate({"max_size": 100_000, "min_agreement": 0.99, "max_latency": 1.0}, measured,
                       {"onnx": {"latency": "runtime missing"}})
    by_name = {r.budget: r for r in results}
    assert not by_name["max_size"].ok
    assert by_name["max_size"].message == ("budget max_size exceeded on onnx: artifact size 120,000 B "
                                           "(limit <= 100,000 B)")
    assert by_name["min_agreement"].ok
    assert not by_name["max_latency"].ok and "not measured (runtime missing)" in by_name["max_latency"].message
