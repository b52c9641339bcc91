"""Chart geometry for the inline SVG plots, computed from the table entries.

Python does the arithmetic (scales, ticks, the Pareto frontier) and returns plain dataclasses; the template
`charts.html` turns them into SVG elements with autoescaping, so labels taken from the data (model, scenario and
defense names) are escaped like any other text and no markup is ever assembled by string concatenation.

Two charts: the safety-vs-utility frontier (attack success against a utility metric, one point per entry, the
non-dominated entries joined by a line) and one horizontal bar chart per scenario (attack success with its 95%
interval per model x defense x phase).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from .table import Cell, Column, Entry, Table

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999933", "#000000")
LABEL_CHARS = 38


@dataclass
class Tick:
    pos: float
    label: str


@dataclass
class Point:
    cx: float
    cy: float
    label: str
    href: str
    color: str
    hollow: bool
    on_frontier: bool
    x_err: tuple[float, float] | None = None
    y_err: tuple[float, float] | None = None


@dataclass
class Scatter:
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    x_label: str
    y_label: str
    points: list[Point]
    frontier: str  # SVG polyline points "x,y x,y ..."
    legend: list[tuple[str, str]]


@dataclass
class Bar:
    y: float
    height: float
    x0: float
    width: float
    label: str
    short_label: str
    value_text: str
    color: str
    href: str
    ci: tuple[float, float] | None = None


@dataclass
class BarChart:
    scenario: str
    width: int
    height: int
    left: float
    right: float
    axis_y: float
    ticks: list[Tick]
    bars: list[Bar]
    missing: list[str] = field(default_factory=list)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def _fmt_tick(v: float, fmt: str) -> str:
    return f"{100 * v:.0f}%" if fmt == "pct" else f"{v:.3g}"


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def colors_for(entries: Sequence[Entry]) -> dict[str, str]:
    defenses = sorted({e.key.defense for e in entries})
    return {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(defenses)}


def safety_column(table: Table) -> Column | None:
    """The safety column the charts plot: judge-corrected ASR when any entry has it, else raw ASR, else the refusal
    rate (a keyword-only run measures refusals but not harmfulness). The table keeps only columns with values."""
    by_id = {c.id: c for c in table.columns}
    for cid in ("asr_corrected", "asr", "refusal"):
        if cid in by_id:
            return by_id[cid]
    return None


def utility_axis(table: Table) -> Column | None:
    """The utility metric on the frontier's x axis: an accuracy if there is one, else the first utility column."""
    util = [c for c in table.columns if c.kind == "utility"]
    util.sort(key=lambda c: ("accuracy" not in c.label.lower(), c.label))
    return util[0] if util else None


def pareto(points: Sequence[tuple[float, float]], x_higher_better: bool, y_higher_better: bool = False) -> set[int]:
    """Indices of points not dominated: no other point is better-or-equal on both axes and strictly better on one."""
    keep = set()
    for i, (xi, yi) in enumerate(points):
        dominated = False
        for j, (xj, yj) in enumerate(points):
            if i == j:
                continue
            x_ok = xj >= xi if x_higher_better else xj <= xi
            x_strict = xj > xi if x_higher_better else xj < xi
            y_ok = yj >= yi if y_higher_better else yj <= yi
            y_strict = yj > yi if y_higher_better else yj < yi
            if x_ok and y_ok and (x_strict or y_strict):
                dominated = True
                break
        if not dominated:
            keep.add(i)
    return keep


def _ci(cell: Cell) -> tuple[float, float] | None:
    if cell.ci_low is None or cell.ci_high is None:
        return None
    return (cell.ci_low, cell.ci_high)


