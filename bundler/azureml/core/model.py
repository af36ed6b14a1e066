"""Model and InferenceConfig over the local registry; Model.package and Model.deploy over
bundler's save, build and serve."""

from __future__ import annotations

import os
from pathlib import Path

from bundler import api
from bundler.azureml.exceptions import CLOUD, RefusingObject, UserErrorException, refuse
from bundler.registry import ModelRef, validate_name

_REGISTER_CLOUD_ARGUMENTS = ("datasets", "sample_input_dataset", "sample_output_dataset", "resource_configuration")


class InferenceConfig(RefusingObject):
    """The entry script, its source folder and the environment; or the older form with
    runtime="python" and conda_file= (its paths relative to source_directory when given)."""

    def __init__(
        self,
        entry_script=None,
        runtime=None,
        conda_file=None,
        extra_docker_file_steps=None,
        source_directory=None,
        enable_gpu=None,
        description=None,
        base_image=None,
        base_image_registry=None,
        cuda_version=None,
        environment=None,
    ):
        if entry_script is None:
            raise UserErrorException("InferenceConfig needs entry_script= (the script with init() and run())")
        if runtime is not None and str(runtime).lower() != "python":
            raise refuse(f"InferenceConfig(runtime={runtime!r})", 'only runtime="python" runs here')
        if extra_docker_file_steps is not None:
            raise refuse(
                "InferenceConfig(extra_docker_file_steps=...)",
                "edit the saved bundle's Dockerfile, or give a template in bundler.toml ([dockerfile] template)",
            )
        if enable_gpu or cuda_version:
            raise refuse(
                "InferenceConfig(enable_gpu=/cuda_version=)",
                "use a CUDA base image, e.g. env.docker.base_image = 'nvidia/cuda:12.1.1-runtime-ubuntu22.04'",
            )
        if base_image_registry is not None:
            raise refuse("InferenceConfig(base_image_registry=...)", DOCKER_REGISTRY_INSTEAD)
        if environment is not None and (conda_file is not None or runtime is not None or base_image is not None):
            raise UserErrorException(
                "InferenceConfig takes environment= or the older runtime=/conda_file=/base_image=, not both"
            )
        self.entry_script = str(entry_script)
        self.source_directory = str(source_directory) if source_directory is not None else None
        self.runtime = runtime
        self.conda_file = str(conda_file) if conda_file is not None else None
        self.base_image = base_image
        self.description = description
        self.environment = environment

    def conda_file_path(self) -> Path | None:
        """The older form's conda file: in source_directory when it is there, as the SDK read it."""
        if self.conda_file is None:
            return None
        if self.source_directory and Path(self.source_directory, self.conda_file).is_file():
            return Path(self.source_directory, self.conda_file)
        return Path(self.conda_file)


DOCKER_REGISTRY_INSTEAD = "set [registry] in bundler.toml (address, username, password_env)"


