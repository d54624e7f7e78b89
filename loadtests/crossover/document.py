"""The report's document model: a list of blocks (headings, paragraphs, bullet lists, tables,
images, preformatted text), rendered to Markdown and to self-contained HTML, so both files say
the same thing; and the formatting of the numbers in its cells."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    rows: tuple[tuple[str, ...], ...]  # the first is the header

    @classmethod
    def of(cls, rows: Sequence[Sequence[str]]) -> Table:
        return cls(tuple(tuple(r) for r in rows))

    @classmethod
    def with_header(cls, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
        return cls.of([header, *rows])


@dataclass(frozen=True)
class Image:
    key: str


@dataclass(frozen=True)
class Pre:
    text: str


Block = Heading | Para | Bullets | Table | Image | Pre


def section(title: str, method: str) -> list[Block]:
    """A report section's opening: its heading and the paragraph saying how it was measured."""
    return [Heading(2, title), Para(method)]


def num(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


# -- Markdown -------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(
    content: Sequence[Block], images: Mapping[str, Path], captions: Mapping[str, str]
) -> str:
    """Markdown; an image links the PNG beside the file (those not drawn are left out)."""
    out: list[str] = []
    for block in content:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            header, *rows = block.rows
            lines = ["| " + " | ".join(_md_cell(c) for c in header) + " |"]
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif isinstance(block, Image):
            if block.key in images:
                out.append(f"![{captions[block.key]}]({images[block.key].name})")
        else:
            out.append(f"```\n{block.text}\n```")
    return "\n\n".join(out) + "\n"


# -- HTML -----------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; display: block; margin: 1rem 0; }
code, pre { background: #f6f6f6; }
"""


def _inline(text: str) -> str:
    """Escape, then render `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(
    content: Sequence[Block], images: Mapping[str, Path], captions: Mapping[str, str], title: str
) -> str:
    """One HTML page, readable offline: the PNGs embedded as data URLs."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
    ]
    for block in content:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            header, *rows = block.rows
            out.append("<table><thead><tr>")
            out.append("".join(f"<th>{html.escape(c)}</th>" for c in header))
            out.append("</tr></thead><tbody>")
            for row in rows:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
            out.append("</tbody></table>")
        elif isinstance(block, Image):
            path = images.get(block.key)
            if path is not None:
                data = base64.b64encode(path.read_bytes()).decode()
                alt = html.escape(captions[block.key])
                out.append(f'<img alt="{alt}" src="data:image/png;base64,{data}">')
        else:
            out.append(f"<pre>{html.escape(block.text)}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
