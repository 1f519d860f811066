"""The package version, in one place: the root, the command line, the files and
``pyproject.toml`` all read it from here."""

__version__ = "0.2.0"
