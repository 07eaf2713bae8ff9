import json

import pytest

from layerwise.errors import ResultsSchemaError
from layerwise.results import SCHEMA, Results, Variant, env_info, read_results, validate, write_results


def _variant(**kw):
    base = dict(name="dense", accuracy=0.975, macs=1000, macs_executed=800, params=50, size_bytes=2048,
                latency_ms={"median": 0.4, "iqr": 0.03, "n": 200, "batch": 1}, peak_mem_bytes=10_000,
                energy_j={"value": 0.002, "source": "estimate:test", "estimated": True})
    base.update(kw)
    return Variant(**base)


def _results(*variants):
    return Results(method="unit", model="tiny-cnn", dataset="digits", env=env_info("cpu", 2, 0),
                   variants=list(variants) or [_variant()])


def test_written_file_round_trips_and_has_schema(tmp_path):
    path = write_results(tmp_path, _results())
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA
    assert list(doc)[0] == "schema"
    assert doc["env"]["threads"] == 2 and doc["env"]["seed"] == 0
    assert read_results(tmp_path)["variants"][0]["macs_executed"] == 800


@pytest.mark.parametrize("change, message", [
    ({"accuracy": 97.5}, "fraction"),
    ({"macs_executed": 2000}, "exceeds macs"),
    ({"energy_j": {"value": 0.1}}, "never a bare number"),
    ({"latency_ms": {"median": 1.0}}, "median, iqr, n and batch"),
    ({"params": None}, "null without a reason"),
    ({"size_bytes": -1}, "non-negative integer"),
    ({"accuracy": float("nan")}, "finite"),
])
def test_invalid_variant_is_rejected_with_the_reason(tmp_path, change, message):
    with pytest.raises(ResultsSchemaError, match=message):
        write_results(tmp_path, _results(_variant(**change)))
    assert not (tmp_path / "results.json").exists()


def test_null_with_reason_is_accepted(tmp_path):
    v = _variant(accuracy=None, extra={"accuracy": "untrained"})
    write_results(tmp_path, _results(v))
    assert read_results(tmp_path / "results.json")["variants"][0]["accuracy"] is None


def test_duplicate_variant_names_rejected():
    doc = _results(_variant(), _variant()).to_dict()
    with pytest.raises(ResultsSchemaError, match="twice"):
        validate(doc)


def test_failed_write_keeps_previous_file(tmp_path):
    write_results(tmp_path, _results())
    before = (tmp_path / "results.json").read_text()
    with pytest.raises(ResultsSchemaError):
        write_results(tmp_path, _results(_variant(accuracy=3.0)))
    assert (tmp_path / "results.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_read_results_names_missing_and_bad_files(tmp_path):
    with pytest.raises(ResultsSchemaError, match="no results file"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ResultsSchemaError, match="not valid JSON"):
        read_results(tmp_path)
