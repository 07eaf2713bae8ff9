"""A user's own model on the command line: ``--model path/to/file.py:factory`` or ``--model package.module:factory``.

The factory is any callable that returns an ``nn.Module``. It is called with the keyword arguments
it accepts among ``input_shape`` (one sample, without the batch axis: ``(C, H, W)`` or ``(C, T)``)
and ``num_classes``, so ``def build(): ...``, ``def build(num_classes): ...`` and
``def build(input_shape, num_classes): ...`` all work. Running a user's file is what the user asked
for; no pickled object is ever loaded this way.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from torch import nn

from ..errors import LayerwiseError


def is_user_model(name: str) -> bool:
    """``FILE.py:factory`` or ``module:factory`` (registry names never hold a colon)."""
    return ":" in name


def _load_module(where: str):
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser()
        if not path.is_file():
            raise LayerwiseError(f"--model {where}:...: no such file; pass path/to/file.py:factory "
                                 "with a path that exists")
        key = "layerwise_user_model_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        if key in sys.modules:
            return sys.modules[key]
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[key]
            raise LayerwiseError(f"--model {where}: importing the file failed ({type(exc).__name__}: {exc}); "
                                 "fix the file, then rerun") from exc
        return module
    try:
        return importlib.import_module(where)
    except ImportError as exc:
        raise LayerwiseError(f"--model {where}:...: cannot import module {where!r} ({exc}); pass "
                             "path/to/file.py:factory, or a module on PYTHONPATH") from exc


def build_user_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build ``FILE.py:factory`` / ``module:factory`` for samples of ``input_shape``."""
    where, _, attr = name.rpartition(":")
    if not where or not attr:
        raise LayerwiseError(f"--model {name!r}: write path/to/file.py:factory or package.module:factory")
    module = _load_module(where)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise LayerwiseError(f"--model {name}: {where} has no callable {attr!r}; it has: "
                             f"{', '.join(names[:12]) or 'none'}")
    offered = {"input_shape": tuple(int(s) for s in input_shape), "num_classes": int(num_classes)}
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if takes_any or k in params}
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise LayerwiseError(f"--model {name}: {attr}() returned {type(model).__name__}, not a torch.nn.Module; "
                             "return the model")
    return model


def slug(name: str) -> str:
    """A folder-safe short name for a model: ``path/to/my_net.py:build`` -> ``my_net.build``."""
    if not is_user_model(name):
        return name
    where, _, attr = name.rpartition(":")
    stem = Path(where).stem if where.endswith(".py") else where.rsplit(".", 1)[-1]
    return f"{stem}.{attr}"