class Model(RefusingObject):
    """One version of a registered model: Model(ws, name) is the latest, Model(ws, name,
    version=N) or Model(ws, id="name:N") that version."""

    REFUSED = {
        "profile": f"{CLOUD}; measure the local service (bundler serve, then time POST /score)",
        "delete": "versions in the local registry are never removed one by one; bundler gc frees unused files",
        "add_tags": "a registered version does not change; register a new version with the tags",
        "remove_tags": "a registered version does not change; register a new version without them",
        "add_properties": "a registered version does not change; register a new version with them",
        "update": "a registered version does not change; register a new version",
        "register_from_run": f"{CLOUD}; register the run's output file with Model.register",
        "deserialize": "use Model(ws, name, version=N)",
        "update_tags_properties": "a registered version does not change; register a new version",
    }

    class Framework:  # the SDK's constants, recorded as the model's properties
        CUSTOM = "Custom"
        MULTI = "Multi"
        ONNX = "Onnx"
        PYTORCH = "Pytorch"
        SCIKITLEARN = "ScikitLearn"
        TENSORFLOW = "TensorFlow"

    def __init__(self, workspace, name=None, id=None, tags=None, properties=None, version=None, run_id=None, **kwargs):
        for given, label in ((tags, "tags"), (properties, "properties"), (run_id, "run_id"), *kwargs.items()):
            if given is not None and label != "expand":
                raise refuse(f"Model(..., {label}=...)", "name the model and its version: Model(ws, name, version=N)")
        if id is not None and name is not None:
            raise UserErrorException(
                f"Model(ws, {name!r}, {id!r}): the third argument is id ('name:version'); pass version={id!r}"
            )
        if id is not None:
            name, _, number = str(id).partition(":")
            version = version if version is not None else (number or None)
        if not isinstance(name, str) or not name:
            raise UserErrorException("Model(ws, name) needs the model's name, as text (or id='name:version')")
        self.workspace = workspace
        self._version = api.model(ModelRef(validate_name(name), _version_number(version)), workspace.home)

    @classmethod
    def _of(cls, workspace, version) -> Model:
        model = cls.__new__(cls)
        model.workspace, model._version = workspace, version
        return model

    name = property(lambda self: self._version.name)
    version = property(lambda self: self._version.version)
    id = property(lambda self: self._version.ref)
    description = property(lambda self: self._version.description or None)
    tags = property(lambda self: dict(self._version.tags))
    properties = property(lambda self: dict(self._version.properties))
    model_framework = property(lambda self: self.properties.get("model_framework"))
    model_framework_version = property(lambda self: self.properties.get("model_framework_version"))

    def __repr__(self) -> str:
        return f"Model(workspace={self.workspace!r}, name={self.name}, version={self.version}, tags={self.tags})"

    def serialize(self) -> dict:
        return self._version.to_json()

    # -- the registry ----------------------------------------------------------------

    @staticmethod
    def register(
        workspace,
        model_path,
        model_name,
        tags=None,
        properties=None,
        description=None,
        datasets=None,
        model_framework=None,
        model_framework_version=None,
        child_paths=None,
        **cloud,
    ) -> Model:
        cloud["datasets"] = datasets
        for argument, value in cloud.items():
            if value is not None:
                why = CLOUD if argument in _REGISTER_CLOUD_ARGUMENTS else "the SDK's option has no local meaning"
                raise refuse(f"Model.register({argument}=...)", why)
        if child_paths is not None:
            raise refuse("Model.register(child_paths=...)", "register the folder holding just those files")
        facts = {str(k): str(v) for k, v in (properties or {}).items()}
        facts.update(
            {
                k: str(v)
                for k, v in (("model_framework", model_framework), ("model_framework_version", model_framework_version))
                if v
            }
        )
        tags = {str(k): str(v) for k, v in (tags or {}).items()}
        done = api.register(
            model_path, model_name, description=description or "", tags=tags, properties=facts, home=workspace.home
        )
        print(f"Registering model {model_name}")
        return Model._of(workspace, done.version)

    @staticmethod
    def list(workspace, name=None, tags=None, properties=None, run_id=None, latest=False, **unused) -> list:
        if tags is not None or properties is not None or run_id is not None:
            raise refuse(
                "Model.list(tags=/properties=/run_id=)", "filter the list in Python: [m for m in Model.list(ws) if ...]"
            )
        registry = api.registry(workspace.home)
        names = [name] if name else registry.names()
        found = []
        for each in names:
            versions = registry.versions(each)
            for number in sorted(versions[-1:] if latest else versions, reverse=True):
                found.append(Model._of(workspace, registry.resolve(ModelRef(each, number))))
        return found

    @staticmethod
    def get_model_path(model_name, version=None, _workspace=None) -> str:
        """With a workspace: the model's files copied (checked against their sha256) to
        ./azureml-models/NAME/VERSION/, as the SDK downloaded them; returns that path, or the
        file's path for a single file. Without one, inside a service: the model's place under
        AZUREML_MODEL_DIR."""
        if not isinstance(model_name, str):
            raise UserErrorException(
                f"Model.get_model_path: the model name must be text, not {type(model_name).__name__}"
            )
        validate_name(model_name)
        if _workspace is None:
            return _path_in_service(model_name, version)
        model = api.model(ModelRef(model_name, _version_number(version)), _workspace.home)
        target = Path("azureml-models", model.name, str(model.version))
        _copy_files(api.registry(_workspace.home), model, target)
        only = model.files[0].path if len(model.files) == 1 and "/" not in model.files[0].path else None
        return str(target / only) if only else str(target)

    def download(self, target_dir=".", exist_ok=False, exists_ok=None) -> str:
        target = Path(target_dir)
        for f in self._version.files:
            if (target / f.path).exists() and not (exist_ok or exists_ok):
                raise UserErrorException(f"{target / f.path} exists; pass exist_ok=True to replace it")
        _copy_files(api.registry(self.workspace.home), self._version, target)
        top = {f.path.split("/")[0] for f in self._version.files}
        return str(target / top.pop()) if len(top) == 1 else str(target)

    # -- packaging and deploying -----------------------------------------------------

    @staticmethod
    def package(
        workspace,
        models,
        inference_config=None,
        generate_dockerfile=False,
        image_name=None,
        image_label=None,
        image_config=None,
    ):
        from bundler.azureml.core.package import ModelPackage

        if inference_config is None:
            raise refuse(
                "Model.package without an inference_config",
                "no-code deployment needs Azure's cloud; give InferenceConfig(entry_script=..., environment=...)",
            )
        if image_config is not None:
            raise refuse("Model.package(image_config=...)", "give an InferenceConfig")
        return ModelPackage(workspace, models, inference_config, generate_dockerfile, image_name, image_label)

    @staticmethod
    def deploy(
        workspace,
        name,
        models,
        inference_config=None,
        deployment_config=None,
        deployment_target=None,
        overwrite=False,
        show_output=False,
    ):
        from bundler.azureml.core.webservice import deploy_locally

        if deployment_target is not None:
            raise refuse(
                "Model.deploy(deployment_target=...)", f"{CLOUD}; deploy with LocalWebservice.deploy_configuration()"
            )
        return deploy_locally(workspace, name, models, inference_config, deployment_config, overwrite, show_output)


