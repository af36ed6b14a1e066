import os


def init():
    global paths
    root = os.environ["AZUREML_MODEL_DIR"]  # the folder that holds <name>/<version>/
    paths = [os.path.join(root, "regressor", "2", "regressor.bin"), os.path.join(root, "scaler", "1", "scaler.bin")]


def run(raw_data):
    return [open(p).read().strip() for p in paths]
