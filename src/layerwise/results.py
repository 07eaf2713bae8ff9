"""The results schema ``layerwise.results/2`` and its writer.

Every method command writes ``DIR/results.json`` in this shape (the dataclasses below define it). The writer
validates before it writes, and writes atomically, so a results file on disk is always complete
and valid. A value that could not be measured is ``None`` with the reason in ``extra``.

``/2`` adds optional evidence to ``/1`` (readers keep accepting ``/1`` files, validated as before):

* per variant: ``accuracy_ci`` ``{"low", "high", "level", "method", "n", "correct"?}`` (the Wilson
  interval of the accuracy; ``method`` "wilson" or e.g. "wilson, pooled over 3 seeds"),
  ``seeds`` ``[{"seed", "accuracy", "accuracy_ci"?, "test_hits"?, ...}]`` with ``accuracy`` the mean
  over them and ``accuracy_std`` their sample standard deviation (more than one seed), and
  ``test_hits`` ``{"n", "bits"}``: which test images were right, ``base64(numpy.packbits(hits))``
  (see :func:`encode_hits` / :func:`decode_hits`);
* top level: ``comparisons``, each ``stats.PairedDifference.to_json()`` of two variants, and
  ``quick: true`` when the run used a command's ``--quick`` (tiny settings: a smoke run of the
  pipeline, not a result to quote; left out otherwise).

:mod:`layerwise.evidence` fills these from per-image hits (``with_statistics``, ``combine_seeds``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ResultsSchemaError
from .storage import atomic_write_json

SCHEMA = "layerwise.results/2"
SCHEMA_V1 = "layerwise.results/1"
SCHEMAS = (SCHEMA_V1, SCHEMA)
RESULTS_FILE = "results.json"

#: the keys of one entry of ``comparisons``: exactly ``stats.PairedDifference.to_json()``'s
COMPARISON_KEYS = ("a", "b", "difference", "low", "high", "n", "only_a", "only_b", "mcnemar_p",
                   "level", "method", "resamples", "measurable", "verdict")
# /2 variant keys that are left out of the file when unset
_V2_VARIANT_KEYS = ("accuracy_ci", "accuracy_std", "seeds", "test_hits")
# a stored accuracy and what its hits or interval say may differ by float rounding only
_TOL = 1e-9


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
    # layerwise.results/2, optional (left out of the file when None)
    accuracy_ci: dict | None = None  # {"low", "high", "level", "method", "n", "correct"?}
    accuracy_std: float | None = None  # sample std over ``seeds`` (more than one seed)
    seeds: list | None = None  # [{"seed", "accuracy", "accuracy_ci"?, "test_hits"?}, ...]
    test_hits: dict | None = None  # {"n", "bits"}: see encode_hits

    def to_dict(self) -> dict:
        """The JSON object: the /2 keys next to ``accuracy`` (``test_hits`` before ``extra``), and
        only when set."""
        d = asdict(self)
        new = {k: d.pop(k) for k in _V2_VARIANT_KEYS}
        out = {"name": d.pop("name"), "accuracy": d.pop("accuracy")}
        out.update((k, new[k]) for k in ("accuracy_ci", "accuracy_std", "seeds") if new[k] is not None)
        extra = d.pop("extra")
        out.update(d)
        if new["test_hits"] is not None:
            out["test_hits"] = new["test_hits"]
        out["extra"] = extra
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Variant":
        """A variant from its (validated) JSON object; keys this version does not know are dropped."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Results:
    method: str
    model: str
    dataset: str
    env: dict
    variants: list[Variant] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    schema: str = SCHEMA
    comparisons: list[dict] = field(default_factory=list)  # /2: PairedDifference.to_json() each
    quick: bool = False  # a --quick (smoke) run: written as top-level "quick": true, else left out

    def to_dict(self) -> dict:
        out = {"schema": self.schema, "method": self.method, "model": self.model,
               "dataset": self.dataset, "env": copy.deepcopy(self.env),
               "variants": [v.to_dict() if isinstance(v, Variant) else copy.deepcopy(v) for v in self.variants],
               "figures": list(self.figures)}
        if self.comparisons:
            out["comparisons"] = copy.deepcopy(list(self.comparisons))
        if self.quick:
            out["quick"] = True
        return out

    @classmethod
    def from_dict(cls, doc: dict) -> "Results":
        """Results from a (validated) document, e.g. what :func:`read_results` returns."""
        doc = copy.deepcopy(doc)
        return cls(method=doc["method"], model=doc["model"], dataset=doc["dataset"], env=doc["env"],
                   variants=[Variant.from_dict(v) for v in doc["variants"]],
                   figures=doc["figures"], schema=doc["schema"],
                   comparisons=doc.get("comparisons") or [], quick=doc.get("quick") is True)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ResultsSchemaError(f"no variant {name!r} in these results (variants: "
                                 f"{', '.join(v.name for v in self.variants) or 'none'})")


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


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def encode_hits(hits) -> dict:
    """``{"n", "bits"}``: per-image correctness (``hits[i]`` True = image ``i`` right) as
    ``base64(numpy.packbits(hits))``; 10,000 images take 1,250 bytes (1,668 characters)."""
    if hasattr(hits, "detach"):  # a torch tensor, possibly on a GPU
        hits = hits.detach().cpu().numpy()
    a = np.asarray(hits)
    if a.ndim != 1 or a.size == 0:
        raise ResultsSchemaError(f"test_hits: need a non-empty 1-d vector of per-image hits, got shape {a.shape}")
    if a.dtype != bool:
        if a.dtype.kind not in "biuf" or not np.isin(a, (0, 1)).all():
            raise ResultsSchemaError("test_hits: per-image hits must be booleans or 0/1")
        a = a.astype(bool)
    return {"n": int(a.size), "bits": base64.b64encode(np.packbits(a).tobytes()).decode("ascii")}


