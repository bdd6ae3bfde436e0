"""`promote schema` and `promote init`: print a JSON Schema; write a starter contract."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("which", type=click.Choice(["contract", "report", "calibration"]), default="contract")
def schema(which: str) -> None:
    """Print the JSON Schema of a contract (default), of the JSON report or of `calibrate --output json`."""
    from promote.resources import schema_text

    click.echo(schema_text(which), nl=False)


@click.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path("promote.yaml"))
@click.option("--example/--no-example", default=True, show_default=True,
              help="Copy the embedded example's model.py, weights.safetensors and eval.jsonl beside the contract, "
                   "so it runs as written; --no-example writes the contract alone.")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def init(path: Path, example: bool, force: bool) -> None:
    """Write a commented starter contract to PATH (default promote.yaml; a directory: PATH/promote.yaml)."""
    from promote.starter import write_starter

    written = write_starter(path, example=example, force=force)
    if example:
        click.echo(f"wrote {written[0]} and the example it checks beside it: {', '.join(p.name for p in written[1:])} "
                   f"(a tiny byte-level LM, fp32 reference vs bf16 candidate)\nrun it:  promote check {written[0]}\n"
                   "then point its `model`, `weights` and `data.path` at your own model and eval set")
    else:
        click.echo(f"wrote {written[0]}; edit the kernels and data paths, then run: promote validate {written[0]}")
