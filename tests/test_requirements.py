"""Requirement files: what ships with them, what the image build cannot use, what is unpinned."""

from __future__ import annotations

import json

import pytest

from bundler.requirements import RequirementsError, collect, parse


@pytest.mark.parametrize(
    "line, name, pin",
    [
        ("numpy==2.4.6", "numpy", "2.4.6"),
        ("scikit-learn[extra] == 1.9.1 ; python_version >= '3.9'", "scikit-learn", "1.9.1"),
        ("foo===1.0 --hash=sha256:abc", "foo", "1.0"),
        ("requests>=2", "requests", None),
        ("six", "six", None),
        ("pandas==2.*", "pandas", None),
        ("torch~=2.1", "torch", None),
    ],
)
def test_a_requirement_is_pinned_only_by_one_exact_version(line, name, pin):
    (requirement,) = parse(line + "\n").requirements
    assert (requirement.name, requirement.pin, requirement.pinned) == (name, pin, pin is not None)


def test_comments_and_continuations_are_read_as_pip_reads_them():
    parsed = parse("# a comment\nnumpy \\\n  ==2.4.6  # trailing\n\nsix==1.17.0 # why\n#  -e .\n")
    assert [(r.name, r.pin, r.line) for r in parsed.requirements] == [("numpy", "2.4.6", 2), ("six", "1.17.0", 5)]
    assert parsed.problems == ()


def test_direct_references_are_fixed_by_their_address():
    parsed = parse("bar @ https://example.com/bar-1.0-py3-none-any.whl\nhttps://example.com/baz-2.0.tar.gz\n")
    assert [(r.name, r.direct, r.pinned) for r in parsed.requirements] == [
        ("bar", True, True),
        ("https://example.com/baz-2.0.tar.gz", True, True),
    ]


def test_included_files_in_every_spelling():
    text = (
        "-r base.txt\n--requirement=more/other.txt\n-rshort.txt\n-c pins.txt\n--constraint pins2.txt\n"
        "-r https://example.com/remote.txt\n"
    )
    assert parse(text).includes == (
        (1, "base.txt"),
        (2, "more/other.txt"),
        (3, "short.txt"),
        (4, "pins.txt"),
        (5, "pins2.txt"),
    )


@pytest.mark.parametrize(
    "line, expected",
    [
        ("./localpkg", "./localpkg is a path on this machine"),
        ("/abs/pkg", "/abs/pkg is a path on this machine"),
        ("dist/pkg-1.0-py3-none-any.whl", "dist/pkg-1.0-py3-none-any.whl is a path on this machine"),
        ("baz @ file:///home/me/baz.whl", "baz @ file:///home/me/baz.whl is a path on this machine"),
        ("-e .", "-e . installs a folder on this machine"),
        ("--editable ./src/pkg", "-e ./src/pkg installs a folder on this machine"),
    ],
)
def test_paths_on_this_machine_are_problems(line, expected):
    (problem,) = parse(line + "\n").problems
    assert problem[0] == 1 and problem[1].startswith(expected) and "build a wheel" in problem[1]


def test_remote_editables_and_urls_are_fine():
    parsed = parse(
        "-e git+https://github.com/x/y.git#egg=y\n-f https://example.com/wheels/\n"
        "--index-url https://pypi.example/simple\n"
    )
    assert parsed.problems == () and parsed.local_find_links == ()


@pytest.mark.parametrize(
    "line, shown",
    [
        ("--index-url https://me:hunter2@pypi.example/simple", "****:****@"),
        ("--extra-index-url=https://me:hunter2@pypi.example/simple", "****:****@"),
        ("pkg @ https://ghp_tokenhunter2@github.com/x/pkg.whl", "****@"),
        ("-i https://${USER}:hunter2@pypi.example/simple", "****:****@"),
        # a token as the user name with an empty password, and tokens or signatures in the query
        ("--index-url https://hunter2:@pypi.example/simple", "****@"),
        ("pkg @ https://files.example/pkg.whl?access_token=hunter2", "access_token=****"),
        (
            "pkg @ https://b.s3.amazonaws.com/p.whl?X-Amz-Credential=AK%2F1&X-Amz-Signature=hunter2",
            "X-Amz-Credential=****",
        ),
        ("pkg @ https://a.blob.core.windows.net/c/p.whl?sv=2022-11-02&se=2030&sig=hunter2%3D", "sig=****"),
        ("-f https://host/wheels/?token=hunter2", "token=****"),
        ("p @ git+https://ghp_R3alT0kenR3alT0kenR3alT0kenR3alT0ken12:x-oauth-basic@github.com/o/p.git", "****:****@"),
        ("p @ https://files.example/p.whl?a=1;token=hunter2", "token=****"),
        ("p @ https://files.example/p.whl#token=hunter2", "token=****"),
        ("p @ https://files.example/p.whl?code=hunter2hunter2hunter2X9", "code=****"),
    ],
)
def test_credentials_in_a_url_are_refused_and_never_repeated(line, shown):
    (problem,) = parse(line + "\n").problems
    assert f"a URL holds a credential ({shown})" in problem[1]
    assert "hunter2" not in problem[1] and "R3alT0ken" not in problem[1]


