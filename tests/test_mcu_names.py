"""C identifiers from any model name: a model file named `1kws.tflite` (or with spaces, dots,
dashes) becomes a library whose every name is valid C, `m_1kws_invoke`, and whose header says
how the name was made."""

from __future__ import annotations

import shutil

import pytest
from conftest import check_bit_exact, load_report, model_bytes, needs_gcc, needs_litert, run_cli

from edgeport.errors import InputError
from edgeport.mcu.compiler.codegen import generate_c_array, sanitize_identifier
from edgeport.runtimes.qemu import QemuRuntime

REASON = QemuRuntime().availability()
needs_qemu = pytest.mark.skipif(REASON is not None, reason=str(REASON))


@pytest.mark.parametrize("name, ident", [
    ("kws", "kws"),
    ("1kws", "m_1kws"),            # a leading digit: prefixed
    ("1st-model", "m_1st_model"),
    ("my model.v2", "my_model_v2"),
    ("_net", "m_net"),             # a leading '_' is reserved at file scope in C
    ("a--b__c", "a_b_c"),          # no '__' (reserved in C++, which includes the header)
    ("kws_", "kws"),               # else `kws__invoke`
    ("modèle", "mod_le"),          # ASCII only
])
def test_identifiers_are_valid_c_and_not_reserved(name, ident):
    assert sanitize_identifier(name) == ident


@pytest.mark.parametrize("name", ["", "  ", "___", "-."])
def test_a_name_with_nothing_to_keep_is_an_input_error(name):
    with pytest.raises(InputError, match="cannot be made into a C identifier"):
        sanitize_identifier(name)


@needs_litert
@needs_gcc
def test_library_named_1kws_compiles_bit_exact_and_says_why_it_is_m_1kws(tmp_path):
    tflite = model_bytes("kws_ref_model.tflite")
    info = check_bit_exact(tflite, "1kws", tmp_path, n=4)  # gcc -Werror, then LiteRT's outputs byte for byte
    assert info.name == "m_1kws"
    lib = tmp_path / "lib"
    assert sorted(p.name for p in lib.glob("m_1kws*")) == ["m_1kws.c", "m_1kws.h"]
    header = (lib / "m_1kws.h").read_text()
    assert "the model name '1kws' is not a valid C identifier" in header
    assert "#define M_1KWS_INPUT_SIZE" in header and "int m_1kws_invoke(" in header
    files = generate_c_array(tflite, "1kws", tmp_path / "array")
    assert [p.name for p in files] == ["m_1kws_data.c", "m_1kws_data.h"]
    assert "extern const unsigned char m_1kws_data[];" in files[1].read_text()


@pytest.mark.e2e
@needs_qemu
def test_1kws_tflite_exports_to_cortex_m(tmp_path):
    model = tmp_path / "1kws.tflite"
    model.write_bytes(model_bytes("kws_ref_model.tflite"))
    out = tmp_path / "out"
    result = run_cli("export", str(model), "--target", "cortex-m4", "--out", str(out), "--runs", "1", "--json")
    assert result.returncode == 0, result.stderr
    (target,) = load_report(out)["targets"]
    assert target["status"] == "exported" and target["checks"]["bit_exact"]["bit_exact"] is True
    folder = out / "cortex-m4" / "1kws"
    for file in ("m_1kws.h", "m_1kws.c", "m_1kws_data.c", "m_1kws.tflite", "edgeport.json"):
        assert (folder / file).is_file(), file
    # the integration files build the library under its C name
    shutil.copytree(folder, tmp_path / "lib")
    assert "m_1kws" in (tmp_path / "lib" / "CMakeLists.txt").read_text()
