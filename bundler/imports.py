"""Which requirement provides an import: a small table of the common packages whose import
name differs from their distribution's name, and of what common distributions bring
along (scikit-learn brings numpy, scipy and joblib). PURE.

Used for a note, never a refusal: `save` names the top-level imports of the entry script
that no requirement seems to provide (an Azure ML environment often brought them without
saying so), so that the first `docker build` does not end in ModuleNotFoundError.
"""

from __future__ import annotations

import re
import sys

# Import name -> the distributions that provide it, where the names differ.
# fmt: off
DISTRIBUTIONS = {
    "sklearn": ("scikit-learn",),
    "cv2": ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv", "py-opencv"),
    "PIL": ("pillow",), "yaml": ("pyyaml",), "bs4": ("beautifulsoup4",), "skimage": ("scikit-image",),
    "dateutil": ("python-dateutil",), "jwt": ("pyjwt",), "dotenv": ("python-dotenv",), "attr": ("attrs",),
    "Crypto": ("pycryptodome",), "OpenSSL": ("pyopenssl",), "google": ("protobuf", "google-cloud-storage"),
    "inference_schema": ("inference-schema",), "azureml": ("azureml-*",), "tf_keras": ("tf-keras",),
    "sentence_transformers": ("sentence-transformers",), "huggingface_hub": ("huggingface-hub",),
    "mpl_toolkits": ("matplotlib",), "pkg_resources": ("setuptools",), "setuptools": ("setuptools",),
    "gunicorn": ("gunicorn",), "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-intel"),
}
# Distribution -> what installing it brings (their own requirements, the well-known ones).
BRINGS = {
    "scikit-learn": ("numpy", "scipy", "joblib", "threadpoolctl"),
    "scipy": ("numpy",), "pandas": ("numpy", "python-dateutil", "pytz", "tzdata"),
    "xgboost": ("numpy", "scipy"), "lightgbm": ("numpy", "scipy"), "catboost": ("numpy", "pandas", "scipy"),
    "statsmodels": ("numpy", "scipy", "pandas", "patsy", "packaging"),
    "matplotlib": ("numpy", "pillow", "python-dateutil", "packaging", "pyparsing"),
    "seaborn": ("numpy", "pandas", "matplotlib"), "scikit-image": ("numpy", "scipy", "pillow", "networkx"),
    "torch": ("filelock", "typing-extensions", "sympy", "networkx", "jinja2", "fsspec"),
    "torchvision": ("torch", "numpy", "pillow"),
    "transformers": ("numpy", "tokenizers", "huggingface-hub", "pyyaml", "requests", "regex", "safetensors",
                     "tqdm", "packaging", "filelock"),
    "sentence-transformers": ("transformers", "torch", "numpy", "scikit-learn", "scipy", "pillow", "tqdm"),
    "tensorflow": ("numpy", "keras", "protobuf", "h5py"), "keras": ("numpy", "h5py"),
    "onnxruntime": ("numpy", "protobuf", "packaging"), "onnx": ("numpy", "protobuf"),
    "opencv-python": ("numpy",), "opencv-python-headless": ("numpy",),
    "inference-schema": ("python-dateutil", "pytz", "wrapt"),
    "azureml-defaults": ("azureml-core", "azureml-inference-server-http", "inference-schema"),
    "azureml-inference-server-http": ("flask", "inference-schema", "pydantic", "requests"),
    "mlflow": ("numpy", "pandas", "scikit-learn", "scipy", "pyyaml", "requests", "flask", "packaging"),
    "requests": ("urllib3", "idna", "certifi", "charset-normalizer"), "flask": ("werkzeug", "jinja2", "click"),
    "gunicorn": ("packaging",), "nltk": ("click", "joblib", "regex", "tqdm"),
}
# fmt: on


def normalize(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def provided(requirement_names) -> frozenset[str]:
    """The distributions installed by requiring these, with what they bring, normalized."""
    found: set[str] = set()
    pending = [normalize(name) for name in requirement_names]
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(BRINGS.get(name, ()))
    return frozenset(found)


def unprovided(imports, requirement_names, own_modules, stdlib=None) -> tuple[tuple[str, int], ...]:
    """The (import, line) pairs that neither the standard library, the bundle's own modules,
    nor any requirement (or what it brings) seems to provide. Without a list of the standard
    library (Python before 3.10), nothing is said."""
    stdlib = getattr(sys, "stdlib_module_names", None) if stdlib is None else stdlib
    if stdlib is None:
        return ()
    installed = provided(requirement_names)
    missing = []
    for name, line in imports:
        if name in stdlib or name in own_modules or name == "__future__":
            continue
        candidates = DISTRIBUTIONS.get(name, (name,))
        if not any(_installed(normalize(candidate), installed) for candidate in candidates):
            missing.append((name, line))
    return tuple(sorted(missing, key=lambda item: (item[1], item[0])))


def _installed(candidate: str, installed: frozenset[str]) -> bool:
    if candidate.endswith("-*"):  # a family of distributions (azureml-core, azureml-defaults, ...)
        return any(name.startswith(candidate[:-1]) for name in installed)
    return candidate in installed
