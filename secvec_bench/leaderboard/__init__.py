"""The static leaderboard site: stored run results in, a self-contained folder of HTML out.

Pipeline: `load` finds run directories and the RM / judge-agreement result files, `table` turns tidy rows into one
entry per model x scenario x defense x phase with the headline cells, `charts` computes SVG geometry from those
entries, `card` extracts a threat-model card from a run's provenance, `reliability` summarises judges and reward
models, and `render` feeds all of it to the jinja2 templates in the top-level `leaderboard/` folder.

Everything shown comes from files written by model runs, so it is untrusted: templates autoescape every value, no
template marks data as safe, file names are slugs plus a hash, and a Content-Security-Policy forbids inline script.
"""

from .render import SiteReport, build_site

__all__ = ["SiteReport", "build_site"]
