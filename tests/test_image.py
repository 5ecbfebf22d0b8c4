"""The Docker image's install steps, run here: no Docker daemon or base image is reachable on these
machines, so a fresh virtualenv gets the lock file and then the project built from only what the
Dockerfile copies. A package folder the Dockerfile forgets would break the image silently: here
it fails to import from the installed copy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.waiting import PATIENCE

REPO = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).with_name("uv")


def dockerfile_copies() -> list[str]:
    """What the builder stage copies from the repository (sources, not other stages)."""
    text = (REPO / "Dockerfile").read_text().split("FROM ")[1]  # the builder stage
    copied = []
    for line in text.splitlines():
        match = re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line.strip())
        if match:
            copied += match.group(1).split()
    return copied


def installed_packages() -> set[str]:
    """The top-level packages pyproject installs."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.rstrip("*") for pattern in patterns}


def test_the_dockerfile_copies_every_package_the_project_installs() -> None:
    assert installed_packages() <= set(dockerfile_copies())
    on_disk = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "scripts"}
    assert on_disk <= installed_packages(), "a package folder pyproject does not install"


@pytest.mark.slow
def test_the_image_install_steps_give_a_working_command(tmp_path: Path) -> None:
    if not UV.exists():
        pytest.skip("uv is not in the virtualenv (./dev setup installs it)")
    venv, build = tmp_path / "venv", tmp_path / "build"
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    run = {"env": {**env, "VIRTUAL_ENV": str(venv)}, "cwd": tmp_path, "timeout": PATIENCE}
    subprocess.run([UV, "venv", "-q", venv, "--python", sys.executable], check=True, **run)
    lock = REPO / "requirements.lock"
    subprocess.run([UV, "pip", "sync", "-q", lock], check=True, **run)
    build.mkdir()
    for name in dockerfile_copies():
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, build / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif name != "requirements.lock":
            shutil.copy(source, build / name)
    subprocess.run([UV, "pip", "install", "-q", "--no-deps", build], check=True, **run)
    python, omnirec = venv / "bin" / "python", venv / "bin" / "omnirec"
    show = (
        "import sys, importlib\nfor n in sys.argv[1:]: print(importlib.import_module(n).__file__)"
    )
    packages = sorted(installed_packages())
    where = subprocess.run(
        [python, "-c", show, *packages], capture_output=True, text=True, check=True, **run
    )
    site = venv / "lib"
    assert all(Path(f).is_relative_to(site) for f in where.stdout.split()), where.stdout
    helped = subprocess.run([omnirec, "--help"], capture_output=True, text=True, **run)
    assert helped.returncode == 0 and "compile-kernels" in helped.stdout, helped.stderr
    compiled = subprocess.run([omnirec, "compile-kernels"], capture_output=True, text=True, **run)
    assert compiled.returncode == 0, compiled.stderr
    assert "models.topk" in compiled.stdout
