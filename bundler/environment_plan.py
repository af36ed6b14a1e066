"""Which environment a bundle installs, and how: the environment half of a plan. PURE.

From the user's requirements files, or a conda file, it decides the builder (pip, or conda
when pip cannot install what the conda file asks for as conda would), the base image's
default, and the files under environment/ (the user's as they are, and a derived
requirements file when pip installs a conda file). environment.py holds the builders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from bundler import layout, requirements
from bundler.config import Config
from bundler.entries import Copied, FileEntry, Generated
from bundler.environment import (
    CA_BUNDLE,
    CONDA_BASE_IMAGE,
    CondaInstall,
    EnvironmentBuild,
    conda_build,
    pip_build,
    with_package_index,
)
from bundler.requirements import RequirementFiles

if TYPE_CHECKING:  # conda's module loads only when a conda file is given
    from bundler import conda

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
    config: Config,
    requirement_files: RequirementFiles | None,
    conda_files: conda.CondaFiles | None,
    ca_bundle: bytes | None = None,
) -> EnvironmentPlan:
    """The environment, from a conda file or requirements; then, with [environment] index_url
    or ca_certificates, installed from that index trusting those CAs (`ca_bundle`: their text)."""
    planned = (
        _from_conda(config, conda_files) if conda_files is not None else _from_requirements(config, requirement_files)
    )
    index = config.package_index
    if index is None:
        return planned
    build = with_package_index(
        planned.build, index.index_url, index.extra_index_urls, bool(index.ca_certificates), index.trust_ca_at_runtime
    )
    ca = (FileEntry(CA_BUNDLE, layout.FILE_MODE, Generated(ca_bundle)),) if ca_bundle else ()
    return replace(planned, build=build, files=tuple(sorted(planned.files + ca, key=lambda e: e.path)))


def _from_requirements(config: Config, requirement_files: RequirementFiles | None) -> EnvironmentPlan:
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
    from bundler import conda

    environment = conda_files.environment
    where = str(conda_files.top)
    translation = conda.translate(environment)
    python = _python_of(config, environment, where)
    conda_path = f"{layout.ENVIRONMENT_DIR}/{conda_files.top.name}"
    shipped = Generated(conda_files.shipped) if conda_files.shipped is not None else Copied(conda_files.top)
    files = [FileEntry(conda_path, layout.FILE_MODE, shipped)]
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
        base_image = config.base_image or CONDA_BASE_IMAGE
        install = _conda_install(config, conda_files, python, base_image)
        return EnvironmentPlan(
            build=conda_build(conda_path, install, config.vendor, python, config.platform, reason),
            files=tuple(files),
            requirements_file=conda_path,
            conda_file=conda_path,
            base_image=base_image,
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
    """X.Y of the image's Python: the one the conda file pins, else [environment] python (which
    a range like python>=3.9 must admit): the image and its vendored wheels need one version."""
    from bundler.conda import CondaFileError

    spec = environment.python
    if spec is None or spec.version is None:
        return config.python
    versions = environment.python_versions
    if versions is None:
        raise CondaFileError(
            f"{where}:{spec.line}: {spec.text!r} is not a Python version bundler reads; pin one, e.g. python=3.11"
        )
    if len(versions) == 1:
        (pinned,) = versions
        if layout.python_too_old(pinned):
            raise CondaFileError(
                f"{where}:{spec.line}: Python {pinned} is too old: {layout.NEWER_PYTHON}; pin e.g. python=3.11 "
                "(with package versions that support it)"
            )
        if config.python_given and pinned != config.python:
            raise CondaFileError(
                f"{where}:{spec.line}: the conda file asks for Python {pinned}, but [environment] "
                f"python is {config.python}; keep one of the two"
            )
        return pinned
    if config.python not in versions:
        raise CondaFileError(
            f"{where}:{spec.line}: {spec.text!r} does not admit Python {config.python}, the image's; pin one "
            f"Python, e.g. python={config.python} ({layout.NEWER_PYTHON})"
        )
    return config.python


def missing_conda_specs(environment: conda.CondaEnvironment, python: str) -> tuple[str, ...]:
    """What the server needs that the conda file does not pin: one Python, and pip to install the server."""
    specs = []
    if environment.python_versions != (python,):
        specs.append(f"python={python}")  # beside a range (python>=3.9) the file may have
    if not any(spec.name == "pip" for spec in environment.dependencies):
        specs.append("pip")
    return tuple(specs)


def _conda_install(config: Config, conda_files: conda.CondaFiles, python: str, base_image: str) -> CondaInstall:
    """What micromamba gets beside the file, checked for what it cannot do with it."""
    from bundler.conda import CondaFileError

    environment, where = conda_files.environment, str(conda_files.top)
    if conda_files.top.suffix not in (".yml", ".yaml"):  # micromamba reads any other name as a list of specs
        raise CondaFileError(
            f"{where}: micromamba reads a conda file by its extension; rename it to end in .yml (or .yaml)"
        )
    pinned = next((spec for spec in environment.dependencies if spec.channel), None)
    if config.vendor and pinned is not None:
        raise CondaFileError(
            f"{where}:{pinned.line}: {pinned.text!r} names its channel, but a vendored build installs from the "
            f"bundle's channel alone; write it without '{pinned.channel}::' (keep the channel under channels:)"
        )
    cuda = re.search(r"(?:^|/)nvidia/cuda:(\d+\.\d+)", base_image)
    return CondaInstall(
        extra_specs=missing_conda_specs(environment, python),
        file_has_channels=bool(environment.listed_channels),
        cuda=cuda.group(1) if cuda else None,
    )


def _conda_unpinned(environment: conda.CondaEnvironment, conda_files: conda.CondaFiles) -> tuple[str, ...]:
    from bundler.conda import NOT_PACKAGES

    loose = {
        s.name
        for s in environment.dependencies
        if s.name not in NOT_PACKAGES
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
