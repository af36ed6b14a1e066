"""Reports the garbage collector's state at each stage of a worker's life."""

import gc

state = {"at_import": gc.isenabled()}


def init():
    state["in_init"] = gc.isenabled()


def run(raw_data):
    return {**state, "in_run": gc.isenabled(), "frozen": gc.get_freeze_count()}
