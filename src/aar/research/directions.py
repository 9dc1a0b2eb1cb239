"""Starting research directions: Markdown files, one per direction, that users can edit.

A direction file starts with ``# Title``; an optional ``families: a, b`` line names the
building-block families the built-in researcher starts from (see
:data:`aar.research.genome.FAMILIES`; unknown names are ignored); the rest is the brief an
LLM researcher reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from aar.errors import AarError


@dataclass(frozen=True)
class Direction:
    slug: str
    title: str
    families: tuple[str, ...]
    text: str


def parse_direction(slug: str, text: str) -> Direction:
    title = slug
    fams: tuple[str, ...] = ()
    body = []
    for line in text.splitlines():
        if line.startswith("# ") and title == slug:
            title = line[2:].strip()
        elif re.match(r"^families\s*:", line, re.I):
            fams = tuple(f.strip().lower() for f in line.split(":", 1)[1].split(",")
                         if f.strip())
        else:
            body.append(line)
    return Direction(slug, title, fams, "\n".join(body).strip())


def _slug(path_name: str) -> str:
    return re.sub(r"^\d+_", "", path_name.removesuffix(".md"))


def load_directions(source: Path | str | None = None) -> list[Direction]:
    """The shipped nine directions, or those of a folder of ``*.md`` files, or of one file
    (several directions in one file are separated by lines of ``---``)."""
    if source is None:
        root = files("aar.research").joinpath("directions")
        items = sorted((p.name, p.read_text()) for p in root.iterdir()
                       if p.name.endswith(".md"))
        return [parse_direction(_slug(n), t) for n, t in items]
    path = Path(source)
    if path.is_dir():
        found = sorted(path.glob("*.md"))
        if not found:
            raise AarError(f"no *.md direction files in {path}")
        return [parse_direction(_slug(p.name), p.read_text()) for p in found]
    if path.is_file():
        parts = [p for p in re.split(r"^---\s*$", path.read_text(), flags=re.M) if p.strip()]
        return [parse_direction(f"{_slug(path.name)}-{i + 1}" if len(parts) > 1
                                else _slug(path.name), p) for i, p in enumerate(parts)]
    raise AarError(f"no directions file or folder {path}")
