"""`rmb-judge report`: a leaderboard of run folders for the terminal, Markdown, or one HTML file.

`load` reads the run folders, `view` groups, ranks and words them once for every renderer,
and `terminal`, `markdown`, `html` (through the templates in `templates/`) and `as_json` draw
that view.
What is particular to a benchmark (sections, their titles, scenario names, published rows)
comes from the run's benchmark object; nothing here names one.
"""

from __future__ import annotations

from .as_json import render_json
from .html import render_html
from .load import Run, find_runs, load_runs
from .markdown import render_markdown
from .terminal import render_terminal

__all__ = ["Run", "find_runs", "load_runs", "render_html", "render_json", "render_markdown", "render_terminal"]
