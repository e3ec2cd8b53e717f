"""Rich rendering: the only package that imports rich.

One :class:`Output` decides where things go. The result goes to stdout, as tables or, with
``--json``, as exactly one JSON document. Progress, warnings and hints go to stderr, so JSON
output is never polluted. Each command family's screen is a module of its own (``ui/eval.py`` for
``yqt eval``, ...); what every screen is made of is ``ui/layout.py``.
"""

from yqt.ui.bench import render_bench
from yqt.ui.compare import fit_compare, render_compare
from yqt.ui.eval import render_eval
from yqt.ui.export import render_export, render_smoke
from yqt.ui.graph import render_graph
from yqt.ui.layout import View
from yqt.ui.output import Output
from yqt.ui.pipeline import render_pipeline
from yqt.ui.quantize import layer_groups, render_quantize
from yqt.ui.report import render_report
from yqt.ui.sensitivity import render_sensitivity

__all__ = [
    "Output", "View", "fit_compare", "layer_groups", "render_bench", "render_compare", "render_eval",
    "render_export", "render_graph", "render_pipeline", "render_quantize", "render_report", "render_sensitivity",
    "render_smoke",
]  # fmt: skip
