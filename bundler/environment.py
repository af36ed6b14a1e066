"""The Python environment an image installs, as data: what stage 1 of the Dockerfile copies
and the commands it runs, in order. PURE.

The Dockerfile template loops over the steps (each a program and its options, a line each),
and `--vendor` downloads what they would install, so both see the same runs with the same
files. Each builder makes an EnvironmentBuild: "pip" (a venv on the base image, installed by
pip) and "conda" (micromamba creates a prefix from a conda file, in micromamba's own image;
stage 2 copies that prefix onto a base image that needs no Python of its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from bundler import conda, imports, layout, requirements
from bundler.config import Config
from bundler.entries import Copied, FileEntry, Generated
from bundler.requirements import RequirementFiles

# The reference server, for entry scripts that need raw HTTP access (engine "azureml").
AZUREML_SERVER_REQUIREMENT = "azureml-inference-server-http==1.5.1"
# What a script decorated with @input_schema imports; Azure ML's server brings it along, so
# bundler's does too when the requirements do not name it.
INFERENCE_SCHEMA_REQUIREMENT = "inference-schema==1.8"
# The conda builder: micromamba, pinned, from its official image (--build-arg MICROMAMBA_IMAGE=...),
# and the base image the environment is copied onto: conda brings its own Python.
MICROMAMBA_IMAGE = "mambaorg/micromamba:1.5.10"
CONDA_BASE_IMAGE = "debian:bookworm-slim"
# micromamba's image: its user (numeric, as the image documents it) owns its base environment,
# /opt/conda, which is installed into without root and copied whole into stage 2.
MICROMAMBA_USER = "57439:57439"
CONDA_PREFIX = "/opt/conda"
CONDA_CHANNEL_DIR = f"{layout.ENVIRONMENT_DIR}/conda-channel"  # --vendor: the solved packages, indexed
PIP_OPTIONS = ("--no-cache-dir", "--disable-pip-version-check")


@dataclass(frozen=True)
class RequirementsFile:
    bundle_path: str  # e.g. environment/requirements.txt
    build_path: str  # where stage 1 reads it, e.g. /tmp/bundler/environment/requirements.txt

    @classmethod
    def at(cls, bundle_path: str) -> RequirementsFile:
        return cls(bundle_path, layout.build_path(bundle_path))


@dataclass(frozen=True)
class Step:
    """One command of stage 1: its program and first options (one line), then its other options
    (a line each). A pip step also says which requirement files it installs (vendoring reads them)."""

    kind: str  # "pip", "conda-install", "conda-clean"
    program: tuple[str, ...]
    arguments: tuple[tuple[str, ...], ...] = ()
    requirements: tuple[RequirementsFile, ...] = ()


@dataclass(frozen=True)
class EnvironmentBuild:
    """Stage 1 of the Dockerfile: which builder, what it copies first, what it runs."""

    kind: str  # the builder: "pip" or "conda"
    reason: str  # why this builder, for `save` to say
    copies: tuple[tuple[str, ...], ...]  # COPY's words: [--chown=...,] bundle path, stage-1 path
    steps: tuple[Step, ...]
    prefix: str  # the folder stage 2 copies and puts first on PATH: the venv, or the conda prefix
    python_command: str  # the image's Python, for commands run before PATH is set
    vendored: bool  # the packages ship in the bundle: the build needs no network
    python: str  # the image's Python version, e.g. "3.11": vendored packages are chosen for it
    platform: str  # e.g. "linux/amd64"
    # pip: the user's requirements carry hashes, and pip then demands hashes of everything in
    # the same run, so the server's own requirements get a run of their own, first.
    hashed: bool = False
    builder_image: str | None = None  # conda: the image stage 1 runs in (micromamba's)


def pip_install(pip: str, files: tuple[RequirementsFile, ...], wheels: str | None) -> Step:
    """`pip install` of requirement files, offline from vendored wheels when there are some."""
    offline = (("--no-index", "--find-links", wheels),) if wheels else ()
    arguments = offline + tuple(("--requirement", f.build_path) for f in files)
    return Step("pip", (pip, "install", *PIP_OPTIONS), arguments, files)


def _copies(*options: str) -> tuple[tuple[str, ...], ...]:
    """The environment files alone: the runtime's requirements and the environment folder."""
    return (
        (*options, layout.RUNTIME_REQUIREMENTS, layout.build_path(layout.RUNTIME_REQUIREMENTS)),
        (*options, f"{layout.ENVIRONMENT_DIR}/", f"{layout.build_path(layout.ENVIRONMENT_DIR)}/"),
    )


