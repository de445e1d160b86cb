"""The runnable examples in docs/ run."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
FAST_DOCS = ["concepts.md", "training.md", "image_recipes.md", "audio.md", "text.md", "rl.md", "multimodal.md"]


@pytest.mark.parametrize("name", FAST_DOCS)
def test_python_examples_run(name, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), re.S)
    runnable = [b for b in blocks if "import" in b]
    assert runnable, f"{name} has no runnable example"
    monkeypatch.chdir(tmp_path)
    for block in runnable:
        exec(compile(block, f"{name}:example", "exec"), {"__name__": "__docs__"})
