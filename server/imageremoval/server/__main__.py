"""`python -m imageremoval.server` runs the server like the console script."""

import sys

from imageremoval.server.cli import main

sys.exit(main())