def pip_build(
    requirements_file: str, hashed: bool, vendored: bool, python: str, platform: str, reason: str = "pip requirements"
) -> EnvironmentBuild:
    """The runtime's requirements and the user's, installed into a venv by pip."""
    runtime, user = RequirementsFile.at(layout.RUNTIME_REQUIREMENTS), RequirementsFile.at(requirements_file)
    wheels = layout.build_path(layout.WHEELS_DIR) if vendored else None
    runs = ((runtime,), (user,)) if hashed else ((runtime, user),)
    return EnvironmentBuild(
        kind="pip",
        reason=reason,
        copies=_copies(),
        steps=tuple(pip_install(f"{layout.VENV}/bin/pip", run, wheels) for run in runs),
        prefix=layout.VENV,
        python_command="python",
        vendored=vendored,
        python=python,
        platform=platform,
        hashed=hashed,
    )


def conda_build(
    conda_file: str, extra_specs: tuple[str, ...], vendored: bool, python: str, platform: str, reason: str
) -> EnvironmentBuild:
    """The conda file's environment installed by micromamba into its image's base environment,
    then the runtime's requirements by that environment's pip; caches cleaned in stage 1.
    Vendored: from the bundle's own channel, offline, and the pip: list from its wheels."""
    runtime = RequirementsFile.at(layout.RUNTIME_REQUIREMENTS)
    wheels = layout.build_path(layout.WHEELS_DIR) if vendored else None
    program: tuple[str, ...] = ("micromamba", "install", "--yes", "--name", "base")
    arguments: tuple[tuple[str, ...], ...] = (("--file", layout.build_path(conda_file), *extra_specs),)
    if vendored:  # micromamba runs pip for the pip: list: PIP_* variables keep it offline too
        program = ("env", "PIP_NO_INDEX=1", f"PIP_FIND_LINKS={wheels}", *program)
        channel = f"file://{layout.build_path(CONDA_CHANNEL_DIR)}"
        arguments = (("--offline", "--override-channels", "--channel", channel), *arguments)
    create = Step("conda-install", program, arguments)
    return EnvironmentBuild(
        kind="conda",
        reason=reason,
        copies=_copies(f"--chown={MICROMAMBA_USER}"),  # micromamba's pip writes beside the conda file
        steps=(
            create,
            pip_install(f"{CONDA_PREFIX}/bin/pip", (runtime,), wheels),
            Step("conda-clean", ("micromamba", "clean", "--all", "--yes")),
        ),
        prefix=CONDA_PREFIX,
        python_command=f"{CONDA_PREFIX}/bin/python",
        vendored=vendored,
        python=python,
        platform=platform,
        builder_image=MICROMAMBA_IMAGE,
    )


DERIVED_REQUIREMENTS = f"{layout.ENVIRONMENT_DIR}/requirements-from-conda.txt"


@dataclass(frozen=True)
class EnvironmentPlan:
    """The environment half of a plan: how stage 1 builds it and the files it needs."""

    build: EnvironmentBuild
    files: tuple[FileEntry, ...]  # under environment/
    requirements_file: str  # what bundle.json names as installed: pip's top file, or the conda file
    conda_file: str | None  # the conda file as it ships, when one was given
    base_image: str
    requirement_names: tuple[str, ...]  # the distributions the user's environment asks for
    unpinned: tuple[str, ...]  # packages a build may resolve differently each time
    variables: tuple[tuple[str, str], ...] = ()  # a conda file's variables: conda sets them on activation


