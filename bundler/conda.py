"""Read conda environment files as conda reads them, and say whether pip could install them.

A conda file (`environment.yml`, Azure ML's `conda_dependencies.yml`) is read with PyYAML's
safe loader, keeping each value's line, so every problem is one line with file and line:
`name`, `channels`, `dependencies` (match specs, and the nested `pip:` list, read as
requirements are), `variables`, and `prefix` (a path on this machine: ignored, never
emitted). A local path or `file://` channel would not exist at build time; a channel or pip
URL holding a credential would ship: both are refused.

`translate` says whether every conda package has an exact PyPI twin (a small table), and
gives the pip requirement for each, so that the pip builder can install the environment into
a venv; else, which package needs the conda builder and why. `parse` and `translate` are
pure; `collect` reads the conda file and the files its pip list includes.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bundler import credentials, layout, requirements
from bundler.errors import InputError

KEYS = ("name", "channels", "dependencies", "variables", "prefix")
# Channels a plain name on PyPI stands for: conda's defaults and the community's.
DEFAULT_CHANNELS = ("defaults", "conda-forge", "anaconda", "main", "pkgs/main", "r")
# conda package -> PyPI distribution, for packages whose versions are the same on both sides.
# fmt: off
# Left out on purpose: lightgbm (its PyPI wheel needs libgomp, which python:*-slim lacks) and
# tzdata (conda's is the zoneinfo database, versioned 2024a; PyPI's a Python package, 2024.1).
PYPI_TWINS = {
    "numpy": "numpy", "scipy": "scipy", "pandas": "pandas", "scikit-learn": "scikit-learn", "joblib": "joblib",
    "pytorch": "torch", "torchvision": "torchvision", "py-xgboost": "xgboost", "xgboost": "xgboost",
    "catboost": "catboost", "onnx": "onnx", "onnxruntime": "onnxruntime",
    "pyyaml": "pyyaml", "matplotlib": "matplotlib", "matplotlib-base": "matplotlib", "seaborn": "seaborn",
    "scikit-image": "scikit-image", "statsmodels": "statsmodels", "nltk": "nltk", "requests": "requests",
    "flask": "flask", "pillow": "pillow", "tqdm": "tqdm", "click": "click", "pyarrow": "pyarrow",
    "numba": "numba", "tensorflow": "tensorflow", "keras": "keras", "transformers": "transformers",
    "tokenizers": "tokenizers", "sentencepiece": "sentencepiece", "protobuf": "protobuf", "psutil": "psutil",
    "python-dateutil": "python-dateutil", "pytz": "pytz", "six": "six", "h5py": "h5py", "openpyxl": "openpyxl",
    "xlrd": "xlrd", "sqlalchemy": "sqlalchemy", "cloudpickle": "cloudpickle", "dill": "dill",
    "mlflow": "mlflow", "shap": "shap", "plotly": "plotly", "pydantic": "pydantic", "fastapi": "fastapi",
    "setuptools": "setuptools", "wheel": "wheel", "cython": "cython", "sympy": "sympy", "networkx": "networkx",
    "imbalanced-learn": "imbalanced-learn", "gensim": "gensim", "spacy": "spacy", "azure-storage-blob":
    "azure-storage-blob", "inference-schema": "inference-schema", "packaging": "packaging",
    # pure-Python libraries, the same release on both sides
    "attrs": "attrs", "certifi": "certifi", "idna": "idna", "urllib3": "urllib3", "charset-normalizer":
    "charset-normalizer", "typing_extensions": "typing-extensions", "typing-extensions": "typing-extensions",
    "tabulate": "tabulate", "jinja2": "jinja2", "markupsafe": "markupsafe", "werkzeug": "werkzeug",
    "itsdangerous": "itsdangerous", "cachetools": "cachetools", "filelock": "filelock", "fsspec": "fsspec",
    "boto3": "boto3", "botocore": "botocore", "azure-identity": "azure-identity", "pytest": "pytest",
    "ipykernel": "ipykernel", "ipython": "ipython", "tenacity": "tenacity", "toolz": "toolz",
    "wrapt": "wrapt", "pyparsing": "pyparsing", "regex": "regex", "threadpoolctl":
    "threadpoolctl", "patsy": "patsy", "xlsxwriter": "xlsxwriter", "smart_open": "smart-open",
}
# fmt: on
NOT_PACKAGES = ("python", "pip")  # the interpreter and its installer: the image's, not requirements


class CondaFileError(InputError):
    """A conda file bundler cannot read, or one that would not build or would carry a secret."""


@dataclass(frozen=True)
class MatchSpec:
    text: str  # as written
    line: int
    name: str
    channel: str | None = None  # `channel::name`
    version: str | None = None  # conda's, e.g. "1.3" (from =1.3), "==1.3.0", ">=1.24,<2", "1.3.*"
    build: str | None = None  # a build string: conda only
    fuzzy: bool = False  # `name=1.3`: any 1.3.*


@dataclass(frozen=True)
class CondaEnvironment:
    name: str | None
    channels: tuple[tuple[str, int], ...]
    dependencies: tuple[MatchSpec, ...]
    pip: tuple[tuple[str, int], ...]  # the nested pip: list, line by line
    variables: tuple[tuple[str, str], ...] = ()
    prefix_span: tuple[int, int] | None = None  # where `prefix:` (a path on this machine) is in the text

    @property
    def python(self) -> MatchSpec | None:
        return next((spec for spec in self.dependencies if spec.name == "python"), None)

    @property
    def listed_channels(self) -> tuple[tuple[str, int], ...]:
        """The channels the file names, with their lines; `nodefaults` (conda: "not defaults") is none."""
        return tuple((name, line) for name, line in self.channels if name != "nodefaults")

    @cached_property
    def python_versions(self) -> tuple[str, ...] | None:
        """The X.Y versions the file's python spec admits (3.0 to 3.19): ("3.10",) for python=3.10,
        python=3.10.12 or python>=3.10,<3.11; () when it admits none of them; None when there is
        no python spec or pip could not read it."""
        spec = self.python
        exact = re.fullmatch(r"(?:==)?(3\.\d{1,2})(?:\.[\d*]+)*", spec.version or "") if spec else None
        if exact:
            return (exact.group(1),)
        version = pip_version(spec) if spec else None
        if version is None:
            return None
        from packaging.specifiers import SpecifierSet

        admits = SpecifierSet(version)
        return tuple(f"3.{minor}" for minor in range(20) if any(f"3.{minor}.{patch}" in admits for patch in range(31)))


@dataclass(frozen=True)
class Translation:
    """What pip would install for a conda file, or why it cannot stand in for conda."""

    requirements: tuple[tuple[str, MatchSpec], ...]  # (pip requirement, the conda spec it comes from)
    blocker: tuple[MatchSpec, str] | None  # (the first package pip cannot install as conda would, why)


@dataclass(frozen=True)
class CondaFiles:
    """A conda file on disk: the file, the files its pip list includes (relative paths, as
    requirements includes ship), and what it says."""

    top: Path
    included: tuple[tuple[str, Path], ...]
    environment: CondaEnvironment
    pip_requirements: tuple[requirements.Requirement, ...]
    shipped: bytes | None = None  # what ships when it is not the file as it is: without its prefix: line


def parse(text: str, where: str) -> CondaEnvironment:
    """A conda file's contents; every problem is a CondaFileError naming `where` and a line."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise CondaFileError(f"{where}:{line}: not valid YAML ({exc.problem}); fix the syntax there") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise CondaFileError(f"{where}: not valid YAML ({type(exc).__name__}); fix the syntax") from None
    if not isinstance(root, yaml.MappingNode):
        line = root.start_mark.line + 1 if root is not None else 1
        raise CondaFileError(f"{where}:{line}: a conda file is a mapping (name:, channels:, dependencies:)")
    values = {}
    for key, value in root.value:
        if key.value not in KEYS:
            raise CondaFileError(
                f"{where}:{key.start_mark.line + 1}: unknown key {key.value!r}; a conda file holds {', '.join(KEYS)}"
            )
        if key.value in values:
            raise CondaFileError(f"{where}:{key.start_mark.line + 1}: {key.value} is given twice; keep one")
        values[key.value] = value
    channels = tuple(_channel(node, where) for node in _sequence(values.get("channels"), "channels", where))
    dependencies, pip = [], []
    for node in _sequence(values.get("dependencies"), "dependencies", where):
        if isinstance(node, yaml.MappingNode) and [k.value for k, _ in node.value] == ["pip"]:
            pip += [  # several pip: lists install together, as conda has them
                (_string(item, "a pip entry", where), item.start_mark.line + 1)
                for item in _sequence(node.value[0][1], "pip", where)
            ]
        else:
            dependencies.append(match_spec(_string(node, "a dependency", where), node.start_mark.line + 1, where))
    name = values.get("name")
    return CondaEnvironment(
        name=_string(name, "name", where) if name is not None else None,
        channels=channels,
        dependencies=tuple(dependencies),
        pip=tuple(pip),
        variables=_variables(values.get("variables"), where),
        prefix_span=_lines_of(text, root, "prefix"),
    )


