"""Evidence behind every accuracy in a results file (``layerwise.results/2``).

* :func:`with_statistics`: from each variant's per-image hits on the test set, its Wilson 95 %
  interval (``accuracy_ci``), the hits themselves (``test_hits``) and paired comparisons between
  variants (paired bootstrap interval + exact McNemar, ``comparisons``). The stored accuracy must
  be what the hits say.
* :func:`combine_seeds`: one result from the same run over several seeds: the mean accuracy, its
  sample standard deviation, every seed's accuracy and interval, the Wilson interval of the hits
  pooled over the seeds, and the comparisons recomputed on the pooled hits.

The numbers come from :mod:`layerwise.stats`; this module only puts them in the schema.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .errors import ResultsSchemaError
from .results import SCHEMA, Results, Variant, decode_hits, encode_hits, validate
from .stats import AccuracyCI, accuracy_ci, paired_difference, seed_summary, wilson_interval

#: a stored accuracy and the mean of its hits may differ by float rounding only
TOLERANCE = 1e-9
# fields taken from the first seed by combine_seeds, every seed's value kept in extra["per_seed"]
_PER_SEED_FIELDS = ("macs", "macs_executed", "params", "size_bytes", "latency_ms", "peak_mem_bytes",
                    "energy_j")


def ci_json(ci: AccuracyCI, method: str | None = None) -> dict:
    """The ``accuracy_ci`` object of an interval."""
    return {"low": ci.low, "high": ci.high, "level": ci.level, "method": method or ci.method,
            "n": ci.n, "correct": ci.correct}


def _as_hits(x, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 1 or a.size == 0:
        raise ResultsSchemaError(f"{what}: need a non-empty 1-d vector of per-image hits (True = right), "
                                 f"got shape {a.shape}")
    if a.dtype != bool:
        if a.dtype.kind not in "biuf" or not np.isin(a, (0, 1)).all():
            raise ResultsSchemaError(f"{what}: per-image hits must be booleans or 0/1")
        a = a.astype(bool)
    return a


def variant_hits(v: Variant | dict) -> np.ndarray | None:
    """The per-image hits a variant stores (``test_hits``), or None."""
    th = v.test_hits if isinstance(v, Variant) else v.get("test_hits")
    return None if th is None else decode_hits(th)


def _copy(results: Results | dict) -> Results:
    if isinstance(results, Results):
        return copy.deepcopy(results)
    if isinstance(results, dict):
        return Results.from_dict(validate(results))
    raise ResultsSchemaError(f"expected Results or a results document, not {type(results).__name__}")


def _pairs(compare: Iterable | None) -> list[tuple[str, str]]:
    out = []
    for p in compare or ():
        if not (isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(x, str) for x in p)):
            raise ResultsSchemaError(f"compare: each pair must be (method variant, rival variant), not {p!r}")
        if p[0] == p[1]:
            raise ResultsSchemaError(f"compare: {p[0]!r} compared with itself")
        if tuple(p) not in out:
            out.append(tuple(p))
    return out


def _set_comparison(results: Results, comp: dict) -> None:
    for i, c in enumerate(results.comparisons):
        if c.get("a") == comp["a"] and c.get("b") == comp["b"]:
            results.comparisons[i] = comp
            return
    results.comparisons.append(comp)


def with_statistics(results: Results | dict, hits: Mapping[str, object], *,
                    compare: Sequence[tuple[str, str]] | None = None, level: float = 0.95,
                    resamples: int = 2000, seed: int = 0) -> Results:
    """A copy of ``results`` (schema /2) with the evidence of each variant named in ``hits``.

    ``hits[name]`` is that variant's per-image correctness on the test set (bool / 0-1 array or
    tensor, one entry per test image, in the test set's order). Each such variant gets
    ``accuracy_ci`` (Wilson) and ``test_hits``; its stored accuracy must equal the mean of its hits
    (to 1e-9; a None accuracy is filled in). Each pair ``(a, b)`` in ``compare`` (``a`` the method,
    ``b`` the rival) gets a paired comparison in ``comparisons`` (replacing one for the same pair);
    hits for a pair come from ``hits`` or from the variant's stored ``test_hits``.
    """
    out = _copy(results)
    out.schema = SCHEMA
    decoded: dict[str, np.ndarray] = {}
    for name, h in hits.items():
        v = out.variant(name)
        h = _as_hits(h, f"hits for variant {name!r}")
        ci = accuracy_ci(h, level=level)
        if v.accuracy is not None and abs(v.accuracy - ci.accuracy) > TOLERANCE:
            raise ResultsSchemaError(
                f"variant {name!r}: stored accuracy {v.accuracy!r} is not what its {ci.n} test hits say "
                f"({ci.correct}/{ci.n} = {ci.accuracy:.6g}): the accuracy and the hits come from different "
                "evaluations")
        v.accuracy = ci.accuracy
        v.accuracy_ci = ci_json(ci)
        v.test_hits = encode_hits(h)
        decoded[name] = h
    for a, b in _pairs(compare):
        ha, hb = (decoded.get(x) if x in decoded else variant_hits(out.variant(x)) for x in (a, b))
        for x, hx in ((a, ha), (b, hb)):
            if hx is None:
                raise ResultsSchemaError(f"cannot compare {a!r} with {b!r}: no per-image hits for {x!r} "
                                         "(pass them in hits=)")
        if ha.size != hb.size:
            raise ResultsSchemaError(f"cannot compare {a!r} with {b!r}: {ha.size} vs {hb.size} test hits "
                                     "(a paired comparison needs the same images)")
        pd = paired_difference(ha, hb, a=a, b=b, level=level, resamples=resamples, seed=seed)
        _set_comparison(out, pd.to_json())
    validate(out.to_dict())
    return out


def _seed_of(r: Results, i: int) -> int:
    s = r.env.get("seed") if isinstance(r.env, dict) else None
    if not isinstance(s, int) or isinstance(s, bool):
        raise ResultsSchemaError(f"cannot combine seeds: result {i} has env.seed {s!r}; each per-seed result "
                                 "needs its own whole-number env.seed")
    return s


def combine_seeds(per_seed: Sequence[Results | dict], *, compare: Sequence[tuple[str, str]] | None = None,
                  level: float = 0.95, resamples: int = 2000, seed: int = 0, common_only: bool = False) -> Results:
    """One result (schema /2) from the same method, model and dataset run over several seeds.

    Per variant: ``accuracy`` = mean over seeds, ``accuracy_std`` = sample std (more than one seed),
    ``seeds`` = each seed's accuracy, Wilson interval and ``test_hits`` (where it has them),
    ``accuracy_ci`` = Wilson over the hits pooled over all seeds (when every seed has them; method
    "wilson, pooled over K seeds"). Other fields (macs, size_bytes, latency_ms, ...) come from the
    first seed; every seed's values are kept in ``extra["per_seed"]``. Comparisons (the pairs any
    seed compared, plus ``compare``) are recomputed on the pooled hits: each seed's images stay
    paired, and the bootstrap resamples the pooled pairs. ``env`` is the first seed's with
    ``seed`` None and ``seeds`` the list; ``figures`` is empty (the figures stay with each seed);
    ``quick`` is set when any seed was a ``--quick`` run.

    Variants must be the same in every seed, unless ``common_only``: then only the variants every
    seed has are combined (a run whose automatic choice named its other variants differently, e.g.
    LWAC's ``lwac-neural`` / ``lwac-heuristic``), the others are listed in
    ``env["variants_not_in_every_seed"]``, and comparisons that name them are left out.
    """
    items = [_copy(r) for r in per_seed]
    if not items:
        raise ResultsSchemaError("cannot combine seeds: no results given")
    seeds = [_seed_of(r, i) for i, r in enumerate(items)]
    if len(set(seeds)) != len(seeds):
        raise ResultsSchemaError(f"cannot combine seeds: seeds {seeds} repeat one (one result per seed)")
    first, k = items[0], len(items)
    names = [v.name for v in first.variants]
    dropped: list[str] = []
    if common_only:
        everywhere = set.intersection(*({v.name for v in r.variants} for r in items))
        dropped = sorted({v.name for r in items for v in r.variants} - everywhere)
        names = [n for n in names if n in everywhere]
        for r in items:
            r.variants = [v for v in r.variants if v.name in everywhere]
            r.comparisons = [c for c in r.comparisons if c.get("a") in everywhere and c.get("b") in everywhere]
        compare = [(a, b) for a, b in (compare or ()) if a in everywhere and b in everywhere]
    for r, s in zip(items[1:], seeds[1:]):
        for key in ("method", "model", "dataset"):
            if getattr(r, key) != getattr(first, key):
                raise ResultsSchemaError(f"cannot combine seeds: seed {s} has {key} {getattr(r, key)!r} but "
                                         f"seed {seeds[0]} has {getattr(first, key)!r}")
        other = [v.name for v in r.variants]
        if set(other) != set(names):
            lacks, more = sorted(set(names) - set(other)), sorted(set(other) - set(names))
            raise ResultsSchemaError(
                f"cannot combine seeds: seed {s} has other variants than seed {seeds[0]}"
                + (f"; it lacks {', '.join(lacks)}" if lacks else "")
                + (f"; it adds {', '.join(more)}" if more else ""))

    variants, hits = [], {}
    for name in names:
        vs = [r.variant(name) for r in items]
        hs = [variant_hits(v) for v in vs]
        accs = [v.accuracy for v in vs]
        base = vs[0]
        out = Variant(name=name, **{f: copy.deepcopy(getattr(base, f)) for f in _PER_SEED_FIELDS},
                      extra=copy.deepcopy(base.extra))
        per = {"seed": list(seeds)}
        per.update({f: [copy.deepcopy(getattr(v, f)) for v in vs] for f in _PER_SEED_FIELDS})
        per["extra"] = [copy.deepcopy(v.extra) for v in vs]
        out.extra["per_seed"] = per
        if all(a is None for a in accs):
            out.accuracy = None
            variants.append(out)
            continue
        if any(a is None for a in accs):
            missing = [s for s, a in zip(seeds, accs) if a is None]
            raise ResultsSchemaError(f"cannot combine seeds: variant {name!r} has no accuracy in seed(s) "
                                     f"{missing} but has one in the others")
        entries, counts = [], []
        for s, v, h in zip(seeds, vs, hs):
            e = {"seed": s, "accuracy": v.accuracy}
            if h is not None:
                ci = accuracy_ci(h, level=level)
                e["accuracy_ci"] = ci_json(ci)
                e["test_hits"] = copy.deepcopy(v.test_hits)
                counts.append((ci.correct, ci.n))
            elif isinstance(v.accuracy_ci, dict) and "pooled" not in str(v.accuracy_ci.get("method")).lower():
                e["accuracy_ci"] = copy.deepcopy(v.accuracy_ci)
                if isinstance(v.accuracy_ci.get("correct"), int) and isinstance(v.accuracy_ci.get("n"), int):
                    counts.append((v.accuracy_ci["correct"], v.accuracy_ci["n"]))
            entries.append(e)
        summary = seed_summary(accs, seeds)
        out.accuracy = summary.mean
        out.accuracy_std = summary.std if k > 1 else None
        out.seeds = entries
        if len(counts) == k:
            correct, n = sum(c for c, _ in counts), sum(m for _, m in counts)
            lo, hi = wilson_interval(correct, n, level)
            out.accuracy_ci = {"low": lo, "high": hi, "level": level,
                               "method": f"wilson, pooled over {k} seeds" if k > 1 else "wilson",
                               "n": n, "correct": correct}
        if all(h is not None for h in hs):
            hits[name] = hs
        variants.append(out)

    pairs = _pairs([(c.get("a"), c.get("b")) for r in items for c in r.comparisons] + list(compare or ()))
    comparisons = []
    for a, b in pairs:
        for x in (a, b):
            if x not in names:
                raise ResultsSchemaError(f"cannot compare {a!r} with {b!r}: no variant {x!r} "
                                         f"(variants: {', '.join(names)})")
            if x not in hits:
                lacking = [s for s, v in zip(seeds, (r.variant(x) for r in items)) if v.test_hits is None]
                raise ResultsSchemaError(f"cannot pool the comparison {a!r} vs {b!r}: seed(s) {lacking} have no "
                                         f"test_hits for {x!r} (run with_statistics on every seed)")
        for s, ha, hb in zip(seeds, hits[a], hits[b]):
            if ha.size != hb.size:
                raise ResultsSchemaError(f"cannot compare {a!r} with {b!r}: seed {s} has {ha.size} vs {hb.size} "
                                         "test hits (a paired comparison needs the same images)")
        pd = paired_difference(np.concatenate(hits[a]), np.concatenate(hits[b]), a=a, b=b, level=level,
                               resamples=resamples, seed=seed)
        if k > 1:
            pd = dataclasses.replace(pd, method=f"{pd.method}, pooled over {k} seeds")
        comparisons.append(pd.to_json())

    env = copy.deepcopy(first.env)
    env["seed"] = None
    env["seeds"] = list(seeds)
    if dropped:
        env["variants_not_in_every_seed"] = dropped
    out = Results(method=first.method, model=first.model, dataset=first.dataset, env=env,
                  variants=variants, figures=[], schema=SCHEMA, comparisons=comparisons,
                  quick=any(r.quick for r in items))  # one smoke seed makes the whole a smoke run
    validate(out.to_dict())
    return out


__all__ = ["TOLERANCE", "ci_json", "combine_seeds", "variant_hits", "with_statistics"]
