"""The bundle contract: where things live in a bundle and in its image, the scoring server's
environment, and the manifest (bundle.json). docs/bundle-layout.md is its prose twin;
change the two together.

Everything that names a path inside a bundle or an image, and everything that reads or
writes bundle.json, comes from here: the generator (plan, render), the commands that read
a saved bundle (verify, diff, serve, build, save --force) and the tests. Pure, except
`read_manifest`, which reads bundle.json and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from bundler.errors import BundlerError

# -- files and folders of a bundle (POSIX paths relative to its root) -----------------

MANIFEST = "bundle.json"
REGISTRY_LOGIN = "registry-login.json"
DOCKERFILE = "Dockerfile"
DOCKERIGNORE = ".dockerignore"
README = "README.md"
MODELS_DIR = "azureml-models"
APP_DIR = "azureml-app"
RUNTIME_DIR = "runtime"
RUNTIME_PACKAGE = "bundler_runtime"
RUNTIME_REQUIREMENTS = f"{RUNTIME_DIR}/requirements.txt"
ENVIRONMENT_DIR = "environment"
DEFAULT_REQUIREMENTS = f"{ENVIRONMENT_DIR}/requirements.txt"
WHEELS_DIR = f"{ENVIRONMENT_DIR}/wheels"
BASE_IMAGES_DIR = "base-images"  # --with-base-image: the base image(s), as `docker load` reads them


@dataclass(frozen=True)
class BundleNames:
    """The bundle's own names, as the templates see them (`image.bundle`)."""

    manifest: str = MANIFEST
    registry_login: str = REGISTRY_LOGIN
    base_images_dir: str = BASE_IMAGES_DIR
    kubernetes: str = "deploy/kubernetes.yaml"
    compose: str = "deploy/compose.yaml"
    readme: str = README
    models_dir: str = MODELS_DIR
    app_dir: str = APP_DIR
    runtime_dir: str = RUNTIME_DIR
    environment_dir: str = ENVIRONMENT_DIR
    wheels_dir: str = WHEELS_DIR


BUNDLE = BundleNames()

# Every file is written with one of these modes and every folder with DIR_MODE; verify
# holds a bundle to them, since COPY carries modes into the image.
FILE_MODE, EXEC_MODE, DIR_MODE = 0o644, 0o755, 0o755

# -- paths inside the image -------------------------------------------------------------

APP_ROOT = "/var/azureml-app"
MODELS_ROOT = f"{APP_ROOT}/{MODELS_DIR}"
VENV = "/opt/venv"
RUNTIME_ROOT = "/opt/bundler"
BUILD_ROOT = "/tmp/bundler"  # where stage 1 reads the environment files
USER_NAME, USER_ID = "bundler", 10001
# The image's Python: the scoring server's gunicorn needs 3.10 (and 3.9 is past its end of life).
OLDEST_PYTHON = (3, 10)
NEWER_PYTHON = "the scoring server needs Python 3.10 or newer"


def python_too_old(version: str) -> bool:
    """True for an X.Y the image's Python cannot be, e.g. "3.8"."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) < OLDEST_PYTHON


def model_folder(name: str, version: int) -> str:
    """A model's folder in the bundle, e.g. azureml-models/diabetes/1."""
    return f"{MODELS_DIR}/{name}/{version}"


def base_image_file(image: str) -> str:
    """Where --with-base-image puts IMAGE in the bundle: its reference as a file name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", image).strip("-.")[:120]
    return f"{BASE_IMAGES_DIR}/{name}.tar"


def build_path(bundle_path: str) -> str:
    """Where stage 1 of the Dockerfile copies an environment file of the bundle."""
    if bundle_path == RUNTIME_REQUIREMENTS:
        return f"{BUILD_ROOT}/runtime-requirements.txt"
    return f"{BUILD_ROOT}/{bundle_path}"


@dataclass(frozen=True)
class ServerSettings:
    """The scoring server's settings, as bundle.json records them and the server reads them."""

    port: int = 5001
    workers: int = 1
    scoring_timeout: int = 60
    max_request_bytes: int = 100 * 1024 * 1024


