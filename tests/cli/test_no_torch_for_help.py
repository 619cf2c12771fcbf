"""``import ras2s.cli`` and every ``--help`` run without importing torch (issue 23)."""

import subprocess
import sys

import pytest

COMMANDS = ["", "info", "denoise", "weights", "noise", "evaluate", "report", "assess", "train"]


def _torch_imported(code: str) -> bool:
    probe = code + "\nimport sys\nprint('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip().splitlines()[-1] == "True"


def test_importing_the_cli_does_not_import_torch():
    assert not _torch_imported("import ras2s.cli, ras2s")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_does_not_import_torch(command):
    code = (
        "from ras2s.cli import main\n"
        f"try:\n    main([*{command!r}.split(), '--help'], standalone_mode=False)\n"
        "except SystemExit:\n    pass"
    )
    assert not _torch_imported(code)


def test_the_api_still_reaches_torch_on_first_use():
    assert _torch_imported("import ras2s\nras2s.load_model")
    assert _torch_imported("from ras2s import denoise")
