"""Environment: what the image installs (a conda file or pip requirements) and its base image.

`register`/`get`/`list` keep environments in the local registry, beside the models:

    <home>/environments/<name>/<version>/environment.json    the settings
    <home>/environments/<name>/<version>/<file>              the conda file or requirements, as given

A version appears whole or not at all: it is written in a staging folder and renamed to
its number, which fails if another process took that number first.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from bundler.azureml.core.conda_dependencies import CondaDependencies
from bundler.azureml.exceptions import CLOUD, RefusingObject, UserErrorException, refuse
from bundler.registry import validate_name

CONDA_FILE = "conda_dependencies.yml"
PIP_FILE = "requirements.txt"
_CURATED_PREFIXES = ("AzureML-", "Microsoft-")


class PythonSection(RefusingObject):
    def __init__(self):
        # As in the SDK: a new environment holds a conda file with Python alone, to add to.
        self.conda_dependencies: CondaDependencies | None = CondaDependencies()
        self.user_managed_dependencies = False
        self.interpreter_path = "python"
        self.conda_dependencies_file = None


class DockerSection(RefusingObject):
    REFUSED = {"base_image_registry": "set [registry] in bundler.toml (address, username, password_env)"}

    def __init__(self):
        self.enabled = True
        self.base_image: str | None = None
        self.base_dockerfile: str | None = None
        self.shm_size = None
        self.arguments: list = []


class Environment(RefusingObject):
    REFUSED = {
        "build": f"{CLOUD}; package a model with Model.package, or run bundler build on a saved bundle",
        "build_local": "save a bundle with Model.package(...).save(DIR) and build it with docker build DIR",
        "from_existing_conda_environment": "conda env export > env.yml, then Environment.from_conda_specification",
        "from_dockerfile": "bundler writes the Dockerfile; set env.docker.base_image, or edit the saved one",
        "add_private_pip_wheel": f"{CLOUD}; list the wheel's path in your requirements, or save with --vendor",
        "get_image_details": f"{CLOUD}; read the bundle's Dockerfile and bundle.json",
        "list_curated": CLOUD,
    }

    def __init__(self, name: str):
        self.name = name
        self.version: str | None = None
        self.python = PythonSection()
        self.docker = DockerSection()
        self.environment_variables: dict[str, str] = {}
        self.inferencing_stack_version = None
        self._pip_file: Path | None = None  # from_pip_requirements: the file, shipped as it is
        self._conda_file: Path | None = None  # from_conda_specification: the file, while unchanged

    # -- making ----------------------------------------------------------------------

    @staticmethod
    def from_conda_specification(name: str, file_path) -> Environment:
        environment = Environment(name)
        environment.python.conda_dependencies = CondaDependencies(file_path)
        environment._conda_file = Path(file_path)
        return environment

    @staticmethod
    def from_pip_requirements(name: str, file_path, pip_version=None) -> Environment:
        path = Path(file_path)
        if not path.is_file():
            raise UserErrorException(f"requirements file {path} not found")
        if pip_version is not None:
            raise refuse("Environment.from_pip_requirements(pip_version=...)", "the image's pip is recent; drop it")
        environment = Environment(name)
        environment._pip_file = path
        environment.python.conda_dependencies = None  # the requirements file is the environment
        return environment

    @staticmethod
    def from_docker_image(
        name: str, image: str, container_registry=None, conda_specification=None, pip_requirements=None
    ):
        if container_registry is not None:
            raise refuse(
                "Environment.from_docker_image(container_registry=...)", DockerSection.REFUSED["base_image_registry"]
            )
        if conda_specification is not None:
            environment = Environment.from_conda_specification(name, conda_specification)
        elif pip_requirements is not None:
            environment = Environment.from_pip_requirements(name, pip_requirements)
        else:
            environment = Environment(name)
        environment.docker.base_image = image
        return environment

    def clone(self, new_name: str) -> Environment:
        import copy

        twin = copy.deepcopy(self)
        twin.name, twin.version = new_name, None
        return twin

    # -- what a package uses -----------------------------------------------------------

    def environment_file(self, scratch: Path) -> tuple[str, Path] | None:
        """("conda" or "pip", the file the bundle ships): the user's own file while unchanged,
        else one written to SCRATCH. None: nothing to install (user-managed)."""
        if self.python.user_managed_dependencies:
            return None
        if self.environment_variables:
            raise refuse(
                "Environment.environment_variables",
                "the image's variables come from a conda file's variables: section, or docker run --env",
            )
        if self.docker.base_dockerfile:
            raise refuse("Environment.docker.base_dockerfile", Environment.REFUSED["from_dockerfile"])
        if self._pip_file is not None:
            return "pip", self._pip_file
        dependencies = self.python.conda_dependencies
        if dependencies is None:
            return None
        if self._conda_file is not None and dependencies.serialize_to_string() == _read(self._conda_file):
            return "conda", self._conda_file
        written = scratch / (self._conda_file.name if self._conda_file is not None else CONDA_FILE)
        written.write_text(dependencies.serialize_to_string(), encoding="utf-8")
        return "conda", written

    # -- the local environment registry ----------------------------------------------

    def register(self, workspace) -> Environment:
        """Store this environment as the next version of its name; returns it, versioned. Its
        file passes the checks `save` makes first: no credential is ever stored."""
        if not isinstance(self.name, str):
            raise UserErrorException(f"an environment's name is text, not {type(self.name).__name__}")
        validate_name(self.name, "environment name")
        _check_base_image(self.docker.base_image)
        folder = _folder(workspace) / self.name
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
        try:
            found = self.environment_file(staging)
            kind, path = found if found else (None, None)
            if path is not None:
                _check_file(kind, path)
            # Under its own name, so a bundle from the registered copy names it as the original did.
            stored = staging / (_file_name(path) if path is not None else PIP_FILE)
            if path is not None and path != stored:
                shutil.copyfile(path, stored)
                if path.parent == staging:
                    path.unlink()
            settings = {
                "name": self.name,
                "kind": kind,
                "file": stored.name if path is not None else None,
                "base_image": self.docker.base_image,
                "user_managed_dependencies": self.python.user_managed_dependencies,
            }
            (staging / "environment.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
            version = max(_versions(folder), default=0) + 1
            while True:
                try:
                    os.rename(staging, folder / str(version))
                    break
                except OSError:  # another register took this number
                    version += 1
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        registered = Environment.get(workspace, self.name, str(version))
        return registered

    @staticmethod
    def get(workspace, name: str, version: str | None = None, label=None) -> Environment:
        if label is not None:
            raise refuse("Environment.get(label=...)", "ask for a version")
        if not isinstance(name, str) or not name:
            raise UserErrorException("Environment.get(ws, name): the name is text, e.g. 'myenv'")
        folder = _folder(workspace) / name
        versions = _versions(folder) if name and "/" not in name else []
        if not versions:
            if name.startswith(_CURATED_PREFIXES):
                raise refuse(
                    f"Environment.get({name!r})",
                    "curated Azure environments live in Azure's cloud; write their packages in a conda file and "
                    "use Environment.from_conda_specification",
                )
            raise UserErrorException(
                f"environment {name!r} is not registered in {_folder(workspace)}; register it with env.register(ws)"
            )
        number = versions[-1] if version is None else int(version) if str(version).isdigit() else None
        if number not in versions:
            raise UserErrorException(f"environment {name!r} has no version {version} (versions: {versions})")
        return _load(folder / str(number), name, str(number))

    @staticmethod
    def list(workspace) -> dict:
        """Each registered environment's latest version, by name."""
        root = _folder(workspace)
        names = sorted(p.name for p in root.iterdir() if _versions(p)) if root.is_dir() else []
        return {name: Environment.get(workspace, name) for name in names}

    def __repr__(self) -> str:
        return f"Environment(name={self.name!r}, version={self.version!r})"


