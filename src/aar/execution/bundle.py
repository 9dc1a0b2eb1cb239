"""What a node other than this one receives for an experiment: a content-addressed bundle of
the label-free workspace export and the features it needs, nothing else.

``Bundle.of(workspace, encoders)`` (trusted side) lists the export's files and the
feature cache's files of those encoders, and names the lot by the SHA-256 of their paths
and contents. ``materialize(digest, fetch)`` (on a node) unpacks the bundle once per node
under ``node_dir()/bundles/<digest>/`` (``export/`` and ``features/``), checking every file
against the digest, and reuses it for every later task. The vault, the database, tokens and
the AAR home never enter a bundle: the export is label-free by construction, and a bundle
refuses any file that is not below the export or the feature cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aar.data.store import Workspace
from aar.errors import AarError
from aar.settings import get_settings
from aar.util import file_lock

EXPORT = "export"
FEATURES = "features"
COMPLETE = ".complete"


def node_dir() -> Path:
    """This node's folder for bundles and job folders (``AAR_NODE_DIR``; default a folder
    of this user's under the system temp dir). It holds no AAR home and no vault."""
    env = os.environ.get("AAR_NODE_DIR")
    return Path(env) if env else Path(tempfile.gettempdir()) / f"aar-node-{os.getuid()}"


def feature_files(ws: Workspace, encoder: str) -> list[Path]:
    """The feature cache's files that ``split_features(ws, encoder)`` reads (computing them
    first when missing: trusted code)."""
    from aar.models.cache import features_path
    from aar.w2s.features import split_features

    split_features(ws, encoder)
    texts = ws.all_texts()
    if ws.manifest.get("pairwise"):
        from aar.data.pairs import split_pair

        halves = [split_pair(t) for t in texts]
        texts = sorted({x for h in halves if h is not None for x in h})
    return [features_path(encoder, texts)]


def _digest(files: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in sorted(files):
        for part in (name.encode(), data):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
    return h.hexdigest()


@dataclass(frozen=True)
class Bundle:
    digest: str
    names: tuple[str, ...]  # relative paths, e.g. export/test.jsonl, features/l3/ab.npy
    data: bytes  # an uncompressed tar of them

    @classmethod
    def of(cls, ws: Workspace, encoders: tuple[str, ...]) -> Bundle:
        export = ws.root.resolve()
        feats = get_settings().features_dir.resolve()
        files: list[tuple[str, bytes]] = []
        for p in sorted(export.rglob("*")):
            if p.is_file() and not p.is_symlink() and not p.name.startswith("."):
                files.append((f"{EXPORT}/{p.relative_to(export).as_posix()}", p.read_bytes()))
        for enc in dict.fromkeys(encoders):
            for p in feature_files(ws, enc):
                p = p.resolve()
                if feats not in p.parents:
                    raise AarError(f"feature file {p} lies outside the feature cache {feats}")
                files.append((f"{FEATURES}/{p.relative_to(feats).as_posix()}", p.read_bytes()))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name, data in files:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tf.addfile(info, io.BytesIO(data))
        return cls(_digest(files), tuple(n for n, _ in files), buf.getvalue())


def _members(data: bytes) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for m in tf.getmembers():
            parts = PurePosixPath(m.name).parts
            if (not m.isfile() or not parts or parts[0] not in (EXPORT, FEATURES)
                    or ".." in parts or m.name.startswith("/")):
                raise AarError(f"refusing bundle member {m.name!r}")
            f = tf.extractfile(m)
            assert f is not None
            yield m.name, f.read()


def materialize(digest: str, fetch: Callable[[], bytes], root: Path | None = None) -> Path:
    """The bundle ``digest`` unpacked on this node (``fetch`` called only the first time
    on a node); raises ``AarError`` when what was fetched does not match the digest."""
    if not digest.isalnum():
        raise AarError(f"bad bundle digest {digest!r}")
    base = (root or node_dir()) / "bundles"
    target = base / digest
    if (target / COMPLETE).exists():
        return target
    with file_lock(base / f"{digest}.lock"):
        if (target / COMPLETE).exists():
            return target
        files = list(_members(fetch()))
        if _digest(files) != digest:
            raise AarError(f"bundle {digest[:12]} arrived damaged (its content does not match)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=base))
        for name, data in files:
            p = tmp / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            p.chmod(0o444)
        (tmp / COMPLETE).write_text(digest)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target
