"""``layerwise.results/2``: confidence intervals, seeds, per-image hits and paired comparisons."""

from __future__ import annotations

import base64
import copy
import json
import math
from statistics import NormalDist

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from layerwise.errors import ResultsSchemaError
from layerwise.evidence import combine_seeds, variant_hits, with_statistics
from layerwise.results import (COMPARISON_KEYS, SCHEMA, SCHEMA_V1, Results, Variant, decode_hits,
                               encode_hits, env_info, read_results, validate, write_results)
from layerwise.stats import paired_difference

Z = NormalDist().inv_cdf(0.975)  # 1.959964, independent of scipy


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval written out from its formula."""
    p = k / n
    denom = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / denom
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denom
    return centre - half, centre + half


def _variant(name, acc, macs=100):
    return Variant(name=name, accuracy=acc, macs=macs, macs_executed=macs, params=10, size_bytes=40,
                   latency_ms={"median": 1.0, "iqr": 0.1, "n": 5, "batch": 1}, peak_mem_bytes=None,
                   energy_j=None, extra={"peak_mem_bytes": "not measured", "energy_j": "not measured"})


def _results(accs: dict, seed=0, **kw):
    return Results(method="unit", model="tiny-cnn", dataset="fashion-mnist", env=env_info("cpu", 1, seed),
                   variants=[_variant(n, a, **kw) for n, a in accs.items()])


# hand-built case: 10 test images
HITS_A = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], bool)   # 8 of 10
HITS_B = np.array([1, 0, 1, 1, 0, 1, 1, 1, 1, 0], bool)   # 7 of 10
# right with A only: images 1 and 4; with B only: image 8


def _hand_built():
    r = _results({"unit": 0.8, "dense": 0.7})
    return with_statistics(r, {"unit": HITS_A, "dense": HITS_B}, compare=[("unit", "dense")])


# ---------------------------------------------------------------- encode / decode hits

@settings(max_examples=80, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=20))
def test_hits_round_trip_short(bits):
    a = np.array(bits, dtype=bool)
    enc = encode_hits(a)
    assert enc["n"] == len(bits) and isinstance(enc["bits"], str)
    out = decode_hits(json.loads(json.dumps(enc)))
    assert out.dtype == bool and out.tolist() == bits


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_hits_round_trip_10000_images_in_1250_bytes(seed):
    a = np.random.default_rng(seed).random(10_000) < 0.9
    enc = encode_hits(a)
    assert len(base64.b64decode(enc["bits"])) == 1250
    assert np.array_equal(decode_hits(enc), a)


def test_encode_hits_takes_0_1_and_tensors_and_rejects_the_rest():
    import torch
    assert decode_hits(encode_hits([1, 0, 1])).tolist() == [True, False, True]
    assert decode_hits(encode_hits(torch.tensor([True, False]))).tolist() == [True, False]
    for bad in ([], [[1, 0]], [0, 2], ["yes"]):
        with pytest.raises(ResultsSchemaError, match="test_hits"):
            encode_hits(bad)


def _bits(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("data, field", [
    ([1, 0], "test_hits must be an object"),
    ({"bits": "AA=="}, "test_hits must be an object"),
    ({"n": 0, "bits": "AA=="}, "test_hits.n"),
    ({"n": True, "bits": "AA=="}, "test_hits.n"),
    ({"n": 3.0, "bits": "AA=="}, "test_hits.n"),
    ({"n": "3", "bits": "AA=="}, "test_hits.n"),
    ({"n": 3, "bits": 7}, "test_hits.bits must be a base64 string"),
    ({"n": 3, "bits": "!!!!"}, "test_hits.bits is not base64"),
    ({"n": 3, "bits": "AA"}, "test_hits.bits is not base64"),            # missing padding
    ({"n": 3, "bits": "é="}, "test_hits.bits is not base64"),
    ({"n": 3, "bits": "AB=="}, "not canonical"),                          # stray bits in the last char
    ({"n": 3, "bits": _bits(b"\xe0\x00")}, "holds 2 bytes, but n=3 needs 1"),
    ({"n": 9, "bits": _bits(b"\xff")}, "holds 1 bytes, but n=9 needs 2"),
    ({"n": 3, "bits": _bits(b"\xf0")}, "padding bits after image 3 must be zero"),
    ({"n": 9, "bits": _bits(b"\xff\xc0")}, "padding bits"),
])
def test_decode_hits_rejects_malformed_data_naming_the_field(data, field):
    with pytest.raises(ResultsSchemaError, match=field) as info:
        decode_hits(data)
    assert "\n" not in str(info.value)


def test_decode_hits_accepts_exact_padding():
    assert decode_hits({"n": 3, "bits": _bits(b"\xa0")}).tolist() == [True, False, True]
    assert decode_hits({"n": 8, "bits": _bits(b"\xff")}).all()


# ---------------------------------------------------------------- schema /2 on disk

def test_v2_file_round_trips(tmp_path):
    r = _hand_built()
    path = write_results(tmp_path, r)
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA == "layerwise.results/2"
    assert list(doc)[0] == "schema" and "comparisons" in doc
    back = read_results(tmp_path)
    assert back == doc
    assert Results.from_dict(back).to_dict() == doc
    assert np.array_equal(variant_hits(back["variants"][0]), HITS_A)
    assert set(back["comparisons"][0]) == set(COMPARISON_KEYS)


def test_v2_without_evidence_leaves_the_new_keys_out(tmp_path):
    write_results(tmp_path, _results({"dense": 0.9}))
    doc = read_results(tmp_path)
    assert doc["schema"] == SCHEMA and "comparisons" not in doc
    assert not {"accuracy_ci", "accuracy_std", "seeds", "test_hits"} & set(doc["variants"][0])


def test_comparison_keys_are_exactly_paired_difference_json():
    pd = paired_difference(HITS_A, HITS_B, a="unit", b="dense", resamples=200)
    assert set(pd.to_json()) == set(COMPARISON_KEYS)


def _v1_doc():
    doc = _results({"dense": 0.9}).to_dict()
    doc["schema"] = SCHEMA_V1
    return doc


def test_v1_file_still_reads_unchanged(tmp_path):
    doc = _v1_doc()
    (tmp_path / "results.json").write_text(json.dumps(doc))
    assert read_results(tmp_path) == doc
    write_results(tmp_path / "w", doc)          # a /1 document is still written as /1
    assert read_results(tmp_path / "w")["schema"] == SCHEMA_V1
    # /1 validation stays as it was: keys /2 defines are not looked at in a /1 file
    doc["variants"][0]["accuracy_ci"] = "anything"
    doc["comparisons"] = 3
    assert validate(doc) is doc
    # ... and the old rules still hold
    doc["variants"][0]["accuracy"] = 90.0
    with pytest.raises(ResultsSchemaError, match="results/1: .*fraction"):
        validate(doc)


def test_unknown_schema_names_both_versions():
    doc = _v1_doc()
    doc["schema"] = "layerwise.results/3"
    with pytest.raises(ResultsSchemaError, match="results/2.*results/1"):
        validate(doc)


def _ci(**kw):
    base = {"low": 0.7, "high": 0.95, "level": 0.95, "method": "wilson", "n": 10, "correct": 8}
    base.update(kw)
    return base


def _cmp(**kw):
    base = paired_difference(HITS_A, HITS_B, a="unit", b="dense", resamples=200).to_json()
    base.update(kw)
    return base


def _seeds(*accs):
    return [{"seed": i, "accuracy": a} for i, a in enumerate(accs)]


def _set_variant(**fields):
    return lambda d: d["variants"][0].update(fields)


@pytest.mark.parametrize("change, words", [
    # accuracy_ci
    (_set_variant(accuracy_ci=[0.7, 0.9]), "accuracy_ci must be an object"),
    (_set_variant(accuracy_ci=_ci(high=None)), "accuracy_ci.low and .high"),
    (_set_variant(accuracy_ci={k: v for k, v in _ci().items() if k != "high"}), "accuracy_ci lacks high"),
    (_set_variant(accuracy_ci=_ci(low=0.9, high=0.95)), r"accuracy_ci \[0.9, 0.95\] does not hold the accuracy 0.8"),
    (_set_variant(accuracy_ci=_ci(low=-0.1)), "accuracy_ci.low and .high"),
    (_set_variant(accuracy_ci=_ci(high=1.5)), "accuracy_ci.low and .high"),
    (_set_variant(accuracy_ci=_ci(low=0.9, high=0.8)), "accuracy_ci.low and .high"),
    (_set_variant(accuracy_ci=_ci(level=1.0)), "accuracy_ci.level"),
    (_set_variant(accuracy_ci=_ci(level=0)), "accuracy_ci.level"),
    (_set_variant(accuracy_ci=_ci(method="")), "accuracy_ci.method"),
    (_set_variant(accuracy_ci=_ci(n=0)), "accuracy_ci.n"),
    (_set_variant(accuracy_ci=_ci(n=10.0)), "accuracy_ci.n"),
    (_set_variant(accuracy_ci=_ci(n=True)), "accuracy_ci.n"),
    (_set_variant(accuracy_ci=_ci(correct=11)), "accuracy_ci.correct"),
    (_set_variant(accuracy_ci=_ci(correct=9)), "does not hold its own estimate 9/10|correct/n"),
    (_set_variant(accuracy_ci=_ci(n=20, correct=16)), "accuracy_ci.n=20 but test_hits.n=10"),
    # test_hits
    (_set_variant(test_hits={"n": 10, "bits": "??"}), "variant 'unit': test_hits.bits is not base64"),
    (_set_variant(test_hits=encode_hits(HITS_B)), "accuracy 0.8 is not what test_hits say"),
    # seeds and accuracy_std
    (_set_variant(seeds={"0": 0.8}), "seeds must be a non-empty list"),
    (_set_variant(seeds=[]), "seeds must be a non-empty list"),
    (_set_variant(seeds=[{"accuracy": 0.8}]), r"seeds\[0\] must be an object with seed and accuracy"),
    (_set_variant(seeds=[{"seed": "0", "accuracy": 0.8}]), r"seeds\[0\].seed"),
    (_set_variant(seeds=[{"seed": True, "accuracy": 0.8}]), r"seeds\[0\].seed"),
    (_set_variant(seeds=[{"seed": 0, "accuracy": 80}]), r"seeds\[0\].accuracy"),
    (_set_variant(seeds=[{"seed": 0, "accuracy": 0.7}, {"seed": 0, "accuracy": 0.9}], accuracy_std=0.14142135623730948),
     "seed 0 appears twice"),
    (_set_variant(seeds=_seeds(0.7, 0.8)), "not the mean"),
    (_set_variant(seeds=_seeds(0.7, 0.9)), "accuracy_std is missing"),
    (_set_variant(seeds=_seeds(0.7, 0.9), accuracy_std=0.5), "accuracy_std 0.5 is not the sample std"),
    (_set_variant(seeds=_seeds(0.8), accuracy_std=0.0), "accuracy_std needs seeds with at least two"),
    (_set_variant(seeds=_seeds(0.7, 0.9), accuracy_std=-1.0), "accuracy_std must be a finite number >= 0"),
    (_set_variant(seeds=_seeds(0.8, None)), "some seeds only"),
    (_set_variant(seeds=[{"seed": 0, "accuracy": 0.8, "accuracy_ci": _ci(low=0.85)}]),
     r"seeds\[0\]: accuracy_ci .* does not hold the accuracy"),
    (_set_variant(seeds=[{"seed": 0, "accuracy": 0.8, "test_hits": {"n": 10}}]), r"seeds\[0\]: test_hits must be"),
    # comparisons
    (lambda d: d.update(comparisons={}), "'comparisons' must be a list"),
    (lambda d: d.update(comparisons=[3]), r"comparisons\[0\] must be an object"),
    (lambda d: d["comparisons"][0].pop("mcnemar_p"), r"comparisons\[0\] lacks mcnemar_p"),
    (lambda d: d["comparisons"][0].update(b="lwac"), r"comparisons\[0\].b must name a variant"),
    (lambda d: d["comparisons"][0].update(b="unit"), "compares 'unit' with itself"),
    (lambda d: d["comparisons"][0].update(difference=0.3), "difference 0.3 is not"),
    (lambda d: d["comparisons"][0].update(low=0.5, high=0.2), "low and high must be finite"),
    (lambda d: d["comparisons"][0].update(n=0), r"comparisons\[0\] \(unit vs dense\).n"),
    (lambda d: d["comparisons"][0].update(only_a=-1), "only_a and .only_b"),
    (lambda d: d["comparisons"][0].update(mcnemar_p=1.5), "mcnemar_p"),
    (lambda d: d["comparisons"][0].update(level=1.0), r"\(unit vs dense\).level"),
    (lambda d: d["comparisons"][0].update(resamples="many"), "resamples"),
    (lambda d: d["comparisons"][0].update(measurable=True), "measurable"),
    (lambda d: d["comparisons"][0].update(verdict=""), r"\.verdict must be a non-empty string"),
])
def test_malformed_v2_field_is_one_line_naming_file_and_field(tmp_path, change, words):
    doc = _hand_built().to_dict()
    change(doc)
    (tmp_path / "results.json").write_text(json.dumps(doc))
    with pytest.raises(ResultsSchemaError, match=words) as info:
        read_results(tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path / "results.json") in msg and "results/2" in msg


def test_pooled_interval_need_not_hold_the_mean_of_unequal_seeds():
    # seeds of different sizes: the pooled estimate is not the mean accuracy; both are valid
    doc = _results({"dense": 0.75}).to_dict()
    doc["variants"][0].update(seeds=[{"seed": 0, "accuracy": 1.0}, {"seed": 1, "accuracy": 0.5}],
                              accuracy_std=math.sqrt(0.125),
                              accuracy_ci={"low": 0.5, "high": 0.7, "level": 0.95, "n": 110, "correct": 60,
                                           "method": "wilson, pooled over 2 seeds"})
    validate(doc)


# ---------------------------------------------------------------- with_statistics

def test_with_statistics_hand_built_8_of_10():
    r = _hand_built()
    unit, dense = r.variant("unit"), r.variant("dense")
    lo, hi = wilson(8, 10)
    assert unit.accuracy == 0.8
    assert unit.accuracy_ci["low"] == pytest.approx(lo, abs=1e-9)
    assert unit.accuracy_ci["high"] == pytest.approx(hi, abs=1e-9)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)       # by hand: 0.49016 and 0.94332
    assert unit.accuracy_ci | {"low": 0, "high": 0} == {"low": 0, "high": 0, "level": 0.95, "method": "wilson",
                                                         "n": 10, "correct": 8}
    assert dense.accuracy_ci["low"] == pytest.approx(wilson(7, 10)[0], abs=1e-9)
    assert np.array_equal(variant_hits(unit), HITS_A) and np.array_equal(variant_hits(dense), HITS_B)
    [c] = r.comparisons
    assert (c["a"], c["b"], c["n"]) == ("unit", "dense", 10)
    assert (c["only_a"], c["only_b"]) == (2, 1)                   # images 1, 4 vs image 8
    assert c["difference"] == pytest.approx(0.1)
    assert c["mcnemar_p"] == pytest.approx(1.0)                   # 2 * P(Bin(3, 1/2) <= 1) = 2 * 4/8
    assert c["low"] <= 0 <= c["high"] and c["measurable"] is False
    assert "no measurable difference" in c["verdict"]


def test_with_statistics_leaves_its_input_alone_and_replaces_a_repeated_comparison():
    r = _results({"unit": 0.8, "dense": 0.7})
    before = copy.deepcopy(r.to_dict())
    out = with_statistics(r, {"unit": HITS_A, "dense": HITS_B}, compare=[("unit", "dense")])
    assert r.to_dict() == before
    # hits already stored: a later comparison needs none passed, and replaces the same pair
    again = with_statistics(out, {}, compare=[("unit", "dense"), ("dense", "unit")], resamples=500)
    assert [(c["a"], c["b"], c["resamples"]) for c in again.comparisons] == [("unit", "dense", 500),
                                                                              ("dense", "unit", 500)]


def test_with_statistics_fills_a_missing_accuracy_and_takes_a_dict():
    r = _results({"unit": None})
    r.variants[0].extra["accuracy"] = "not evaluated yet"
    out = with_statistics(r.to_dict(), {"unit": [1, 1, 0, 1]})
    assert out.variants[0].accuracy == 0.75 and out.schema == SCHEMA


@pytest.mark.parametrize("hits, compare, words", [
    ({"unit": HITS_B}, None, r"'unit': stored accuracy 0.8 is not what its 10 test hits say \(7/10"),
    ({"lwac": HITS_A}, None, "no variant 'lwac'"),
    ({"unit": HITS_A}, [("unit", "dense")], "no per-image hits for 'dense'"),
    ({"unit": HITS_A, "dense": np.ones(5, bool)}, None, "stored accuracy 0.7"),
    ({"unit": HITS_A}, [("unit", "unit")], "with itself"),
    ({"unit": np.array([[1, 0]])}, None, "1-d vector"),
])
def test_with_statistics_refuses_inconsistent_input(hits, compare, words):
    with pytest.raises(ResultsSchemaError, match=words):
        with_statistics(_results({"unit": 0.8, "dense": 0.7}), hits, compare=compare)


def test_with_statistics_refuses_to_pair_different_image_sets():
    r = _results({"unit": 0.8, "dense": 0.6})
    with pytest.raises(ResultsSchemaError, match="10 vs 5 test hits"):
        with_statistics(r, {"unit": HITS_A, "dense": [1, 1, 1, 0, 0]}, compare=[("unit", "dense")])


# ---------------------------------------------------------------- combine_seeds

N = 50
CORRECT = {"unit": (40, 45, 42), "dense": (44, 46, 41)}


def _seed_hits(seed, k):
    h = np.zeros(N, bool)
    h[np.random.default_rng(100 + seed).permutation(N)[:k]] = True
    return h


def _per_seed():
    out, hits = [], {}
    for i, seed in enumerate((3, 5, 7)):
        hs = {name: _seed_hits(seed + j, c[i]) for j, (name, c) in enumerate(CORRECT.items())}
        hits[seed] = hs
        r = _results({name: c[i] / N for name, c in CORRECT.items()}, seed=seed, macs=100 + i)
        out.append(with_statistics(r, hs, compare=[("unit", "dense")], resamples=200))
    return out, hits


def test_combine_seeds_three_seeds(tmp_path):
    per, hits = _per_seed()
    c = combine_seeds(per, resamples=500)
    assert c.schema == SCHEMA and c.env["seeds"] == [3, 5, 7] and c.env["seed"] is None and c.figures == []
    unit = c.variant("unit")
    accs = [0.8, 0.9, 0.84]
    mean = sum(accs) / 3
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / 2)     # sample std, by hand
    assert unit.accuracy == pytest.approx(mean, abs=1e-12) and unit.accuracy_std == pytest.approx(std, abs=1e-12)
    assert [e["seed"] for e in unit.seeds] == [3, 5, 7]
    assert [e["accuracy"] for e in unit.seeds] == pytest.approx(accs)
    for e, k in zip(unit.seeds, CORRECT["unit"]):
        assert e["accuracy_ci"]["n"] == N and e["accuracy_ci"]["low"] == pytest.approx(wilson(k, N)[0], abs=1e-9)
        assert e["accuracy_ci"]["method"] == "wilson"
    ci = unit.accuracy_ci
    assert ci["n"] == 3 * N and ci["correct"] == 127 and ci["method"] == "wilson, pooled over 3 seeds"
    assert (ci["low"], ci["high"]) == pytest.approx(wilson(127, 3 * N), abs=1e-9)
    # other fields from the first seed, every seed's kept in extra
    assert unit.macs == 100 and unit.extra["per_seed"]["macs"] == [100, 101, 102]
    assert unit.extra["per_seed"]["seed"] == [3, 5, 7] and unit.extra["energy_j"] == "not measured"
    # the comparison is recomputed on the pooled pairs
    [cmp] = c.comparisons
    only_a = sum(int((hits[s]["unit"] & ~hits[s]["dense"]).sum()) for s in (3, 5, 7))
    only_b = sum(int((~hits[s]["unit"] & hits[s]["dense"]).sum()) for s in (3, 5, 7))
    assert (cmp["n"], cmp["only_a"], cmp["only_b"]) == (3 * N, only_a, only_b)
    assert cmp["difference"] == pytest.approx((127 - 131) / (3 * N))
    assert cmp["method"].endswith("pooled over 3 seeds") and cmp["resamples"] == 500
    # it is a valid /2 file
    write_results(tmp_path, c)
    assert read_results(tmp_path)["variants"][0]["seeds"][2]["seed"] == 7


def test_combine_seeds_one_seed_and_results_read_from_disk(tmp_path):
    per, _ = _per_seed()
    write_results(tmp_path, per[0])
    c = combine_seeds([read_results(tmp_path)])
    unit = c.variant("unit")
    assert unit.accuracy == 0.8 and unit.accuracy_std is None and len(unit.seeds) == 1
    assert unit.accuracy_ci["method"] == "wilson" and unit.accuracy_ci["n"] == N


def test_combine_seeds_without_hits_gives_seed_values_but_no_pooled_interval():
    per = [_results({"unit": a}, seed=s) for s, a in ((0, 0.8), (1, 0.9))]
    c = combine_seeds(per)
    unit = c.variant("unit")
    assert unit.accuracy == pytest.approx(0.85) and unit.accuracy_ci is None
    assert unit.accuracy_std == pytest.approx(math.sqrt(0.005))
    with pytest.raises(ResultsSchemaError, match=r"seed\(s\) \[0, 1\] have no test_hits for 'unit'"):
        combine_seeds([_results({"unit": 0.8, "b": 0.1}, seed=0), _results({"unit": 0.9, "b": 0.1}, seed=1)],
                      compare=[("unit", "b")])


@pytest.mark.parametrize("mutate, words", [
    (lambda rs: setattr(rs[1], "model", "resnet20"), "seed 5 has model 'resnet20' but seed 3 has 'tiny-cnn'"),
    (lambda rs: setattr(rs[2], "dataset", "digits"), "seed 7 has dataset 'digits'"),
    (lambda rs: rs[1].variants.pop(), "seed 5 has other variants than seed 3; it lacks dense"),
    (lambda rs: rs[2].variants.append(_variant("lwac", 0.5)), "it adds lwac"),
    (lambda rs: rs[1].env.update(seed=3), r"seeds \[3, 3, 7\] repeat"),
    (lambda rs: rs[1].env.update(seed=None), "result 1 has env.seed None"),
    (lambda rs: setattr(rs[2].variants[0], "test_hits", None), r"seed\(s\) \[7\] have no test_hits for 'unit'"),
    (lambda rs: rs.clear(), "no results given"),
])
def test_combine_seeds_names_what_differs(mutate, words):
    per, _ = _per_seed()
    mutate(per)
    with pytest.raises(ResultsSchemaError, match=words):
        combine_seeds(per)


# ---------------------------------------------------------------- any damage: one ResultsSchemaError

_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                          st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
_json_values = st.recursive(_json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


_COMBINED = combine_seeds(_per_seed()[0], resamples=200).to_dict()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_damaged_v2_document_is_valid_or_one_schema_error(data):
    doc = copy.deepcopy(_COMBINED)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from([p for p in _paths(doc) if p]))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_json_values)
        if not isinstance(doc, dict) or not [p for p in _paths(doc) if p]:
            break
    try:
        validate(doc)
    except ResultsSchemaError as exc:
        assert "\n" not in str(exc)
        return
    # what validates, the report renders
    from layerwise.report import _comparisons_table, _variant_row
    for v in doc["variants"]:
        assert _variant_row(v, None, doc["schema"] == SCHEMA).startswith("<tr>")
    if doc["schema"] == SCHEMA:
        _comparisons_table(doc.get("comparisons") or [])


def test_helpers_are_reachable_from_results_too():
    from layerwise import evidence, results
    assert results.with_statistics is evidence.with_statistics
    assert results.combine_seeds is evidence.combine_seeds


def test_common_only_combines_the_variants_every_seed_has_and_names_the_rest():
    # LWAC's automatic choice names its other policy lwac-neural in one seed, lwac-heuristic in another
    seeds = [_results({"dense": 0.5, "lwac": 0.25, "lwac-neural": 0.75}, seed=0),
             _results({"dense": 0.5, "lwac": 0.75, "lwac-heuristic": 0.75}, seed=1)]
    with pytest.raises(ResultsSchemaError, match="other variants"):
        combine_seeds(seeds)
    out = combine_seeds(seeds, common_only=True)
    assert [v.name for v in out.variants] == ["dense", "lwac"]
    assert out.env["variants_not_in_every_seed"] == ["lwac-heuristic", "lwac-neural"]
    assert out.variant("lwac").accuracy == pytest.approx(0.5)
    assert [e["accuracy"] for e in out.variant("lwac").seeds] == [0.25, 0.75]
