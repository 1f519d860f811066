"""A counter of host reads of tensor values, shared by the tests.

On the CPU a host read costs nothing but can be counted. ``float(t)``, ``int(t)``, ``bool(t)``
and ``t.item()`` all dispatch ``aten._local_scalar_dense``; ``t.tolist()``, ``t.cpu()`` and
``t.numpy()`` do not, so the counter wraps those methods of ``torch.Tensor`` while it is active.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: Tensor methods that read values to the host without dispatching ``_local_scalar_dense``.
READ_METHODS = ("tolist", "cpu", "numpy")


class HostReads(TorchDispatchMode):
    """``with HostReads() as counter: ...``, then ``counter.count`` is the number of host reads."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self._saved: dict[str, object] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        own = vars(torch.Tensor)
        for name in READ_METHODS:
            self._saved[name] = own.get(name)
            setattr(torch.Tensor, name, self._counted(getattr(torch.Tensor, name)))
        try:
            return super().__enter__()
        except BaseException:
            self._restore()
            raise

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._restore()

    def _counted(self, method):
        def counted(tensor, *args, **kwargs):
            self.count += 1
            return method(tensor, *args, **kwargs)

        return counted

    def _restore(self) -> None:
        for name, saved in self._saved.items():
            if saved is None:
                delattr(torch.Tensor, name)  # the method lives on the C base class again
            else:
                setattr(torch.Tensor, name, saved)
        self._saved = {}
