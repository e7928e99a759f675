"""`idf ... --help` shows the default of every option (or says it is required)."""

from __future__ import annotations

import typer

from idf_jax.runtime.cli import app, main


def _commands(group, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def test_every_option_shows_its_default(capsys):
    root = typer.main.get_command(app)
    seen = 0
    for path, cmd in _commands(root):
        assert main([*path, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        ctx = cmd.make_context(" ".join(path), ["--help"], resilient_parsing=True)
        for p in cmd.params:
            if getattr(p, "param_type_name", "") != "option" or p.name == "help":
                continue
            rec = p.get_help_record(ctx)
            assert rec is not None, (path, p.name)
            assert "default:" in rec[1] or "required" in rec[1], (path, p.opts, rec)
            assert p.opts[-1] in text
            seen += 1
    assert seen > 40
    assert {("ledger", "verify"), ("ledger", "keygen"), ("serve",)} <= {
        p for p, _ in _commands(root)
    }
