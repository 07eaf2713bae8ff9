"""Finding the files of a file-backed dataset, with errors that list what is expected."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError


def find_root(directory: str | os.PathLike, subfolders: list[str], required: list[str],
              dataset: str, describe: str | None = None) -> Path:
    """Return the first of ``directory`` and ``directory/<sub>`` that holds ALL ``required``
    relative paths. If one candidate holds some of them, the error names the missing ones;
    if none holds any, it names the folder and every file expected (or ``describe``, a compact
    pattern for long lists)."""
    expected = describe or _listing(required, limit=len(required))
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        parent = f" (or its parent holding {' or '.join(subfolders)}/)" if subfolders else ""
        raise DataError(f"{dataset}: folder {directory} does not exist: pass the folder that holds "
                        f"{expected}{parent}")
    candidates = [directory] + [directory / s for s in subfolders]
    for root in candidates:
        present = [r for r in required if (root / r).exists()]
        if len(present) == len(required):
            return root
    for root in candidates:
        present = [r for r in required if (root / r).exists()]
        if present:
            missing = [r for r in required if r not in present]
            raise DataError(f"{dataset}: folder {root} is incomplete: missing {_listing(missing, limit=len(missing))}; "
                            f"it needs {expected}")
    where = f" in it or in {' or '.join(str(directory / s) for s in subfolders)}" if subfolders else ""
    raise DataError(f"{dataset}: no dataset files in {directory}: expected {expected}{where}")


def _listing(paths: list[str], limit: int) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
