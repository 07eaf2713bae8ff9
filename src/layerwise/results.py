"""The results schema ``layerwise.results/1`` and its writer.

Every method command writes ``DIR/results.json`` in this shape (see DESIGN.md). The writer
validates before it writes, and writes atomically, so a results file on disk is always complete
and valid. A value that could not be measured is ``None`` with the reason in ``extra``.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import ResultsSchemaError
from .storage import atomic_write_json

SCHEMA = "layerwise.results/1"
RESULTS_FILE = "results.json"


@dataclass
class Variant:
    """One evaluated variant of a model (``dense``, ``unit``, ``adalayer``, ...)."""

    name: str
    accuracy: float | None = None
    macs: int | None = None
    macs_executed: int | None = None
    params: int | None = None
    size_bytes: int | None = None
    latency_ms: dict | None = None  # {"median", "iqr", "n", "batch", ...}
    peak_mem_bytes: int | None = None
    energy_j: dict | None = None  # {"value", "source", "estimated", ...}
    extra: dict = field(default_factory=dict)


@dataclass
class Results:
    method: str
    model: str
    dataset: str
    env: dict
    variants: list[Variant] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    schema: str = SCHEMA

    def to_dict(self) -> dict:
        d = asdict(self)
        return {"schema": d.pop("schema"), **d}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def env_info(device: str = "cpu", threads: int | None = None, seed: int | None = None) -> dict:
    """What a reader needs to rerun or compare a measurement."""
    return {
        "torch": torch.__version__.split("+")[0],
        "torch_build": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": int(threads if threads is not None else torch.get_num_threads()),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "seed": seed,
    }


_REQUIRED_TOP = {"schema": str, "method": str, "model": str, "dataset": str, "env": dict,
                 "variants": list, "figures": list}
_ENV_KEYS = ("torch", "device", "threads", "cpu", "seed")
_NUMERIC_FIELDS = ("accuracy", "macs", "macs_executed", "params", "size_bytes", "peak_mem_bytes")
_INT_FIELDS = ("macs", "macs_executed", "params", "size_bytes", "peak_mem_bytes")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _count(x: Any) -> bool:
    return _finite(x) and x >= 1 and int(x) == x


def _json_type(x: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if x is None else names.get(type(x), type(x).__name__)


def validate(doc: dict) -> dict:
    """Check ``doc`` against ``layerwise.results/1``; return it or raise :class:`ResultsSchemaError`.

    Any JSON value may come in (a reader passes what it parsed): whatever its shape, the answer is
    the document or one ResultsSchemaError, never a TypeError.
    """
    if not isinstance(doc, dict):
        raise ResultsSchemaError(f"results must be a JSON object with the keys of {SCHEMA}, "
                                 f"not a {_json_type(doc)}")
    problems: list[str] = []
    for key, typ in _REQUIRED_TOP.items():
        if key not in doc:
            problems.append(f"missing top-level key {key!r}")
        elif not isinstance(doc[key], typ):
            problems.append(f"{key!r} must be a {typ.__name__}")
    if problems:
        raise ResultsSchemaError("; ".join(problems))
    if doc["schema"] != SCHEMA:
        problems.append(f"schema is {doc['schema']!r}, expected {SCHEMA!r}")
    for key in _ENV_KEYS:
        if key not in doc["env"]:
            problems.append(f"env lacks {key!r}")
    names = set()
    for i, v in enumerate(doc["variants"]):
        where = f"variants[{i}]"
        if not isinstance(v, dict) or not isinstance(v.get("name"), str) or not v["name"]:
            problems.append(f"{where} needs a non-empty 'name'")
            continue
        where = f"variant {v['name']!r}"
        if v["name"] in names:
            problems.append(f"{where} appears twice")
        names.add(v["name"])
        extra = v.get("extra", {})
        if not isinstance(extra, dict):
            problems.append(f"{where}: 'extra' must be an object")
            extra = {}
        for key in _NUMERIC_FIELDS + ("latency_ms", "energy_j"):
            if key not in v:
                problems.append(f"{where} lacks {key!r} (use null with a reason in extra)")
        for key in _NUMERIC_FIELDS:
            val = v.get(key)
            if val is None:
                continue
            if not _finite(val):
                problems.append(f"{where}: {key} must be a finite number or null")
            elif key in _INT_FIELDS and (val < 0 or int(val) != val):
                problems.append(f"{where}: {key} must be a non-negative integer")
        acc = v.get("accuracy")
        if _finite(acc) and not 0.0 <= acc <= 1.0:
            problems.append(f"{where}: accuracy {acc} must be a fraction in [0, 1]")
        if _finite(v.get("macs")) and _finite(v.get("macs_executed")) and v["macs_executed"] > v["macs"]:
            problems.append(f"{where}: macs_executed exceeds macs")
        lat = v.get("latency_ms")
        if lat is not None:
            if not isinstance(lat, dict) or not all(k in lat for k in ("median", "iqr", "n", "batch")):
                problems.append(f"{where}: latency_ms needs median, iqr, n and batch")
            elif not (_finite(lat["median"]) and _finite(lat["iqr"])):
                problems.append(f"{where}: latency_ms median and iqr must be finite numbers")
            elif not all(_count(lat[k]) for k in ("n", "batch")):
                problems.append(f"{where}: latency_ms n and batch must be whole numbers >= 1")
        en = v.get("energy_j")
        if en is not None:
            if not isinstance(en, dict) or not all(k in en for k in ("value", "source", "estimated")):
                problems.append(f"{where}: energy_j needs value, source and estimated (never a bare number)")
            elif not isinstance(en["estimated"], bool) or not isinstance(en["source"], str) or not en["source"]:
                problems.append(f"{where}: energy_j.estimated must be a boolean and source a non-empty string")
            elif not _finite(en["value"]):
                problems.append(f"{where}: energy_j.value must be a finite number")
        for key in _NUMERIC_FIELDS + ("latency_ms", "energy_j"):
            if key in v and v[key] is None and key not in extra and f"{key}_reason" not in extra:
                problems.append(f"{where}: {key} is null without a reason in extra[{key!r}]")
    for fig in doc["figures"]:
        if not isinstance(fig, str):
            problems.append("figures must be file names")
    if problems:
        raise ResultsSchemaError("results do not follow " + SCHEMA + ": " + "; ".join(problems))
    return doc


def write_results(out_dir: str | os.PathLike, results: Results | dict) -> Path:
    """Validate and atomically write ``out_dir/results.json``; return its path."""
    doc = results.to_dict() if isinstance(results, Results) else results
    validate(doc)
    try:
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ResultsSchemaError(f"results are not plain JSON: {exc}") from None
    return atomic_write_json(Path(out_dir) / RESULTS_FILE, doc)


def read_results(path: str | os.PathLike) -> dict:
    """Read and validate a results file (or the ``results.json`` inside a directory).

    Every way the file can be wrong (unreadable, not UTF-8, not JSON, not the schema) is one
    :class:`ResultsSchemaError` whose message names the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise ResultsSchemaError(f"no results file at {path}: pass a directory written by a layerwise command")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ResultsSchemaError(f"cannot read {path} ({exc.strerror or exc}): check its permissions") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsSchemaError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}): pass the "
                                 "results.json a layerwise command wrote") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsSchemaError(f"{path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ResultsSchemaError(f"{path} is not valid JSON (nested too deeply)") from None
    except ValueError as exc:    # e.g. an integer literal beyond Python's 4300-digit limit
        raise ResultsSchemaError(f"{path} is not valid JSON ({str(exc)[:120]})") from None
    try:
        return validate(doc)
    except ResultsSchemaError as exc:
        raise ResultsSchemaError(f"{path}: {exc}") from None
