"""`azureml.core.container_registry`: the workspace's registry, from [registry] in bundler.toml."""

from bundler.azureml.core.package import ContainerRegistry

__all__ = ["ContainerRegistry"]