@pytest.mark.parametrize(
    "text, line",
    [
        ("# old: --index-url https://me:hunter2@pypi.corp/simple\nnumpy==2.4.6\n", 1),
        ("six==1.17.0\nnumpy==2.4.6  # from https://me:hunter2@pypi.corp/simple\n", 2),
    ],
)
def test_credentials_in_a_comment_are_refused_too(text, line):
    # The file ships verbatim, so a comment would carry them into the bundle.
    (problem,) = parse(text).problems
    assert problem[0] == line and "a comment holds a URL with a credential (****:****@)" in problem[1]
    assert "hunter2" not in problem[1]


@pytest.mark.parametrize(
    "text",
    [
        "pkg @ git+ssh://git@github.com/o/r.git\n",
        "-e git+ssh://git@github.com/o/r.git#egg=r\n",
        "numpy==2.4.6\n# was: git+ssh://git@github.com/o/r.git\n",
    ],
)
def test_an_ssh_user_name_is_not_a_credential(text):
    assert parse(text).problems == ()


@pytest.mark.parametrize(
    "line",
    [
        "-i https://${USER}:${TOKEN}@pypi.example/simple",
        "--index-url https://${TOKEN}@pypi.example/simple",
        "pkg @ https://files.example/pkg.whl?access_token=${TOKEN}",
        "pkg @ git+ssh://git@github.com/x/pkg.git",
        "pkg @ https://files.example/pkg-1.0.tar.gz?version=1&format=tar#sha256=abc",
        "--extra-index-url https://pypi.example/simple?keyword=ml",
        "lib @ git+https://myorg@dev.azure.com/myorg/proj/_git/lib#egg=lib",  # Azure DevOps' own clone URL
        "pkg @ https://files.example/pkg.whl?code=release",
        "# see https://login.example/authorize?client_id=abc&code=xyz",
    ],
)
def test_urls_without_a_literal_credential_pass(line):
    assert parse(line + "\n").problems == ()


def test_credentials_from_environment_variables_are_fine():
    parsed = parse("--extra-index-url https://${PIP_USER}:${PIP_TOKEN}@pypi.example/simple\nsix==1.17.0\n")
    assert parsed.problems == ()


def test_collect_follows_includes_relative_to_each_file(tmp_path):
    (tmp_path / "env" / "more").mkdir(parents=True)
    (tmp_path / "env" / "requirements-prod.txt").write_text("-r more/base.txt\n-c pins.txt\nsix\n")
    (tmp_path / "env" / "more" / "base.txt").write_text("-r ../pins.txt\nnumpy==2.4.6\n")  # relative to more/
    (tmp_path / "env" / "pins.txt").write_text("requests==2.32.0\n-r requirements-prod.txt\n")  # a cycle
    found = collect(tmp_path / "env" / "requirements-prod.txt")
    assert [rel for rel, _ in found.files] == ["requirements-prod.txt", "more/base.txt", "pins.txt"]
    assert found.unpinned == ("six",)


def test_an_included_symlink_ships_under_the_name_the_include_line_uses(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "base.txt").write_text("six==1.17.0\n")
    (tmp_path / "base.txt").symlink_to(tmp_path / "common" / "base.txt")
    (tmp_path / "requirements.txt").write_text("-r base.txt\n")
    found = collect(tmp_path / "requirements.txt")
    assert [rel for rel, _ in found.files] == ["requirements.txt", "base.txt"]


def test_collect_names_the_file_and_line_of_a_problem(tmp_path):
    (tmp_path / "requirements.txt").write_text("-r base.txt\n")
    (tmp_path / "base.txt").write_text("six\n\n./vendored/pkg\n")
    with pytest.raises(RequirementsError, match=r"base\.txt:3: \./vendored/pkg is a path on this machine"):
        collect(tmp_path / "requirements.txt")


@pytest.mark.parametrize("find_links", ["-f ./wheels", "--find-links=file:///srv/wheels"])
def test_a_local_find_links_folder_needs_vendoring(tmp_path, find_links):
    (tmp_path / "requirements.txt").write_text(f"{find_links}\nmypkg==1.0\n")
    with pytest.raises(RequirementsError, match="save with --vendor"):
        collect(tmp_path / "requirements.txt")
    assert collect(tmp_path / "requirements.txt", vendored=True).unpinned == ()


