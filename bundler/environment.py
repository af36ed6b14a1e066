"""The Python environment an image installs, as data: what stage 1 of the Dockerfile copies
and the commands it runs, in order. PURE.

The Dockerfile template loops over the steps (each a program and its options, a line each),
and `--vendor` downloads what they would install, so both see the same runs with the same
files. Each builder makes an EnvironmentBuild: "pip" (a venv on the base image, installed by
pip) and "conda" (micromamba creates a prefix from a conda file, in micromamba's own image;
stage 2 copies that prefix onto a base image that needs no Python of its own).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from bundler import imports, layout, requirements
from bundler.errors import ConfigError

# The reference server, for entry scripts that need raw HTTP access (engine "azureml").
AZUREML_SERVER_REQUIREMENT = "azureml-inference-server-http==1.5.1"
# What a script decorated with @input_schema imports; Azure ML's server brings it along, so
# bundler's does too when the requirements do not name it.
INFERENCE_SCHEMA_REQUIREMENT = "inference-schema==1.8"
# The conda builder: micromamba, pinned, from its official image (--build-arg MICROMAMBA_IMAGE=...),
# and the base image the environment is copied onto: conda brings its own Python.
MICROMAMBA_IMAGE = "mambaorg/micromamba:1.5.10"
CONDA_BASE_IMAGE = "debian:bookworm-slim"
# micromamba's image: its user (numeric, as the image documents it) owns its base environment,
# /opt/conda, which is installed into without root and copied whole into stage 2.
MICROMAMBA_USER = "57439:57439"
CONDA_PREFIX = "/opt/conda"
FALLBACK_CHANNEL = "conda-forge"  # for a conda file that lists no channel
CONDA_CHANNEL_DIR = f"{layout.ENVIRONMENT_DIR}/conda-channel"  # --vendor: the solved packages, indexed
PIP_OPTIONS = ("--no-cache-dir", "--disable-pip-version-check")
# A private index's credentials reach stage 1 only as a build secret, a netrc file
# (docker build --secret id=netrc,src=...): mounted for the install alone, never in a layer.
NETRC_SECRET = "netrc"
NETRC_PATH = f"/run/secrets/{NETRC_SECRET}"
CA_BUNDLE = f"{layout.ENVIRONMENT_DIR}/ca-certificates.pem"  # the CA certificates given, in one file


@dataclass(frozen=True)
class RequirementsFile:
    bundle_path: str  # e.g. environment/requirements.txt
    build_path: str  # where stage 1 reads it, e.g. /tmp/bundler/environment/requirements.txt

    @classmethod
    def at(cls, bundle_path: str) -> RequirementsFile:
        return cls(bundle_path, layout.build_path(bundle_path))


@dataclass(frozen=True)
class Step:
    """One command of stage 1: its program and first options (one line), then its other options
    (a line each). A pip step also says which requirement files it installs (vendoring reads them)."""

    kind: str  # "pip", "conda-install", "conda-clean", "seal"
    program: tuple[str, ...]
    arguments: tuple[tuple[str, ...], ...] = ()
    requirements: tuple[RequirementsFile, ...] = ()


@dataclass(frozen=True)
class CondaInstall:
    """What micromamba installs beside the conda file, for the image the environment runs in."""

    extra_specs: tuple[str, ...]  # what the server needs that the file does not pin: python=X.Y, pip
    file_has_channels: bool  # else conda-forge: micromamba has no default channel
    cuda: str | None = None  # X.Y of an nvidia/cuda base image: the build has no GPU to detect it from


@dataclass(frozen=True)
class EnvironmentBuild:
    """Stage 1 of the Dockerfile: which builder, what it copies first, what it runs."""

    kind: str  # the builder: "pip" or "conda"
    reason: str  # why this builder, for `save` to say
    copies: tuple[tuple[str, ...], ...]  # COPY's words: [--chown=...,] bundle path, stage-1 path
    steps: tuple[Step, ...]
    prefix: str  # the folder stage 2 copies and puts first on PATH: the venv, or the conda prefix
    python_command: str  # the image's Python, for commands run before PATH is set
    vendored: bool  # the packages ship in the bundle: the build needs no network
    python: str  # the image's Python version, e.g. "3.11": vendored packages are chosen for it
    platform: str  # e.g. "linux/amd64"
    # pip: the user's requirements carry hashes, and pip then demands hashes of everything in
    # the same run, so the server's own requirements get a run of their own, first.
    hashed: bool = False
    builder_image: str | None = None  # conda: the image stage 1 runs in (micromamba's)
    conda: CondaInstall | None = None  # conda: what micromamba is asked for beside the conda file
    root_steps: tuple[Step, ...] = ()  # run as root after `steps`, in a RUN of their own
    builder_user: str | None = None  # who runs `steps`: stage 1 returns to it after root_steps
    run_options: tuple[str, ...] = ()  # RUN's own options for `steps`: the netrc secret's mount
    index_url: str | None = None  # a private index (the README names it; --vendor downloads from it)
    extra_index_urls: tuple[str, ...] = ()
    ca: bool = False  # CA_BUNDLE ships: pip trusts it (and --vendor, when it downloads)
    ca_at_runtime: bool = False  # the CA certificates are trusted by the serving image too


def pip_install(pip: str, files: tuple[RequirementsFile, ...], wheels: str | None) -> Step:
    """`pip install` of requirement files, offline from vendored wheels when there are some."""
    offline = (("--no-index", "--find-links", wheels),) if wheels else ()
    arguments = offline + tuple(("--requirement", f.build_path) for f in files)
    return Step("pip", (pip, "install", *PIP_OPTIONS), arguments, files)


def _copies(*options: str) -> tuple[tuple[str, ...], ...]:
    """The environment files alone: the runtime's requirements and the environment folder."""
    return (
        (*options, layout.RUNTIME_REQUIREMENTS, layout.build_path(layout.RUNTIME_REQUIREMENTS)),
        (*options, f"{layout.ENVIRONMENT_DIR}/", f"{layout.build_path(layout.ENVIRONMENT_DIR)}/"),
    )


