"""`python -m imageremoval.client` runs the command-line client like the `imageremoval` script."""

import sys

from .cli import main

sys.exit(main())
