"""Conda environment files: read as conda reads them, installed by the builder that can, and
carried across an air gap as a local channel."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import conda_channel
import pytest

from bundler import conda
from bundler.conda import CondaFileError

GOOD_SCRIPT = "def init():\n    pass\ndef run(raw):\n    return raw\n"
AZURE_SAMPLE = """name: project_environment
channels: [conda-forge]
dependencies:
  - python=3.10
  - pip
  - scikit-learn=1.3
  - numpy>=1.24
  - pip:
    - azureml-defaults
    - inference-schema[numpy-support]==1.8
"""


@pytest.mark.parametrize(
    "text, name, channel, version, build, fuzzy",
    [
        ("numpy", "numpy", None, None, None, False),
        ("numpy=1.26", "numpy", None, "1.26", None, True),
        ("numpy==1.26.4", "numpy", None, "==1.26.4", None, False),
        ("numpy>=1.24,<2", "numpy", None, ">=1.24,<2", None, False),
        ("numpy 1.26.*", "numpy", None, "1.26.*", None, False),
        ("numpy=1.26.4=py311h64a7726_0", "numpy", None, "1.26.4", "py311h64a7726_0", True),
        ("numpy 1.26.4 py311_0", "numpy", None, "1.26.4", "py311_0", False),
        ("pytorch::pytorch=2.1", "pytorch", "pytorch", "2.1", None, True),
        ("conda-forge::jq", "jq", "conda-forge", None, None, False),
        ("Scikit-Learn", "scikit-learn", None, None, None, False),
    ],
)
def test_match_specs_are_read_as_conda_reads_them(text, name, channel, version, build, fuzzy):
    spec = conda.match_spec(text, 3, "f.yml")
    assert (spec.name, spec.channel, spec.version, spec.build, spec.fuzzy) == (name, channel, version, build, fuzzy)


def test_the_azure_sample_translates_to_pip_exactly():
    environment = conda.parse(AZURE_SAMPLE, "conda_dependencies.yml")
    translation = conda.translate(environment)
    assert translation.blocker is None
    assert [pip for pip, _ in translation.requirements] == ["scikit-learn==1.3.*", "numpy>=1.24"]
    assert environment.python_versions == ("3.10",) and environment.name == "project_environment"
    assert [line for line, _ in environment.pip] == ["azureml-defaults", "inference-schema[numpy-support]==1.8"]


@pytest.mark.parametrize(
    "dependency, why",
    [
        ("mkl", "mkl has no PyPI twin"),
        ("cudatoolkit=11.8", "cudatoolkit has no PyPI twin"),
        ("numpy=1.26.4=py311_0", "asks for a build"),
        ("pytorch::pytorch=2.1", "comes from the channel pytorch"),
        ("numpy 1.2|1.3", "a version spec pip does not read"),
    ],
)
def test_what_pip_cannot_stand_in_for_picks_conda(dependency, why):
    environment = conda.parse(f"dependencies:\n  - python=3.11\n  - {dependency}\n", "e.yml")
    spec, reason = conda.translate(environment).blocker
    assert spec.line == 3 and why in reason


def test_crlf_no_final_newline_no_name_and_comments_are_read():
    environment = conda.parse(
        "channels:\r\n  - defaults\r\ndependencies:\r\n  - pandas=2.1  # pinned\r\n  - pip", "w.yml"
    )
    assert environment.name is None and [s.name for s in environment.dependencies] == ["pandas", "pip"]
    assert environment.dependencies[0].version == "2.1"


def test_prefix_and_variables_are_read_and_the_prefix_is_never_used(project, cli):
    text = "prefix: /home/me/miniconda3/envs/x\nvariables:\n  OMP_NUM_THREADS: 1\ndependencies:\n  - numpy\n"
    assert conda.parse(text, "p.yml").variables == (("OMP_NUM_THREADS", "1"),)
    (project / "env.yml").write_text(text)
    assert save(cli, "--conda-file", "env.yml").exit_code == 0
    dockerfile = (project / "out" / "Dockerfile").read_text()
    assert 'OMP_NUM_THREADS="1"' in dockerfile  # nothing activates the environment in the image: ENV does
    assert "/home/me" not in dockerfile and "/home/me" not in (project / "out" / "bundle.json").read_text()


def save(cli, *args):
    return cli("save", "out", "--model", "m", "--entry-script", "score.py", *args)


def test_a_conda_file_saves_with_the_builder_it_needs_and_says_why(project, cli):
    (project / "env.yml").write_text(AZURE_SAMPLE)
    result = save(cli, "--conda-file", "env.yml")
    assert result.exit_code == 0
    assert "environment: pip builder (every conda package in the file has an exact PyPI twin)" in result.output
    assert (project / "out" / "environment" / "env.yml").read_text() == AZURE_SAMPLE  # verbatim
    assert "ARG BASE_IMAGE=python:3.10-slim" in (project / "out" / "Dockerfile").read_text()
    (project / "env.yml").write_text(AZURE_SAMPLE.replace("  - pip\n", "  - pip\n  - mkl\n", 1))
    result = save(cli, "--conda-file", "env.yml")
    assert result.exit_code == 0 and "environment: conda builder (mkl has no PyPI twin" in result.output
    dockerfile = (project / "out" / "Dockerfile").read_text()
    assert (
        "ARG BASE_IMAGE=debian:bookworm-slim" in dockerfile and "FROM ${MICROMAMBA_IMAGE} AS environment" in dockerfile
    )
    (project / "env.yml").write_text(AZURE_SAMPLE)
    result = save(cli, "--conda-file", "env.yml", "--conda-builder", "conda")
    assert 'environment: conda builder (asked for: conda_builder "conda")' in result.output


@pytest.mark.parametrize(
    ("python_line", "builder_specs"),
    [
        ("  - python=3.10.12\n", " pip"),  # pinned: the file's
        ("  - python\n", " python=3.11 pip"),  # any: the image's
        ("  - python>=3.9\n", " python=3.11 pip"),  # a range that admits it
        ("  - python>=3.11,<3.12\n", " pip"),  # a range of one
    ],
)
def test_the_conda_builder_installs_one_python(project, cli, python_line, builder_specs):
    (project / "env.yml").write_text(f"dependencies:\n{python_line}  - mkl\n")
    assert save(cli, "--conda-file", "env.yml").exit_code == 0
    dockerfile = (project / "out" / "Dockerfile").read_text()
    assert f"--file /tmp/bundler/environment/env.yml{builder_specs} \\\n" in dockerfile


@pytest.mark.parametrize(
    ("channels", "named"),
    [("", True), ("channels:\n  - nodefaults\n", True), ("channels:\n  - defaults\n", False)],
)
def test_the_conda_builder_names_conda_forge_when_the_file_lists_no_channel(project, cli, channels, named):
    (project / "env.yml").write_text(f"{channels}dependencies:\n  - python=3.11\n  - mkl\n")
    assert save(cli, "--conda-file", "env.yml").exit_code == 0
    dockerfile = (project / "out" / "Dockerfile").read_text()
    assert ("        --channel conda-forge \\\n" in dockerfile) is named


def test_the_conda_builder_seals_its_prefix_and_tells_micromamba_the_cuda_of_the_base_image(project, cli):
    (project / "env.yml").write_text("dependencies:\n  - python=3.11\n  - mkl\n")
    assert save(cli, "--conda-file", "env.yml", "--base-image", "nvidia/cuda:12.4.1-runtime-ubuntu22.04").exit_code == 0
    dockerfile = (project / "out" / "Dockerfile").read_text()
    assert "RUN env CONDA_OVERRIDE_CUDA=12.4 micromamba install --yes --name base \\\n" in dockerfile
    assert "\nUSER 0:0\nRUN chmod -R go-w /opt/conda\nUSER 57439:57439\n" in dockerfile
    assert save(cli, "--conda-file", "env.yml").exit_code == 0
    assert "CONDA_OVERRIDE_CUDA" not in (project / "out" / "Dockerfile").read_text()


@pytest.mark.parametrize(
    ("name", "text", "flags", "refusal"),
    [
        ("env.txt", "dependencies:\n  - mkl\n", (), "env.txt: micromamba reads a conda file by its extension"),
        (
            "env.yml",
            "dependencies:\n  - python=3.11\n  - conda-forge::mkl\n",
            ("--vendor",),
            "env.yml:3: 'conda-forge::mkl' names its channel, but a vendored build installs from the bundle's channel",
        ),
    ],
)
def test_what_micromamba_could_not_do_with_a_conda_file_is_one_line(project, cli, name, text, flags, refusal):
    (project / name).write_text(text)
    result = save(cli, "--conda-file", name, *flags)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and refusal in lines[0], result.output
    assert not (project / "out").exists()


@pytest.mark.parametrize(
    ("python_line", "refusal"),
    [
        ("  - python=3.8\n", "env.yml:2: Python 3.8 is too old: the scoring server needs Python 3.10 or newer"),
        ("  - python>=3.6,<3.9\n", "env.yml:2: 'python>=3.6,<3.9' does not admit Python 3.11, the image's"),
        ("  - python=3.12\n", "env.yml:2: the conda file asks for Python 3.12, but [environment] python is 3.11"),
        ("  - python 3.10|3.11\n", "env.yml:2: 'python 3.10|3.11' is not a Python version bundler reads"),
    ],
)
def test_a_conda_file_python_the_server_cannot_run_on_is_one_line(project, cli, python_line, refusal):
    (project / "env.yml").write_text(f"dependencies:\n{python_line}  - click\n")
    (project / "bundler.toml").write_text('[environment]\npython = "3.11"\n')
    result = save(cli, "--conda-file", "env.yml")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and refusal in lines[0], result.output
    assert not (project / "out").exists()


def test_a_conda_file_shipping_a_pip_include_and_serve_checking_it(project, cli):
    (project / "env.yml").write_text("dependencies:\n  - python=3.11\n  - click\n  - pip:\n    - -r extra.txt\n")
    (project / "extra.txt").write_text("jinja2\n")
    assert save(cli, "--conda-file", "env.yml").exit_code == 0
    derived = (project / "out" / "environment" / "requirements-from-conda.txt").read_text()
    assert "click  # conda: click (line 3)" in derived and "-r extra.txt" in derived
    assert (project / "out" / "environment" / "extra.txt").read_text() == "jinja2\n"

    from bundler.serve import missing_requirements

    assert missing_requirements(project / "out") == []  # click and jinja2 are here, as gunicorn is
    (project / "extra.txt").write_text("nosuchpkg-xyz\n")
    assert save(cli, "--conda-file", "env.yml").exit_code == 0
    assert missing_requirements(project / "out") == ["nosuchpkg-xyz"]


def test_serve_cannot_check_what_only_conda_installs(project, cli):
    from bundler import layout
    from bundler.serve import missing_requirements, unchecked_packages

    (project / "env.yml").write_text("dependencies:\n  - python=3.11\n  - mkl\n  - click\n  - nosuchpkg-xyz==1.0\n")
    assert save(cli, "--conda-file", "env.yml").exit_code == 0
    manifest = layout.read_manifest(project / "out")
    assert manifest.builder == "conda" and manifest.conda_file == "environment/env.yml"
    assert unchecked_packages(project / "out", manifest) == ("mkl", "nosuchpkg-xyz")
    assert missing_requirements(project / "out") == []


def test_serve_checks_a_conda_builder_bundles_twins_as_pip_would_pin_them(project, cli):
    from importlib import metadata

    from bundler.serve import missing_requirements

    (project / "env.yml").write_text("dependencies:\n  - python=3.11\n  - mkl\n  - click==0.1\n  - jinja2=3\n")
    assert save(cli, "--conda-file", "env.yml").exit_code == 0
    # click==0.1 is an exact pin; jinja2=3 is any 3.*, which pip's ==3.* leaves unpinned
    assert missing_requirements(project / "out") == [f"click==0.1 (have {metadata.version('click')})"]


def test_serve_follows_the_pip_list_includes_of_a_conda_builder_bundle(project, cli):
    from bundler.serve import missing_requirements

    (project / "env.yml").write_text("dependencies:\n  - python=3.11\n  - mkl\n  - pip:\n    - -r extra.txt\n")
    (project / "extra.txt").write_text("click\nnosuchpkg-xyz\n")
    assert save(cli, "--conda-file", "env.yml").exit_code == 0
    assert missing_requirements(project / "out") == ["nosuchpkg-xyz"]  # from extra.txt, as pip would install it


def test_serve_on_a_damaged_conda_file_is_one_line(project, cli):
    (project / "env.yml").write_text("dependencies:\n  - python=3.11\n  - mkl\n")
    assert save(cli, "--conda-file", "env.yml").exit_code == 0
    (project / "out" / "environment" / "env.yml").write_bytes(b"dependencies:\n  - caf\xe9\n")
    result = cli("serve", "out")
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert "env.yml: cannot read the bundle's conda file" in lines[0] and "save the bundle again" in lines[0]


# -- air gap for the conda builder --------------------------------------------------------------


def test_vendoring_a_conda_environment_carries_a_local_channel_that_installs_offline(project, cli, tmp_path):
    """Solve, download (checked against the channel's sha256), index: with py-rattler, against
    a channel served on 127.0.0.1. What micromamba then does with it in an image cannot be run
    here (no micromamba, no conda-forge); that the bundle's channel alone installs the solved
    environment is proven with rattler's own installer, offline."""
    import rattler

    channel = tmp_path / "served"
    conda_channel.package(channel, "python", "3.11.99")  # test data, named as the conda file asks
    conda_channel.package(channel, "pip", "24.0", depends=["python"])
    conda_channel.package(channel, "pkg-b", "1.0", files={"share/pkg-b/data.txt": "b\n"})
    conda_channel.package(channel, "pkg-a", "2.0", depends=["pkg-b >=1"], files={"share/pkg-a/data.txt": "a\n"})
    conda_channel.index(channel)
    with conda_channel.served(channel) as url:
        env = f"channels:\n  - {url}\n  - nodefaults\ndependencies:\n  - python=3.11\n  - pip\n  - pkg-a\n"
        (project / "env.yml").write_text(env)
        result = save(cli, "--conda-file", "env.yml", "--vendor")
    assert result.exit_code == 0, result.output
    bundled = project / "out" / "environment" / "conda-channel"
    packages = sorted(p.name for p in (bundled / "noarch").glob("*.tar.bz2"))
    assert packages == ["pip-24.0-0.tar.bz2", "pkg-a-2.0-0.tar.bz2", "pkg-b-1.0-0.tar.bz2", "python-3.11.99-0.tar.bz2"]
    for name in packages:
        assert (
            hashlib.sha256((bundled / "noarch" / name).read_bytes()).digest()
            == hashlib.sha256((channel / "noarch" / name).read_bytes()).digest()
        )
    assert (bundled / "noarch" / "repodata.json").is_file() and (bundled / "linux-64" / "repodata.json").is_file()
    dockerfile = (project / "out" / "Dockerfile").read_text()
    assert "--offline --override-channels --channel file:///tmp/bundler/environment/conda-channel" in dockerfile
    assert any(p.name.startswith("gunicorn-") for p in (project / "out" / "environment" / "wheels").iterdir())
    assert cli("verify", "out").exit_code == 0

    # The served channel is gone: the bundle's own channel must be enough.
    records = asyncio.run(
        rattler.solve(
            [f"file://{bundled}"],
            ["python=3.11", "pip", "pkg-a"],
            platforms=["linux-64", "noarch"],
            timestamp_policy="allow-missing",
        )
    )
    prefix = tmp_path / "prefix"
    asyncio.run(rattler.install(records, target_prefix=prefix, show_progress=False))
    assert (prefix / "share" / "pkg-a" / "data.txt").read_text() == "a\n"
    assert (prefix / "share" / "pkg-b" / "data.txt").read_text() == "b\n"


def test_an_unsolvable_conda_environment_is_one_line(project, cli, tmp_path):
    channel = tmp_path / "served"
    conda_channel.package(channel, "pkg-b", "1.0")
    conda_channel.index(channel)
    with conda_channel.served(channel) as url:
        (project / "env.yml").write_text(f"channels:\n  - {url}\ndependencies:\n  - mkl\n")
        result = save(cli, "--conda-file", "env.yml", "--vendor")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "cannot be solved for linux-64" in lines[0]
    assert not (project / "out").exists()


def test_a_conda_file_error_names_file_and_line(tmp_path):
    with pytest.raises(CondaFileError, match=r"e.yml:3: a dependency must be a string"):
        conda.parse("dependencies:\n  - numpy\n  - {a: 1}\n", "e.yml")
    path = tmp_path / "e.yml"
    path.write_text("dependencies:\n  - pip:\n    - ./local/pkg\n")
    with pytest.raises(CondaFileError, match=r"e.yml:3: pip: ./local/pkg is a path on this machine"):
        conda.collect(path)
    assert Path(path).exists()


# -- real files, as found -------------------------------------------------------------------------

REAL_FILES = Path(__file__).parent / "conda_files"  # from Microsoft's repositories: see SOURCES.md there
# file number -> (what save does with it as it is, and once its python line says python=3.11): the builder
# auto picks, or how the one line refusing it starts after FILE. Most pin a Python older than the
# scoring server runs (3.10); 20, 22: a template placeholder {{latest-pypi-version}} in place of a
# version; 23: an include outside the folder.
# fmt: off
REAL_OUTCOMES = {
    "01": ("conda", "conda"),
    "02": (":10: Python 3.7 is too old", "conda"),
    "03": (":6: 'python>=3.5.2,<3.6.8' does not admit Python 3.11", "conda"),
    "04": (":3: Python 3.6 is too old", "pip"),
    "05": ("pip", "pip"),
    "06": (":4: Python 3.8 is too old", "pip"),
    "07": ("pip", "pip"),
    "08": ("pip", "pip"),
    "09": (":7: Python 3.6 is too old", "conda"),
    "10": (":5: Python 3.7 is too old", "conda"),
    "11": (":21: Python 3.7 is too old", "conda"),  # lightgbm: its wheel needs libgomp
    "12": (":6: Python 3.8 is too old", "pip"),
    "13": ("pip", "pip"),
    "14": (":6: Python 3.8 is too old", "pip"),
    "15": (":6: Python 3.7 is too old", "conda"),
    "16": (":6: Python 3.7 is too old", "conda"),
    "17": (":4: Python 3.6 is too old", "pip"),
    "18": (":6: Python 3.8 is too old", "conda"),
    "19": (":7: Python 3.7 is too old", "pip"),
    "20": (":23: pip: azureml-core==", ":23: pip: azureml-core=="),
    "21": ("conda", "conda"),
    "22": (":17: pip: azureml-core==", ":17: pip: azureml-core=="),
    "23": (":11: pip: includes assets/evaluation_on_cloud/", ":11: pip: includes assets/evaluation_on_cloud/"),
    "24": (":52: Python 3.8 is too old", "conda"),
    "25": (":56: Python 3.7 is too old", "conda"),
    "26": (":11: Python 3.5 is too old", "conda"),
    "27": (":6: Python 3.7 is too old", "conda"),
    "28": (":19: Python 3.6 is too old", "conda"),
    "29": (":6: Python 3.6 is too old", "conda"),
}
# fmt: on


REAL_NAMES = {path.name[:2]: path.name for path in REAL_FILES.glob("*.yml")}


def test_every_real_file_has_an_outcome():
    assert sorted(REAL_NAMES) == sorted(REAL_OUTCOMES) and len(REAL_OUTCOMES) >= 20


def test_the_readme_counts_what_the_real_files_do():
    as_is = [outcome for outcome, _ in REAL_OUTCOMES.values()]
    fixed = [outcome for _, outcome in REAL_OUTCOMES.values()]
    too_old = sum(":" in o and ("too old" in o or "does not admit" in o) for o in as_is)
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert (
        f"{as_is.count('pip') + as_is.count('conda')} save as they are ({as_is.count('pip')} with the pip builder, "
        f"{as_is.count('conda')} with the conda builder); {too_old} are refused for their Python" in readme
    )
    assert f"{fixed.count('pip')} save with the pip builder and {fixed.count('conda')} with the conda builder" in readme


def with_python_311(source: bytes) -> bytes:
    """The file as a user would fix it after save names its old Python: python=3.11 on that line."""
    spec = conda.parse(source.decode(), "x").python
    if spec is None or spec.version is None:
        return source
    lines = source.split(b"\n")
    lines[spec.line - 1] = lines[spec.line - 1].replace(spec.text.encode(), b"python=3.11")
    return b"\n".join(lines)


@pytest.mark.parametrize("fixed", [False, True], ids=["as-is", "python-3.11"])
@pytest.mark.parametrize("name", sorted(REAL_NAMES.values()))
def test_a_real_conda_file_saves_with_its_builder_or_is_refused_in_one_line(project, cli, name, fixed):
    source = REAL_FILES.joinpath(name).read_bytes()
    source = with_python_311(source) if fixed else source
    (project / name).write_bytes(source)
    result = save(cli, "--conda-file", name)
    expected = REAL_OUTCOMES[name[:2]][fixed]
    if expected in ("pip", "conda"):
        assert result.exit_code == 0, result.output
        assert f"environment: {expected} builder (" in result.output
        # Verbatim, CRLF and all, but for a prefix: line (a path on the machine that exported it).
        kept = b"".join(line for line in source.splitlines(keepends=True) if not line.startswith(b"prefix:"))
        assert (project / "out" / "environment" / name).read_bytes() == kept
        assert cli("verify", "out").exit_code == 0
    else:
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith("bundler: error: ") and f"{name}{expected}" in lines[0]
        assert not (project / "out").exists()
