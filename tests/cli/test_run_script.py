"""./run on a machine that lacks what it needs: one sentence saying what to install, and nothing left behind.

The install itself (a virtualenv in .venv, pip, chromium) is what CI runs
from a fresh clone; these cover the refusals, with the real script run by
bash and a real Python outside any virtualenv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[2] / "run"
BASE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"  # the Python this test's virtualenv was made from


def run_script(folder: Path, *args: str, python: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    shutil.copy(RUN, folder / "run")
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHON=python, **(extra_env or {}))
    return subprocess.run(["bash", str(folder / "run"), *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.skipif(not BASE_PYTHON.exists(), reason=f"no base Python at {BASE_PYTHON}")
def test_a_python_without_ensurepip_gets_the_package_to_install(tmp_path):
    """Debian and Ubuntu ship ensurepip, which `python3 -m venv` needs, in python3-venv."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ensurepip.py").write_text("raise ImportError('ensurepip is in python3-venv on Debian')\n")
    folder = tmp_path / "checkout"
    folder.mkdir()
    result = run_script(folder, "up", python=str(BASE_PYTHON), extra_env={"PYTHONPATH": str(shadow)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot create a virtualenv: install Debian/Ubuntu's python3-venv (apt-get install python3-venv" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (folder / ".venv").exists()


def test_a_missing_python_is_named(tmp_path):
    result = run_script(tmp_path, "test", python=str(tmp_path / "no-such-python3"))
    assert result.returncode == 1
    assert f"No Python at '{tmp_path / 'no-such-python3'}': install Python 3.11 or newer" in result.stderr
    assert not (tmp_path / ".venv").exists()


def test_an_unknown_command_prints_the_usage(tmp_path):
    result = run_script(tmp_path, "deploy", python=sys.executable)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ./run up")
