"""`idf ledger`: verify a proof ledger offline with its public key; make a signing key.

`idf ledger verify FILE --public-key PEM [--anchor ANCHOR]` needs no secret and no
running service: it re-derives the hash chain, checks every Ed25519 signature, and, given
a signed anchor (`GET /v1/ledger/anchor`, or `<state>/anchors/*.json`), that the file still
holds what the anchor signed — so a ledger truncated (to 0 bytes too), wiped or rolled back
fails. Exit status 0 when it verifies, 1 when it does not (each problem on stderr).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._common import console

__all__ = ["app", "keygen", "verify"]

app = typer.Typer(
    name="ledger",
    help="Verify the EIL proof ledger offline (public key only); create signing keys.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command()
def verify(
    file: Path = typer.Argument(..., help="the ledger database (eil.sqlite)", show_default=False),
    public_key: Path = typer.Option(
        ...,
        "--public-key",
        help="the ledger's Ed25519 public key, PEM (keys/ledger_ed25519.pub.pem)",
    ),
    anchor: Path | None = typer.Option(
        None,
        "--anchor",
        help="a signed anchor (JSON) to check the ledger against",
        show_default="none: chain and signatures only",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="print the result as JSON", show_default="text"
    ),
):
    """Verify a ledger file with only its public key (and a signed anchor).

    Examples:

      idf ledger verify eil.sqlite --public-key ledger_ed25519.pub.pem

      idf ledger verify eil.sqlite --public-key ledger.pub.pem --anchor anchor.json
    """
    from ...eil.anchor import load_anchor
    from ...eil.ledger import verify_ledger_file

    anchor_data = load_anchor(anchor) if anchor is not None else None
    res = verify_ledger_file(file, public_key, anchor=anchor_data)
    if as_json:
        out = {"ok": res.ok, "count": res.count, "head_hash": res.head_hash}
        out.update(errors=list(res.errors), anchored=anchor is not None)
        typer.echo(json.dumps(out))
    elif res.ok:
        what = f", matches the anchor of {anchor_data['count']} records" if anchor_data else ""
        console().print(f"ledger OK: {res.count} records, head {res.head_hash[:16]}{what}")
    else:
        for e in res.errors:
            typer.echo(f"idf: ledger: {e}", err=True)
        typer.echo(f"ledger FAILED verification ({len(res.errors)} problems)", err=True)
    if not res.ok:
        raise typer.Exit(1)


@app.command()
def keygen(
    out: Path = typer.Option(
        ...,
        "--out",
        help="private key file to create (mode 0600; the public key goes to <stem>.pub.pem)",
    ),
):
    """Create an Ed25519 ledger signing key (refuses to overwrite one).

    Example: idf ledger keygen --out keys/ledger_ed25519.pem
    """
    from ...eil.keys import fingerprint, generate_key, save_private_key

    if out.exists():
        raise typer.BadParameter(f"{out} already exists; not overwriting a key", param_hint="--out")
    key = generate_key()
    pub = save_private_key(key, out)
    console().print(f"wrote {out} (0600) and {pub}; public key sha256 {fingerprint(key)[:16]}")
