"""A report as one self-contained HTML page: its tables and its chart (an SVG image inside the
page as a data URI), readable offline. Every value is escaped with `html.escape`; the page's
Content-Security-Policy lets it load nothing from anywhere and run no script."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
p.note { color: #555; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f0f0f0; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
"""
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class Table:
    """A table as text: its title, headers and rows of cells; `numeric` says which columns hold
    numbers (aligned right)."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()


def page(title: str, note: str, tables: list[Table], svg: bytes) -> str:
    """The page: a heading, a line saying what it shows, the chart, then the tables."""
    chart = base64.b64encode(svg).decode("ascii")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{html.escape(note)}</p>',
        f'<figure><img id="chart" alt="{html.escape(title)}: chart"'
        f' src="data:image/svg+xml;base64,{chart}"></figure>',
        *(_table(table, index) for index, table in enumerate(tables)),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _table(table: Table, index: int) -> str:
    head = "".join(f"<th>{html.escape(header)}</th>" for header in table.headers)
    rows = []
    for row in table.rows:
        cells = "".join(
            f'<td class="number">{html.escape(cell)}</td>'
            if column in table.numeric
            else f"<td>{html.escape(cell)}</td>"
            for column, cell in enumerate(row)
        )
        rows.append(f"<tr>{cells}</tr>")
    body = "\n".join(rows) or f'<tr><td colspan="{len(table.headers)}">nothing to show</td></tr>'
    return (
        f"<h2>{html.escape(table.title)}</h2>\n"
        f'<table id="table-{index}">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table>"
    )
