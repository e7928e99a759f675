"""`idf capsules`: the registered capsules with descriptions and parameters."""

from __future__ import annotations

import json

import typer

from ._common import console

__all__ = ["capsules"]


def capsules(
    domain: str | None = typer.Option(None, help="only this domain", show_default="all domains"),
    as_json: bool = typer.Option(
        False, "--json", help="print JSON instead of a table", show_default="table"
    ),
):
    """List registered capsules with descriptions and parameters.

    Example: idf capsules --domain molecular
    """
    import capsules

    reg = capsules.registry()
    if domain is not None:
        if domain not in capsules.DOMAINS:
            raise typer.BadParameter(
                f"unknown domain {domain!r}; choose one of {', '.join(capsules.DOMAINS)}",
                param_hint="--domain",
            )
        reg = {k: v for k, v in reg.items() if k.startswith(domain + ".")}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    k: {"description": v.description, "parameters": v.parameters}
                    for k, v in reg.items()
                },
                indent=2,
            )
        )
        return
    from rich.table import Table

    table = Table(title=f"{len(reg)} capsules")
    table.add_column("name")
    table.add_column("description")
    table.add_column("parameters")
    for k, v in reg.items():
        table.add_row(k, v.description, ", ".join(f"{p}={d}" for p, d in v.parameters.items()))
    console().print(table)
