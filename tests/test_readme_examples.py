"""The README's Python example runs as written and prints what each method chose."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_one_example_per_method():
    code = "\n".join(python_blocks((ROOT / "README.md").read_text()))
    for call in ("unit.apply(", "ada.apply(", "lwac.apply(", "ela.apply("):
        assert call in code, f"README's Python example lost {call}"


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(python_blocks((ROOT / "README.md").read_text())):
        exec(compile(block, f"README.md python block {i}", "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.splitlines()
    unit, ada, lwac, ela = (next(l for l in lines if l.startswith(p)) for p in ("UnIT p", "AdaLayerNet:", "LWAC:", "ELA "))
    assert 0 < int(re.search(r"(\d+) % of MACs skipped", unit).group(1)) < 100
    packed, dense = (int(v.replace(",", "")) for v in re.search(r"([\d,]+) packed bytes of ([\d,]+)", ada).groups())
    assert packed <= 0.15 * dense        # the budget the example passed
    assert "blocks.0" in lwac and re.search(r"val 0\.\d{3}$", ela)
