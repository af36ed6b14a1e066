from helper_module import double


def init():
    pass


def run(raw_data):
    return double(len(raw_data))
