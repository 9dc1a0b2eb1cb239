"""A finding's code snapshot, read from its stored archive (never extracted to disk) and
highlighted with Pygments."""

from __future__ import annotations

import io
import tarfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

MAX_FILE_BYTES = 200_000
MAX_FILES = 40


@dataclass(frozen=True)
class CodeFile:
    name: str
    size: int
    html: Markup | None  # None: not shown (binary, too large, or past the file limit)
    note: str = ""


def _formatter() -> HtmlFormatter:  # type: ignore[type-arg]
    return HtmlFormatter(cssclass="hl", linenos="table", wrapcode=True)


@lru_cache(maxsize=1)
def stylesheet() -> str:
    """The highlighting colours (served as /static/code.css)."""
    return str(HtmlFormatter(style="friendly").get_style_defs(".hl"))


def _members(data: bytes, kind: str) -> list[tuple[str, int, bytes | None]]:
    out: list[tuple[str, int, bytes | None]] = []
    if kind == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                small = info.file_size <= MAX_FILE_BYTES and len(out) < MAX_FILES
                out.append((info.filename, info.file_size, zf.read(info) if small else None))
        return out
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        for m in tf:
            if not m.isfile():
                continue
            small = m.size <= MAX_FILE_BYTES and len(out) < MAX_FILES
            fh = tf.extractfile(m) if small else None
            out.append((m.name, m.size, fh.read() if fh is not None else None))
    return out


def render(data: bytes, kind: str) -> list[CodeFile]:
    """Every file of an archive, text files highlighted; an unreadable archive gives one
    entry saying so."""
    try:
        members = _members(data, kind)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return [CodeFile("(archive)", len(data), None, f"cannot be read: {exc}")]
    files = []
    for name, size, raw in sorted(members, key=lambda m: m[0]):
        if raw is None:
            files.append(CodeFile(name, size, None, "not shown (too large or too many files)"))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            files.append(CodeFile(name, size, None, "binary file, not shown"))
            continue
        try:
            lexer = get_lexer_for_filename(name, stripnl=False)
        except ClassNotFound:
            lexer = TextLexer(stripnl=False)
        files.append(CodeFile(name, size, Markup(highlight(text, lexer, _formatter()))))
    return files