def decode_hits(d: Any) -> np.ndarray:
    """The boolean vector :func:`encode_hits` stored; any malformed ``d`` is a ResultsSchemaError
    naming the field (``test_hits.n``, ``test_hits.bits``)."""
    if not isinstance(d, dict) or "n" not in d or "bits" not in d:
        raise ResultsSchemaError(f"test_hits must be an object with n and bits, not {_json_type(d)}"
                                 + (f" with keys {sorted(d)}" if isinstance(d, dict) else ""))
    n, bits = d["n"], d["bits"]
    if not _int(n) or n < 1:
        raise ResultsSchemaError(f"test_hits.n must be a whole number >= 1, not {n!r}"[:200])
    if not isinstance(bits, str):
        raise ResultsSchemaError(f"test_hits.bits must be a base64 string, not a {_json_type(bits)}")
    try:
        raw = base64.b64decode(bits.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise ResultsSchemaError(f"test_hits.bits is not base64 ({str(exc)[:80]})") from None
    if base64.b64encode(raw).decode("ascii") != bits:
        raise ResultsSchemaError("test_hits.bits is not canonical base64 (stray bits in its last character)")
    if len(raw) != (n + 7) // 8:
        raise ResultsSchemaError(f"test_hits.bits holds {len(raw)} bytes, but n={n} needs {(n + 7) // 8}")
    if n % 8 and raw[-1] & ((1 << (8 - n % 8)) - 1):
        raise ResultsSchemaError(f"test_hits.bits: the {8 - n % 8} padding bits after image {n} must be zero")
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n).astype(bool)


def _check_ci(ci: Any, where: str, accuracy: Any, problems: list[str]) -> None:
    """A variant's (or a seed's) ``accuracy_ci``. Unless it is pooled over seeds, it is an interval
    around this very ``accuracy``, which must lie inside it."""
    where = f"{where}: accuracy_ci"
    if not isinstance(ci, dict):
        problems.append(f"{where} must be an object with low, high, level, method and n")
        return
    missing = [k for k in ("low", "high", "level", "method", "n") if k not in ci]
    if missing:
        problems.append(f"{where} lacks {', '.join(missing)}")
        return
    low, high, level, n = ci["low"], ci["high"], ci["level"], ci["n"]
    if not (_finite(low) and _finite(high) and 0.0 <= low <= high <= 1.0):
        problems.append(f"{where}.low and .high must be fractions with 0 <= low <= high <= 1, "
                        f"not {low!r} and {high!r}"[:200])
        return
    if not (_finite(level) and 0.0 < level < 1.0):
        problems.append(f"{where}.level must lie strictly between 0 and 1 (e.g. 0.95), not {level!r}"[:200])
    if not isinstance(ci["method"], str) or not ci["method"]:
        problems.append(f"{where}.method must be a non-empty string (e.g. 'wilson')")
        return
    if not _int(n) or n < 1:
        problems.append(f"{where}.n must be a whole number >= 1, not {n!r}"[:200])
        return
    if "correct" in ci:
        c = ci["correct"]
        if not _int(c) or not 0 <= c <= n:
            problems.append(f"{where}.correct must be a whole number in [0, n={n}], not {c!r}"[:200])
            return
        if not low - _TOL <= c / n <= high + _TOL:
            problems.append(f"{where} [{low}, {high}] does not hold its own estimate {c}/{n}")
    if "pooled" not in ci["method"].lower() and _finite(accuracy):
        if not low - _TOL <= accuracy <= high + _TOL:
            problems.append(f"{where} [{low}, {high}] does not hold the accuracy {accuracy}")
        elif _int(ci.get("correct")) and abs(ci["correct"] / n - accuracy) > _TOL:
            problems.append(f"{where}: correct/n = {ci['correct']}/{n} is not the accuracy {accuracy}")


