"""The README's "Inside your own JAX code" block runs as written."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_inside_your_own_jax_code_block_runs(capsys):
    text = (ROOT / "README.md").read_text()
    section = text.split("## Inside your own JAX code", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 5
    # an eqx.Module energy at T = 1: <E> = d/2 = 2 whatever the precision
    for line in printed[-2:]:
        assert abs(float(line.split()[1]) - 2.0) < 0.2
