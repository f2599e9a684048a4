"""The package as pip installs it: every subpackage listed, light imports for the command line."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_folder_of_modules_is_a_package():
    """setuptools' `packages.find` installs a folder only when it holds an `__init__.py`."""
    folders = {path.parent for path in (ROOT / "descore_reward").rglob("*.py")}
    missing = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file())
    assert not missing, f"folders of modules without __init__.py (pip would leave them out): {missing}"


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
    from descore_reward.evaluation.runner import BENCHMARKS

    assert sorted(BENCHMARK_NAMES) == sorted(BENCHMARKS)
