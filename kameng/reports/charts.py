"""Charts drawn on the server as SVG — bars or a line over days — with no JavaScript at all.

`day_chart()` computes the geometry; the `chart` macro of reports/_charts.html draws it: an
`<svg role="img">` labelled by its `<title>` and a `<desc>` that sums it up, with a `<title>` on
every bar or point (its day and value, shown on hover). Pages put a table of the same numbers
beside the charts. Colours are SVG presentation attributes, which the Content-Security-Policy
allows (it blocks `style="…"`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

from flask_babel import gettext as _

WIDTH, HEIGHT = 640, 190
LEFT, RIGHT, TOP, BOTTOM = 70, 10, 12, 26  # room for the axis labels

Number = int | float


@dataclass(frozen=True)
class Mark:
    """One bar (x, y, width, height) or one point of a line (x, y)."""

    x: float
    y: float
    width: float
    height: float
    label: str  # "2026-11-20: ¥12.00"


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    desc: str
    kind: str  # "bar" or "line"
    marks: list[Mark]
    segments: list[str] = field(default_factory=list)  # polyline points (a line has gaps)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def nice_ceiling(value: Number) -> Number:
    """The smallest 1, 2 or 5 times a power of ten that is >= value (an axis maximum)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power * (1 + 1e-9):
            top = step * power
            return int(top) if isinstance(value, int) and top >= 1 else top
    return 10 * power  # not reached


def day_chart(chart_id: str, title: str, series: Sequence[tuple[date, Number | None]],
              fmt: Callable[[Number], str] = str, *, kind: str = "bar",
              total: bool = True) -> Chart:
    """A chart of one value per day; None (no data that day) leaves a gap in a line.

    `fmt` formats values (money, a percentage); `total` says whether the values add up (a
    sum of sales does; a conversion rate does not) for the description.
    """
    known = [(day, value) for day, value in series if value is not None]
    top = nice_ceiling(max((item[1] for item in known), default=0))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    band = plot_width / max(len(series), 1)
    base = HEIGHT - BOTTOM

    def y_of(value: Number) -> float:
        return round(base - plot_height * (value / top), 1)

    marks, segments, current = [], [], []
    for i, (day, value) in enumerate(series):
        if value is None:
            if current:
                segments.append(" ".join(current))
                current = []
            continue
        label = f"{day.isoformat()}: {fmt(value)}"
        if kind == "bar":
            x = round(LEFT + i * band + band * 0.15, 1)
            y = y_of(value)
            marks.append(Mark(x, y, round(band * 0.7, 1), round(base - y, 1), label))
        else:
            x = round(LEFT + i * band + band / 2, 1)
            marks.append(Mark(x, y_of(value), 0, 0, label))
            current.append(f"{x},{y_of(value)}")
    if current:
        segments.append(" ".join(current))
    if not any(item[1] for item in known):
        levels = (0,)  # nothing to scale: no made-up maximum
    elif isinstance(top, int):  # counts and money stay integers; 1 or 5 has no round half
        levels = (0, top // 2, top) if top % 2 == 0 else (0, top)
    else:
        levels = (0, top / 2, top)
    y_ticks = [(y_of(v), fmt(v)) for v in levels]
    return Chart(
        id=chart_id, title=title, desc=_describe(series, known, fmt, total), kind=kind,
        marks=marks, segments=segments, y_ticks=y_ticks,
        x_ticks=_x_ticks([item[0] for item in series], band),
    )


def _x_ticks(days: list[date], band: float) -> list[tuple[float, str]]:
    if not days:
        return []
    every = max(1, math.ceil(len(days) / 7))
    picked = list(range(len(days) - 1, -1, -every))  # always label the last day (today)
    return [(round(LEFT + i * band + band / 2, 1), days[i].strftime("%m-%d"))
            for i in sorted(picked)]


def _describe(series, known, fmt, total: bool) -> str:
    if not series:
        return _("No data.")
    first, last = series[0][0].isoformat(), series[-1][0].isoformat()
    if not known:
        return _("%(first)s to %(last)s: no data.", first=first, last=last)
    best_day, best = max(known, key=lambda item: item[1])
    if not best:
        return _("%(first)s to %(last)s: none.", first=first, last=last)
    if total:
        return _("%(first)s to %(last)s: %(total)s in all; the highest day was %(day)s with "
                 "%(best)s.", first=first, last=last, total=fmt(sum(item[1] for item in known)),
                 day=best_day.isoformat(), best=fmt(best))
    return _("%(first)s to %(last)s: the highest day was %(day)s with %(best)s.",
             first=first, last=last, day=best_day.isoformat(), best=fmt(best))
