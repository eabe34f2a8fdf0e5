"""`python -m imageremoval.server` runs the server like the console script."""

import sys

from .cli import main

sys.exit(main())
