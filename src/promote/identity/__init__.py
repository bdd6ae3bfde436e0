"""Identity before numerics (issue 23, docs/identity.md): prove both kernels compute on the same thing,
and say ``invalid`` — never a numerical verdict — when they do not.

``api.py``: what a check receives (``IdentityInputs``) and the registry of checks (``IDENTITY_CHECKS``);
``runner.py``: side facts from the kernels and the probe batch, every check that applies, the result;
``result.py``: the report's ``identity`` part (findings, fingerprints, what was checked); one module per
built-in check: ``vocabulary.py``, ``prompt.py``, ``fingerprint.py``. Kept import-light: the report
reads ``result.py`` without loading kernels.
"""
