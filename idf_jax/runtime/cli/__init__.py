"""The `idf` command: sample, anneal, train, serve, monitor and deploy from a terminal.

A module per command (`init`, `capsules`, `sample`, `equilibrium`, `train`, `predict`
(with `backtest`), `serve`, `monitor`, `deploy`, and the `ledger` and `evolve` groups),
registered here on the typer app of `_app` in the order `idf --help` lists them; `_common`
holds what they share. Every command has `--help` with examples.
Bad options give one line on stderr, `idf: error: ...`, and a non-zero exit status (2 for
usage errors, 1 for others).
"""

from __future__ import annotations

from . import (
    capsules,
    deploy,
    equilibrium,
    evolve,
    init,
    ledger,
    monitor,
    predict,
    sample,
    serve,
    train,
)
from ._app import app, main

__all__ = ["app", "main"]

app.command()(init.init)
app.command()(capsules.capsules)
app.command()(sample.sample)
app.command()(equilibrium.equilibrium)
app.command()(train.train)
app.command()(predict.predict)
app.command()(predict.backtest)
app.command()(serve.serve)
app.command()(monitor.monitor)
app.command()(deploy.deploy)
app.add_typer(ledger.app, name="ledger")
app.add_typer(evolve.app, name="evolve")
