"""Model folders derived from pinned packages (assembled zips, converted checkpoints).

``build_once(name, stamp, build)`` makes ``packages_dir/name`` exactly once: under a file
lock, ``build`` fills a ``.partial`` folder, a marker holding ``stamp`` is written into it,
and it is renamed into place. An interrupted build leaves only the ``.partial`` folder,
which the next call wipes and redoes from the (kept) wheels; a changed ``stamp`` rebuilds.
"""

from __future__ import annotations

import bisect
import io
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aar.settings import get_settings
from aar.util import file_lock

MARKER = ".aar-built"


def _is_built(out: Path, stamp: str) -> bool:
    marker = out / MARKER
    return marker.exists() and marker.read_text() == stamp


def build_once(name: str, stamp: str, build: Callable[[Path], None]) -> Path:
    """Return ``packages_dir/name``, calling ``build(tmp_folder)`` first if it is missing."""
    root = get_settings().packages_dir
    out = root / name
    if _is_built(out, stamp):
        return out
    with file_lock(root / f".{name}.lock"):
        if _is_built(out, stamp):  # another process finished it while we waited
            return out
        tmp = root / f"{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        build(tmp)
        (tmp / MARKER).write_text(stamp)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out


class ConcatFile(io.RawIOBase):
    """Several files read as one seekable stream (a zip split into parts), without a copy."""

    def __init__(self, parts: list[Path]) -> None:
        super().__init__()
        self._files = [open(p, "rb") for p in parts]  # noqa: SIM115  (closed in close())
        self._sizes = [p.stat().st_size for p in parts]
        self._starts = [sum(self._sizes[:i]) for i in range(len(parts))]
        self._size = sum(self._sizes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            part = bisect.bisect_right(self._starts, self._pos) - 1
            fh = self._files[part]
            fh.seek(self._pos - self._starts[part])
            want = min(len(view) - done, self._starts[part] + self._sizes[part] - self._pos)
            got = fh.readinto(view[done:done + want])
            if not got:
                break
            done += got
            self._pos += got
        return done

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        super().close()


def safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    """Extract a zip, refusing members that would land outside ``dest``."""
    root = dest.resolve()
    for member in zf.namelist():
        target = (dest / member).resolve()
        if target != root and root not in target.parents:
            raise ValueError(f"zip member {member!r} points outside the target folder")
    zf.extractall(dest)
