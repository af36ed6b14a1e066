"""Docker HEALTHCHECK: exit 0 if GET http://127.0.0.1:$BUNDLER_PORT/ answers 200, else 1.

Standard library only, so slim images need no curl or wget.
"""

import os
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("BUNDLER_PORT", "5001")
    try:
        # No proxy: an HTTP_PROXY set for the app must not route the probe elsewhere.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
