"""Golden trees: each input case under tests/cases/ is saved and compared, whole and byte
for byte (comments included), with golden/<case>/. Regenerate deliberately with
`pytest tests/test_golden.py --snapshot-update` and review the diff in git.

The runtime's package (runtime/bundler_runtime/) is the same verbatim copy in every bundle,
so golden trees leave it out: each golden bundle.json still records its files by digest,
and one test checks that a bundle's copy is byte-identical to bundler/runtime.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from golden_tree import GOLDEN_ROOT, GoldenTreeExtension, read_tree

from bundler import layout

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

CASES_ROOT = Path(__file__).parent / "cases"
CASES = sorted(p.name for p in CASES_ROOT.iterdir() if (p / "case.toml").is_file())
RUNTIME_PACKAGE = f"{layout.RUNTIME_DIR}/{layout.RUNTIME_PACKAGE}/"
RUNTIME_SOURCE = Path(__file__).resolve().parent.parent / "bundler" / "runtime"


def golden_part(out: Path) -> dict[str, tuple[int, bytes]]:
    """The emitted tree without the runtime's verbatim package."""
    return {path: entry for path, entry in read_tree(out).items() if not path.startswith(RUNTIME_PACKAGE)}


def save_case(case: str, workdir: Path, cli, monkeypatch) -> Path:
    """Register the case's models and run `bundler save out` in a copy of the case folder."""
    shutil.copytree(CASES_ROOT / case, workdir, symlinks=True)
    spec = tomllib.loads((workdir / "case.toml").read_text())
    for extra in spec.get("create", []):
        (workdir / extra["path"]).parent.mkdir(parents=True, exist_ok=True)
        (workdir / extra["path"]).write_text(extra["text"])
    monkeypatch.chdir(workdir)
    for model in spec.get("register", []):
        result = cli("register", model["path"], "--name", model["name"])
        assert result.exit_code == 0, result.output
    result = cli("save", "out", *spec.get("args", []))
    assert result.exit_code == 0, result.output
    return workdir / "out"


@pytest.fixture
def golden(snapshot):
    return snapshot.use_extension(GoldenTreeExtension)


@pytest.mark.parametrize("case", CASES)
def test_golden_tree(case, tmp_path, cli, monkeypatch, golden):
    out = save_case(case, tmp_path / case, cli, monkeypatch)
    assert golden_part(out) == golden(name=case)


def test_the_bundles_runtime_is_a_verbatim_copy_of_bundler_runtime(tmp_path, cli, monkeypatch):
    """What the golden trees leave out, checked once: every file of the package, byte for
    byte, no cache, and each listed in bundle.json with its digest."""
    out = save_case("one_model", tmp_path / "one_model", cli, monkeypatch)
    shipped = {
        path[len(RUNTIME_PACKAGE) :]: data
        for path, (_, data) in read_tree(out).items()
        if path.startswith(RUNTIME_PACKAGE)
    }
    package = RUNTIME_SOURCE / layout.RUNTIME_PACKAGE
    source = {
        path.relative_to(package).as_posix(): path.read_bytes()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert shipped == source and "server.py" in shipped
    listed = layout.read_manifest(out).files
    assert all(f"{RUNTIME_PACKAGE}{name}" in listed for name in shipped)


def test_every_golden_tree_has_a_case():
    """A golden folder without an input case is stale; a case without one is not yet reviewed."""
    assert len(CASES) >= 4
    assert sorted(p.name for p in GOLDEN_ROOT.iterdir() if p.is_dir()) == CASES


def test_a_one_line_template_change_fails_the_golden_comparison(tmp_path, cli, monkeypatch):
    """The goldens must notice an edited comment, not only edited instructions."""
    from golden_tree import serialize_tree

    from bundler import render

    templates = tmp_path / "templates"
    shutil.copytree(render.templates_dir(), templates)
    dockerfile = templates / "Dockerfile.jinja"
    text = dockerfile.read_text()
    line = "# The entry script and its sources change most often, so they are the last file layer:\n"
    assert line in text
    dockerfile.write_text(text.replace(line, line.replace("most often", "often")))
    monkeypatch.setattr(render, "templates_dir", lambda: templates)

    out = save_case("one_model", tmp_path / "one_model", cli, monkeypatch)
    emitted, golden_tree = golden_part(out), read_tree(GOLDEN_ROOT / "one_model")
    assert emitted != golden_tree
    assert serialize_tree(emitted) != serialize_tree(golden_tree)
    changed = sorted(p for p in emitted if emitted[p] != golden_tree.get(p))
    assert changed == ["Dockerfile", "bundle.json"]  # the edit, and the manifest's digest of it