def _check_hits(th: Any, where: str, accuracy: Any, problems: list[str]) -> np.ndarray | None:
    try:
        h = decode_hits(th)
    except ResultsSchemaError as exc:
        problems.append(f"{where}: {exc}")
        return None
    if _finite(accuracy) and abs(float(h.mean()) - accuracy) > _TOL:
        problems.append(f"{where}: accuracy {accuracy} is not what test_hits say "
                        f"({int(h.sum())}/{h.size} = {h.mean():.6g})")
    return h


def _check_v2_variant(v: dict, where: str, problems: list[str]) -> None:
    acc = v.get("accuracy")
    hits = None
    if v.get("test_hits") is not None:
        hits = _check_hits(v["test_hits"], where, acc, problems)
    ci = v.get("accuracy_ci")
    if ci is not None:
        _check_ci(ci, where, acc, problems)
        if (hits is not None and isinstance(ci, dict) and isinstance(ci.get("method"), str)
                and "pooled" not in ci["method"].lower() and _int(ci.get("n")) and ci["n"] != hits.size):
            problems.append(f"{where}: accuracy_ci.n={ci['n']} but test_hits.n={hits.size}")
    seeds = v.get("seeds")
    std = v.get("accuracy_std")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds:
            problems.append(f"{where}: seeds must be a non-empty list of {{seed, accuracy, ...}}")
            seeds = None
        else:
            seen, accs = set(), []
            for i, e in enumerate(seeds):
                at = f"{where}: seeds[{i}]"
                if not isinstance(e, dict) or "seed" not in e or "accuracy" not in e:
                    problems.append(f"{at} must be an object with seed and accuracy")
                    continue
                if not _int(e["seed"]):
                    problems.append(f"{at}.seed must be a whole number, not {e['seed']!r}"[:200])
                elif e["seed"] in seen:
                    problems.append(f"{at}: seed {e['seed']} appears twice")
                else:
                    seen.add(e["seed"])
                a = e["accuracy"]
                if a is not None and not (_finite(a) and 0.0 <= a <= 1.0):
                    problems.append(f"{at}.accuracy must be a fraction in [0, 1] or null, not {a!r}"[:200])
                    continue
                accs.append(a)
                if e.get("accuracy_ci") is not None:
                    _check_ci(e["accuracy_ci"], at, a, problems)
                if e.get("test_hits") is not None:
                    _check_hits(e["test_hits"], at, a, problems)
            if len(accs) == len(seeds) and all(a is not None for a in accs):
                mean = float(np.mean(accs))
                if not _finite(acc) or abs(mean - acc) > _TOL:
                    problems.append(f"{where}: accuracy {acc} is not the mean {mean:.6g} of its seeds' accuracies")
                if len(accs) > 1:
                    sd = float(np.std(accs, ddof=1))
                    if std is None:
                        problems.append(f"{where}: accuracy_std is missing ({len(accs)} seeds)")
                    elif _finite(std) and abs(std - sd) > _TOL:
                        problems.append(f"{where}: accuracy_std {std} is not the sample std {sd:.6g} of its seeds")
            elif any(a is not None for a in accs):
                problems.append(f"{where}: seeds give an accuracy for some seeds only")
    if std is not None:
        if not (_finite(std) and std >= 0):
            problems.append(f"{where}: accuracy_std must be a finite number >= 0, not {std!r}"[:200])
        elif not isinstance(seeds, list) or len(seeds) < 2:
            problems.append(f"{where}: accuracy_std needs seeds with at least two entries")


