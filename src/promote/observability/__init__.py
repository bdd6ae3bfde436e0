"""Metric sources of stage 4: a Prometheus HTTP API client and a snapshot-file reader.

Both answer with the same ``Series`` (labels plus timestamped samples), so the stage judges a
clause the same way whichever source produced its numbers. They sit beside ``kernels/`` in the
layering: they do I/O for a stage and know nothing of stages, reports or policy.
"""

from promote.observability.series import Series

__all__ = ["Series"]
