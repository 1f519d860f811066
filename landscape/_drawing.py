"""Moved to :mod:`landscape.directions.drawing`; this old path names the same module."""

import sys

from .directions import drawing

sys.modules[__name__] = drawing
