"""Every ``xp.<name>`` in minicnn/ and gradcam/ exists in the minimum supported CuPy.

The allow-list is tests/cupy_api/cupy-13.0.0.json, dumped from the real wheel by
tests/cupy_api/dump.py (see its docstring for the command). The check is static (AST), so it
also covers lines that no dynamic test reaches. Receivers that hold the array module: the names
``xp``, ``cp``, ``cupy``, ``_cupy`` and a call ``get_xp(...)``. Checked: the attribute chain
(``xp.linalg.svd``, ``xp.add.at``) and the keyword arguments of a call.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_DIR = Path(__file__).parent / "cupy_api"
ALLOW = json.loads((API_DIR / "cupy-13.0.0.json").read_text())
MODULE_NAMES = {"xp", "cp", "cupy", "_cupy"}


def _chain(node):
    """``xp.a.b`` -> ["a", "b"] when the root holds the array module, else None."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    root = (isinstance(node, ast.Name) and node.id in MODULE_NAMES) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id == "get_xp")
    return names[::-1] if root and names else None


def findings(source, filename="<src>"):
    """``[(line, message)]`` for every module attribute or keyword the allow-list lacks."""
    tree = ast.parse(source, filename)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or isinstance(parents.get(node), ast.Attribute):
            continue  # only the outermost attribute of a chain
        names = _chain(node)
        if names is None or names[0].startswith("__"):
            continue
        module, entry, shown = "cupy", None, "xp"
        for i, name in enumerate(names):
            shown += "." + name
            if entry is not None and entry["kind"] == "ufunc":
                if name not in entry.get("ufunc_methods", ()):
                    out.append((node.lineno, f"{shown}: the ufunc has no method {name!r}"))
                entry = None
                break
            table = ALLOW["modules"].get(module)
            if table is None:
                break  # a module the dump does not cover (cupy.cuda): not checked deeper
            entry = table.get(name)
            if entry is None:
                out.append((node.lineno, f"{shown}: not in CuPy {ALLOW['cupy_version']}"))
                break
            if entry["kind"] != "module":
                if i < len(names) - 1 and entry["kind"] != "ufunc":
                    entry = None  # an attribute of a class or value (xp.finfo(...).eps)
                    break
                continue
            module, entry = f"{module}.{name}", None
        call = parents.get(node)
        if entry is not None and isinstance(call, ast.Call) and call.func is node \
                and entry["params"] is not None and not entry["varkw"]:
            for kw in call.keywords:
                if kw.arg is not None and kw.arg not in entry["params"]:
                    out.append((node.lineno, f"{shown}(..., {kw.arg}=...): CuPy "
                                f"{ALLOW['cupy_version']} takes only {entry['params']}"))
    return out


def _sources():
    for pkg in ("minicnn", "gradcam"):
        yield from sorted((ROOT / pkg).rglob("*.py"))


def test_every_xp_name_and_keyword_in_the_library_exists_in_the_cupy_floor():
    bad = [f"{p.relative_to(ROOT)}:{line}: {msg}" for p in _sources()
           for line, msg in findings(p.read_text(), str(p))]
    assert bad == []


def test_the_check_sees_the_library_s_xp_calls():
    """Not vacuous: the walk finds many xp calls, including keyword ones, in the sources."""
    text = "\n".join(p.read_text() for p in _sources())
    assert len(re.findall(r"\bxp\.\w+\(", text)) > 100
    assert re.search(r"\bxp\.\w+\([^)]*\bkeepdims=", text)


@pytest.mark.parametrize("src,hit", [
    ("xp.put_along_axis(a, i, v, axis=0)", "put_along_axis"),  # CuPy 14.0 only
    ("xp.sum(a, initial=0)", "initial"),  # NumPy has it, CuPy 13 does not
    ("xp.exp(a, where=m)", "where"),  # a ufunc keyword CuPy lacks
    ("get_xp(x).mean(s, axis=1, where=m)", "where"),  # the receiver as a call
    ("xp.linalg.svd(a, hermitian=True)", "hermitian"),
    ("xp.add.reduce_all(a)", "reduce_all"),
    ("cupy.random.default_rng(0).random((2,)); xp.random.nonesuch(3)", "nonesuch"),
])
def test_the_check_catches_names_and_keywords_cupy_lacks(src, hit):
    """Negative controls: each line breaks the floor once, and the check says where."""
    found = findings(src)
    assert len(found) == 1 and hit in found[0][1], found


@pytest.mark.parametrize("src", [
    "xp.sum(a, axis=1, keepdims=True)", "xp.add.at(a, i, v)", "xp.linalg.svd(a, full_matrices=False)",
    "xp.finfo(xp.float32).eps", "xp.lib.stride_tricks.as_strided(a, shape=s, strides=t)",
    "np.put_along_axis(a, i, v, axis=0)",  # NumPy on the host is not the device's business
])
def test_the_check_passes_what_cupy_13_has(src):
    assert findings(src) == []


def test_the_allow_list_is_the_pinned_floor():
    """The dump is of the version pyproject's ``gpu`` extra names as its minimum."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    floor = re.search(r'"cupy-cuda12x[^"]*>=([\d.]+)', pyproject).group(1)
    assert ALLOW["cupy_version"].startswith(floor), (floor, ALLOW["cupy_version"])
