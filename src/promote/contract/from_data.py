"""A Contract from data already in memory: a dict, and the contract whose file anchors its paths.

`promote calibrate --derive` changes bounds in a contract and runs the result on the held-out split.
Writing that to a hidden YAML file beside the user's contract just to load it again left a file
behind on a crash and raced a second run; this builds the same typed Contract directly. The data is
schema-checked and built exactly as a loaded file is (``validate`` + ``build_contract``); relative
paths in it (data, kernels) resolve against ``base``'s directory, since that is where the derived
contract will be written. Problems name ``base``'s file with a ``(derived)`` suffix; they carry no
line numbers, as the data has no text of its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from promote.contract.load import ContractError, LoadedDocument, validate
from promote.contract.model import Contract, build_contract
from promote.contract.plugins import contract_schema

__all__ = ["contract_from_data"]


def contract_from_data(data: dict[str, Any], base: LoadedDocument, *, label: str = "derived") -> Contract:
    """``data`` (already interpolated) as a Contract whose relative paths resolve beside ``base``.

    Raises:
        ContractError: ``data`` breaks the schema or the contract's own consistency rules.
    """
    text = json.dumps(data, sort_keys=True, ensure_ascii=False)
    doc = replace(base, display_path=f"{base.display_path} ({label})", text=text,
                  sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), data=data, marks={}, interpolated={})
    problems = validate(doc, contract_schema())  # with what plug-ins add (contract/plugins.py)
    contract, built = (None, []) if any(p.severity == "error" for p in problems) else build_contract(doc)
    if contract is None:
        problems = problems + built
        raise ContractError(sorted(problems, key=lambda p: p.severity != "error"))  # errors first, order kept
    return contract
