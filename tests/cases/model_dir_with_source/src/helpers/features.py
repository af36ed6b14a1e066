def prepare(raw):
    return len(raw)