@dataclass(frozen=True)
class Places:
    """Where the server finds the app, the models and itself: in the image, or in a saved
    bundle on this machine (`bundler serve`)."""

    app_root: str
    models_root: str
    runtime_root: str

    @classmethod
    def in_bundle(cls, bundle: Path) -> Places:
        return cls(str(bundle / APP_DIR), str(bundle / MODELS_DIR), str(bundle / RUNTIME_DIR))


IMAGE = Places(APP_ROOT, MODELS_ROOT, RUNTIME_ROOT)


def model_dir(places: Places, models: tuple[tuple[str, int], ...]) -> str:
    """AZUREML_MODEL_DIR as Azure ML sets it: one model's own folder, else (several models,
    or none) the folder that holds every <name>/<version>/ folder."""
    if len(models) == 1:
        name, version = models[0]
        return f"{places.models_root}/{name}/{version}"
    return places.models_root


def server_variables(
    places: Places, entry_script: str, models: tuple[tuple[str, int], ...], server: ServerSettings, engine: str
) -> tuple[tuple[str, str], ...]:
    """The variables the scoring server reads, in the order the Dockerfile sets them; the
    image and `bundler serve` both take them from here."""
    env = [
        ("AML_APP_ROOT", places.app_root),
        ("AZUREML_ENTRY_SCRIPT", entry_script),
        ("AZUREML_MODEL_DIR", model_dir(places, models)),
        ("BUNDLER_PORT", str(server.port)),
        ("BUNDLER_WORKERS", str(server.workers)),
        ("BUNDLER_SCORING_TIMEOUT", str(server.scoring_timeout)),
    ]
    if engine == "bundler":  # the reference server has no request body limit to set
        env.append(("BUNDLER_MAX_REQUEST_BYTES", str(server.max_request_bytes)))
    return tuple(env)


def python_variables(runtime_root: str) -> tuple[tuple[str, str], ...]:
    """How Python runs the server: the runtime importable, no bytecode written (a read-only
    root file system), output unbuffered (logs arrive as they happen)."""
    return (("PYTHONPATH", runtime_root), ("PYTHONDONTWRITEBYTECODE", "1"), ("PYTHONUNBUFFERED", "1"))


def image_variables(
    entry_script: str, models: tuple[tuple[str, int], ...], server: ServerSettings, engine: str
) -> tuple[tuple[str, str], ...]:
    """ENV of the final image after PATH (which the Dockerfile writes itself: its value refers
    to the base image's $PATH): the Python set-up, then the server's variables."""
    return python_variables(RUNTIME_ROOT) + server_variables(IMAGE, entry_script, models, server, engine)


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The variables above (and PATH): a conda file's variables may not change them.
_RESERVED_VARIABLES = ("PATH", "PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")
_RESERVED_PREFIXES = ("BUNDLER_", "AML_", "AZUREML_")


def reserved_variable(name: str) -> bool:
    """True for a variable the image sets for its server, or one of that server's families."""
    return name in _RESERVED_VARIABLES or name.startswith(_RESERVED_PREFIXES)


def server_command(engine: str) -> tuple[str, ...]:
    """What starts the server: bundler's runtime, or (engine azureml) its launcher of azmlinfsrv,
    which takes the same BUNDLER_* settings."""
    module = f"{RUNTIME_PACKAGE}.reference" if engine == "azureml" else RUNTIME_PACKAGE
    return ("python", "-m", module)


HEALTHCHECK = ("python", "-m", f"{RUNTIME_PACKAGE}.healthcheck")  # standard library only: no curl in slim images

# One component of an image name, as Docker accepts it: lower-case letters and digits,
# separated by one of ".", "_", "__" or dashes.
_IMAGE_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


