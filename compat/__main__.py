"""python -m compat."""

import sys

from .cli import main

sys.exit(main())
