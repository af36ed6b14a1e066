"""CondaDependencies: a conda environment file held as data, as the SDK's was.

A file read with `CondaDependencies(path)` and left unchanged serializes to its own text,
byte for byte, so the bundle ships the user's file as it is; once changed, it is written
anew (name, dependencies, channels), always the same way for the same content.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from bundler.azureml.exceptions import RefusingObject, UserErrorException
from bundler.config import Config

DEFAULT_NAME = "project_environment"
DEFAULT_CHANNELS = ("conda-forge",)  # the SDK's "anaconda" channel needs a licence for most companies
_NAME = re.compile(r"^\s*(?:[^:\s]+::)?([A-Za-z0-9_.\-]+)")
_HEADER = "# Conda environment specification, written by bundler.azureml (CondaDependencies).\n"


class CondaDependencies(RefusingObject):
    REFUSED = {
        name: "list the package itself with add_conda_package or add_pip_package"
        for name in ("add_tensorflow_conda_package", "add_tensorflow_pip_package", "add_cntk_package")
    }

    def __init__(self, conda_dependencies_file_path: Path | str | None = None, _underlying_structure=None):
        self._text: str | None = None  # the file's own text, while nothing has changed it
        if conda_dependencies_file_path is not None:
            path = Path(conda_dependencies_file_path)
            try:
                self._text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UserErrorException(f"conda file {path}: cannot read it ({exc})") from None
            self._data = _parse(self._text, path)
        elif _underlying_structure is not None:
            self._data = copy.deepcopy(dict(_underlying_structure))
        else:
            self._data = {
                "name": DEFAULT_NAME,
                "dependencies": [f"python={Config.python}"],
                "channels": list(DEFAULT_CHANNELS),
            }

    @staticmethod
    def create(
        pip_packages=None,
        conda_packages=None,
        python_version=None,
        pip_indexurl=None,
        pin_sdk_version=True,
        channels=None,
    ) -> CondaDependencies:
        """As the SDK's create, except that it adds no azureml-defaults (the bundle brings its
        own server) and pins nothing of an SDK; list azureml-defaults yourself if you use it."""
        for argument, value in (
            ("pip_packages", pip_packages),
            ("conda_packages", conda_packages),
            ("channels", channels),
        ):
            if value is not None and (isinstance(value, str) or not all(isinstance(item, str) for item in value)):
                raise UserErrorException(f"CondaDependencies.create({argument}=...): a list of text, e.g. ['numpy']")
        dependencies = CondaDependencies()
        if python_version:
            dependencies.set_python_version(python_version)
        for channel in channels or ():
            dependencies.add_channel(channel)
        for package in conda_packages or ():
            dependencies.add_conda_package(package)
        if pip_indexurl:
            dependencies.set_pip_option(f"--index-url {pip_indexurl}")
        for package in pip_packages or ():
            dependencies.add_pip_package(package)
        return dependencies

    # -- reading ---------------------------------------------------------------------

    @property
    def conda_packages(self):
        return iter([d for d in self._dependencies() if isinstance(d, str)])

    @property
    def pip_packages(self):
        return iter([p for p in self._pip_list() if not p.startswith("-")])

    @property
    def pip_options(self):
        return iter([p for p in self._pip_list() if p.startswith("-")])

    def get_python_version(self) -> str | None:
        for spec in self.conda_packages:
            if _name(spec) == "python":
                return re.sub(r"^python\s*[=<>!~]*", "", spec.strip()) or None
        return None

    def get_default_number_of_packages(self) -> int:
        return len(list(self.conda_packages)) + len(list(self.pip_packages))

    def serialize_to_string(self) -> str:
        if self._text is not None:
            return self._text
        import yaml

        document = {key: self._data[key] for key in ("name", "dependencies", "channels") if key in self._data}
        document.update({key: value for key, value in self._data.items() if key not in document})
        return _HEADER + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)

    def save(self, path: Path | str | None = None) -> str:
        path = Path(path or "conda_dependencies.yml")
        path.write_text(self.serialize_to_string(), encoding="utf-8")
        return str(path)

    def save_to_file(self, base_directory, conda_file_path=None) -> str:
        return self.save(Path(base_directory, conda_file_path or "conda_dependencies.yml"))

    # -- changing --------------------------------------------------------------------

    def set_python_version(self, version: str) -> None:
        self._replace_conda(f"python={version}")

    def add_channel(self, channel: str) -> None:
        channels = self._changed().setdefault("channels", [])
        if channel not in channels:
            channels.append(channel)

    def remove_channel(self, channel: str) -> None:
        channels = self._changed().get("channels", [])
        if channel in channels:
            channels.remove(channel)

    def add_conda_package(self, conda_package: str) -> None:
        self._replace_conda(conda_package)

    def remove_conda_package(self, conda_package: str) -> None:
        dependencies = self._changed().get("dependencies", [])
        dependencies[:] = [d for d in dependencies if not (isinstance(d, str) and _name(d) == _name(conda_package))]

    def add_pip_package(self, pip_package: str) -> None:
        pip = self._pip_list(create=True)
        pip[:] = [p for p in pip if p.startswith("-") or _name(p) != _name(pip_package)]
        pip.append(pip_package)

    def remove_pip_package(self, pip_package: str) -> None:
        pip = self._pip_list(create=True)
        pip[:] = [p for p in pip if p.startswith("-") or _name(p) != _name(pip_package)]

    def set_pip_option(self, pip_option: str) -> None:
        pip = self._pip_list(create=True)
        option = pip_option.split()[0]
        pip[:] = [p for p in pip if not (p.startswith("-") and p.split()[0] == option)]
        pip.insert(0, pip_option)

    # -- inside ----------------------------------------------------------------------

    def _changed(self) -> dict:
        self._text = None  # from now on the file is written anew
        return self._data

    def _dependencies(self) -> list:
        return self._data.get("dependencies") or []

    def _pip_list(self, create: bool = False) -> list:
        dependencies = self._changed().setdefault("dependencies", []) if create else self._dependencies()
        for item in dependencies:
            if isinstance(item, dict) and "pip" in item:
                return item["pip"]
        if not create:
            return []
        if not any(isinstance(d, str) and _name(d) == "pip" for d in dependencies):
            dependencies.append("pip")
        entry = {"pip": []}
        dependencies.append(entry)
        return entry["pip"]

    def _replace_conda(self, spec: str) -> None:
        dependencies = self._changed().setdefault("dependencies", [])
        for index, item in enumerate(dependencies):
            if isinstance(item, str) and _name(item) == _name(spec):
                dependencies[index] = spec
                return
        position = next((i for i, d in enumerate(dependencies) if isinstance(d, dict)), len(dependencies))
        dependencies.insert(position, spec)


def _name(spec: str) -> str:
    match = _NAME.match(spec)
    return match.group(1).lower() if match else spec.strip().lower()


def _parse(text: str, path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserErrorException(f"{where}: not a conda environment file ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("dependencies", []), list):
        raise UserErrorException(f"{path}: not a conda environment file (expected name:, channels:, dependencies:)")
    return data
