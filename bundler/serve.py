"""`bundler serve`: run a saved bundle's scoring server here, without Docker.

It runs the bundle's OWN copy of the runtime, in the current Python environment, with the
environment variables the container sets (derived from bundle.json and the layout in
docs/bundle-layout.md, with the bundle's folders in place of the image's paths).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bundler import verify
from bundler.errors import BundlerError


@dataclass(frozen=True)
class ServeCommand:
    argv: tuple[str, ...]
    env: dict
    notes: tuple[str, ...] = ()  # for the user, before the server starts


def command(bundle: Path, port: int | None = None, workers: int | None = None, base_env=None,
            host: str = "127.0.0.1") -> ServeCommand:
    """The command and environment that run this bundle's server. Pure but for reading bundle.json."""
    bundle = Path(os.path.abspath(bundle))
    if not verify.is_bundle(bundle):
        raise BundlerError(f"{bundle} is not a bundle (no bundle.json); make one with: bundler save {bundle}")
    inputs = verify.read_manifest(bundle).get("inputs", {})
    models = inputs.get("models", [])
    server = inputs.get("server", {})
    well_formed = isinstance(models, list) and all(isinstance(m, dict) and "name" in m and "version" in m
                                                   for m in models) and isinstance(server, dict)
    if not models or not well_formed or not isinstance(inputs.get("entry_script"), str):
        raise BundlerError(f"{bundle / 'bundle.json'} lists no models or entry script; save the bundle again")
    model_dir = bundle / "azureml-models"
    if len(models) == 1:
        model_dir = model_dir / models[0]["name"] / str(models[0]["version"])
    port = port or server.get("port", 5001)
    workers = workers or server.get("workers", 1)
    env = dict(os.environ if base_env is None else base_env)
    env.update(
        AML_APP_ROOT=str(bundle / "azureml-app"),
        AZUREML_ENTRY_SCRIPT=inputs["entry_script"],
        AZUREML_MODEL_DIR=str(model_dir),
        BUNDLER_PORT=str(port),
        BUNDLER_HOST=host,  # this machine only, unless asked: a try-out is not a deployment
        BUNDLER_WORKERS=str(workers),
        BUNDLER_SCORING_TIMEOUT=str(server.get("scoring_timeout", 60)),
        BUNDLER_MAX_REQUEST_BYTES=str(server.get("max_request_bytes", 100 * 1024 * 1024)),
        PYTHONPATH=os.pathsep.join(filter(None, [str(bundle / "runtime"), env.get("PYTHONPATH")])),
        PYTHONDONTWRITEBYTECODE="1",
    )
    if inputs.get("engine") == "azureml":
        # azmlinfsrv has no setting for its address: it always listens on every interface.
        notes = (f"note: engine azureml: the reference server listens on every interface (0.0.0.0), not {host}",)
        return ServeCommand((sys.executable, "-m", "bundler_runtime.reference"), env, notes)
    return ServeCommand((sys.executable, "-m", "bundler_runtime"), env)


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


def requirements_file(bundle: Path) -> str:
    """The user's requirements file in the bundle (bundles before bundle.json named it: the default)."""
    named = verify.read_manifest(bundle).get("inputs", {}).get("requirements_file")
    safe = isinstance(named, str) and named.startswith("environment/") and ".." not in named.split("/")
    return named if safe else "environment/requirements.txt"


def missing_requirements(bundle: Path) -> list[str]:
    """Requirements of the bundle not satisfied here: 'name' (absent) or 'name==want (have x)'."""
    from importlib import metadata

    from bundler.requirements import collect

    problems = []
    for path in (bundle / "runtime" / "requirements.txt", bundle / requirements_file(bundle)):
        if not path.is_file():
            continue
        for requirement in collect(path, strict=False).requirements:
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


def serve(bundle: Path, port: int | None, workers: int | None, host: str = "127.0.0.1") -> None:
    """Replace this process with the bundle's server (signals then reach it directly)."""
    bundle = Path(os.path.abspath(bundle))
    cmd = command(bundle, port, workers, host=host)
    missing = missing_requirements(bundle)
    if missing:
        raise BundlerError(
            f"the bundle's requirements are not installed here: {', '.join(missing)}; install them with: "
            f"pip install -r {bundle / 'runtime' / 'requirements.txt'} -r {bundle / requirements_file(bundle)}"
        )
    for note in cmd.notes:
        print(note, file=sys.stderr, flush=True)
    os.execvpe(cmd.argv[0], list(cmd.argv), cmd.env)
