"""The templates: one jinja2 environment over ``templates/``, and a wheel that ships the same files."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jinja2
import pytest

from fecc.templating import environment, template_root

ROOT = Path(__file__).resolve().parents[1]


def _template_files() -> list[str]:
    return sorted(p.relative_to(ROOT / "templates").as_posix() for p in (ROOT / "templates").rglob("*.j2"))


def test_every_template_loads_through_the_one_environment():
    assert template_root().resolve() == (ROOT / "templates").resolve()
    env = environment()
    assert sorted(n for n in env.list_templates() if n.endswith(".j2")) == _template_files()
    for name in _template_files():
        env.get_template(name)  # parses under the shared whitespace rules
    assert env.trim_blocks and env.lstrip_blocks and env.keep_trailing_newline
    assert env.undefined is jinja2.StrictUndefined


def test_no_other_module_builds_an_environment():
    """Emitted code, prompts and reports all render through fecc.templating.environment()."""
    offenders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "compiler" / "fecc").rglob("*.py")
                 if "jinja2.Environment(" in p.read_text() and p.name != "templating.py"]
    assert offenders == []


def test_the_wheel_ships_the_templates_the_checkout_renders(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "compiler", src / "compiler", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "templates", src / "templates", ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("fecc-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = sorted(n[len("fecc/templates/"):] for n in zf.namelist()
                         if n.startswith("fecc/templates/") and n.endswith(".j2"))
    assert shipped == _template_files()