def scatter(table: Table, hrefs: dict[int, str]) -> Scatter | None:
    """The frontier plot, or None when no entry has both a utility value and an attack success value."""
    ycol, xcol = safety_column(table), utility_axis(table)
    if ycol is None or xcol is None:
        return None
    data = []
    for i, e in enumerate(table.entries):
        xc, yc = e.cells.get(xcol.id), e.cells.get(ycol.id)
        if xc is None or yc is None or xc.value is None or yc.value is None:
            continue
        data.append((i, e, xc, yc))
    if not data:
        return None
    width, height, left, right, top, bottom = 720, 440, 70, 700, 20, 380
    xs = [xc.value for _, _, xc, _ in data] + [v for _, _, xc, _ in data for v in (_ci(xc) or ())]
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] if ycol.fmt == "pct" else nice_ticks(
        0.0, max(yc.value for *_, yc in data))

    def sx(v: float) -> float:
        return left + (v - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * (right - left)

    def sy(v: float) -> float:
        return bottom - (v - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * (bottom - top)

    colors = colors_for([e for _, e, _, _ in data])
    front = pareto([(xc.value, yc.value) for _, _, xc, yc in data], xcol.better != "lower", ycol.better == "higher")
    points = []
    for k, (i, e, xc, yc) in enumerate(data):
        xe, ye = _ci(xc), _ci(yc)
        points.append(Point(
            cx=sx(xc.value), cy=sy(yc.value), label=f"{e.label}: {ycol.label} {yc.text}, {xcol.label} {xc.text}",
            href=hrefs[i], color=colors[e.key.defense], hollow=e.key.phase == "aligned", on_frontier=k in front,
            x_err=(sx(xe[0]), sx(xe[1])) if xe else None, y_err=(sy(ye[0]), sy(ye[1])) if ye else None,
        ))
    line = sorted((p.cx, p.cy) for p in points if p.on_frontier)
    return Scatter(
        width=width, height=height, left=left, top=top, right=right, bottom=bottom,
        x_ticks=[Tick(sx(t), _fmt_tick(t, xcol.fmt)) for t in x_ticks],
        y_ticks=[Tick(sy(t), _fmt_tick(t, ycol.fmt)) for t in y_ticks],
        x_label=f"{xcol.label} ({xcol.better} is better)", y_label=f"{ycol.label} ({ycol.better} is better)",
        points=points, frontier=" ".join(f"{x:.1f},{y:.1f}" for x, y in line),
        legend=sorted(colors.items(), key=lambda kv: kv[0]),
    )


def bar_charts(table: Table, hrefs: dict[int, str]) -> list[BarChart]:
    """One chart per scenario; entries without the plotted metric are listed under the chart, not drawn as zero."""
    col = safety_column(table)
    if col is None:
        return []
    colors = colors_for(table.entries)
    by_scenario: dict[str, list[int]] = {}
    for i, e in enumerate(table.entries):
        by_scenario.setdefault(e.key.scenario, []).append(i)
    charts = []
    for scenario in sorted(by_scenario):
        idx = by_scenario[scenario]
        present = [i for i in idx if (c := table.entries[i].cells.get(col.id)) is not None and c.value is not None]
        missing = [table.entries[i].label for i in idx if i not in present]
        if not present:
            charts.append(BarChart(scenario, 720, 0, 0, 0, 0, [], [], missing))
            continue
        width, left, right, top, row_h = 720, 280, 640, 10, 26
        hi = 1.0 if col.fmt == "pct" else max(
            max(table.entries[i].cells[col.id].ci_high or 0.0, table.entries[i].cells[col.id].value or 0.0)
            for i in present)
        ticks = [0.0, 0.25, 0.5, 0.75, 1.0] if col.fmt == "pct" else nice_ticks(0.0, hi)

        def sx(v: float) -> float:
            return left + (v - ticks[0]) / (ticks[-1] - ticks[0]) * (right - left)

        bars = []
        for k, i in enumerate(present):
            e = table.entries[i]
            cell = e.cells[col.id]
            label = f"{e.key.model} / {e.key.defense} / {e.key.phase}"
            ci = _ci(cell)
            y = top + k * row_h
            bars.append(Bar(
                y=y + 4, height=row_h - 8, x0=sx(0.0), width=max(0.0, sx(cell.value) - sx(0.0)), label=label,
                short_label=_short(label), value_text=cell.text, color=colors[e.key.defense], href=hrefs[i],
                ci=(sx(ci[0]), sx(ci[1])) if ci else None,
            ))
        axis_y = top + len(present) * row_h
        charts.append(BarChart(
            scenario=scenario, width=width, height=int(axis_y + 30), left=left, right=right, axis_y=axis_y,
            ticks=[Tick(sx(t), _fmt_tick(t, col.fmt)) for t in ticks], bars=bars, missing=missing,
        ))
    return charts
