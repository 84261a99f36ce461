"""What a user sees of the registry: short citations, the layer each method is run at, and the
README's table of methods, all read from the registry's facts (``gradcam.methods()``), so a
method that is registered shows up everywhere without an edit here.

    short_citation(gradcam.methods()["gradcam"])    # "Selvaraju 2017"
    layer_for(method, "relu3")                      # the ``layer`` to pass to ``explain``
    print(methods_table())                          # the README's Markdown table
    python -m gradcam.catalog [--write README.md]   # print it, or rewrite the README's table
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .peers import PEER_CLASSES
from .registry import methods, variants

ARXIV = re.compile(r"arXiv:(\d{4}\.\d{4,5})(v\d+)?")
YEAR = re.compile(r"\b(19|20)\d\d\b")
# the README's table lives between these two lines (``write_readme`` rewrites what is between)
BEGIN, END = "<!-- methods table: python -m gradcam.catalog --write README.md -->", \
    "<!-- end of methods table -->"
KIND_TEXT = {"channel": "per channel", "position": "per position", "pixel": "pixel space",
             "network": "whole network"}


def authors(method):
    """The citation's authors: the text before its first comma ("Selvaraju et al.")."""
    return method.citation.split(",")[0].strip()


def short_citation(method):
    """First author's surname and year, "Chattopadhay 2018"; the authors as cited when the
    citation names no paper's author (e.g. "pytorch-grad-cam 1.5.7"). The year is the first
    one before any parenthesis (a remark in parentheses may cite another paper's year)."""
    who = re.sub(r"\s+(et al\b.*|&.*|and .*)$", "", authors(method)).strip()
    year = YEAR.search(method.citation.split("(")[0])
    return f"{who} {year.group(0)}" if year and year.group(0) not in who else who


def paper(method):
    """The citation's reference, without its arXiv id, doi or remarks: "Chattopadhay et al.,
    WACV 2018"."""
    text = re.split(r",?\s*(?:arXiv:|doi:|\()", method.citation)[0].rstrip(" ,;")
    return text or method.citation


def arxiv_id(method):
    """The arXiv id with its version ("1710.11063v3") cited by the method, or None."""
    m = ARXIV.search(method.citation)
    return None if m is None else m.group(1) + (m.group(2) or "")


def layer_for(method, layer):
    """The ``layer`` to pass to ``explain`` for ``method`` when the user chose ``layer`` for
    the CAM methods: that layer for the methods that weight a layer's channels (their
    ``layer_rule`` "last-spatial", "gap-input"), None for the pixel-space and whole-network
    methods, which are defined at the input only."""
    return layer if method.layer_rule in ("last-spatial", "gap-input") else None


def peer_status(name):
    """The README's peers column for one method: each peer library's class, and whether the
    paper's formula reproduces it or a variant does ("-": neither library has the method)."""
    departs = variants(name) if name in methods() else {}
    cells = [f"{peer} `{classes[name]}`: " + ("variant" if peer in departs else "paper")
             for peer, classes in PEER_CLASSES.items() if name in classes]
    return "; ".join(cells) or "-"


def methods_table(table=None):
    """The Markdown table of the registered methods (``table``: {name: Method}, default the
    registry): name, title, paper, arXiv link, kind, peer status."""
    table = methods() if table is None else table
    lines = ["| `method=` | method | paper | arXiv | kind | peers |",
             "|---|---|---|---|---|---|"]
    for name, m in table.items():
        aid = arxiv_id(m)
        link = f"[{aid}](https://arxiv.org/abs/{aid})" if aid else "-"
        lines.append(f"| `{name}` | {m.title} | {paper(m)} | {link} | "
                     f"{KIND_TEXT.get(m.kind, m.kind)} | {peer_status(name)} |")
    return "\n".join(lines)


def replace_table(text, table_md=None):
    """``text`` (the README) with the lines between BEGIN and END replaced by the table."""
    table_md = methods_table() if table_md is None else table_md
    try:
        head, rest = text.split(BEGIN + "\n", 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise ValueError(f"the README lacks the lines {BEGIN!r} ... {END!r}") from None
    return f"{head}{BEGIN}\n{table_md}\n{END}{tail}"


def write_readme(path):
    """Rewrite the methods table of the README at ``path``; returns True if it changed."""
    path = Path(path)
    old = path.read_text(encoding="utf-8")
    new = replace_table(old)
    if new != old:
        path.write_text(new, encoding="utf-8")
    return new != old


if __name__ == "__main__":  # pragma: no cover (the two lines are the README's instructions)
    if sys.argv[1:2] == ["--write"] and len(sys.argv) == 3:
        print(f"{sys.argv[2]}: {'rewritten' if write_readme(sys.argv[2]) else 'up to date'}")
    else:
        print(methods_table())
