import json
import os

weights = None


def init():
    global weights
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "churn.json")) as handle:
        weights = json.load(handle)


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    return [weights["intercept"] + sum(w * x for w, x in zip(weights["weights"], row)) for row in rows]
