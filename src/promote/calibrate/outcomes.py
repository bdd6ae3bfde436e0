"""The names a calibration document uses, declared once: what each row is (``VariantKind``) and what
each cell and row came to (``CellResult``). ``calibrate/table.py`` writes them and
``tools/gen_calibration_schema.py`` builds the schema's enums from them. No numpy, no torch."""

from __future__ import annotations

from typing import Literal

from promote.results import Choice

#: What the contract should do with a row: pass ``honest`` and ``legit`` rows, catch ``fault`` rows.
VariantKind = Literal["honest", "legit", "fault"]
VARIANT_KINDS: tuple[str, ...] = ("honest", "legit", "fault")


class CellResult(Choice):
    """A clause's result in one row: ``caught``/``missed``/``inconclusive`` for faults, ``pass``/``fail``/
    ``inconclusive`` for honest and legitimate rows, ``error`` when it could not be evaluated, ``invalid``
    when the identity check found the two sides do not compute on the same thing (docs/identity.md):
    neither a catch nor a pass, nothing was judged."""

    CAUGHT = "caught"
    MISSED = "missed"
    INCONCLUSIVE = "inconclusive"
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    INVALID = "invalid"


CELL_RESULTS: tuple[str, ...] = tuple(r.value for r in CellResult)

#: Stages whose clauses `--derive` has rules for (numerical clauses: rules.py; statistical: derive.py).
DERIVABLE_STAGES: tuple[str, ...] = ("numerics", "slices")