def _lines_of(text: str, root, key: str) -> tuple[int, int] | None:
    """The span of the whole lines a top-level key and its value take in text, if it is there."""
    for key_node, value in root.value:
        if key_node.value == key:
            start = text.rfind("\n", 0, key_node.start_mark.index) + 1
            end = text.find("\n", max(value.end_mark.index - 1, key_node.start_mark.index))
            return start, len(text) if end < 0 else end + 1
    return None


def _sequence(node, what: str, where: str) -> list:
    import yaml

    if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")):
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise CondaFileError(f"{where}:{node.start_mark.line + 1}: {what} must be a list (- item lines)")
    return node.value


def _string(node, what: str, where: str) -> str:
    import yaml

    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
        shown = getattr(node, "value", "")
        kind = f'{shown!r}; quote it ("...")' if isinstance(node, yaml.ScalarNode) else "a list or a mapping"
        raise CondaFileError(f"{where}:{node.start_mark.line + 1}: {what} must be a string, not {kind}")
    return node.value


def _channel(node, where: str) -> tuple[str, int]:
    channel, line = _string(node, "a channel", where), node.start_mark.line + 1
    return _channel_value(channel, line, where), line


def _channel_value(channel: str, line: int, where: str) -> str:
    if channel.startswith(("file:", "/", ".", "~")) or re.match(r"[A-Za-z]:\\", channel):
        raise CondaFileError(
            f"{where}:{line}: channel {channel} is a folder on this machine, which the image build cannot see; "
            "publish its packages to a channel the build can reach, or save with --vendor"
        )
    # anaconda.org's tokens travel in the path: https://conda.anaconda.org/t/<token>/channel
    token = re.search(r"/t/(?!\$\{[A-Za-z0-9_]+\}/)[^/]+/", channel)
    secret = credentials.find(channel) or ("/t/****/" if token else None)
    if secret:
        raise CondaFileError(
            f"{where}:{line}: channel URL holds a credential ({secret}); {requirements.CREDENTIAL_FIX}"
        )
    return channel


