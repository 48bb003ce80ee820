"""docs/benchmarks.md: each benchmark script owns one section, found by its heading and replaced whole."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
PREAMBLE = "# Benchmarks\n\nFigures from the scripts in bench/; each section says how to reproduce it.\n"


def write_section(section: str, path: Path = DOC) -> None:
    """Put ``section`` (its first line is its ``## `` heading) in place of the one with the same heading,
    or at the end; sections stay one blank line apart."""
    heading = section.splitlines()[0]
    body = section.strip("\n") + "\n"
    text = path.read_text() if path.exists() else PREAMBLE
    start = text.find(heading + "\n")
    if start >= 0:
        end = text.find("\n## ", start + len(heading))
        rest = "\n" + text[end + 1 :] if end >= 0 else ""
        text = text[:start] + body + rest
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
