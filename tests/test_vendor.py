"""`bundler save --vendor`: wheels for the image's platform ship in the bundle (needs PyPI)."""

from __future__ import annotations

import json

from lint import assert_clean

from bundler.vendor import platform_tags


def test_platform_tags_cover_every_manylinux_a_bookworm_image_runs():
    tags = platform_tags("linux/amd64")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in tags and tags[-1] == "manylinux2014_x86_64"
    assert all(t.endswith("aarch64") for t in platform_tags("linux/arm64"))


def test_vendor_downloads_wheels_for_the_image_and_installs_offline(project, cli):
    (project / "requirements.txt").write_text("six==1.17.0\n")
    result = cli(
        "save", "out", "--model", "m", "--entry-script", "score.py", "--requirements", "requirements.txt", "--vendor"
    )
    assert result.exit_code == 0, result.output
    wheels = sorted(p.name for p in (project / "out/environment/wheels").iterdir())
    assert "six-1.17.0-py2.py3-none-any.whl" in wheels
    assert any(name.startswith("gunicorn-") for name in wheels)  # the runtime's own requirements too
    assert f"vendored: {len(wheels)} wheels" in result.output
    dockerfile = (project / "out/Dockerfile").read_text()
    assert "COPY environment/ /tmp/bundler/environment/" in dockerfile
    assert "--no-index --find-links /tmp/bundler/environment/wheels" in dockerfile
    assert "Every Python wheel the image needs is in `environment/wheels/`" in (project / "out/README.md").read_text()
    manifest = json.loads((project / "out/bundle.json").read_text())
    assert manifest["inputs"]["vendor"] is True
    assert all(f"environment/wheels/{name}" in manifest["files"] for name in wheels)


def test_vendor_failure_is_one_line_and_writes_nothing(project, cli):
    (project / "requirements.txt").write_text("six==0.0.0.0\n")
    from click.testing import CliRunner

    from bundler.cli import main

    result = CliRunner().invoke(
        main,
        ["save", "out", "--model", "m", "--entry-script", "score.py", "--requirements", "requirements.txt", "--vendor"],
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "bundler: error: vendoring wheels for Python 3.11 on linux/amd64 failed"
    )
    assert "six" in lines[0]
    assert not (project / "out").exists()
    assert not list(project.glob(".bundler-tmp-*"))


SIX_WHEEL_SHA256 = "4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274"


def test_hashed_requirements_install_apart_from_the_runtimes(project, cli):
    # One --hash makes pip demand hashes of everything in its run, and the runtime's have none.
    (project / "requirements.txt").write_text(f"six==1.17.0 --hash=sha256:{SIX_WHEEL_SHA256}\n")
    result = cli(
        "save", "out", "--model", "m", "--entry-script", "score.py", "--requirements", "requirements.txt", "--vendor"
    )
    assert result.exit_code == 0, result.output
    wheels = sorted(p.name for p in (project / "out/environment/wheels").iterdir())
    assert "six-1.17.0-py2.py3-none-any.whl" in wheels and any(name.startswith("gunicorn-") for name in wheels)
    dockerfile = (project / "out/Dockerfile").read_text()
    runtime_run = dockerfile.index("--requirement /tmp/bundler/runtime-requirements.txt")
    user_run = dockerfile.index("--requirement /tmp/bundler/environment/requirements.txt")
    assert runtime_run < dockerfile.index(" && /opt/venv/bin/pip install", runtime_run) < user_run
    assert dockerfile.count("--no-index --find-links /tmp/bundler/environment/wheels") == 2
    assert_clean(project / "out/Dockerfile")


def test_a_direct_url_cannot_be_vendored(project, cli):
    (project / "requirements.txt").write_text(
        "six @ https://files.pythonhosted.org/packages/six-1.17.0-py2.py3-none-any.whl\n"
    )
    result = cli(
        "save", "out", "--model", "m", "--entry-script", "score.py", "--requirements", "requirements.txt", "--vendor"
    )
    assert result.exit_code == 2
    assert (
        "requirements.txt:1: six is fetched from its URL when the image is built, even from a vendored bundle"
        in result.output
    )
    assert not (project / "out").exists()
