"""`azureml.core`, on this machine: Workspace, Model, Environment, InferenceConfig,
CondaDependencies, Webservice and their kin (see bundler/azureml/__init__.py)."""

from __future__ import annotations

from bundler.azureml.core.conda_dependencies import CondaDependencies
from bundler.azureml.core.environment import Environment
from bundler.azureml.core.model import InferenceConfig, Model
from bundler.azureml.core.package import ContainerRegistry, ModelPackage
from bundler.azureml.core.webservice import LocalWebservice, Webservice
from bundler.azureml.core.workspace import Workspace
from bundler.azureml.exceptions import CLOUD, refuse

__all__ = [
    "CondaDependencies",
    "ContainerRegistry",
    "Environment",
    "InferenceConfig",
    "LocalWebservice",
    "Model",
    "ModelPackage",
    "Webservice",
    "Workspace",
]

# The SDK's other names, each with what to do instead: using one is one clear error.
REFUSED = {
    "Dataset": f"{CLOUD}; read your data from files or a URL",
    "Datastore": f"{CLOUD}; read your data from files or a URL",
    "Experiment": f"{CLOUD}; track runs with your own tools (MLflow, files)",
    "Run": f"{CLOUD}; register the trained model's file with Model.register",
    "ScriptRunConfig": f"{CLOUD}; train on this machine, then Model.register",
    "ComputeTarget": f"{CLOUD}; models are packaged and served on this machine",
    "Keyvault": f"{CLOUD}; read secrets from environment variables",
    "Image": "Model.package builds the image (image packages), or package.save(DIR) writes its build context",
    "ContainerImage": "Model.package builds the image (image packages), or package.save(DIR) writes its build context",
    "RunConfiguration": f"{CLOUD}; give the environment to InferenceConfig(environment=...)",
    "ScriptRun": f"{CLOUD}; register the trained model's file with Model.register",
}


def __getattr__(name: str):
    if name in REFUSED:
        raise refuse(f"azureml.core.{name}", REFUSED[name])
    raise AttributeError(f"module 'bundler.azureml.core' has no attribute {name!r}")
