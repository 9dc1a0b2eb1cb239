"""``aar doctor``: which sandbox mode this machine gets, and the optional parts."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from aar.util import make_console

console = make_console()


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor(
        brief: Annotated[bool, typer.Option(
            "--brief", help="one line: the sandbox mode and why")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """Say which sandbox isolation this machine gets and why, which optional parts
        (bubblewrap, Chromium, GPU, PostgreSQL) are present, and what to install."""
        from aar.doctor import diagnose, verdict

        if brief:
            console.print(verdict(), markup=False, highlight=False)
            return
        d = diagnose()
        if as_json:
            print(json.dumps(d.to_dict(), indent=1))
            return
        console.print(verdict(d.isolation), markup=False, highlight=False)
        t = Table("part", "present", "found", "needed for", "to install")
        for p in d.parts:
            t.add_row(p.name, "[green]yes[/]" if p.present else "[yellow]no[/]", p.detail,
                      p.needed_for, p.install)
        console.print(t)
