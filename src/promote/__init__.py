"""promote: check an inference kernel against its reference kernel under a kernel contract."""

from __future__ import annotations

__version__ = "0.1.0"