def image_name(name: str) -> str:
    """A name as an image name: lower-cased, and where Docker would refuse it ("a..b",
    "model-"), each run of separators becomes one dash."""
    lowered = name.lower()
    if _IMAGE_NAME.fullmatch(lowered):
        return lowered
    return re.sub(r"[^a-z0-9]+", "-", lowered).strip("-") or "model"


def default_tag(model_names: tuple[str, ...], entry_script: str) -> str:
    """The image name `save` suggests and `build` uses: the first model's, else (a service
    without a model) the entry script's."""
    return image_name(model_names[0] if model_names else PurePosixPath(entry_script).stem)


# -- bundle.json -------------------------------------------------------------------------

BUNDLE_FORMAT = 1


@dataclass(frozen=True)
class FileRecord:
    mode: int
    size: int
    sha256: str

    @classmethod
    def of(cls, mode: int, data: bytes) -> FileRecord:
        return cls(mode, len(data), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class ModelRecord:
    name: str
    version: int
    files: tuple[tuple[str, str, int], ...]  # (path in the model's folder, sha256, size)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class Manifest:
    """bundle.json: the generator, the inputs, and every other file's mode, size and sha256.
    Written with sorted keys and no time, host path or user name."""

    generator_version: str
    models: tuple[ModelRecord, ...]
    entry_script: str
    requirements_file: str
    engine: str
    base_image: str
    server: ServerSettings
    vendor: bool
    files: dict[str, FileRecord] = field(default_factory=dict)
    conda_file: str | None = None  # the conda file the environment comes from, when there is one
    builder: str = "pip"  # what installs the environment: pip (a venv) or conda (micromamba)
    # --with-base-image: (image, path in the bundle, image ID as `docker load` gives it)
    base_image_archives: tuple[tuple[str, str, str], ...] = ()

    @property
    def model_keys(self) -> tuple[tuple[str, int], ...]:
        return tuple((m.name, m.version) for m in self.models)

    def to_bytes(self) -> bytes:
        return json_bytes(
            {
                "bundle_format": BUNDLE_FORMAT,
                "generator": {"name": "bundler", "version": self.generator_version},
                "inputs": {
                    "models": [
                        {
                            "ref": m.ref,
                            "name": m.name,
                            "version": m.version,
                            "files": [{"path": p, "sha256": s, "size": n} for p, s, n in m.files],
                        }
                        for m in self.models
                    ],
                    "entry_script": self.entry_script,
                    "requirements_file": self.requirements_file,
                    "engine": self.engine,
                    "base_image": self.base_image,
                    "server": {
                        "port": self.server.port,
                        "workers": self.server.workers,
                        "scoring_timeout": self.server.scoring_timeout,
                        "max_request_bytes": self.server.max_request_bytes,
                    },
                    "vendor": self.vendor,
                    # Only when a conda file was given: pip bundles read as they always did.
                    **({"conda_file": self.conda_file, "builder": self.builder} if self.conda_file else {}),
                    **(
                        {
                            "base_image_archives": [
                                {"image": image, "path": path, "id": image_id}
                                for image, path, image_id in self.base_image_archives
                            ]
                        }
                        if self.base_image_archives
                        else {}
                    ),
                },
                "files": {
                    path: {"mode": f"{r.mode:04o}", "size": r.size, "sha256": r.sha256}
                    for path, r in sorted(self.files.items())
                },
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse bundle.json; raises ValueError saying what is malformed."""
        try:
            document = json.loads(data.decode("utf-8"))
        except RecursionError:
            raise ValueError("nested too deeply") from None
        top = _table(document, "the manifest")
        inputs = _table(top.get("inputs", {}), "inputs")
        files = {path: _file_record(path, meta) for path, meta in _table(top.get("files"), "files").items()}
        server = _table(inputs.get("server", {}), "inputs.server")
        defaults = ServerSettings()
        return cls(
            generator_version=str(_table(top.get("generator", {}), "generator").get("version", "")),
            models=tuple(_model_record(m) for m in _list(inputs.get("models", []), "inputs.models")),
            entry_script=_text(inputs.get("entry_script", ""), "inputs.entry_script"),
            # Bundles from before bundle.json named it installed the default file.
            requirements_file=_requirements_file(inputs.get("requirements_file", DEFAULT_REQUIREMENTS)),
            engine=_text(inputs.get("engine", "bundler"), "inputs.engine"),
            base_image=_text(inputs.get("base_image", ""), "inputs.base_image"),
            server=ServerSettings(
                **{
                    key: _number(server.get(key, getattr(defaults, key)), f"inputs.server.{key}")
                    for key in ("port", "workers", "scoring_timeout", "max_request_bytes")
                }
            ),
            vendor=bool(inputs.get("vendor", False)),
            files=files,
            conda_file=_environment_file(inputs["conda_file"]) if "conda_file" in inputs else None,
            builder=_text(inputs.get("builder", "pip"), "inputs.builder"),
            base_image_archives=tuple(
                (
                    _text(item.get("image"), "inputs.base_image_archives.image"),
                    _text(item.get("path"), "inputs.base_image_archives.path"),
                    _text(item.get("id"), "inputs.base_image_archives.id"),
                )
                for item in (
                    _table(i, "inputs.base_image_archives")
                    for i in _list(inputs.get("base_image_archives", []), "inputs.base_image_archives")
                )
            ),
        )


def json_bytes(data: dict) -> bytes:
    """JSON as every bundle file holds it: sorted keys, two-space indent, a final newline."""
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def is_bundle(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def require_bundle(folder: Path) -> None:
    if not is_bundle(folder):
        raise BundlerError(f"{folder} is not a bundle (no {MANIFEST}); make one with: bundler save {folder}")


def read_manifest(folder: Path) -> Manifest:
    """The bundle's manifest; one line naming the file when it is missing or malformed."""
    require_bundle(folder)
    path = folder / MANIFEST
    try:
        return Manifest.from_bytes(path.read_bytes())
    except (OSError, ValueError, MemoryError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise BundlerError(f"{path}: not a readable bundle manifest ({reason}); save the bundle again") from None


def _table(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a table")
    return value


def _list(value, what: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return value


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    return value


def _number(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} is not a whole number")
    return value


def _file_record(path: str, meta) -> FileRecord:
    meta = _table(meta, f"the entry of {path!r}")
    mode = meta.get("mode")
    try:
        mode = int(mode, 8) if isinstance(mode, str) else -1
    except ValueError:
        mode = -1  # not a mode: the file cannot match it, so verify reports it modified
    size, sha = meta.get("size"), meta.get("sha256")
    return FileRecord(mode, size if isinstance(size, int) else -1, sha if isinstance(sha, str) else "")


def _model_record(value) -> ModelRecord:
    model = _table(value, "a model of inputs.models")
    name, version = _text(model.get("name"), "a model's name"), _number(model.get("version"), "a model's version")
    files = []
    for item in _list(model.get("files", []), "a model's files"):
        item = _table(item, "a model file")
        files.append(
            (
                _text(item.get("path"), "a model file's path"),
                _text(item.get("sha256"), "a model file's sha256"),
                _number(item.get("size"), "a model file's size"),
            )
        )
    return ModelRecord(name, version, tuple(files))


def _requirements_file(value) -> str:
    """The requirements file the image installs; it must stay inside environment/."""
    return _environment_file(value, "inputs.requirements_file")


def _environment_file(value, what: str = "inputs.conda_file") -> str:
    path = PurePosixPath(_text(value, what))
    if path.parts[:1] != (ENVIRONMENT_DIR,) or ".." in path.parts or len(path.parts) < 2:
        raise ValueError(f"{what} {str(path)!r} is not a file under {ENVIRONMENT_DIR}/")
    return str(path)
