"""Size of the saved artifact on disk (not ``sum(p.numel() * p.element_size())``)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import LayerwiseError
from ..storage import atomic_torch_save, torch_bytes


@dataclass(frozen=True)
class Size:
    """Bytes of a serialized artifact and how they were obtained."""

    bytes: int
    source: str
    path: str | None = None  # the file measured, when it was kept

    def to_json(self) -> dict:
        return {"bytes": self.bytes, "source": self.source}


def artifact_size(model_or_path: torch.nn.Module | dict | str | os.PathLike,
                  path: str | os.PathLike | None = None) -> Size:
    """Bytes on disk of a model's saved ``state_dict`` (or of an existing file).

    - a path: ``os.path.getsize`` of that file, as it is;
    - a module (or a state_dict): written with ``torch.save(model.state_dict())`` to ``path``
      when given (and kept there), otherwise to a temporary file that is removed, then
      ``os.path.getsize``. The bytes are serialized in memory first (as
      :func:`layerwise.storage.atomic_torch_save` does), so the zip's record names, and hence the
      size, do not depend on the file name. Quantized and packed weights are included as serialized, which
      ``parameters()`` would miss; the zip container's overhead is included too.
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        p = Path(model_or_path)
        if not p.is_file():
            raise LayerwiseError(f"no file at {p}: pass the path of a saved model or the model itself")
        return Size(bytes=os.path.getsize(p), source="os.path.getsize(existing file)", path=str(p))
    if isinstance(model_or_path, torch.nn.Module):
        state: Any = model_or_path.state_dict()
    elif isinstance(model_or_path, dict):
        state = model_or_path
    else:
        raise LayerwiseError(
            f"artifact_size takes a module, a state_dict or a file path, not {type(model_or_path).__name__}")
    source = "torch.save(state_dict) -> os.path.getsize"
    if path is not None:
        written = atomic_torch_save(state, path)
        return Size(bytes=os.path.getsize(written), source=source, path=str(written))
    with tempfile.TemporaryDirectory(prefix="layerwise-size-") as tmp:
        f = Path(tmp) / "state_dict.pt"
        f.write_bytes(torch_bytes(state))  # the same bytes a kept file gets
        return Size(bytes=os.path.getsize(f), source=source)
