"""A restricted unpickler for published pickles (untrusted input from the internet).

Only plain containers, strings, numbers and numpy scalars may be built; any other global
(a function, a class, ``os.system``...) is refused with an error naming the file.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

# numpy scalars pickle as numpy.core.multiarray.scalar(dtype, bytes); the dtype itself is
# numpy.dtype(str). Nothing else from numpy is needed by the published files.
_ALLOWED = {
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
    ("collections", "OrderedDict"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class UnsafePickle(pickle.UnpicklingError):
    """The pickle asked for a global that is not on the allow-list."""


class _Restricted(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise UnsafePickle(
                f"{self._source}: refusing to load {module}.{name}: only plain containers, "
                f"strings, numbers and numpy scalars are allowed in published data"
            )
        return super().find_class(module, name)


def loads(data: bytes, source: str = "<bytes>"):
    return _Restricted(io.BytesIO(data), source).load()


def load(path: str | os.PathLike):
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return _Restricted(f, str(path)).load()
        except UnsafePickle:
            raise
        except Exception as exc:  # truncated or corrupt data
            raise pickle.UnpicklingError(f"{path}: not a readable pickle ({exc})") from exc
