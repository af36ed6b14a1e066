"""Where the tests keep what is slow to make: the reference server's venv, the stand-in base
image, podman's storage. .ci/setup-reference-server.sh fills the same folder."""

import os
from pathlib import Path

CACHE = Path(os.environ.get("BUNDLER_TEST_CACHE") or Path.home() / ".cache" / "bundler-tests")
