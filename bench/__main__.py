"""`python -m bench` (what `make bench` runs)."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
