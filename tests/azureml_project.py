"""The project folder Azure ML code ran in: Azure's sample entry script, a conda file pinned
to what this Python has (so the model pickled here loads wherever the file is installed), a
bundler.toml with [registry], and an Azure config.json. For the tests that run
tests/azureml_code/ (fast, and with an image build)."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

SCORE = """\
import json
import os

import joblib
import numpy as np


def init():
    global model
    model = joblib.load(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "sklearn_regression_model.pkl"))


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return model.predict(data).tolist()
"""
CONDA_FILE = f"""\
name: myenv
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
    - scikit-learn=={sklearn.__version__}
    - joblib=={joblib.__version__}
    - numpy=={np.__version__}
"""


def make_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    features, target = load_diabetes(return_X_y=True)
    joblib.dump(Ridge().fit(features, target), folder / "sklearn_regression_model.pkl")
    (folder / "score.py").write_text(SCORE)
    (folder / "myenv.yml").write_text(CONDA_FILE)
    (folder / "bundler.toml").write_text(
        '[registry]\naddress = "myregistry.azurecr.io"\nusername = "ml-deployer"\npassword_env = "ACR_PASSWORD"\n'
    )
    (folder / "config.json").write_text(
        '{"subscription_id": "0000", "resource_group": "ml", "workspace_name": "diabetes-ws"}'
    )
    return folder
