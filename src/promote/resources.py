"""Find the files promote ships beside its code: JSON Schemas, jinja2 templates and the starter's
example model.

In a wheel they are packaged as ``promote/_data/{schemas,templates,starter}``; in an editable install
or a source checkout they live at the repository top level (the starter's files are those of
``examples/tiny_lm``). Both layouts are searched, wheel first.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from promote.errors import EvaluationError

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Directory of shipped data (``schemas`` or ``templates``)."""
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parents[1] / name):
        if candidate.is_dir():
            return candidate
    raise EvaluationError(f"promote is installed without its `{name}/` directory; reinstall the package")


def starter_dir(names: tuple[str, ...]) -> Path:
    """Directory holding the example files ``promote init`` copies (all of ``names``)."""
    for candidate in (_PACKAGE_DIR / "_data" / "starter", _PACKAGE_DIR.parents[1] / "examples" / "tiny_lm"):
        if all((candidate / name).is_file() for name in names):
            return candidate
    raise EvaluationError("promote is installed without the example files `promote init` copies; reinstall the "
                          "package, or pass --no-example")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Load a shipped JSON Schema by file stem (``contract`` or ``report``)."""
    path = data_dir("schemas") / f"{name}.schema.json"
    return json.loads(path.read_text(encoding="utf-8"))


def schema_text(name: str) -> str:
    """The schema exactly as shipped (for ``promote schema``)."""
    return (data_dir("schemas") / f"{name}.schema.json").read_text(encoding="utf-8")
