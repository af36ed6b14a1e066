"""Azure ML style entry script: init() loads the model once, run() scores one request."""

import json
import os

import joblib
import numpy as np

model = None


def init():
    global model
    # AZUREML_MODEL_DIR is the folder of the registered model's files (diabetes/<version>).
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model.pkl")
    model = joblib.load(model_path)


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    result = model.predict(data)
    # Anything JSON-serialisable can be returned.
    return result.tolist()
