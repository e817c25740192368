"""C text for generated libraries: identifiers, literals that read back exactly, comments, and
const arrays and parameter structs."""

from __future__ import annotations

import re

import numpy as np

from edgeport.errors import InputError
from edgeport.mcu.compiler.lowering import STRUCT_FIELDS, CArray, CStruct

_PER_LINE = {"int8_t": 16, "uint8_t": 16, "int32_t": 8, "uint32_t": 6, "uint64_t": 4, "float": 6, "double": 4}


def sanitize_identifier(name: str) -> str:
    """The C identifier every name of a library starts with, from any model name.

    Characters other than ASCII letters, digits and '_' become '_'; runs of '_' become one and
    trailing ones go (`<name>_invoke` must not hold '__', reserved in C++); a name starting with
    a digit gets the prefix 'm_' and one starting with '_' (reserved at file scope in C) the
    prefix 'm': "1kws" -> "m_1kws", "my model.v2" -> "my_model_v2", "_net" -> "m_net".
    """
    ident = re.sub(r"_+", "_", re.sub(r"[^0-9A-Za-z_]", "_", name.strip())).rstrip("_")
    if not ident:
        raise InputError(f"'{name}' cannot be made into a C identifier")
    if ident[0].isdigit():
        return f"m_{ident}"
    return f"m{ident}" if ident[0] == "_" else ident


def identifier_note(name: str, ident: str) -> list[str]:
    """Banner lines saying how a model name became the library's C identifier (none if unchanged)."""
    if name == ident:
        return []
    return [f" * C names start with '{ident}' (upper case '{ident.upper()}'): the model name "
            f"'{comment_text(name, 40)}' is not a valid C identifier."]


def c_float(value) -> str:
    """A float32 as a C float literal that reads back to the same float32."""
    value = float(np.float32(value))
    if not np.isfinite(value):
        raise ValueError(f"{value} has no C float literal")
    text = f"{value:.9g}"
    if not any(c in text for c in ".e"):
        text += ".0"
    return text + "f"


def c_double(value) -> str:
    """A double as a C literal that reads back to the same double."""
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{value} has no C double literal")
    text = repr(value)
    return text if any(c in text for c in ".e") else text + ".0"


def c_int(value: int) -> str:
    """An int32 as a C literal (INT32_MIN spelled so that it stays an int)."""
    value = int(value)
    return "(-2147483647 - 1)" if value == -(1 << 31) else str(value)


def c_define(value: int) -> str:
    """An integer for a #define: negative values parenthesized."""
    text = c_int(value)
    return f"({text})" if int(value) < 0 and not text.startswith("(") else text


def comment_text(text: str, limit: int = 72) -> str:
    """Text safe inside a C comment: ASCII, one line, no comment delimiters, shortened."""
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in text).replace("*/", "* /").replace("/*", "/ *")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _values(values: np.ndarray, ctype: str) -> str:
    per_line = _PER_LINE[ctype]
    if ctype in ("float", "double"):
        items = [(c_float if ctype == "float" else c_double)(v) for v in values]
    elif ctype == "uint64_t":
        items = [f"{int(v)}ull" for v in values.tolist()]
    elif ctype == "uint32_t":  # bit masks (low-bit weights): hex shows the bits
        items = [f"0x{int(v):08x}u" for v in values.tolist()]
    else:
        items = [c_int(v) for v in values.astype(np.int64).tolist()]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return ",\n".join(f"    {line}" for line in lines)


def render_array(array: CArray) -> str:
    if array.ctype in STRUCT_FIELDS:  # one {field, ...} per row
        rows = ",\n".join("    {" + ", ".join(c_int(v) for v in row) + "}" for row in array.values.tolist())
        fields = ", ".join(STRUCT_FIELDS[array.ctype])
        return (f"/* {comment_text(array.comment)} */\n/* {{{fields}}} */\n"
                f"static const {array.ctype} {array.name}[{len(array.values)}] = {{\n{rows}\n}};\n")
    return (f"/* {comment_text(array.comment)} */\n"
            f"static const {array.ctype} {array.name}[{max(array.values.size, 1)}] = {{\n"
            f"{_values(array.values, array.ctype) if array.values.size else '    0'}\n}};\n")


def _field(value) -> str:
    if isinstance(value, str):  # a C expression: an array's name, NULL
        return value
    if isinstance(value, (list, tuple)):
        return "{" + (", ".join(_field(v) for v in value) if len(value) else "0") + "}"
    if isinstance(value, (float, np.floating)):
        return c_float(value)
    return c_int(value)


def render_struct(struct: CStruct) -> str:
    parts = [f".{key} = {_field(value)}" for key, value in struct.fields.items()]
    lines: list[list[str]] = [[]]
    for part in parts:
        if lines[-1] and sum(len(p) + 2 for p in lines[-1]) + len(part) > 100:
            lines.append([])
        lines[-1].append(part)
    body = ",\n".join("    " + ", ".join(line) for line in lines)
    return f"static const {struct.ctype} {struct.name} = {{\n{body}\n}};\n"
