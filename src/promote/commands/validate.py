"""`promote validate`: check contract files (and their eval sets) without running any kernel."""

from __future__ import annotations

import click

from promote import console
from promote.commands.options import EXIT_CODES_HELP
from promote.errors import EXIT_USAGE, PromoteError


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("contracts", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--no-data", is_flag=True, help="Do not read the eval set (check only the contract file).")
@click.pass_context
def validate(ctx: click.Context, contracts: tuple[str, ...], no_data: bool) -> None:
    """Check contract files (and their eval sets) without running any kernel.

    Every problem is printed as FILE:LINE:COL: message. Exit 0 when all are valid (warnings allowed),
    2 otherwise.
    """
    from promote.contract.load import ContractError
    from promote.contract.model import load_contract
    from promote.data import load_evalset

    failed = False
    for path in contracts:
        try:
            contract, warnings = load_contract(path)
            if "watch" in contract.source.data:  # what the schema cannot say about `watch:` (watch/spec.py)
                from promote.watch.spec import from_contract

                from_contract(contract)
            if not no_data and contract.needs_evalset:  # observability alone reads no eval set
                load_evalset(contract.data)
        except ContractError as exc:
            failed = True
            console.message("\n".join(str(problem) for problem in exc.problems))
            continue
        except PromoteError as exc:
            failed = True
            console.message(f"{path}: error: {exc.format_message()}")
            continue
        if warnings:
            console.message("\n".join(str(problem) for problem in warnings))
        console.message(f"{path}: ok (contract `{contract.name}`, stages: {', '.join(contract.present())})", err=False)
    ctx.exit(EXIT_USAGE if failed else 0)
