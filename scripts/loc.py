"""Count each backend's own lines: what issue 10's "about 400 lines" is measured by.

``python scripts/loc.py`` prints, per backend folder, the physical lines (``wc -l``) and the
code lines (no blank lines, comments or docstrings) of its modules, leaving out the layer of
official-provider argument compatibility (``compat.py`` or ``compat/``). EMR's three backends
are counted separately: a module belongs to the backend its file name starts with (``steps``,
``clusters``, ``serverless``: ``steps.py``, ``steps_operators.py``, or a ``steps/`` package);
the rest of the folder is their shared AWS layer.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "airflow_spark_async"
EMR_BACKENDS = ("steps", "clusters", "serverless")


def code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    doc_lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                doc_lines.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                          tokenize.ENDMARKER):
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - doc_lines)


def group_of(path: Path) -> str | None:
    """The backend a module counts for, or None for the compatibility layer."""
    relative = path.relative_to(PACKAGE)
    if "compat" in (relative.parts[1], relative.stem):
        return None
    folder = relative.parts[0]
    if folder == "emr":
        first = relative.parts[1] if len(relative.parts) > 2 else relative.stem
        named = next((name for name in EMR_BACKENDS if first.split("_")[0] == name), None)
        return f"emr/{named}" if named else "emr/shared"
    return folder


def main() -> int:
    totals: dict[str, list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == PACKAGE:
            continue
        group = group_of(path)
        if group is None:
            continue
        source = path.read_text()
        counts = totals.setdefault(group, [0, 0])
        counts[0] += source.count("\n")
        counts[1] += code_lines(source)
    print(f"{'folder':<16}{'wc -l':>8}{'code':>8}")
    for group, (physical, code) in sorted(totals.items()):
        print(f"{group:<16}{physical:>8}{code:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
