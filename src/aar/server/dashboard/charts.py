"""Inline SVG charts, rendered on the server: a researcher's PGR over time (each scored
submission, the best so far as a step line) against the weak teacher (0), the strong
ceiling (1) and the baseline method; and a small sparkline of the same."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from markupsafe import Markup, escape

Point = tuple[datetime, float]


def best_so_far(points: Sequence[Point]) -> list[Point]:
    out: list[Point] = []
    for t, v in points:
        if not out or v > out[-1][1]:
            out.append((t, v))
    return out


def _step_path(points: Sequence[Point], fx: Callable[[datetime], float],
               fy: Callable[[float], float], end: float) -> str:
    best = best_so_far(points)
    if not best:
        return ""
    parts = [f"M{fx(best[0][0]):.1f},{fy(best[0][1]):.1f}"]
    for t, v in best[1:]:
        parts.append(f"H{fx(t):.1f}V{fy(v):.1f}")
    parts.append(f"H{end:.1f}")
    return "".join(parts)


class Scale:
    """Maps times and PGR values to pixels inside a plot box."""

    def __init__(self, t0: datetime, t1: datetime, lo: float, hi: float, left: float,
                 right: float, top: float, bottom: float) -> None:
        self.t0 = t0
        self.span = max((t1 - t0).total_seconds(), 1.0)
        self.lo, self.hi = lo, hi
        self.left, self.right, self.top, self.bottom = left, right, top, bottom

    def x(self, t: datetime) -> float:
        return self.left + (self.right - self.left) * (t - self.t0).total_seconds() / self.span

    def y(self, v: float) -> float:
        v = min(max(v, self.lo), self.hi)
        return self.bottom - (self.bottom - self.top) * (v - self.lo) / (self.hi - self.lo)


def y_range(values: Sequence[float]) -> tuple[float, float]:
    lo = min([0.0, *values]) - 0.05
    hi = max([1.0, *values]) + 0.05
    return max(lo, -1.0), min(hi, 2.0)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def pgr_chart(name: str, points: Sequence[Point], t0: datetime, t1: datetime,
              baseline: float | None, baseline_label: str, lo: float, hi: float,
              width: int = 360, height: int = 200) -> Markup:
    """A full chart for one researcher; every chart of a page shares ``t0..t1, lo..hi``."""
    sc = Scale(t0, t1, lo, hi, 34, width - 8, 10, height - 22)
    best = max((v for _, v in points), default=None)
    label = (f"PGR over time for {name}: {len(points)} scored submissions, best "
             f"{best:.3f}" if best is not None else f"PGR over time for {name}: no scores yet")
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{escape(label)}"><title>{escape(label)}</title>']
    for v, css in ((0.0, "ref"), (1.0, "ref"), (0.5, "grid")):
        if lo <= v <= hi:
            yy = sc.y(v)
            out.append(f'<line class="{css}" x1="{sc.left}" x2="{sc.right}" y1="{yy:.1f}" '
                       f'y2="{yy:.1f}"/><text class="tick" x="{sc.left - 4}" y="{yy + 3:.1f}" '
                       f'text-anchor="end">{v:g}</text>')
    if baseline is not None:
        yy = sc.y(baseline)
        out.append(f'<line class="base" x1="{sc.left}" x2="{sc.right}" y1="{yy:.1f}" '
                   f'y2="{yy:.1f}"/><text class="basel" x="{sc.right}" y="{yy - 3:.1f}" '
                   f'text-anchor="end">{escape(baseline_label)} {baseline:.2f}</text>')
    for t, v in points:
        out.append(f'<circle class="pt" cx="{sc.x(t):.1f}" cy="{sc.y(v):.1f}" r="2.2"/>')
    path = _step_path(points, sc.x, sc.y, sc.x(t1))
    if path:
        out.append(f'<path class="best" d="{path}"/>')
    out.append(f'<text class="tick" x="{sc.left}" y="{height - 6}">0</text>'
               f'<text class="tick" x="{sc.right}" y="{height - 6}" text-anchor="end">'
               f'{_duration((t1 - t0).total_seconds())}</text></svg>')
    return Markup("".join(out))


def sparkline(points: Sequence[Point], t0: datetime, t1: datetime, baseline: float | None,
              width: int = 110, height: int = 26) -> Markup:
    """The best-so-far line only, for a table cell."""
    values = [v for _, v in points]
    lo, hi = y_range([*values, *([baseline] if baseline is not None else [])])
    sc = Scale(t0, t1, lo, hi, 1, width - 1, 2, height - 2)
    out = [f'<svg class="spark" viewBox="0 0 {width} {height}" aria-hidden="true">']
    if baseline is not None:
        yy = sc.y(baseline)
        out.append(f'<line class="base" x1="0" x2="{width}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
    path = _step_path(points, sc.x, sc.y, sc.x(t1))
    if path:
        out.append(f'<path class="best" d="{path}"/>')
    out.append("</svg>")
    return Markup("".join(out))
