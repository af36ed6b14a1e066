import sys

from bundler_runtime.server import main

sys.exit(main())
