"""A pickle loader that can only build numpy arrays and plain containers.

The CIFAR "python version" batches are pickles, and unpickling an untrusted file can run any
code. :class:`RestrictedUnpickler` admits only the globals that numpy arrays need; anything else
(``os.system``, ``builtins.eval``, ...) raises :class:`~layerwise.errors.DataError` naming it,
before it is ever called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from ..errors import DataError

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol 5 array pickles
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes pickled by Python 3 with protocol < 3
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    ("__builtin__", "set"), ("__builtin__", "frozenset"), ("__builtin__", "bytearray"),
    ("collections", "OrderedDict"),
})


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file, *, source: str = "pickle", **kwargs):
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise DataError(f"{self.source} asks to load the global {module}.{name}, which a dataset "
                        "file never needs: refusing to unpickle it (only numpy arrays and plain "
                        "containers are allowed); use the official dataset files")


def safe_pickle_loads(data: bytes, *, source: str = "pickle", encoding: str = "bytes") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; any failure is a DataError."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source, encoding=encoding).load()
    except DataError:
        raise
    except Exception as exc:  # truncated stream, bad opcode, ...
        raise DataError(f"{source} is not a readable pickle ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'}); "
                        "it is truncated or corrupted: replace it with the official file") from None


def safe_pickle_load(path: str | Path, *, encoding: str = "bytes") -> Any:
    path = Path(path)
    return safe_pickle_loads(path.read_bytes(), source=f"file {path}", encoding=encoding)
