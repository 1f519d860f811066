"""A run's hold on its output survives the copies renamed into place that add results."""

import fcntl
import os

import numpy as np
import pytest

from landscape.storage import read_group, write_groups
from landscape.storage.guard import hold_output


def held(path):
    """Whether another open of ``path`` is refused a shared lock (flock is per open file,
    so this sees this process's own hold as another process would)."""
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def group(value):
    return {"values": np.array([value])}, {"seed": 0}


@pytest.mark.parametrize("exists", [True, False])
def test_a_hold_moves_to_each_copy_renamed_into_place(tmp_path, exists):
    path = tmp_path / "r.h5"
    if exists:
        write_groups(path, {"a": group(1.0)})
    with hold_output(path):
        for value, name in enumerate(["b", "c"]):
            inode = os.stat(path).st_ino if path.exists() else None
            write_groups(path, {name: group(float(value))})
            assert os.stat(path).st_ino != inode  # a new file under the name
            assert held(path)  # ... held as the old one was
        assert read_group(path, "c")[0]["values"].tolist() == [1.0]
    assert not held(path)  # released at the end of the run


def test_another_holder_is_refused_while_this_process_writes(tmp_path):
    path = tmp_path / "r.h5"
    write_groups(path, {"a": group(1.0)})
    with open(path, "rb") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another run's writer would
        with pytest.raises(ValueError, match="open for writing by another process"):
            with hold_output(path):
                pass
        with pytest.raises(ValueError, match="open for writing by another process"):
            write_groups(path, {"b": group(2.0)})