def pip_build(
    requirements_file: str, hashed: bool, vendored: bool, python: str, platform: str, reason: str = "pip requirements"
) -> EnvironmentBuild:
    """The runtime's requirements and the user's, installed into a venv by pip."""
    runtime, user = RequirementsFile.at(layout.RUNTIME_REQUIREMENTS), RequirementsFile.at(requirements_file)
    wheels = layout.build_path(layout.WHEELS_DIR) if vendored else None
    runs = ((runtime,), (user,)) if hashed else ((runtime, user),)
    return EnvironmentBuild(
        kind="pip",
        reason=reason,
        copies=_copies(),
        steps=tuple(pip_install(f"{layout.VENV}/bin/pip", run, wheels) for run in runs),
        prefix=layout.VENV,
        python_command="python",
        vendored=vendored,
        python=python,
        platform=platform,
        hashed=hashed,
    )


def conda_build(
    conda_file: str, conda: CondaInstall, vendored: bool, python: str, platform: str, reason: str
) -> EnvironmentBuild:
    """The conda file's environment installed by micromamba into its image's base environment,
    then the runtime's requirements by that environment's pip; caches cleaned, and the prefix
    made writable by its owner alone (micromamba's image leaves it a+rwx), in stage 1.
    Vendored: from the bundle's own channel, offline, and the pip: list from its wheels."""
    runtime = RequirementsFile.at(layout.RUNTIME_REQUIREMENTS)
    wheels = layout.build_path(layout.WHEELS_DIR) if vendored else None
    variables = (f"CONDA_OVERRIDE_CUDA={conda.cuda}",) if conda.cuda else ()
    channels: tuple[tuple[str, ...], ...] = () if conda.file_has_channels else (("--channel", FALLBACK_CHANNEL),)
    if vendored:  # micromamba runs pip for the pip: list: PIP_* variables keep it offline too
        variables += ("PIP_NO_INDEX=1", f"PIP_FIND_LINKS={wheels}")
        channels = (
            ("--offline", "--override-channels", "--channel", f"file://{layout.build_path(CONDA_CHANNEL_DIR)}"),
        )
    program = ("micromamba", "install", "--yes", "--name", "base")
    program = ("env", *variables, *program) if variables else program
    create = Step("conda-install", program, (*channels, ("--file", layout.build_path(conda_file), *conda.extra_specs)))
    return EnvironmentBuild(
        kind="conda",
        reason=reason,
        copies=_copies(f"--chown={MICROMAMBA_USER}"),  # micromamba's pip writes beside the conda file
        steps=(
            create,
            pip_install(f"{CONDA_PREFIX}/bin/pip", (runtime,), wheels),
            Step("conda-clean", ("micromamba", "clean", "--all", "--yes")),
        ),
        prefix=CONDA_PREFIX,
        python_command=f"{CONDA_PREFIX}/bin/python",
        vendored=vendored,
        python=python,
        platform=platform,
        builder_image=MICROMAMBA_IMAGE,
        conda=conda,
        root_steps=(Step("seal", ("chmod", "-R", "go-w", CONDA_PREFIX)),),
        builder_user=MICROMAMBA_USER,
    )


