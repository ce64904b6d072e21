"""The seam to the database: every statement the package sends is in pyqueue/queries.py.

Static checks of the source, no database: a statement written anywhere else in
pyqueue/ fails here, and so does a worker transition named outside the seam.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pyqueue"
SEAM = PACKAGE / "queries.py"
NOT_YET: set[Path] = set()

STATEMENT = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|VALUES)\s"
    r"|^\s*(LISTEN|UNLISTEN|NOTIFY|CREATE|ALTER|DROP)\s+\S+\s*$"
    r"|\bpyqueue\.[a-z_]+\s*\("
    r"|\bFROM\s+pyqueue\.",
    re.IGNORECASE,
)


WORKER_CALLS = re.compile(
    r"\b(claim_batch|complete_batch|fail_batch)\b|\bpyqueue\.(fail|heartbeat|release)\b"
)


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != SEAM and p not in NOT_YET)


def string_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string but docstrings (prose may name a statement).

    An f-string counts as one string, each of its {fields} read as a name.
    """
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            docstrings.add(id(body[0].value))
    parts = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            pieces = [v.value if isinstance(v, ast.Constant) else "name" for v in node.values]
            parts.update(id(v) for v in node.values)
            found.append((node.lineno, "".join(map(str, pieces))))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and id(node) not in parts
        ):
            found.append((node.lineno, node.value))
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_statement_outside_the_seam(path):
    tree = ast.parse(path.read_text(), str(path))
    found = [
        f"line {line}: {text!r}" for line, text in string_literals(tree) if STATEMENT.search(text)
    ]
    assert found == [], f"SQL outside pyqueue/queries.py in {path.name}"


def test_the_worker_transitions_are_named_in_the_seam_only():
    named = [p.name for p in [SEAM, *modules()] if WORKER_CALLS.search(p.read_text())]
    assert named == ["queries.py"]


def test_the_checks_see_a_statement_when_there_is_one():
    source = (
        '"""SELECT in a docstring is prose."""\nQ = "SELECT pyqueue.fail(%s)"\nL = f"LISTEN {c}"\n'
    )
    found = [text for _, text in string_literals(ast.parse(source)) if STATEMENT.search(text)]
    assert found == ["SELECT pyqueue.fail(%s)", "LISTEN name"]
