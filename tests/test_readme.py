"""The README's examples, as written: every Python block in order (one namespace,
as a reader's session), and every shell block not marked `<!-- skip: next -->`,
in a temporary folder with the project's commands on PATH."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from sybil import Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

pytestmark = [pytest.mark.slow, pytest.mark.long]


def run_shell(example):
    """A shell block with bash -e: every command must succeed."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(["bash", "-e", "-c", example.parsed], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{example.parsed}\n{result.stderr[-3000:]}"


def readme_examples():
    sybil = Sybil(parsers=[PythonCodeBlockParser(), CodeBlockParser(language="sh", evaluator=run_shell),
                           SkipParser()])
    return sybil.parse(ROOT / "README.md")


def test_every_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    document = readme_examples()
    ran = []
    for example in document.examples():
        example.evaluate()
        ran.append(example)
    assert len(ran) >= 6                     # the Python blocks, the shell blocks and the skips
    assert (tmp_path / "my_run" / "Results.npz").is_file()     # the command-line example ran
    assert "new_rows" in document.namespace and document.namespace["new_rows"].shape == (100, 30)
