"""The Python environment an image installs, as data: what stage 1 of the Dockerfile copies
and the installs it runs, in order. PURE.

The Dockerfile template loops over the steps, and `--vendor` downloads what they would
install, so both see the same runs with the same files. Each builder (pip today) makes an
EnvironmentBuild; a new kind of environment is a new builder and a new kind of step.
"""

from __future__ import annotations

from dataclasses import dataclass

from bundler import imports, layout, requirements

# The reference server, for entry scripts that need raw HTTP access (engine "azureml").
AZUREML_SERVER_REQUIREMENT = "azureml-inference-server-http==1.5.1"
# What a script decorated with @input_schema imports; Azure ML's server brings it along, so
# bundler's does too when the requirements do not name it.
INFERENCE_SCHEMA_REQUIREMENT = "inference-schema==1.8"


@dataclass(frozen=True)
class RequirementsFile:
    bundle_path: str  # e.g. environment/requirements.txt
    build_path: str  # where stage 1 reads it, e.g. /tmp/bundler/environment/requirements.txt


@dataclass(frozen=True)
class PipInstall:
    """One `pip install` of stage 1 (in the image's venv): its requirement files, in order."""

    requirements: tuple[RequirementsFile, ...]
    wheels: str | None = None  # stage 1's folder of vendored wheels: install from it alone, offline

    @property
    def arguments(self) -> tuple[tuple[str, ...], ...]:
        """The options after `pip install`, one group per Dockerfile line."""
        offline = (("--no-index", "--find-links", self.wheels),) if self.wheels else ()
        return offline + tuple(("--requirement", f.build_path) for f in self.requirements)


@dataclass(frozen=True)
class EnvironmentBuild:
    """Stage 1 of the Dockerfile: which builder, what it copies first, what it runs."""

    kind: str  # the builder: "pip" (a venv on the base image), the one there is so far
    copies: tuple[tuple[str, str], ...]  # (bundle path, stage-1 path): the environment files alone
    steps: tuple[PipInstall, ...]
    vendored: bool  # the packages ship in the bundle: the build needs no network
    python: str  # the image's Python version, e.g. "3.11": vendored packages are chosen for it
    platform: str  # e.g. "linux/amd64"
    # pip: the user's requirements carry hashes, and pip then demands hashes of everything in
    # the same run, so the server's own requirements get a run of their own, first.
    hashed: bool = False


def pip_build(requirements_file: str, hashed: bool, vendored: bool, python: str, platform: str) -> EnvironmentBuild:
    """The runtime's requirements and the user's, installed into a venv by pip."""
    runtime = RequirementsFile(layout.RUNTIME_REQUIREMENTS, layout.build_path(layout.RUNTIME_REQUIREMENTS))
    user = RequirementsFile(requirements_file, layout.build_path(requirements_file))
    wheels = layout.build_path(layout.WHEELS_DIR) if vendored else None
    runs = ((runtime,), (user,)) if hashed else ((runtime, user),)
    return EnvironmentBuild(
        kind="pip",
        copies=(
            (layout.RUNTIME_REQUIREMENTS, runtime.build_path),
            (f"{layout.ENVIRONMENT_DIR}/", f"{layout.build_path(layout.ENVIRONMENT_DIR)}/"),
        ),
        steps=tuple(PipInstall(run, wheels) for run in runs),
        vendored=vendored,
        python=python,
        platform=platform,
        hashed=hashed,
    )


@dataclass(frozen=True)
class ServerRequirements:
    """runtime/requirements.txt as this bundle's image installs it."""

    text: bytes
    names: tuple[str, ...]  # the distributions it requires
    added: tuple[str, ...]  # lines added for this entry script (inference-schema)


def server_requirements(
    bundled: bytes, engine: str, uses_inference_schema: bool, user_requirements: tuple[str, ...]
) -> ServerRequirements:
    """The scoring server's requirements: bundler's own (the runtime's file), or the reference
    server for engine azureml; plus inference-schema when the script imports it and nothing
    the image installs provides it (the reference server always brings it)."""
    text = bundled
    if engine == "azureml":
        text = (
            b"# The reference Azure ML inference server, for an entry script that needs raw HTTP access.\n"
            + AZUREML_SERVER_REQUIREMENT.encode()
            + b"\n"
        )
    added: tuple[str, ...] = ()
    if uses_inference_schema and engine != "azureml" and "inference-schema" not in imports.provided(user_requirements):
        added = (INFERENCE_SCHEMA_REQUIREMENT,)
        text += (
            b"# For this entry script, which uses inference_schema (@input_schema): Azure ML's server brings\n"
            b"# it along and the requirements do not name it, so this server brings it too.\n"
            + "".join(f"{line}\n" for line in added).encode()
        )
    names = tuple(r.name for r in requirements.parse(text.decode("utf-8")).requirements)
    return ServerRequirements(text, names, added)