def _version_number(version) -> int | None:
    if version is None:
        return None
    if isinstance(version, int) or (isinstance(version, str) and version.isdigit()):
        return int(version)
    raise UserErrorException(f"a model version is a whole number from 1, not {version!r}")


def _copy_files(registry, model, target: Path) -> None:
    from bundler.digest import copy_hashing

    for f in model.files:
        destination = target / f.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        staged = destination.with_name(f".{destination.name}.partial")
        with open(registry.blob_path(f.sha256), "rb") as source, open(staged, "wb") as out:
            sha, _ = copy_hashing(source, out, unchanging=True)  # a registry blob: the kernel may copy it
        if sha != f.sha256:
            staged.unlink()
            raise UserErrorException(
                f"{registry.home}: the stored copy of {model.ref} {f.path} is damaged; register it again"
            )
        os.replace(staged, destination)


def _path_in_service(model_name: str, version) -> str:
    root = os.environ.get("AZUREML_MODEL_DIR")
    if not root:
        raise UserErrorException(
            f"Model.get_model_path({model_name!r}) without a workspace looks in AZUREML_MODEL_DIR, which is not set; "
            "pass _workspace=ws to copy the model here"
        )
    root_path = Path(root)
    if root_path.parent.name == model_name and (version is None or root_path.name == str(version)):
        # One model: AZUREML_MODEL_DIR is NAME/VERSION itself, as Azure lays it out.
        entries = list(root_path.iterdir()) if root_path.is_dir() else []
        return str(entries[0]) if len(entries) == 1 else str(root_path)
    candidates = (
        [root_path / model_name / str(version)]
        if version is not None
        else sorted((root_path / model_name).glob("*"), key=lambda p: int(p.name) if p.name.isdigit() else -1)[-1:]
    )
    for folder in candidates:
        if folder.is_dir():
            entries = list(folder.iterdir())
            return str(entries[0]) if len(entries) == 1 else str(folder)
    if (root_path / model_name).exists():  # one model: AZUREML_MODEL_DIR is its own folder
        return str(root_path / model_name)
    raise UserErrorException(f"model {model_name!r} is not under AZUREML_MODEL_DIR ({root})")
