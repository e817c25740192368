"""Pareto frontiers: which configurations no other one beats on both cost and quality.

A point is `(cost, quality)`: cost is minimized (bytes, milliseconds), quality maximized
(accuracy, agreement). A point missing either value (`None` or NaN) takes no part. Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Point = tuple[float, float]  # (cost: lower is better, quality: higher is better)


def measured(point: Point | None) -> bool:
    """True when both coordinates are numbers (not None, not NaN)."""
    return point is not None and all(v is not None and not math.isnan(v) for v in point)


def dominates(a: Point, b: Point) -> bool:
    """True when `a` is at least as good as `b` on both axes and strictly better on one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def dominators(points: Sequence[Point | None], index: int) -> list[int]:
    """Indices of the points that dominate `points[index]` (empty when it is on the frontier or
    not measured)."""
    if not measured(points[index]):
        return []
    return [j for j, p in enumerate(points) if j != index and measured(p) and dominates(p, points[index])]


def pareto_front(points: Sequence[Point | None]) -> list[int]:
    """Indices of the measured points that no other point dominates, by increasing cost (then
    decreasing quality). Identical points are all on the frontier: neither beats the other."""
    front = [i for i, p in enumerate(points) if measured(p) and not dominators(points, i)]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1], i))