def _variables(node, where: str) -> tuple[tuple[str, str], ...]:
    import yaml

    if node is None:
        return ()
    if not isinstance(node, yaml.MappingNode):
        raise CondaFileError(f"{where}:{node.start_mark.line + 1}: variables must be a mapping (NAME: value)")
    variables = []
    for key, value in node.value:
        name = _string(key, "a variable's name", where)
        if not layout.ENV_NAME.fullmatch(name):
            raise CondaFileError(f"{where}:{key.start_mark.line + 1}: variable {name!r} is not a valid name")
        line = key.start_mark.line + 1
        if layout.reserved_variable(name):
            raise CondaFileError(
                f"{where}:{line}: variable {name} would change how the image's server runs (bundler sets it); "
                "drop it from variables"
            )
        if not isinstance(value, yaml.ScalarNode):  # a number or true is fine: it becomes text, as conda has it
            raise CondaFileError(f"{where}:{value.start_mark.line + 1}: the value of {name} must be a single value")
        if not value.value.isprintable():
            raise CondaFileError(f"{where}:{line}: the value of {name} holds a line break or a control character")
        secret = credentials.find(value.value)
        if secret:  # it becomes an ENV line of the image
            raise CondaFileError(
                f"{where}:{line}: variable {name} holds a credential ({secret}); {requirements.CREDENTIAL_FIX}"
            )
        variables.append((name, value.value))
    return tuple(variables)


_SPEC = re.compile(r"(?:(?P<channel>\S+?)::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.+-]*)\s*(?P<rest>.*)")


def match_spec(text: str, line: int, where: str) -> MatchSpec:
    """A conda match spec: `name`, `name=1.3` (any 1.3.*), `name==1.3.0`, `name>=1.24,<2`,
    `name 1.3.*`, `name=1.3=build`, `name 1.3 build`, `channel::name...`."""
    match = _SPEC.fullmatch(text.strip())
    if not match:
        raise CondaFileError(f"{where}:{line}: {text!r} is not a conda package spec (name, name=1.2, name>=1.2)")
    channel, name, rest = match["channel"], match["name"].lower(), match["rest"].strip()
    if channel:
        _channel_value(channel, line, where)
    version, _, build = rest.partition(" ") if " " in rest else (rest, "", "")
    fuzzy = version.startswith("=") and not version.startswith("==")
    if fuzzy:
        version = version[1:]
    # A build after the version: name=1.3=build, name>=1.3=build
    split = re.match(r"(.*?[0-9*])=(?!=)(.+)", version)
    if split and not build:
        version, build = split.groups()
    return MatchSpec(text.strip(), line, name, channel, version or None, build.strip() or None, fuzzy)


