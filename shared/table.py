"""Plain-text tables for the terminal and Markdown tables for reports."""

from __future__ import annotations

from typing import Any


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, fmt)
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]], markdown: bool = False) -> str:
    """`columns` is a list of (key, header, float format); missing values print as '-'."""
    cells = [[header for _, header, _ in columns]]
    cells += [[_cell(row.get(key), fmt) for key, _, fmt in columns] for row in rows]
    widths = [max(len(line[j]) for line in cells) for j in range(len(columns))]
    if markdown:
        lines = ["| " + " | ".join(line) + " |" for line in cells]
        lines.insert(1, "|" + "|".join("---" for _ in columns) + "|")
        return "\n".join(lines)
    lines = ["  ".join(text.ljust(w) if j == 0 else text.rjust(w) for j, (text, w) in enumerate(zip(line, widths))) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
