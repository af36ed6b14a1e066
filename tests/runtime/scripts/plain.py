"""An undecorated entry script whose run() can be told, by its input, to misbehave."""
import json
import os
import time

state = {}


def init():
    state["model_dir"] = os.environ.get("AZUREML_MODEL_DIR")
    state["pid"] = os.getpid()


def run(raw_data):
    try:
        data = json.loads(raw_data)
    except ValueError:
        return {"raw": raw_data}
    if not isinstance(data, dict):
        return data
    if "fail" in data:
        raise RuntimeError("asked to fail")
    if "string" in data:
        return data["string"]
    if "none" in data:
        return None
    if "sleep" in data:
        time.sleep(data["sleep"])
        return "slept"
    if "unserialisable" in data:
        return {1, 2}
    return {"echo": data, "model_dir": state["model_dir"]}
