"""Every ```yaml block of the READMEs is YAML as written (pasteable), and the
full config examples are valid configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from llmproxy.config.tree import parse_config

ROOT = Path(__file__).resolve().parent.parent
READMES = [ROOT / "README.md", ROOT / "helm" / "llmproxy" / "README.md"]
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.M | re.S)


def blocks() -> list[tuple[str, str]]:
    out = []
    for readme in READMES:
        text = readme.read_text()
        for m in _BLOCK.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append((f"{readme.relative_to(ROOT)}:{line}", m.group(1)))
    return out


BLOCKS = blocks()


def test_the_readmes_have_yaml_examples():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("where,text", BLOCKS, ids=[w for w, _ in BLOCKS])
def test_a_yaml_example_parses_as_written(where: str, text: str, tmp_path: Path):
    # A Helm template is YAML only once rendered: fence it as gotmpl, not yaml.
    assert "{{" not in text, f"{where}: a Helm template fenced as yaml"
    doc = yaml.safe_load(text)
    if isinstance(doc, dict) and {"providers", "models"} <= doc.keys():
        key = tmp_path / "key"
        key.write_text("file-key")
        text = re.sub(r"api_key_file: \S+", f"api_key_file: {key}", text)
        # Distinct, and long enough for client keys (keys[].key: at least 16 characters, each given once).
        refs = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)|os\.environ/([A-Za-z_][A-Za-z0-9_]*)", text)
        env = {a or b: f"dummy-value-{a or b}-0123456789" for a, b in refs}
        parse_config(text, env=env, source=where)


def test_the_python_example_says_what_to_install():
    text = (ROOT / "README.md").read_text()
    assert "```python\nfrom openai import" in text
    assert "pip install openai" in text.split("```python", 1)[0].rsplit("```", 1)[-1]
