"""The `idf` typer application and its entry point `main` (errors -> one line, exit code).

Every command has `--help` with examples. Bad options give one line on stderr,
`idf: error: ...`, and a non-zero exit status (2 for usage errors, 1 for others).
"""

from __future__ import annotations

import sys

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="idf",
    help=(
        "idf-jax: energy-based diffusion from the command line.\n\n"
        "Examples:\n\n"
        "  idf capsules\n\n"
        "  idf sample --capsule molecular.lennard_jones_cluster --param n=13 "
        "--chains 256 --steps 10000\n\n"
        "  idf serve --config config.yaml --port 8000\n\n"
        "  idf deploy --cluster k8s-prod --namespace idf --dry-run"
    ),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `idf`: runs the command, turning errors into one line and an exit code."""
    from ..service.jobs import JobError

    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = app(args=args, prog_name="idf", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("idf: aborted", file=sys.stderr)
        return 130
    except typer.TyperException as e:  # usage errors (exit 2) and other click errors
        fmt = getattr(e, "format_message", None)
        msg = str(fmt()) if callable(fmt) else str(e)
        print(f"idf: error: {' '.join(msg.split())}", file=sys.stderr)
        return int(getattr(e, "exit_code", 1) or 1)
    except JobError as e:
        field = "param" if e.field.startswith("params") else e.field.replace("_", "-")
        print(f"idf: error: --{field}: {e.message}", file=sys.stderr)
        return 2 if e.status in (413, 422) else 1
    except (ValueError, FileNotFoundError, ConnectionError, ImportError, OSError) as e:
        print(f"idf: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
