"""`promote bounds`: what a logit drift implies (TV, KL, importance weights, reward, PPO clip)."""

from __future__ import annotations

import click

from promote.commands.options import FiniteFloat


@click.command()
@click.option("--drift", type=FiniteFloat(min=0), help="Per-position logit drift d = ‖z_c − z_r‖∞.")
@click.option("--osc", type=FiniteFloat(min=0), help="Per-position logit oscillation (max δ − min δ ≤ 2d).")
@click.option("--seq-len", type=click.IntRange(min=1), help="Sequence length T for sequence-level bounds.")
@click.option("--reward-range", type=(FiniteFloat(), FiniteFloat()), default=None, metavar="A B",
              help="Bounded reward [A, B].")
@click.option("--clip", type=FiniteFloat(min=0, min_open=True), help="PPO clip ε (budget osc ≤ log(1+ε)).")
@click.option("--advantage-max", type=FiniteFloat(min=0), help="|A| ≤ A_max for the policy-gradient bias.")
@click.option("--score-norm", type=FiniteFloat(min=0), help="‖∇log π‖ ≤ G for the policy-gradient bias.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def bounds(drift: float | None, osc: float | None, seq_len: int | None, reward_range: tuple[float, float] | None,
           clip: float | None, advantage_max: float | None, score_norm: float | None, fmt: str) -> None:
    """Print what a logit drift implies: TV, KL, log-ratio, importance weights, reward, sequence, PPO clip."""
    import json

    from promote.bounds import implications

    if drift is None and osc is None:
        raise click.UsageError("give --drift or --osc")
    if reward_range is not None and reward_range[0] > reward_range[1]:
        raise click.BadParameter("A must not exceed B", param_hint="--reward-range")
    chain = implications(osc=osc, drift=drift, seq_len=seq_len, reward_range=reward_range, clip=clip,
                         advantage_max=advantage_max, score_norm=score_norm)
    if fmt == "json":
        click.echo(json.dumps([link.to_dict() for link in chain], indent=2, ensure_ascii=False))
        return
    for link in chain:
        note = f"   ({link.assumes})" if link.assumes else ""
        click.echo(f"{link.name:<24} ≤ {link.bound:<12.6g} = {link.formula}{note}")
