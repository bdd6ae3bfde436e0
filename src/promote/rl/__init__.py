"""RL post-training: gate rollouts on the sampled token's log-probs, trainer vs inference engine.

``RolloutMonitor`` accumulates a training step's log-probs (torch tensors on any device, or numpy)
into promote's mergeable numerics state and judges RL clauses without files; ``rollouts_to_records``
turns a rollout dump (``promote.data.rollouts``) into an eval set and two sampled-token records files
that ``promote check`` gates. docs/rl.md has the columns, the metrics and a minimal training loop.
"""

from __future__ import annotations

from promote.data.rollouts import TRL_COLUMNS, VERL_COLUMNS, Rollout, read_rollouts
from promote.rl.convert import rollouts_to_records, write_rollouts
from promote.rl.monitor import MonitorVerdict, RolloutMonitor

__all__ = ["TRL_COLUMNS", "VERL_COLUMNS", "MonitorVerdict", "Rollout", "RolloutMonitor", "read_rollouts",
           "rollouts_to_records", "write_rollouts"]
