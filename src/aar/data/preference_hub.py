"""Chat-preference sets of the reference run: ``helpsteer2``, ``helpsteer3``,
``rewardbench2``, ``rmbench``.

Each is read from the Hugging Face hub when online (needs ``pip install datasets``), or
offline from a local copy given as the argument: ``helpsteer2:/data/HelpSteer2`` (a folder)
or ``helpsteer2:/data/train.jsonl.gz`` (a file). ``.jsonl``, ``.jsonl.gz`` and ``.json``
files are read without the ``datasets`` library; anything else (parquet…) goes through
``datasets.load_dataset``. All splits of the source are used; aar re-splits.

Every source is turned into pairs (prompt, preferred response, other response):

- HelpSteer2 (``nvidia/HelpSteer2``): rows ``prompt, response, helpfulness, correctness,
  coherence, complexity, verbosity``, the responses to one prompt in consecutive rows;
  every two responses to a prompt with different ``helpfulness`` make a pair.
- HelpSteer3 (``nvidia/HelpSteer3``, preference): ``context`` (the conversation, a list
  of ``{role, content}`` turns), ``response1``, ``response2``, ``overall_preference``
  (-3…3; negative: response1 is better).
- RewardBench 2 (``allenai/reward-bench-2``): ``prompt``, ``chosen`` (list), ``rejected``
  (list), ``subset``; each rejected response is paired with a chosen one (in turn).
- RM-Bench (``THU-KEG/RM-Bench``): ``prompt``, ``chosen`` and ``rejected`` (lists of 3:
  concise, detailed, detailed markdown); chosen[i] is paired with rejected[i].

Ties (equal scores, a zero preference, or two identical responses) are dropped. Which
response comes first is drawn with a fixed seed so that exactly half the pairs (±1) have
the first one preferred; each pair becomes one binary example as in the ``jsonl``
preference format (label 1: the first response is preferred). Pairs of one prompt share a
group, so a prompt never straddles splits. Malformed rows stop the build with
``FILE:LINE: what is wrong`` (or ``SOURCE#split, row N: …`` for hub data).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aar.data.jsonl import dedupe
from aar.data.pairs import pair_text
from aar.data.registry import Built, Example, SplitSizes, dataset, opaque_id
from aar.errors import AarError

SEED = 20240501  # which response is shown first; fixed so a set always builds the same
LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


@dataclass(frozen=True)
class Row:
    where: str  # for messages: FILE:LINE, or SOURCE#split, row N
    key: str  # stable and label-free: the example id is made from it
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str
    key: str


Converter = Callable[[Iterable[Row]], list[Pair]]


def _text(row: Row, key: str) -> str:
    value = row.data.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in row.data else repr(value)[:40]
        raise AarError(f"{row.where}: {key!r} must be a non-empty string, got {got}")
    return value.strip()


def _texts(row: Row, key: str) -> list[str]:
    value = row.data.get(key)
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v.strip() for v in value)):
        got = "missing" if key not in row.data else repr(value)[:40]
        raise AarError(f"{row.where}: {key!r} must be a non-empty list of strings, got {got}")
    return [v.strip() for v in value]


def _score(row: Row, key: str) -> float:
    value = row.data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        got = "missing" if key not in row.data else repr(value)[:40]
        raise AarError(f"{row.where}: {key!r} must be a number, got {got}")
    return float(value)


def helpsteer2_pairs(rows: Iterable[Row]) -> list[Pair]:
    """Every two responses to one prompt whose ``helpfulness`` differs."""
    by_prompt: dict[str, list[tuple[Row, str, float]]] = {}
    for row in rows:
        prompt = _text(row, "prompt")
        by_prompt.setdefault(prompt, []).append(
            (row, _text(row, "response"), _score(row, "helpfulness")))
    pairs = []
    for prompt, answers in by_prompt.items():
        for i, (row_i, text_i, score_i) in enumerate(answers):
            for row_j, text_j, score_j in answers[i + 1:]:
                if score_i == score_j:
                    continue
                best, other = ((text_i, text_j) if score_i > score_j else (text_j, text_i))
                pairs.append(Pair(prompt, best, other, f"{row_i.key}+{row_j.key}"))
    return pairs


def conversation_text(row: Row, key: str) -> str:
    """A list of ``{role, content}`` turns as text; one user turn is just its content."""
    value = row.data.get(key)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if not isinstance(value, list) or not value:
        got = "missing" if key not in row.data else repr(value)[:40]
        raise AarError(f"{row.where}: {key!r} must be a list of {{role, content}} turns, "
                       f"got {got}")
    turns = []
    for n, turn in enumerate(value):
        if (not isinstance(turn, Mapping) or not isinstance(turn.get("role"), str)
                or not isinstance(turn.get("content"), str)):
            raise AarError(f"{row.where}: {key}[{n}] must be {{role, content}} strings")
        turns.append((turn["role"].strip(), turn["content"].strip()))
    if len(turns) == 1 and turns[0][0] == "user":
        return turns[0][1]
    return "\n".join(f"{role.capitalize()}: {content}" for role, content in turns)


def helpsteer3_pairs(rows: Iterable[Row]) -> list[Pair]:
    """``overall_preference`` < 0: response1 is better; > 0: response2; 0: a tie."""
    pairs = []
    for row in rows:
        prompt = conversation_text(row, "context")
        one, two = _text(row, "response1"), _text(row, "response2")
        pref = _score(row, "overall_preference")
        if pref < 0:
            pairs.append(Pair(prompt, one, two, row.key))
        elif pref > 0:
            pairs.append(Pair(prompt, two, one, row.key))
    return pairs


def rewardbench2_pairs(rows: Iterable[Row]) -> list[Pair]:
    """Each rejected response against a chosen one, taking the chosen ones in turn."""
    pairs = []
    for row in rows:
        prompt, chosen = _text(row, "prompt"), _texts(row, "chosen")
        rejected = _texts(row, "rejected")
        pairs += [Pair(prompt, chosen[j % len(chosen)], bad, f"{row.key}/{j}")
                  for j, bad in enumerate(rejected)]
    return pairs


def rmbench_pairs(rows: Iterable[Row]) -> list[Pair]:
    """chosen[i] against rejected[i]: the same style (concise, detailed, markdown)."""
    pairs = []
    for row in rows:
        prompt, chosen = _text(row, "prompt"), _texts(row, "chosen")
        rejected = _texts(row, "rejected")
        if len(chosen) != len(rejected):
            raise AarError(f"{row.where}: 'chosen' and 'rejected' must be as long "
                           f"({len(chosen)} and {len(rejected)})")
        pairs += [Pair(prompt, good, bad, f"{row.key}/{i}")
                  for i, (good, bad) in enumerate(zip(chosen, rejected, strict=True))]
    return pairs


def prompt_group(name: str, prompt: str) -> str:
    return f"{name[:4]}-p{hashlib.sha256(prompt.encode()).hexdigest()[:12]}"


def pairs_to_examples(pairs: Sequence[Pair], name: str, seed: int = SEED) -> list[Example]:
    """Binary examples, label 1 when the first response is preferred: ties dropped, the
    preferred response first in a seeded half of the pairs, one group per prompt."""
    kept = [p for p in pairs if p.chosen != p.rejected]
    rank = np.random.default_rng(seed).permutation(len(kept))
    examples = []
    for pair, r in zip(kept, rank, strict=True):
        first_wins = bool(r < (len(kept) + 1) // 2)
        first, second = ((pair.chosen, pair.rejected) if first_wins
                         else (pair.rejected, pair.chosen))
        text = pair_text(pair.prompt, first, second)
        examples.append(Example(opaque_id(name, pair.key), text, int(first_wins),
                                prompt_group(name, pair.prompt)))
    return dedupe(examples)


# ------------------------------------------------------------------------------ reading


def _open_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8-sig")
    except (OSError, EOFError) as e:
        raise AarError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    except UnicodeDecodeError:
        raise AarError(f"{path}: not UTF-8 text") from None


def read_local_rows(path: Path) -> Iterator[Row]:
    """Rows of a ``.jsonl``/``.json`` file (optionally gzipped): JSON lines, or one array."""
    text = _open_text(path)
    name = path.name.removesuffix(".gz")  # the same ids, compressed or not
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise AarError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        for n, item in enumerate(items):
            where = f"{path}: item {n}"
            if not isinstance(item, dict):
                raise AarError(f"{where}: expected a JSON object, got {type(item).__name__}")
            yield Row(where, f"{name}/{n}", item)
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise AarError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(record, dict):
            raise AarError(f"{where}: expected a JSON object, got {type(record).__name__}")
        yield Row(where, f"{name}:{lineno}", record)


def _is_local_data(path: Path) -> bool:
    return path.is_file() and path.name.endswith(LOCAL_SUFFIXES)


def _datasets_module(name: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise AarError(
            f"{name} needs the `datasets` library for this source: pip install datasets "
            f"(offline, pass downloaded .jsonl/.json files instead: --dataset {name}:PATH)"
        ) from None
    return datasets


def _library_rows(loaded: Any, source: str) -> Iterator[Row]:
    splits = ({s: loaded[s] for s in sorted(loaded)} if isinstance(loaded, Mapping)
              else {"": loaded})
    for split, data in splits.items():
        for n, record in enumerate(data):
            yield Row(f"{source}#{split}, row {n}", f"{split}/{n}", record)


@dataclass(frozen=True)
class HubSet:
    name: str
    hub_id: str
    config: str | None
    files: tuple[str, ...]  # stems to prefer in a local folder (HelpSteer2's has other tables)
    convert: Converter
    title: str

    def rows(self, arg: str) -> Iterator[Row]:
        if not arg:
            datasets = _datasets_module(self.name)
            try:
                loaded = datasets.load_dataset(self.hub_id, self.config)
            except Exception as e:  # the library raises many kinds; the user needs one line
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise AarError(
                    f"could not load {self.hub_id} from the hub ({first[:200]}); check the "
                    f"network, or download its files and pass them: --dataset {self.name}:PATH"
                ) from None
            yield from _library_rows(loaded, self.hub_id)
            return
        path = Path(arg).expanduser()
        if not path.exists():
            raise AarError(f"{path}: no such file or folder; use --dataset {self.name} (hub) "
                           f"or --dataset {self.name}:PATH to a downloaded copy")
        if _is_local_data(path):
            yield from read_local_rows(path)
            return
        if path.is_dir():
            local = sorted(p for p in path.iterdir() if _is_local_data(p))
            named = [p for p in local if p.name.split(".")[0] in self.files]
            if named or local:
                for file in named or local:
                    yield from read_local_rows(file)
                return
        datasets = _datasets_module(self.name)
        try:
            loaded = (datasets.load_dataset(str(path)) if path.is_dir() else
                      datasets.load_dataset(path.suffix.lstrip(".") or "json",
                                            data_files=str(path)))
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise AarError(f"{path}: could not read it as {self.title} data ({first[:200]})") \
                from None
        yield from _library_rows(loaded, str(path))

    def examples(self, arg: str) -> list[Example]:
        examples = pairs_to_examples(self.convert(self.rows(arg)), self.name)
        if not examples:
            raise AarError(f"{self.title} ({arg or self.hub_id}): no preference pairs "
                           "(every pair was a tie, or there were no rows)")
        return examples


HUB_SETS = {s.name: s for s in (
    HubSet("helpsteer2", "nvidia/HelpSteer2", None, ("train", "validation"),
           helpsteer2_pairs, "HelpSteer2"),
    HubSet("helpsteer3", "nvidia/HelpSteer3", "preference", ("train", "validation"),
           helpsteer3_pairs, "HelpSteer3"),
    HubSet("rewardbench2", "allenai/reward-bench-2", None, ("test",),
           rewardbench2_pairs, "RewardBench 2"),
    HubSet("rmbench", "THU-KEG/RM-Bench", None, ("total_dataset", "train"),
           rmbench_pairs, "RM-Bench"),
)}


def _register(hub: HubSet, sizes: SplitSizes) -> None:
    @dataset(
        hub.name,
        description=f"{hub.title} chat-preference pairs (label: the first response is "
        f"preferred), from the hub ({hub.hub_id}; needs `pip install datasets` and network) "
        f"or a local copy: {hub.name}:PATH",
        sizes=sizes,
        version="1",
        optional_arg=True,
    )
    def build(params: Mapping[str, str]) -> Built:
        return Built(hub.examples(params.get("arg", "")))


_register(HUB_SETS["helpsteer2"], SplitSizes(1000, 4000, 2000))
_register(HUB_SETS["helpsteer3"], SplitSizes(1000, 6000, 4000))
_register(HUB_SETS["rewardbench2"], SplitSizes(500, 2000, 1500))
_register(HUB_SETS["rmbench"], SplitSizes(500, 2000, 1500))
