"""docs/layout.md is the map of the code: every module of the package (ebmgraph/, kernels/) is listed once."""
from __future__ import annotations

import re

from conftest import ROOT


def listed(text: str) -> list[str]:
    """Module paths in the doc's tables: full paths in backticks, and short names after them in the same cell
    meaning the same folder (``ebmgraph/infer/gradient.py``, ``sampling.py``)."""
    out = []
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        for cell in line.split("|")[1:-1]:
            folder = None
            for name in re.findall(r"`([^`]+\.py)`", cell):
                if "/" in name:
                    folder = name.rsplit("/", 1)[0]
                    out.append(name)
                elif folder is not None:
                    out.append(f"{folder}/{name}")
    return out


def modules() -> set[str]:
    return {str(p.relative_to(ROOT)) for d in ("ebmgraph", "kernels") for p in (ROOT / d).rglob("*.py")
            if p.name != "__main__.py"}


def test_every_module_is_listed_once():
    names = listed((ROOT / "docs" / "layout.md").read_text())
    twice = sorted({n for n in names if names.count(n) > 1})
    assert not twice, f"listed more than once: {twice}"
    have = modules()
    assert not sorted(have - set(names)), f"modules missing from docs/layout.md: {sorted(have - set(names))}"
    assert not sorted(set(names) - have), f"docs/layout.md lists modules that do not exist: {sorted(set(names) - have)}"


def test_the_reader_finds_missing_and_doubled_entries():
    doc = "| a | `ebmgraph/x.py`, `y.py` |\n| b | `ebmgraph/x.py` |\n"
    assert listed(doc) == ["ebmgraph/x.py", "ebmgraph/y.py", "ebmgraph/x.py"]
