"""An undecorated entry script whose run() can be told, by its input, to misbehave."""

import asyncio
import json
import os
import sys
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
    if "sleep_or_fallback" in data:
        try:
            time.sleep(data["sleep_or_fallback"])
        except TimeoutError:
            return "fallback"
    if "asyncio" in data:
        return asyncio.run(_twice(data["asyncio"]))
    if "exit" in data:
        sys.exit(data["exit"])
    if "os_exit" in data:
        os._exit(data["os_exit"])  # no cleanup, no exception: the worker process just ends
    if "record" in data:
        with open(os.path.join(state["model_dir"], "calls.log"), "a") as log:
            log.write(raw_data + "\n")
    if "interrupt" in data:
        raise KeyboardInterrupt
    if "unserialisable" in data:
        return {1, 2}
    return {"echo": data, "model_dir": state["model_dir"]}


async def _twice(value):
    await asyncio.sleep(0)
    return value * 2
