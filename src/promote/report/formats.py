"""The report formats, named once: `--format`/`--output` choices and the renderers' keys
(``report/render.py`` builds ``RENDERERS`` from this tuple). A module of its own so the CLI can list
the choices without importing jinja2 at start-up."""

FORMATS: tuple[str, ...] = ("text", "json", "markdown", "junit", "html")
