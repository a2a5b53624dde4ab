"""Results as markdown: the tables that demo, evaluate and diagnose print and write."""

from __future__ import annotations


def table_markdown(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table: the first column left-aligned (names), the others right-aligned (numbers)."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def human_count(n: int) -> str:
    """12345678 -> '12.35M'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
