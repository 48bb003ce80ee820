"""docs/benchmarks.md upkeep: a benchmark replaces its own section and leaves the others as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.doc import PREAMBLE, write_section

DOC = "# Benchmarks\n\nintro\n\n## A\n\nold a\n\n## B\n\nold b\n"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("## A\n\nnew a\n", "# Benchmarks\n\nintro\n\n## A\n\nnew a\n\n## B\n\nold b\n"),
        (
            "## A\n\nnew a",
            "# Benchmarks\n\nintro\n\n## A\n\nnew a\n\n## B\n\nold b\n",
        ),  # no newline at the end
        ("## B\n\nnew b\n\n\n", "# Benchmarks\n\nintro\n\n## A\n\nold a\n\n## B\n\nnew b\n"),
        ("## C\n\nc\n", DOC + "\n## C\n\nc\n"),
        ("## A (longer)\n\nx\n", DOC + "\n## A (longer)\n\nx\n"),  # a heading that only starts like A's
    ],
)
def test_a_section_replaces_its_own_and_keeps_one_blank_line_between(
    tmp_path: Path, section: str, expected: str
) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC)
    write_section(section, doc)
    assert doc.read_text() == expected
    write_section(section, doc)
    assert doc.read_text() == expected, "writing the same section again changes nothing"


def test_a_new_document_starts_with_the_preamble(tmp_path: Path) -> None:
    doc = tmp_path / "docs" / "benchmarks.md"
    write_section("## A\n\na\n", doc)
    assert doc.read_text() == PREAMBLE + "\n## A\n\na\n"
