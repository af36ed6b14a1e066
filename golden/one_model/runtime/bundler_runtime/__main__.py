import gc

# The collector stays off while the server boots; server.py says when it comes back on.
gc.disable()

import sys  # noqa: E402

from bundler_runtime.server import main  # noqa: E402

sys.exit(main())
