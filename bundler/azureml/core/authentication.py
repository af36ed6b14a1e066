"""The SDK's authentication classes: bundler works on this machine and logs in to nothing."""

from __future__ import annotations

from bundler.azureml.exceptions import refuse

_INSTEAD = (
    "bundler needs no Azure login (the workspace is the local model registry); drop the auth= "
    "argument. For a container registry, set [registry] in bundler.toml and run bundler login"
)


class _Authentication:
    def __init__(self, *args, **kwargs):
        raise refuse(type(self).__name__, _INSTEAD)


class InteractiveLoginAuthentication(_Authentication):
    pass


class ServicePrincipalAuthentication(_Authentication):
    pass


class MsiAuthentication(_Authentication):
    pass


class AzureCliAuthentication(_Authentication):
    pass
