"""The storage layer: the only place that knows HDF5 (and imports h5py).

- :mod:`~landscape.storage.codec`: attribute encoding, decoded as the exact inverse;
- :mod:`~landscape.storage.files`: creating (atomically), changing (through a copy),
  opening and validating landscape files, stamping their root, checking an output path
  before any work;
- :mod:`~landscape.storage.groups`: writing (whole or not at all) and reading result
  groups; :mod:`~landscape.storage.describe`: ``landscape info``'s summary;
- :mod:`~landscape.storage.diskguard` (a full disk is one line), :mod:`~landscape.storage.locks`
  (a run's hold on its output), :mod:`~landscape.storage.guard` (outputs never inputs);
- :mod:`~landscape.storage.surface`: the surface schema (create, check a resume, write
  points, read), and stored directions.

One schema module per result type lives here too (``hessian``, ``sharpness``, ``paths``,
``directions``, ``trajectory``, ``tracking``, ``compare``), each built on the helpers
re-exported below; :mod:`~landscape.storage.registry` holds the one registry of schemas
behind ``landscape.save`` and ``landscape.load``.
"""

from . import hessian, optim, paths, sharpness  # noqa: F401  (registering their schemas)
from .codec import JSON_PREFIX, decode_attr, decode_attrs, encode_attr, same_attr
from .describe import describe_file
from .directions import load_directions, read_directions, write_directions
from .files import (
    FORMAT,
    FORMAT_VERSION,
    PROVENANCE_ATTRS,
    STAMP_ATTRS,
    check_output,
    create_file,
    open_landscape_file,
    rewrite_file,
    stamp_root,
    write_error,
)
from .groups import existing_groups, read_group, write_group, write_groups
from .surface import (
    VOLATILE_ATTRS,
    SurfaceWriter,
    check_surface_file,
    create_surface_file,
    load_surface_arrays,
    read_computed,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "JSON_PREFIX",
    "PROVENANCE_ATTRS",
    "STAMP_ATTRS",
    "VOLATILE_ATTRS",
    "SurfaceWriter",
    "check_output",
    "check_surface_file",
    "create_file",
    "create_surface_file",
    "decode_attr",
    "decode_attrs",
    "describe_file",
    "encode_attr",
    "existing_groups",
    "load_directions",
    "load_surface_arrays",
    "open_landscape_file",
    "read_computed",
    "read_directions",
    "read_group",
    "rewrite_file",
    "same_attr",
    "stamp_root",
    "write_directions",
    "write_error",
    "write_group",
    "write_groups",
]
