"""The storage layer: the only place that knows HDF5 (and imports h5py).

- :mod:`~landscape.storage.codec`: attribute encoding, decoded as the exact inverse;
- :mod:`~landscape.storage.files`: creating (atomically), opening and validating landscape
  files, stamping their root, writing (whole or not at all) and reading result groups,
  checking an output path before any work, describing a file;
- :mod:`~landscape.storage.surface`: the surface schema (create, check a resume, write
  points, read), and stored directions.

One schema module per result type lives here too (``hessian``, ``sharpness``,
``compare``), each built on the helpers re-exported below.
"""

from .codec import JSON_PREFIX, decode_attr, decode_attrs, encode_attr
from .files import (
    FORMAT,
    FORMAT_VERSION,
    PROVENANCE_ATTRS,
    STAMP_ATTRS,
    check_output,
    create_file,
    describe_file,
    existing_groups,
    open_landscape_file,
    read_group,
    stamp_root,
    write_error,
    write_group,
    write_groups,
)
from .surface import (
    VOLATILE_ATTRS,
    SurfaceWriter,
    check_surface_file,
    create_surface_file,
    load_directions,
    load_surface_arrays,
    read_computed,
    read_directions,
    same_attr,
    write_directions,
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
    "same_attr",
    "stamp_root",
    "write_directions",
    "write_error",
    "write_group",
    "write_groups",
]
