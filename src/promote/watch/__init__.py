"""`promote watch` and `promote serve` (issue 24): the contract judges a live canary window by window.

- ``spec.py``: the contract's ``watch:`` section and the command's flags, as one typed ``WatchSpec``;
  ``schema.py`` its JSON Schema fragment (``tools/gen_contract_schema.py`` assembles it).
- ``requestlog.py``: the JSONL request log, tailed with a bounded read (the shadow-numerics prompts).
- ``alpha.py``: how the level α is spent over windows, so repeated looks keep false alarms ≤ α.
- ``window.py``: one window: the contract's live stages through ``run.run_check`` (the stage registry),
  summed up into a window outcome (clean, bad, inconclusive, invalid) with its evidence.
- ``rules.py``: the decision rules (trip fast, restore slowly, hold on inconclusive, no re-promotion).
- ``audit.py``: the hash-chained JSONL audit log (append + fsync, verify).
- ``sinks.py``: ``--sink KIND:key=value`` and ``watch.sinks`` → sinks from ``sinks.api.SINKS``.
- ``loop.py``: the loop; ``serve.py``: the HTTP answers for Argo Rollouts and Flagger.

Sits above ``run`` and ``stages`` (import-linter layers); docs/watch.md describes it.
"""
