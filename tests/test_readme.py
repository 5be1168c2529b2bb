"""The README stays true: every command line it shows parses as that command would parse
it, every make target it names exists, every file it links exists, and it stays short."""

import re
import shlex
from pathlib import Path

import pytest

from ripik_clf.cli.ripik import parse

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SCRIPTS = {"augment_offline.py": "augment", "train.py": "train", "finetune.py": "train",
           "ensemble.py": "ensemble"}  # fmt: skip


def shown_commands():
    """Every command line of the README's ``bash`` blocks, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def as_ripik(words):
    """``python X.py ...`` / ``python -m ripik_clf ...`` / ``ripik ...`` as ripik argv."""
    if words[0] == "ripik":
        return words[1:]
    if words[:3] == ["python", "-m", "ripik_clf"]:
        return words[3:]
    if words[0] == "python" and words[1] in SCRIPTS:
        argv = words[2:]
        return [SCRIPTS[words[1]], *argv] + (
            ["--phase", "full"] if words[1] == "finetune.py" else []
        )
    return None


@pytest.mark.parametrize("line", shown_commands())
def test_each_command_the_readme_shows_parses(line):
    words = shlex.split(line)
    if words[0] == "make":
        targets = re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), re.M)
        assert all(w in targets or "=" in w for w in words[1:]), line
        return
    if words[:2] == ["pip", "install"]:
        assert (REPO / "pyproject.toml").exists()
        return
    argv = as_ripik(words)
    assert argv is not None, f"the README shows a command this test does not know: {line}"
    parse(argv)  # argparse exits (failing the test) on a flag the command does not take


def test_the_readme_links_files_that_exist_and_stays_short():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    local = [link for link in links if "://" not in link]
    assert local and all((REPO / link).exists() for link in local), local
    assert len(README.splitlines()) <= 300
    for doc in (REPO / "docs").glob("*.md"):  # the docs' own links too
        for link in re.findall(r"\]\(([^)#]+)\)", doc.read_text()):
            if "://" not in link:
                assert (doc.parent / link).exists(), f"{doc.name}: {link}"
