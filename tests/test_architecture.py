"""ARCHITECTURE.md names only what exists: every file it names is in the tree,
every identifier it puts in backticks occurs in the code (a renamed method or
module fails this test until the page follows)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "ARCHITECTURE.md").read_text()
CODE_FILES = [path for top in ("src", "bench", "compat", "tests") for path in (ROOT / top).rglob("*.py")]
CODE = "\n".join(path.read_text() for path in CODE_FILES)


def backticked() -> list[str]:
    return re.findall(r"`([^`]+)`", TEXT)


def test_every_file_named_exists() -> None:
    files = [name for name in backticked() if name.endswith((".py", "/"))]
    assert len(files) > 20
    tree = {str(path.relative_to(ROOT)) for path in CODE_FILES} | {p.name for p in CODE_FILES}
    tree |= {str(path.parent.relative_to(ROOT)) + "/" for path in CODE_FILES}
    tree |= {path.parent.name + "/" for path in CODE_FILES}
    for name in files:
        assert name in tree or any(path.endswith("/" + name) for path in tree), name


def test_every_identifier_named_occurs_in_the_code() -> None:
    names = {
        head
        for text in backticked()
        for head in [re.split(r"[(\s,]", text)[0].split(".")[-1]]
        if not text.endswith((".py", "/")) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]+", head)
    }
    assert len(names) > 30
    missing = sorted(name for name in names if not re.search(rf"\b{name}\b", CODE))
    assert missing == []
