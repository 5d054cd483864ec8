"""Charts for the dashboard, drawn server-side as inline SVG: no JavaScript, nothing fetched.

Every drawn datum (a line, a band, a dot, a bar) carries the class ``mark`` and a ``<title>`` that
names its value, so a browser shows it on hover and a test can count what was drawn.
"""

from __future__ import annotations

import math

import pandas as pd
from markupsafe import Markup, escape

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 14, 30


def _seconds(t) -> float:
    return pd.Timestamp(t).timestamp()


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    start = math.ceil(low / step) * step
    return [start + i * step for i in range(int((high - start) / step) + 1)]


def _number(value: float) -> str:
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 1 or value == 0:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


class _Frame:
    """Linear scales from data to the plot area, and the axes."""

    def __init__(self, xs, ys, x_time: bool, width=WIDTH, height=HEIGHT, y_range=None):
        self.x_time, self.width, self.height = x_time, width, height
        self.x0, self.x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        self.y0, self.y1 = y_range or ((min(ys), max(ys)) if ys else (0.0, 1.0))
        if self.x1 <= self.x0:
            self.x0, self.x1 = self.x0 - 1, self.x1 + 1
        if self.y1 <= self.y0:
            pad = abs(self.y0) * 0.01 or 1.0
            self.y0, self.y1 = self.y0 - pad, self.y1 + pad
        elif y_range is None:
            pad = (self.y1 - self.y0) * 0.05
            self.y0, self.y1 = self.y0 - pad, self.y1 + pad

    def x(self, value) -> float:
        return LEFT + (value - self.x0) / (self.x1 - self.x0) * (self.width - LEFT - RIGHT)

    def y(self, value) -> float:
        return self.height - BOTTOM - (value - self.y0) / (self.y1 - self.y0) * (self.height - TOP - BOTTOM)

    def axes(self, y_format=_number) -> str:
        parts = [f'<line class="axis" x1="{LEFT}" y1="{self.height - BOTTOM}" x2="{self.width - RIGHT}" '
                 f'y2="{self.height - BOTTOM}"/>']
        for v in _ticks(self.y0, self.y1):
            y = self.y(v)
            parts.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{self.width - RIGHT}" y2="{y:.1f}"/>'
                         f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                         f'{escape(y_format(v))}</text>')
        for i in range(5):
            v = self.x0 + (self.x1 - self.x0) * i / 4
            label = pd.Timestamp(v, unit="s", tz="UTC").strftime("%m-%d %H:%M") if self.x_time else _number(v)
            anchor = "start" if i == 0 else "end" if i == 4 else "middle"  # the outer labels stay inside
            parts.append(f'<text class="tick" x="{self.x(v):.1f}" y="{self.height - 10}" text-anchor="{anchor}">'
                         f'{escape(label)}</text>')
        return "".join(parts)


def _svg(frame: _Frame, body: str, label: str) -> Markup:
    return Markup(f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {frame.width} '
                  f'{frame.height}" width="100%" preserveAspectRatio="xMidYMid meet">{body}</svg>')


def _path(frame: _Frame, points) -> str:
    return " ".join(f"{'M' if i == 0 else 'L'}{frame.x(x):.1f},{frame.y(y):.1f}" for i, (x, y) in enumerate(points))


def time_chart(label: str, lines=(), bands=(), dots=(), y_format=_number, y_range=None) -> Markup:
    """lines: (name, css class, [(time, y)]); bands: (name, class, [(time, low, high)]);
    dots: (name, class, [(time, y, title)])."""
    lines = [(n, c, [(_seconds(t), y) for t, y in pts if y is not None]) for n, c, pts in lines]
    bands = [(n, c, [(_seconds(t), lo, hi) for t, lo, hi in pts if lo is not None]) for n, c, pts in bands]
    dots = [(n, c, [(_seconds(t), y, title) for t, y, title in pts if y is not None]) for n, c, pts in dots]
    xs = [p[0] for _, _, pts in (*lines, *bands, *dots) for p in pts]
    ys = ([y for _, _, pts in lines for _, y in pts] + [v for _, _, pts in bands for _, lo, hi in pts for v in (lo, hi)]
          + [y for _, _, pts in dots for _, y, _ in pts])
    frame = _Frame(xs, ys, True, y_range=y_range)
    body = [frame.axes(y_format)]
    for name, cls, pts in bands:
        if pts:
            outline = [(x, hi) for x, _, hi in pts] + [(x, lo) for x, lo, _ in reversed(pts)]
            body.append(f'<path class="mark band {cls}" d="{_path(frame, outline)} Z"><title>{escape(name)}: '
                        f'{len(pts)} intervals</title></path>')
    for name, cls, pts in lines:
        if pts:
            body.append(f'<path class="mark line {cls}" d="{_path(frame, pts)}"><title>{escape(name)}: '
                        f'{len(pts)} points, last {escape(y_format(pts[-1][1]))}</title></path>')
    for name, cls, pts in dots:
        for x, y, title in pts:
            body.append(f'<circle class="mark dot {cls}" cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3">'
                        f'<title>{escape(name)}: {escape(title)}</title></circle>')
    return _svg(frame, "".join(body), label)


def bar_chart(label: str, items, value_format=_number, signs=("positive", "negative")) -> Markup:
    """Horizontal bars around zero; items: (name, value, title). ``signs``: the classes of bars above and
    below zero (e.g. ("worse", "better") where lower is better)."""
    items = list(items)
    height = TOP + BOTTOM + 22 * max(1, len(items))
    values = [v for _, v, _ in items] + [0.0]
    size = max(abs(min(values)), abs(max(values))) or 1.0
    frame = _Frame([-size, size], [0, len(items)], False, height=height, y_range=(0, max(1, len(items))))
    left, right = 260, WIDTH - 90  # room for the names and for the values
    at = lambda v: left + (v + size) / (2 * size) * (right - left)  # noqa: E731
    body = [f'<line class="axis" x1="{at(0):.1f}" y1="{TOP}" x2="{at(0):.1f}" y2="{height - BOTTOM}"/>']
    for i, (name, value, title) in enumerate(items):
        y = TOP + 22 * i
        x0, x1 = sorted((at(0), at(value)))
        sign = signs[0] if value > 0 else signs[1]
        body.append(f'<text class="label" x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(name)}</text>'
                    f'<rect class="mark bar {sign}" x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 1):.1f}" height="16">'
                    f'<title>{escape(name)}: {escape(title)}</title></rect>'
                    f'<text class="value" x="{WIDTH - RIGHT}" y="{y + 15}" text-anchor="end">'
                    f'{escape(value_format(value))}</text>')
    return _svg(frame, "".join(body), label)


def calibration_chart(label: str, series) -> Markup:
    """Observed against nominal (or predicted) frequency on 0..1 axes with the diagonal a calibrated
    forecast would follow; series: (name, class, [(nominal, observed, title)])."""
    frame = _Frame([0.0, 1.0], [0.0, 1.0], False, width=360, height=300, y_range=(0.0, 1.0))
    body = [frame.axes(), f'<line class="diagonal" x1="{frame.x(0):.1f}" y1="{frame.y(0):.1f}" x2="{frame.x(1):.1f}" '
                          f'y2="{frame.y(1):.1f}"/>']
    for name, cls, pts in series:
        pts = [(x, y, t) for x, y, t in pts if x is not None and y is not None]
        for x, y, title in pts:
            body.append(f'<circle class="mark dot {cls}" cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="5">'
                        f'<title>{escape(name)}: {escape(title)}</title></circle>')
    return _svg(frame, "".join(body), label)
