"""The package's own metadata: one version everywhere, the typing marker, the command line's
--version. (The sdist's and the wheel's contents are checked by tools/check_wheel.sh.)"""
import pathlib
import re
import subprocess
import sys

import pytest

import fastcells
from fastcells import _version
from fastcells.__main__ import main

PACKAGE = pathlib.Path(fastcells.__file__).resolve().parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"


def test_version_is_single_sourced():
    assert fastcells.__version__ == _version.__version__
    # PEP 440 release segment, optionally a pre/post/dev suffix
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?(a|b|rc|post|dev)\d+)*", fastcells.__version__), \
        fastcells.__version__


@pytest.mark.skipif(not PYPROJECT.is_file(), reason="run from an installed wheel: no pyproject.toml")
def test_pyproject_reads_the_version_from_version_py():
    text = PYPROJECT.read_text()
    assert re.search(r'^dynamic = \["version"\]', text, re.M), "version must be dynamic"
    assert 'version = { attr = "fastcells._version.__version__" }' in text
    assert not re.search(r'^version = "', text, re.M), "a second, literal version"


def test_py_typed_ships_in_the_package():
    assert (PACKAGE / "py.typed").is_file()


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"fastcells {fastcells.__version__}\n"


def test_version_flag_of_the_module():
    done = subprocess.run([sys.executable, "-m", "fastcells", "--version"], capture_output=True,
                          text=True, timeout=120, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"fastcells {fastcells.__version__}\n"
