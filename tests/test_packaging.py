"""The package as pip installs it: every subpackage listed, light imports for the command line."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_installed():
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *parts)))
    assert listed == found, f"pyproject.toml lists {sorted(listed)}, the tree has {sorted(found)}"


def test_help_does_not_import_the_model_stack():
    code = (
        "import sys\n"
        "import descore_reward.cli\n"
        "try:\n"
        "    descore_reward.cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print([m for m in ('torch', 'transformers', 'peft', 'numpy') if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "usage: descore" in result.stdout, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", "descore --help imports the model stack"


def test_the_command_lines_benchmark_names_are_the_evaluators():
    from descore_reward.cli import BENCHMARK_NAMES
    from descore_reward.eval_runner import BENCHMARKS

    assert sorted(BENCHMARK_NAMES) == sorted(BENCHMARKS)
