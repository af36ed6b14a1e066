"""Fixtures for the container tests: the engine, saved bundles, images built once per session.

In CI (CI is set) a missing engine FAILS these tests; elsewhere they skip with the reason.
Measurements (build times, image sizes) are printed in pytest's terminal summary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import engine as engines
import pytest
from harness import MEASUREMENTS, REPO, bundler


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.container)


def pytest_terminal_summary(terminalreporter):
    if MEASUREMENTS:
        terminalreporter.section("container measurements")
        for name, value in MEASUREMENTS.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def engine():
    found = engines.detect()
    if found is None:
        message = "no Docker engine, and podman/buildah/debootstrap are not installed (.ci/install-container-tools.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    found.ensure_base_image()
    MEASUREMENTS["image builder"] = f"podman, {found.storage} storage" if found.name == "podman" else found.name
    return found


@pytest.fixture(scope="session")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="session")
def diabetes(tmp_path_factory, home):
    """The README's example: trained, registered, saved. Returns its working folder."""
    work = tmp_path_factory.mktemp("diabetes") / "diabetes"
    shutil.copytree(REPO / "examples" / "diabetes", work, ignore=shutil.ignore_patterns("imagefiles", "model.pkl"))
    # A comment unique to this session gives its dependency layers a cache chain of their own:
    # the first build is cold, and the rebuild can only reuse what that build made.
    with open(work / "requirements.txt", "a") as handle:
        handle.write(f"# test session {uuid.uuid4()}\n")
    subprocess.run([sys.executable, "train.py"], cwd=work, check=True, capture_output=True)
    assert bundler("register", "model.pkl", "--name", "diabetes", cwd=work, home=home).stdout.strip() == "diabetes:1"
    bundler("save", "imagefiles", cwd=work, home=home)
    return work


@pytest.fixture(scope="session")
def diabetes_image(engine, diabetes):
    """Built once; its dependency layers are new to this session, so its time is a cold build."""
    build = engine.build(diabetes / "imagefiles", "bundler-test/diabetes:cold")
    MEASUREMENTS["cold build (diabetes example)"] = f"{build.seconds:.1f} s"
    MEASUREMENTS["image size (diabetes example)"] = f"{engine.size(build.tag) / 1e6:.1f} MB"
    yield build
    engine.remove_image(build.tag)