def plan_environment(
    config: Config, requirement_files: RequirementFiles | None, conda_files: conda.CondaFiles | None
) -> EnvironmentPlan:
    if conda_files is not None:
        return _from_conda(config, conda_files)
    files, requirements_file = _requirement_entries(requirement_files)
    reqs = requirement_files.requirements if requirement_files else ()
    hashed = requirement_files is not None and requirement_files.hashed
    return EnvironmentPlan(
        build=pip_build(requirements_file, hashed, config.vendor, config.python, config.platform),
        files=files,
        requirements_file=requirements_file,
        conda_file=None,
        base_image=config.base_image,
        requirement_names=tuple(r.name for r in reqs),
        unpinned=requirement_files.unpinned if requirement_files and not config.vendor else (),
    )


def _requirement_entries(requirement_files: RequirementFiles | None) -> tuple[tuple[FileEntry, ...], str]:
    """The user's requirement files under environment/, and the one the image installs.

    The top file becomes environment/requirements.txt, unless it includes a file of that
    name (prod.txt: -r requirements.txt); then it keeps its own. The files it includes keep
    their paths relative to it, so its -r / -c lines resolve in the image.
    """
    if requirement_files is None:
        empty = Generated(b"# No requirements were given to bundler save.\n")
        return (FileEntry(layout.DEFAULT_REQUIREMENTS, layout.FILE_MODE, empty),), layout.DEFAULT_REQUIREMENTS
    (top_name, top), *included = requirement_files.files
    top_path = layout.DEFAULT_REQUIREMENTS
    if any(rel == PurePosixPath(layout.DEFAULT_REQUIREMENTS).name for rel, _ in included):
        top_path = f"{layout.ENVIRONMENT_DIR}/{top_name}"
    entries = [FileEntry(top_path, layout.FILE_MODE, Copied(top))]
    entries += [FileEntry(f"{layout.ENVIRONMENT_DIR}/{rel}", layout.FILE_MODE, Copied(path)) for rel, path in included]
    return tuple(entries), top_path


def _from_conda(config: Config, conda_files: conda.CondaFiles) -> EnvironmentPlan:
    """A conda file: installed by pip into a venv when every package has an exact PyPI twin
    (or conda_builder says "pip"), else by micromamba; either way the file ships as it is."""
    environment = conda_files.environment
    where = str(conda_files.top)
    translation = conda.translate(environment)
    python = _python_of(config, environment, where)
    conda_path = f"{layout.ENVIRONMENT_DIR}/{conda_files.top.name}"
    files = [FileEntry(conda_path, layout.FILE_MODE, Copied(conda_files.top))]
    files += [
        FileEntry(f"{layout.ENVIRONMENT_DIR}/{rel}", layout.FILE_MODE, Copied(path))
        for rel, path in conda_files.included
    ]
    pip_names = tuple(r.name for r in conda_files.pip_requirements)
    blocker = translation.blocker
    if config.conda_builder == "pip" and blocker is not None:
        spec, why = blocker
        raise conda.CondaFileError(
            f'{where}:{spec.line}: {why}, so pip cannot install it as conda would; set conda_builder = "conda" '
            '(or "auto"), or change the package'
        )
    if config.conda_builder == "conda" or blocker is not None:
        reason = 'asked for: conda_builder "conda"' if blocker is None else f"{blocker[1]} (line {blocker[0].line})"
        names = tuple(
            conda.PYPI_TWINS.get(s.name, s.name) for s in environment.dependencies if s.name not in conda.NOT_PACKAGES
        )
        return EnvironmentPlan(
            build=conda_build(
                conda_path, missing_conda_specs(environment, python), config.vendor, python, config.platform, reason
            ),
            files=tuple(files),
            requirements_file=conda_path,
            conda_file=conda_path,
            base_image=config.base_image or CONDA_BASE_IMAGE,
            requirement_names=names + pip_names,
            unpinned=() if config.vendor else _conda_unpinned(environment, conda_files),
            variables=environment.variables,
        )
    derived = _derived_requirements(conda_files, translation)
    files.append(FileEntry(DERIVED_REQUIREMENTS, layout.FILE_MODE, Generated(derived)))
    parsed = requirements.parse(derived.decode("utf-8"))
    unpinned = sorted(
        {r.name for r in parsed.requirements + conda_files.pip_requirements if not r.pinned}, key=str.lower
    )
    return EnvironmentPlan(
        build=pip_build(
            DERIVED_REQUIREMENTS,
            parsed.hashed,
            config.vendor,
            python,
            config.platform,
            "every conda package in the file has an exact PyPI twin",
        ),
        files=tuple(files),
        requirements_file=DERIVED_REQUIREMENTS,
        conda_file=conda_path,
        base_image=config.base_image or f"python:{python}-slim",
        requirement_names=tuple(r.name for r in parsed.requirements) + pip_names,
        unpinned=() if config.vendor else tuple(unpinned),
        variables=environment.variables,
    )