def translate(environment: CondaEnvironment) -> Translation:
    """The pip requirement for each conda package, while each has an exact PyPI twin; packages
    may come from a channel other than the default ones only when conda builds them."""
    private = next(((c, line) for c, line in environment.listed_channels if c not in DEFAULT_CHANNELS), None)
    converted = []
    for spec in environment.dependencies:
        reason = why_not_pip(spec)
        if reason is None and private and spec.name not in NOT_PACKAGES:
            reason = f"{spec.name} may come from the channel {private[0]} (line {private[1]}), which pip cannot read"
        if reason:
            return Translation(tuple(converted), (spec, reason))
        if spec.name not in NOT_PACKAGES:
            converted.append((PYPI_TWINS[spec.name] + pip_version(spec), spec))
    return Translation(tuple(converted), None)


def why_not_pip(spec: MatchSpec) -> str | None:
    """Why pip cannot install this package as conda would, or None (python and pip: the image's)."""
    if spec.name not in PYPI_TWINS and spec.name not in NOT_PACKAGES:
        return f"{spec.name} has no PyPI twin that bundler knows"
    if spec.channel and spec.channel not in DEFAULT_CHANNELS:
        return f"{spec.text} comes from the channel {spec.channel}"
    if spec.build:
        return f"{spec.text} asks for a build ({spec.build}), which only conda has"
    if spec.name not in NOT_PACKAGES and pip_version(spec) is None:
        return f"{spec.text} has a version spec pip does not read the same way"
    return None


def pip_version(spec: MatchSpec) -> str | None:
    """conda's version spec as pip's (PEP 440), or None where pip would not read it the same."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    version = (spec.version or "").replace(" ", "")
    if version in ("", "*"):
        return ""
    if "|" in version or "[" in version:
        return None
    parts = []
    for part in version.split(","):
        operator, value = re.match(r"(==|!=|>=|<=|~=|>|<|=)?(.*)", part).groups()
        if value.endswith("*") and not value.endswith(".*"):
            value = value[:-1].rstrip(".") + ".*"  # conda's 1.3* is pip's 1.3.*
        if operator is None or operator == "=":
            fuzzy = spec.fuzzy or operator == "=" or value.endswith(".*")
            operator = "=="
            if fuzzy and not value.endswith(".*"):
                value += ".*"  # name=1.3 is any 1.3.*
        parts.append(f"{operator}{value}")
    text = ",".join(parts)
    try:
        SpecifierSet(text)
    except InvalidSpecifier:
        return None
    return text


def collect(top: Path, vendored: bool = False) -> CondaFiles:
    """The conda file, checked, and the files its pip list includes (`-r`, `-c`), which ship with
    it at the same relative paths, as requirements includes do."""
    where = str(top)
    try:
        raw = top.read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CondaFileError(f"{top}: cannot read the conda file ({exc}); it must be UTF-8 text") from exc
    environment = parse(text, where)
    shipped = None
    if environment.prefix_span:  # a path on this machine (conda env export writes it): never shipped
        start, end = environment.prefix_span
        bom = raw[:3] if raw.startswith(b"\xef\xbb\xbf") else b""
        shipped = bom + (text[:start] + text[end:]).encode()
    if environment.pip:
        parsed = requirements.parse("".join(f"{line}\n" for line, _ in environment.pip))
        lines = {index + 1: number for index, (_, number) in enumerate(environment.pip)}

        def where_in_pip(index: int) -> str:
            return f"{where}:{lines.get(index, 0)}: pip: "

        try:
            requirements.refuse_what_the_build_cannot_use(parsed, vendored, where_in_pip)
        except requirements.RequirementsError as exc:
            raise CondaFileError(str(exc)) from None
        included, pip_requirements = [], list(parsed.requirements)
        for index, include in parsed.includes:
            rel = posixpath.normpath(include)
            problem = requirements.include_problem(include, rel, top.parent / include, top)
            if problem:
                raise CondaFileError(f"{where_in_pip(index)}{problem.replace(top.name, 'the conda file')}")
            files = requirements.collect(top.parent / include, vendored=vendored)
            included += [
                (posixpath.normpath(posixpath.join(posixpath.dirname(rel), sub)), path) for sub, path in files.files
            ]
            pip_requirements += files.requirements
        return CondaFiles(top, tuple(dict.fromkeys(included)), environment, tuple(pip_requirements), shipped)
    return CondaFiles(top, (), environment, (), shipped)
