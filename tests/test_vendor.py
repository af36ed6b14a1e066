"""`bundler save --vendor`: wheels for the image's platform ship in the bundle (needs PyPI)."""

from __future__ import annotations

import json


from bundler.vendor import platform_tags


def test_platform_tags_cover_every_manylinux_a_bookworm_image_runs():
    tags = platform_tags("linux/amd64")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in tags and tags[-1] == "manylinux2014_x86_64"
    assert all(t.endswith("aarch64") for t in platform_tags("linux/arm64"))


def test_vendor_downloads_wheels_for_the_image_and_installs_offline(project, cli):
    (project / "requirements.txt").write_text("six==1.17.0\n")
    result = cli("save", "out", "--model", "m", "--entry-script", "score.py", "--requirements", "requirements.txt",
                 "--vendor")
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

    result = CliRunner().invoke(main, ["save", "out", "--model", "m", "--entry-script", "score.py",
                                       "--requirements", "requirements.txt", "--vendor"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bundler: error: vendoring wheels for Python 3.11 on linux/amd64 failed")
    assert "six" in lines[0]
    assert not (project / "out").exists()
    assert not list(project.glob(".bundler-tmp-*"))
