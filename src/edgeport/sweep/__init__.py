"""`edgeport sweep`: a grid of recipes x targets, each exported and checked, compared per target on
its Pareto frontiers (quality vs size, quality vs latency), reported as sweep.json, report.html
and PNG plots. `run_sweep(SweepSpec(...))` is what the command runs.

Modules: `grid` (recipe table, spec, per-recipe worker, runner), `executors` (local processes,
Ray), `records` (one configuration's numbers), `pareto` (frontier math), `report` (JSON, table,
files), `plots` (matplotlib PNGs), `html` (the page).
"""

from edgeport.sweep.grid import RECIPES, SweepSpec, run_sweep

__all__ = ["RECIPES", "SweepSpec", "run_sweep"]