def test_save_ships_included_files_where_the_includes_find_them(project, cli):
    (project / "env" / "constraints").mkdir(parents=True)
    (project / "env" / "requirements.txt").write_text("-r base.txt\n-c constraints/pins.txt\nsix==1.17.0\n")
    (project / "env" / "base.txt").write_text("numpy==2.4.6\n")
    (project / "env" / "constraints" / "pins.txt").write_text("packaging==24.0\n")
    (project / "env" / "unrelated.txt").write_text("not included, not shipped\n")
    result = cli("save", "out", "--model", "m", "--entry-script", "score.py", "--requirements", "env/requirements.txt")
    assert result.exit_code == 0, result.output
    shipped = sorted(
        p.relative_to(project / "out/environment").as_posix()
        for p in (project / "out/environment").rglob("*")
        if p.is_file()
    )
    assert shipped == ["base.txt", "constraints/pins.txt", "requirements.txt"]
    assert (project / "out/environment/base.txt").read_text() == "numpy==2.4.6\n"
    manifest = json.loads((project / "out/bundle.json").read_text())
    assert {"environment/base.txt", "environment/constraints/pins.txt"} <= set(manifest["files"])
    dockerfile = (project / "out/Dockerfile").read_text()
    assert "COPY environment/ /tmp/bundler/environment/" in dockerfile
    assert "--requirement /tmp/bundler/environment/requirements.txt" in dockerfile
    assert "note: not pinned" not in result.output
    assert cli("verify", "out").exit_code == 0


def test_save_notes_unpinned_requirements(project, cli):
    (project / "requirements.txt").write_text("six\nrequests>=2\nnumpy==2.4.6\n")
    result = cli("save", "out", "--model", "m", "--entry-script", "score.py", "--requirements", "requirements.txt")
    assert result.exit_code == 0, result.output
    assert "note: not pinned to one version: requests, six;" in result.output


def test_vendoring_fixes_every_version_so_there_is_no_note(project, cli, monkeypatch):
    def no_download(files, python, platform, dest, index=()):
        return ()  # the network is the vendor tests' business; here only the wiring counts

    monkeypatch.setattr("bundler.vendor.download", no_download)
    (project / "requirements.txt").write_text("-f ./local-wheels\nsix\n")
    result = cli(
        "save", "out", "--model", "m", "--entry-script", "score.py", "--requirements", "requirements.txt", "--vendor"
    )
    assert result.exit_code == 0, result.output
    assert "note: not pinned" not in result.output


def test_serve_checks_the_requirements_of_included_files(project, cli):
    from bundler.serve import missing_requirements

    (project / "requirements.txt").write_text("-r base.txt\n")
    (project / "base.txt").write_text("surely-not-installed-pkg==1.0\n")
    assert (
        cli("save", "out", "--model", "m", "--entry-script", "score.py", "--requirements", "requirements.txt").exit_code
        == 0
    )
    assert "surely-not-installed-pkg" in missing_requirements(project / "out")


def test_a_byte_order_mark_does_not_hide_the_first_line(tmp_path):
    (tmp_path / "requirements.txt").write_bytes(b"\xef\xbb\xbf-r base.txt\n")
    (tmp_path / "base.txt").write_text("six==1.17.0\n")
    found = collect(tmp_path / "requirements.txt")
    assert [path for path, _ in found.files] == ["requirements.txt", "base.txt"]


@pytest.mark.parametrize(
    "text, hashed",
    [
        ("six==1.17.0 --hash=sha256:abc\n", True),
        ("six==1.17.0 \\\n    --hash=sha256:abc\n", True),
        ("--require-hashes\nsix==1.17.0\n", True),
        ("six==1.17.0\n# --hash=sha256:abc in a comment\n", False),
        ("hashlib-tools==1.0\n", False),
    ],
)
def test_hashes_are_noticed(text, hashed):
    assert parse(text).hashed is hashed


def test_an_included_files_hashes_count(tmp_path):
    (tmp_path / "requirements.txt").write_text("-r base.txt\n")
    (tmp_path / "base.txt").write_text("six==1.17.0 --hash=sha256:abc\n")
    assert collect(tmp_path / "requirements.txt").hashed


def test_a_top_file_that_includes_a_requirements_txt_keeps_its_own_name(tmp_path, cli, monkeypatch):
    # requirements/prod.txt: -r requirements.txt is a common layout; both ship, neither renamed over the other.
    from bundler.serve import missing_requirements

    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "prod.txt").write_text("-r requirements.txt\nsurely-not-installed-pkg==1.0\n")
    (tmp_path / "env" / "requirements.txt").write_text("six==1.17.0\n")
    (tmp_path / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    (tmp_path / "m.bin").write_bytes(b"m")
    monkeypatch.chdir(tmp_path)
    cli("register", "m.bin", "--name", "m")
    result = cli("save", "out", "--model", "m", "--entry-script", "score.py", "--requirements", "env/prod.txt")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert (out / "environment/prod.txt").read_text() == (tmp_path / "env/prod.txt").read_text()
    assert (out / "environment/requirements.txt").read_text() == "six==1.17.0\n"
    assert "--requirement /tmp/bundler/environment/prod.txt" in (out / "Dockerfile").read_text()
    assert json.loads((out / "bundle.json").read_text())["inputs"]["requirements_file"] == "environment/prod.txt"
    assert "surely-not-installed-pkg" in missing_requirements(out)  # serve reads the file the image installs


def test_a_template_placeholder_in_place_of_a_version_is_a_problem():
    (problem,) = parse("azureml-core=={{latest-pypi-version}}\n").problems
    assert problem[0] == 1 and "template placeholder, {{latest-pypi-version}}, not a version" in problem[1]