def _check_file(kind: str, path: Path) -> None:
    """The checks `save` makes of an environment file: credentials in URLs among them."""
    if kind == "conda":
        from bundler import conda

        conda.collect(path)
    else:
        from bundler import requirements

        requirements.collect(path)


def _check_base_image(image) -> None:
    from bundler.config import IMAGE_PATTERN

    if image is not None and (not isinstance(image, str) or not IMAGE_PATTERN.fullmatch(image)):
        raise UserErrorException("env.docker.base_image is not an image reference; use e.g. python:3.11-slim")


def _file_name(path: Path) -> str:
    return path.name if path.name != "environment.json" and not path.name.startswith(".") else CONDA_FILE


def _stored_name(settings: dict, default: str) -> str:
    name = settings.get("file") or default
    if not isinstance(name, str) or "/" in name or name in ("", ".", "..", "environment.json"):
        raise UserErrorException(f"a registered environment names its file {name!r}; register it again")
    return name


def _folder(workspace) -> Path:
    return Path(workspace.home) / "environments"


def _versions(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "environment.json").is_file())


def _load(folder: Path, name: str, version: str) -> Environment:
    try:
        settings = json.loads((folder / "environment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserErrorException(
            f"{folder}/environment.json is unreadable ({exc}); register the environment again"
        ) from None
    kind = settings.get("kind")
    if kind == "conda":
        environment = Environment.from_conda_specification(name, folder / _stored_name(settings, CONDA_FILE))
    elif kind == "pip":
        environment = Environment.from_pip_requirements(name, folder / _stored_name(settings, PIP_FILE))
    else:
        environment = Environment(name)
        environment.python.user_managed_dependencies = bool(settings.get("user_managed_dependencies"))
    environment.docker.base_image = settings.get("base_image")
    environment.version = version
    return environment


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
