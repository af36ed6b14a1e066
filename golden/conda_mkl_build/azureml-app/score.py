import numpy
import pandas


def init():
    pass


def run(raw_data):
    return {"rows": len(pandas.read_json(raw_data))}
