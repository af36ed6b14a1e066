"""Workspace: the local model registry, with the name of the Azure workspace it stands for."""

from __future__ import annotations

import json
from pathlib import Path

from bundler import api
from bundler.azureml.exceptions import CLOUD, RefusingObject, UserErrorException, refuse

LOCAL_NAME = "local"
# Where the SDK looked for config.json, from the folder it starts in up to the root.
_CONFIG_PLACES = (".azureml", "aml_config", "")


class Workspace(RefusingObject):
    """`home` is the model registry (default: $BUNDLER_HOME, else ~/.bundler); `config` the
    bundler.toml whose [registry] is the workspace's container registry (default: the one in
    the current folder, when there is one)."""

    REFUSED = {
        "create": f"{CLOUD}; Workspace.from_config() or Workspace(..., home=FOLDER) use a local registry",
        "get": f"{CLOUD}; use Workspace.from_config()",
        "list": CLOUD,
        "delete": f"{CLOUD}; the local registry is a folder (its home)",
        "get_default_datastore": f"{CLOUD}; read your data from files",
        "datastores": f"{CLOUD}; read your data from files",
        "compute_targets": f"{CLOUD}; models are packaged on this machine",
        "experiments": CLOUD,
        "webservices": f"{CLOUD}; a LocalWebservice lives as long as the Python that deployed it",
        "get_mlflow_tracking_uri": CLOUD,
        "write_config": f"{CLOUD}; the local registry needs no config.json",
    }

    def __init__(
        self,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        workspace_name: str | None = None,
        auth=None,
        _location=None,
        _disable_service_check=False,
        _workspace_id=None,
        sku="basic",
        *,
        home: Path | str | None = None,
        config: Path | str | None = None,
    ):
        if auth is not None:
            raise refuse("Workspace(auth=...)", "bundler needs no Azure login; drop auth=")
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.name = workspace_name or LOCAL_NAME
        self.home = api.registry(home).home
        self.config = Path(config) if config is not None else None

    @classmethod
    def from_config(cls, path=None, auth=None, _logger=None, _file_name=None, *, home=None, config=None) -> Workspace:
        """The workspace named in an Azure config.json (searched where the SDK searched: `path`,
        or the current folder and its parents, in .azureml/, aml_config/ or themselves), else
        one named "local". Either way its models are in the local registry."""
        found = _find_config(Path(path) if path else Path.cwd(), _file_name or "config.json")
        if path and found is None:
            raise UserErrorException(
                f"no workspace config.json at {path}; check the path, or call from_config() without one"
            )
        values = {}
        if found is not None:
            try:
                values = json.loads(found.read_text(encoding="utf-8"))
                if not isinstance(values, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                raise UserErrorException(f"{found}: not a workspace config.json ({exc}); fix or remove it") from None
        return cls(
            values.get("subscription_id"),
            values.get("resource_group"),
            values.get("workspace_name"),
            auth,
            home=home,
            config=config,
        )

    @property
    def models(self) -> dict:
        """Each registered model's latest version, by name."""
        from bundler.azureml.core.model import Model

        return {summary.name: Model(self, summary.name) for summary in api.models(self.home)}

    @property
    def environments(self) -> dict:
        from bundler.azureml.core.environment import Environment

        return Environment.list(self)

    def get_details(self) -> dict:
        return {"name": self.name, "home": str(self.home), "kind": "bundler local registry"}

    def container_registry(self):
        """[registry] of the workspace's bundler.toml, or None."""
        return api.container_registry(self.config)

    def __repr__(self) -> str:
        return f"Workspace.create(name={self.name!r}, home={str(self.home)!r})"


def _find_config(start: Path, file_name: str) -> Path | None:
    start = start.resolve()
    if start.is_file():
        return start
    for folder in (start, *start.parents):
        for place in _CONFIG_PLACES:
            candidate = folder / place / file_name
            if candidate.is_file():
                return candidate
    return None
