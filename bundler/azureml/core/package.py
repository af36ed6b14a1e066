"""ModelPackage: what Model.package returns. A Dockerfile package is a bundle (`save` writes
it); an image package is that bundle built by the local engine (`location` names the image)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bundler import api
from bundler.azureml.exceptions import RefusingObject, UserErrorException, refuse
from bundler.config import Flags


class ContainerRegistry:
    """The workspace's container registry: [registry] of its bundler.toml. The password is read
    from the variable password_env names each time it is asked for (None when unset); it is
    never stored."""

    def __init__(self, address: str, username: str, password_env: str):
        self.address, self.username, self.password_env = address, username, password_env

    @property
    def password(self) -> str | None:
        import os

        return os.environ.get(self.password_env)

    def __repr__(self) -> str:  # no password, ever
        return f"ContainerRegistry({self.address!r}, username={self.username!r}, password_env={self.password_env!r})"


class ModelPackage(RefusingObject):
    REFUSED = {"serialize": "save the bundle (package.save(DIR)): its bundle.json describes it"}

    def __init__(self, workspace, models, inference_config, generate_dockerfile, image_name, image_label):
        self.workspace = workspace
        self.generate_dockerfile = bool(generate_dockerfile)
        self._scratch = tempfile.TemporaryDirectory(prefix="bundler-package-")
        self._inputs = package_inputs(workspace, models, inference_config, Path(self._scratch.name))
        self._image_name, self._image_label = image_name, image_label
        self._log: list[str] = []
        self.state = "NotStarted"
        self.location: str | None = None

    def wait_for_creation(self, show_output: bool = False) -> None:
        """Save the bundle (a check of every input) and, for an image package, build it. With
        show_output, the engine's build log streams as it comes."""
        if self.state == "Succeeded":
            return
        self.state = "Running"
        try:
            saved = api.save(Path(self._scratch.name, "bundle"), self._inputs, home=self.workspace.home, force=True)
            self._note(
                f"saved {saved.file_count} files ({', '.join(saved.plan.image.model_refs) or 'no model'})", show_output
            )
            if not self.generate_dockerfile:
                name = self._image_name or saved.plan.image.default_tag
                label = self._image_label or _label(saved.plan.image.model_refs)
                self.location = f"{name}:{label}"
                built = api.build(saved.path, self.location, on_line=_Lines(self, show_output))
                self._note(f"built image {built.image} with {built.engine}", show_output)
        except Exception:
            self.state = "Failed"
            raise
        self.state = "Succeeded"

    def save(self, output_directory, force: bool = False) -> str:
        """Write the package's Docker build context (the bundle) to OUTPUT_DIRECTORY; a bundle
        there with hand edits is kept unless force=True, as `bundler save --force` does."""
        result = api.save(output_directory, self._inputs, home=self.workspace.home, force=force)
        print(f"saved the build context to {result.path}")
        return str(result.path)

    def get_logs(self, decode: bool = True, offset: int = 0) -> str:
        text = "".join(self._log)[offset:]
        return text if decode else text.encode()

    def get_container_registry(self) -> ContainerRegistry:
        login = self.workspace.container_registry()
        if login is None:
            raise UserErrorException(
                "the workspace has no container registry: add [registry] (address, username, password_env) "
                "to bundler.toml"
            )
        return ContainerRegistry(login.address, login.username, login.password_env)

    def pull(self) -> str:
        """The image is built on this machine, so there is nothing to download: this checks it
        is here and prints its name."""
        if self.generate_dockerfile:
            raise refuse(
                "ModelPackage.pull of a Dockerfile package", "save it (package.save(DIR)) and docker build DIR"
            )
        if self.location is None:
            raise UserErrorException("the image is not built yet; call package.wait_for_creation() first")
        from bundler import engine as engines

        if not engines.find().has_image(self.location):
            raise UserErrorException(
                f"image {self.location} is not here any more; call package.wait_for_creation() again"
            )
        print(f"Image is local: {self.location}")
        return self.location

    def _note(self, line: str, show: bool) -> None:
        self._log.append(line + "\n")
        if show:
            print(line, flush=True)

    def __repr__(self) -> str:
        return f"ModelPackage(location={self.location!r}, state={self.state!r})"


class _Lines:
    """The engine's build output, one line at a time: kept for get_logs, shown when asked."""

    def __init__(self, package: ModelPackage, show: bool):
        self.package, self.show = package, show

    def __call__(self, line: str) -> None:
        self.package._log.append(line)
        if self.show:
            sys.stdout.write(line)
            sys.stdout.flush()


def _label(model_refs) -> str:
    return model_refs[0].split(":")[1] if model_refs else "latest"


def package_inputs(workspace, models, inference_config, scratch: Path) -> Flags:
    """The bundle inputs for models and an InferenceConfig (files it derives go to SCRATCH), with
    the workspace's bundler.toml."""
    # Known by their parts, not their classes: model.py makes packages, and imports this module.
    if not isinstance(models, (list, tuple)) or not all(hasattr(m, "_version") and hasattr(m, "id") for m in models):
        raise UserErrorException("models must be a list of Model objects, e.g. [Model(ws, 'name')]")
    if not hasattr(inference_config, "conda_file_path"):
        raise UserErrorException(f"inference_config must be an InferenceConfig, not {type(inference_config).__name__}")
    environment = inference_config.environment
    requirements = conda_file = base_image = None
    if environment is not None:
        found = environment.environment_file(scratch)
        if found is not None:
            kind, path = found
            requirements, conda_file = (str(path), None) if kind == "pip" else (None, str(path))
        base_image = environment.docker.base_image
    else:
        path = inference_config.conda_file_path()
        conda_file = str(path) if path is not None else None
        base_image = inference_config.base_image
    return Flags(
        config=workspace.config,
        models=tuple(model.id for model in models),
        entry_script=inference_config.entry_script,
        source_directory=inference_config.source_directory,
        requirements=requirements,
        conda_file=conda_file,
        base_image=base_image,
    )
