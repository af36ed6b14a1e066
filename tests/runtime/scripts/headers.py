def init():
    pass


def run(raw_data, request_headers):
    return {"custom": request_headers.get("X-Custom"), "body": raw_data}
