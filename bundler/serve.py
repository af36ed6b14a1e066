"""`bundler serve`: run a saved bundle's scoring server here, without Docker.

It runs the bundle's OWN copy of the runtime, in the current Python environment, with the
environment variables the container sets (derived from bundle.json and the layout in
docs/bundle-layout.md, with the bundle's folders in place of the image's paths).
"""

from __future__ import annotations

import os
import posixpath
import stat
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bundler import layout
from bundler import requirements as requirements_module
from bundler.errors import BundlerError


@dataclass(frozen=True)
class ServeCommand:
    argv: tuple[str, ...]
    env: dict
    notes: tuple[str, ...] = ()  # for the user, before the server starts


def command(
    bundle: Path,
    port: int | None = None,
    workers: int | None = None,
    base_env=None,
    host: str = "127.0.0.1",
    manifest: layout.Manifest | None = None,
) -> ServeCommand:
    """The command and environment that run this bundle's server (as layout.py says the image
    does, with the bundle's folders in place of the image's); reads bundle.json and nothing else."""
    bundle = Path(os.path.abspath(bundle))
    manifest = manifest or layout.read_manifest(bundle)
    if not manifest.entry_script:
        raise BundlerError(f"{bundle / layout.MANIFEST} names no entry script; save the bundle again")
    server = replace(manifest.server, port=port or manifest.server.port, workers=workers or manifest.server.workers)
    places = layout.Places.in_bundle(bundle)
    if not manifest.models:  # as on Azure: an empty folder (the bundle itself stays as saved)
        places = replace(places, models_root=str(_empty_folder()))
    env = dict(os.environ if base_env is None else base_env)
    env.update(layout.server_variables(places, manifest.entry_script, manifest.model_keys, server, manifest.engine))
    env.update(layout.python_variables(places.runtime_root))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [places.runtime_root, (base_env or os.environ).get("PYTHONPATH")]))
    env["BUNDLER_HOST"] = host  # this machine only, unless asked: a try-out is not a deployment
    argv = (sys.executable, *layout.server_command(manifest.engine)[1:])
    notes = ()
    if manifest.engine == "azureml":
        # azmlinfsrv has no setting for its address: it always listens on every interface.
        notes = (f"note: engine azureml: the reference server listens on every interface (0.0.0.0), not {host}",)
    return ServeCommand(argv, env, notes)


def _empty_folder() -> Path:
    """An empty folder of this user's, the same one each time (a serve execs, so it could never
    remove one of its own); a fresh one if that has been filled or is not ours."""
    folder = Path(tempfile.gettempdir()) / f"bundler-no-model-{os.geteuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not any(folder.iterdir()):
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="bundler-no-model-"))


def same_version(pin: str, have: str) -> bool:
    """Whether an installed version satisfies `==pin` in the common cases: pip pads release
    numbers with zeros (==1.6 accepts 1.6.0). Anything fancier compares as written."""

    def release(version):
        parts = version.strip().lower().split(".")
        if not all(part.isdigit() for part in parts):
            return version.strip().lower()
        while len(parts) > 1 and int(parts[-1]) == 0:
            parts.pop()
        return tuple(int(part) for part in parts)

    return release(pin) == release(have)


def missing_requirements(bundle: Path, manifest: layout.Manifest | None = None) -> list[str]:
    """Requirements of the bundle not satisfied here: 'name' (absent) or 'name==want (have x)'."""
    return _missing(_requirements(bundle, manifest or layout.read_manifest(bundle))[0])


def _missing(requirements) -> list[str]:
    from importlib import metadata

    problems = []
    for requirement in requirements:
        if requirement.has_marker or requirement.direct:
            continue  # whether they apply, and what they install, is pip's business
        try:
            have = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(requirement.name)
            continue
        if requirement.pin and not same_version(requirement.pin, have):
            problems.append(f"{requirement.name}=={requirement.pin} (have {have})")
    return problems


def unchecked_packages(bundle: Path, manifest: layout.Manifest) -> tuple[str, ...]:
    """conda packages with no PyPI twin: conda installs them in the image, nothing here can check them."""
    return _requirements(bundle, manifest)[1]


def _requirements(bundle: Path, manifest: layout.Manifest):
    """(the requirements a Python here must satisfy, the conda packages that cannot be checked)."""
    from bundler.requirements import collect

    found, unchecked = [], ()
    files = [bundle / layout.RUNTIME_REQUIREMENTS]
    if manifest.builder == "conda" and manifest.conda_file:
        found, unchecked = _conda_requirements(bundle / manifest.conda_file)
    else:
        files.append(bundle / manifest.requirements_file)
    for file in files:
        if file.is_file():
            found += collect(file, strict=False).requirements
    return found, unchecked


def _conda_requirements(path: Path):
    """What a conda file asks for that pip's metadata here can answer: its packages with a PyPI
    twin and its pip: list (with the files it includes); and the conda-only packages."""
    from bundler import conda
    from bundler.requirements import collect, include_problem

    if not path.is_file():
        return [], ()
    try:
        environment = conda.parse(path.read_text(encoding="utf-8-sig"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise BundlerError(f"{path}: cannot read the bundle's conda file ({exc}); save the bundle again") from None
    twins, unchecked = [], []  # a twin's requirement as the pip builder would write it
    for spec in environment.dependencies:
        if spec.name in conda.NOT_PACKAGES:
            continue
        if conda.why_not_pip(spec):
            unchecked.append(spec.name)
        else:
            twins.append(conda.PYPI_TWINS[spec.name] + conda.pip_version(spec))
    pip_list = requirements_module.parse("".join(f"{line}\n" for line in twins + [line for line, _ in environment.pip]))
    found = list(pip_list.requirements)
    for _, include in pip_list.includes:  # those inside the bundle's environment folder, as save shipped them
        if include_problem(include, posixpath.normpath(include), path.parent / include, path) is None:
            found += collect(path.parent / include, strict=False).requirements
    return found, tuple(unchecked)


def _requirement_files(bundle: Path, manifest: layout.Manifest) -> tuple[Path, Path]:
    return bundle / layout.RUNTIME_REQUIREMENTS, bundle / manifest.requirements_file


def serve(bundle: Path, port: int | None, workers: int | None, host: str = "127.0.0.1") -> None:
    """Replace this process with the bundle's server (signals then reach it directly)."""
    bundle = Path(os.path.abspath(bundle))
    manifest = layout.read_manifest(bundle)
    cmd = command(bundle, port, workers, host=host, manifest=manifest)
    requirements, unchecked = _requirements(bundle, manifest)
    missing = _missing(requirements)
    if missing:
        runtime, user = _requirement_files(bundle, manifest)
        how = (
            f"pip install -r {runtime} -r {user}"
            if manifest.builder != "conda"
            else f"micromamba install --file {user}, then pip install -r {runtime}"
        )
        raise BundlerError(
            f"the bundle's requirements are not installed here: {', '.join(missing)}; install them with: {how}"
        )
    if unchecked:
        print(f"note: cannot check {', '.join(unchecked)} here: conda installs them in the image", file=sys.stderr)
    for note in cmd.notes:
        print(note, file=sys.stderr, flush=True)
    try:
        os.execve(cmd.argv[0], list(cmd.argv), cmd.env)
    except OSError as exc:
        raise BundlerError(f"cannot start {cmd.argv[0]} ({exc.strerror or exc}); reinstall bundler's Python") from None