def _check_comparison(c: Any, i: int, names: set, problems: list[str]) -> None:
    where = f"comparisons[{i}]"
    if not isinstance(c, dict):
        problems.append(f"{where} must be an object with the keys of stats.PairedDifference.to_json()")
        return
    missing = [k for k in COMPARISON_KEYS if k not in c]
    if missing:
        problems.append(f"{where} lacks {', '.join(missing)}")
        return
    for k in ("a", "b"):
        if not isinstance(c[k], str) or c[k] not in names:
            problems.append(f"{where}.{k} must name a variant of these results, not {c[k]!r}"[:200])
            return
    if c["a"] == c["b"]:
        problems.append(f"{where} compares {c['a']!r} with itself")
    where = f"{where} ({c['a']} vs {c['b']})"
    d, lo, hi = c["difference"], c["low"], c["high"]
    if not all(_finite(x) and -1.0 <= x <= 1.0 for x in (d, lo, hi)) or lo > hi:
        problems.append(f"{where}: difference, low and high must be finite in [-1, 1] with low <= high")
        return
    n, oa, ob = c["n"], c["only_a"], c["only_b"]
    if not _int(n) or n < 1:
        problems.append(f"{where}.n must be a whole number >= 1, not {n!r}"[:200])
        return
    if not (_int(oa) and _int(ob) and oa >= 0 and ob >= 0 and oa + ob <= n):
        problems.append(f"{where}.only_a and .only_b must be whole numbers >= 0 summing to at most n={n}")
        return
    if abs(d - (oa - ob) / n) > _TOL:
        problems.append(f"{where}.difference {d} is not (only_a - only_b) / n = ({oa} - {ob}) / {n}")
    if not (_finite(c["mcnemar_p"]) and 0.0 <= c["mcnemar_p"] <= 1.0):
        problems.append(f"{where}.mcnemar_p must be a probability in [0, 1], not {c['mcnemar_p']!r}"[:200])
    if not (_finite(c["level"]) and 0.0 < c["level"] < 1.0):
        problems.append(f"{where}.level must lie strictly between 0 and 1, not {c['level']!r}"[:200])
    if not _int(c["resamples"]) or c["resamples"] < 0:
        problems.append(f"{where}.resamples must be a whole number >= 0")
    expect = (not lo <= 0.0 <= hi) and _finite(c["mcnemar_p"]) and c["mcnemar_p"] < 1.0 - c["level"]
    if not isinstance(c["measurable"], bool) or c["measurable"] != expect:
        problems.append(f"{where}.measurable must be a boolean, true exactly when [low, high] excludes 0 "
                        "and the McNemar p-value is below 1 - level")
    for k in ("method", "verdict"):
        if not isinstance(c[k], str) or not c[k]:
            problems.append(f"{where}.{k} must be a non-empty string")


def validate(doc: dict) -> dict:
    """Check ``doc`` against ``layerwise.results/2`` (or ``/1``, validated as it always was);
    return it or raise :class:`ResultsSchemaError`.

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
    schema = doc["schema"]
    if schema not in SCHEMAS:
        problems.append(f"schema is {schema!r}"[:120] + f", expected {SCHEMA!r} (or {SCHEMA_V1!r})")
    v2 = schema == SCHEMA
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
        if v2:
            _check_v2_variant(v, where, problems)
    if "quick" in doc and not isinstance(doc["quick"], bool):
        problems.append(f"'quick' must be true or false, not {_json_type(doc['quick'])}")
    for fig in doc["figures"]:
        if not isinstance(fig, str):
            problems.append("figures must be file names")
    if v2 and doc.get("comparisons") is not None:
        if not isinstance(doc["comparisons"], list):
            problems.append("'comparisons' must be a list")
        else:
            for i, c in enumerate(doc["comparisons"]):
                _check_comparison(c, i, names, problems)
    if problems:
        shown = schema if schema in SCHEMAS else SCHEMA
        raise ResultsSchemaError("results do not follow " + shown + ": " + "; ".join(problems))
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


def __getattr__(name: str):
    """``results.with_statistics`` and ``results.combine_seeds`` live in :mod:`layerwise.evidence`
    (which imports this module); they are reachable from here too."""
    if name in ("with_statistics", "combine_seeds"):
        from . import evidence
        return getattr(evidence, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