def _python_of(config: Config, environment: conda.CondaEnvironment, where: str) -> str:
    """X.Y of the image's Python: the conda file's when it pins one, else [environment] python."""
    pinned = environment.python_version()
    if pinned and config.python_given and pinned != config.python:
        raise conda.CondaFileError(
            f"{where}:{environment.python.line}: the conda file asks for Python {pinned}, but [environment] "
            f"python is {config.python}; keep one of the two"
        )
    return pinned or config.python


def missing_conda_specs(environment: conda.CondaEnvironment, python: str) -> tuple[str, ...]:
    """What the server needs that the conda file does not ask for: Python, and pip to install the server."""
    names = {spec.name for spec in environment.dependencies}
    return tuple(spec for name, spec in (("python", f"python={python}"), ("pip", "pip")) if name not in names)


def _conda_unpinned(environment: conda.CondaEnvironment, conda_files: conda.CondaFiles) -> tuple[str, ...]:
    loose = {
        s.name
        for s in environment.dependencies
        if s.name not in conda.NOT_PACKAGES
        and not s.build
        and not (s.version and s.version.startswith("==") and "*" not in s.version)
    }
    loose |= {r.name for r in conda_files.pip_requirements if not r.pinned}
    return tuple(sorted(loose, key=str.lower))


def _derived_requirements(conda_files: conda.CondaFiles, translation: conda.Translation) -> bytes:
    """The pip requirements a conda file stands for, readable: where each line came from."""
    name = conda_files.top.name
    lines = [
        f"# Derived by bundler save from {name}. Every conda package in it has an exact",
        '# PyPI twin, so pip installs them into a venv (conda builder "pip"). Generated:',
        "# edit the conda file and save again, rather than this file.",
    ]
    lines += [
        f"{requirement}  # conda: {spec.text} (line {spec.line})" for requirement, spec in translation.requirements
    ]
    if conda_files.environment.pip:
        lines.append(f"# The pip: list of {name}, as it is:")
        lines += [line for line, _ in conda_files.environment.pip]
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class ServerRequirements:
    """runtime/requirements.txt as this bundle's image installs it."""

    text: bytes
    names: tuple[str, ...]  # the distributions it requires
    added: tuple[str, ...]  # lines added for this entry script (inference-schema)


def server_requirements(
    bundled: bytes, engine: str, uses_inference_schema: bool, user_requirements: tuple[str, ...]
) -> ServerRequirements:
    """The scoring server's requirements: bundler's own (the runtime's file), or the reference
    server for engine azureml; plus inference-schema when the script imports it and nothing
    the image installs provides it (the reference server always brings it)."""
    text = bundled
    if engine == "azureml":
        text = (
            b"# The reference Azure ML inference server, for an entry script that needs raw HTTP access.\n"
            + AZUREML_SERVER_REQUIREMENT.encode()
            + b"\n"
        )
    added: tuple[str, ...] = ()
    if uses_inference_schema and engine != "azureml" and "inference-schema" not in imports.provided(user_requirements):
        added = (INFERENCE_SCHEMA_REQUIREMENT,)
        text += (
            b"# For this entry script, which uses inference_schema (@input_schema): Azure ML's server brings\n"
            b"# it along and the requirements do not name it, so this server brings it too.\n"
            + "".join(f"{line}\n" for line in added).encode()
        )
    names = tuple(r.name for r in requirements.parse(text.decode("utf-8")).requirements)
    return ServerRequirements(text, names, added)
