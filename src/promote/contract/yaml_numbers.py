"""Numbers as people write them: YAML 1.2 / JSON floats (``1e-3``, ``1.0e6``, ``-2E+5``, ``.5``).

Why a module of its own: PyYAML implements YAML 1.1, whose float pattern needs a dot and a signed
exponent, so ``max: 1e-3`` arrives as the *string* "1e-3" and the schema rejects it as "a string",
although YAML 1.2 and JSON both read it as a number. The file reader (load.py) and the ``${VAR}``
expander (interpolate.py) must resolve plain scalars the same way, or ``max: 1e-3`` and
``max: ${KL_MAX:-1e-3}`` would differ; both take their resolver from here.

Only the float pattern is added: YAML 1.1's own forms (``1.5``, ``.inf``, ``1_000.5``) keep working,
ints stay ints, and a quoted ``"1e-3"`` stays a string (quoting means "text").
"""

from __future__ import annotations

import re

import yaml

__all__ = ["ContractLoader", "ContractResolver", "YAML12_FLOAT"]

_FLOAT_TAG = "tag:yaml.org,2002:float"

#: The YAML 1.2 core-schema float, less the forms that are already ints (no dot and no exponent).
YAML12_FLOAT = re.compile(
    r"""^[-+]?(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?
          |[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?
          |[0-9]+[eE][-+]?[0-9]+)$""",
    re.X,
)
_FIRST_CHARS = list("-+.0123456789")


class ContractResolver(yaml.resolver.Resolver):
    """PyYAML's resolver plus YAML 1.2 floats (used by interpolate.py on substituted text)."""


class ContractLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus YAML 1.2 floats (used by load.py to compose the file)."""


for _cls in (ContractResolver, ContractLoader):
    _cls.add_implicit_resolver(_FLOAT_TAG, YAML12_FLOAT, _FIRST_CHARS)
