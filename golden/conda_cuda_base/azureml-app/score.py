import torch


def init():
    pass


def run(raw_data):
    return {"cuda": torch.cuda.is_available()}