def with_package_index(
    build: EnvironmentBuild, index_url: str | None, extra_index_urls: tuple[str, ...], ca: bool, ca_at_runtime: bool
) -> EnvironmentBuild:
    """The build, installing from a private index (pip's options; micromamba's pip: list through
    PIP_* variables) with the CA certificates given, and the netrc secret mounted for its
    credentials. Vendored installs reach no index: they keep only the CA for runtime."""
    if build.kind == "conda" and ca_at_runtime:
        raise ConfigError(
            "[environment] trust_ca_at_runtime: the conda builder's serving image (debian:bookworm-slim) has no "
            "update-ca-certificates; trust the CA in your entry script, or add it in a Dockerfile template"
        )
    if build.kind == "conda" and len(extra_index_urls) > 1:
        raise ConfigError(
            "[environment] extra_index_urls: with the conda builder, micromamba's pip takes one extra index "
            "(PIP_EXTRA_INDEX_URL, one word in the Dockerfile); list one"
        )
    facts = {"index_url": index_url, "extra_index_urls": extra_index_urls, "ca": ca, "ca_at_runtime": ca_at_runtime}
    if build.vendored:
        return replace(build, **facts)
    index = ((("--index-url", index_url),) if index_url else ()) + tuple(
        ("--extra-index-url", u) for u in extra_index_urls
    )
    cert = (("--cert", layout.build_path(CA_BUNDLE)),) if ca else ()
    variables = (f"NETRC={NETRC_PATH}",)
    conda_variables = variables + ((f"PIP_INDEX_URL={index_url}",) if index_url else ())
    conda_variables += (f"PIP_EXTRA_INDEX_URL={' '.join(extra_index_urls)}",) if extra_index_urls else ()
    conda_variables += (
        (f"PIP_CERT={layout.build_path(CA_BUNDLE)}", f"MAMBA_SSL_VERIFY={layout.build_path(CA_BUNDLE)}") if ca else ()
    )

    def changed(step: Step) -> Step:
        if step.kind == "pip":
            # --no-input: a refused credential ends the build with pip's error, never a prompt that waits.
            return replace(
                step,
                program=("env", *variables, *step.program),
                arguments=(("--no-input",), *index, *cert, *step.arguments),
            )
        if step.kind == "conda-install":  # env VAR=... micromamba ...: the variables join the others
            words = step.program[1:] if step.program[0] == "env" else step.program
            assignments = tuple(itertools.takewhile(lambda word: "=" in word, words))
            return replace(step, program=("env", *assignments, *conda_variables, *words[len(assignments) :]))
        return step

    uid = (build.builder_user or "0:0").split(":")[0]
    mount = f"--mount=type=secret,id={NETRC_SECRET},target={NETRC_PATH},mode=0400,uid={uid}"
    return replace(
        build,
        steps=tuple(changed(step) for step in build.steps),
        run_options=(mount,),
        **facts,
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
