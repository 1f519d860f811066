"""``python -m landscape`` (and ``torchrun -m landscape``) runs the command line."""

import sys

from .cli import main

sys.exit(main())
