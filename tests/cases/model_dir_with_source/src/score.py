import os

from helpers.features import prepare

model_dir = None


def init():
    global model_dir
    # A registered folder keeps its name under AZUREML_MODEL_DIR, as on Azure.
    model_dir = os.path.join(os.environ["AZUREML_MODEL_DIR"], "model_dir")


def run(raw_data):
    return {"features": prepare(raw_data), "model_dir": model_dir}
