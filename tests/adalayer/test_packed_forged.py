"""Forged packed files: a valid SHA-256 over forged metadata or payload is a PackedFileError, never a
KeyError, an IndexError or a huge allocation; random bytes and random mutations too (hypothesis)."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerwise.adalayer import (Architecture, PackedFileError, attach_fake_quant, bake, encode_packed, find_targets,
                                load_packed, load_packed_bytes, make_masks)
from layerwise.adalayer.packed import DIGEST, FLAG_ZLIB, HEADER, MAGIC, MAX_ELEMENTS, MAX_META_BYTES, VERSION


@functools.lru_cache(maxsize=1)
def valid() -> bytes:
    """tiny-cnn packed with one layer of each mask encoding: dense, bitmask, csr."""
    torch.manual_seed(0)
    arch = Architecture("tiny-cnn", (1, 28, 28), 10, {})
    model = arch.build().eval()
    targets, _ = find_targets(model)
    masks = make_masks(targets, dict(zip([n for n, _ in targets], [0.0, 0.5, 0.97])))
    bits = dict(zip([n for n, _ in targets], [4, 5, 8]))
    attach_fake_quant(targets, masks, bits)
    quantized = bake(model, targets, masks, bits)  # removes the fake-quant wrappers: state_dict after it
    return encode_packed(model.state_dict(), quantized, arch)


def split(data: bytes) -> tuple[dict, bytes]:
    _, _, flags, _, meta_len = HEADER.unpack_from(data, 0)
    raw = data[HEADER.size:HEADER.size + meta_len]
    meta = json.loads(zlib.decompress(raw) if flags & FLAG_ZLIB else raw)
    return meta, data[HEADER.size + meta_len:-DIGEST]


def forge(meta, payload: bytes, *, compress: bool = True, raw_meta: bytes | None = None, flags: int | None = None,
          version: int = VERSION) -> bytes:
    """A file with a VALID checksum over whatever metadata and payload we give it."""
    text = raw_meta if raw_meta is not None else json.dumps(meta).encode()
    meta_bytes = zlib.compress(text) if compress else text
    body = HEADER.pack(MAGIC, version, FLAG_ZLIB if compress else 0 if flags is None else flags, 0,
                       len(meta_bytes)) + meta_bytes + payload
    if flags is not None and compress:
        body = HEADER.pack(MAGIC, version, flags, 0, len(meta_bytes)) + meta_bytes + payload
    return body + hashlib.sha256(body).digest()


def tensor(meta: dict | list, name: str) -> dict:
    entries = meta["tensors"] if isinstance(meta, dict) else meta
    return next(t for t in entries if t["name"] == name)


def edit(fn):
    """Forge the valid file after ``fn(meta, payload_bytearray)`` edited it in place."""
    meta, payload = split(valid())
    meta, payload = copy.deepcopy(meta), bytearray(payload)
    fn(meta, payload)
    return forge(meta, bytes(payload))


def test_the_valid_file_loads():
    model = load_packed_bytes(valid()).model
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def _set(path: str, value):
    def fn(meta, payload):
        *keys, last = path.split("/")
        node = meta
        for k in keys:
            node = tensor(node, k) if isinstance(node, list) else node[k]
        node[last] = value
    return fn


def _delete(path: str):
    def fn(meta, payload):
        *keys, last = path.split("/")
        node = meta
        for k in keys:
            node = tensor(node, k) if isinstance(node, list) else node[k]
        del node[last]
    return fn


FC, CONV2, CONV1, BIAS = "fc.weight", "features.conv2.weight", "features.conv1.weight", "fc.bias"

CASES = {
    # the 64 TiB case: a CSR mask needs only rows + 1 pointers, so a huge column count costs nothing in the file
    "huge csr shape": (_set(f"tensors/{FC}/shape", [10, 2 ** 40]), f"more than {MAX_ELEMENTS} values"),
    "huge raw shape": (_set(f"tensors/{BIAS}/shape", [2 ** 45]), f"more than {MAX_ELEMENTS} values"),
    "negative dim": (_set(f"tensors/{BIAS}/shape", [-10]), "fc.bias has shape [-10]"),
    "float dim": (_set(f"tensors/{BIAS}/shape", [10.0]), "fc.bias has shape"),
    "too many dims": (_set(f"tensors/{BIAS}/shape", [1] * 9), "at most 8 sizes"),
    "bits 1": (_set(f"tensors/{FC}/bits", 1), "bit width 1, not one of 2..16"),
    "bits 64": (_set(f"tensors/{FC}/bits", 64), "bit width 64"),
    "bits string": (_set(f"tensors/{FC}/bits", "8"), "bit width '8'"),
    "bits true": (_set(f"tensors/{FC}/bits", True), "bit width True"),
    "section past payload": (_set(f"tensors/{BIAS}/section", [10 ** 12, 20]), "points outside the"),
    "section negative": (_set(f"tensors/{BIAS}/section", [-4, 20]), "not [offset, length]"),
    "section too short": (_set(f"tensors/{BIAS}/section", [0, 4]), "holds 4 bytes, 20 expected"),
    "section not a list": (_set(f"tensors/{BIAS}/section", "0,20"), "not [offset, length]"),
    "values length": (_set(f"tensors/{FC}/values", [0, 3]), "fc.weight values section holds 3 bytes"),
    "scale length": (_set(f"tensors/{FC}/scale", [0, 2]), "fc.weight scale section holds 2 bytes, 20 expected"),
    "nnz above numel": (_set(f"tensors/{FC}/nnz", 10 ** 9), "keeps 1000000000 weights, not 0..2560"),
    "nnz disagrees with mask": (_set(f"tensors/{CONV2}/nnz", 1199), "mask keeps 1200 weights, the metadata says 1199"),
    "dense mask nnz": (_set(f"tensors/{CONV1}/nnz", 10), "values section holds 75 bytes, 5 expected"),
    "dense mask nnz and values": (lambda m, p: (_set(f"tensors/{CONV1}/nnz", 10)(m, p),
                                                _set(f"tensors/{CONV1}/values", [12, 5])(m, p)),
                                  "dense mask but keeps 10 of 150"),
    "csr widths": (_set(f"tensors/{FC}/mask/row_ptr_width", 3), "CSR index widths 3/1"),
    "mask encoding": (_set(f"tensors/{FC}/mask/encoding", "rle"), "not a dense, bitmask or csr"),
    "mask missing": (_delete(f"tensors/{FC}/mask"), "has mask None"),
    "shape missing": (_delete(f"tensors/{BIAS}/shape"), "fc.bias has shape None"),
    "dtype unknown": (_set(f"tensors/{BIAS}/dtype", "float128"), "dtype 'float128'"),
    "kind unknown": (_set(f"tensors/{BIAS}/kind", "sparse"), "kind 'sparse'"),
    "name missing": (_delete(f"tensors/{BIAS}/name"), "tensor entry 5 has no valid name"),
    "name twice": (_set(f"tensors/{BIAS}/name", "features.conv2.bias"), "stored twice"),
    "tensors missing": (_delete("tensors"), "'tensors' is not a list"),
    "tensors empty": (_set("tensors", []), "'tensors' is not a list"),
    "arch missing": (_delete("arch"), "its architecture is None"),
    "unknown model": (_set("arch/model", "resnet9000"), "names model 'resnet9000', which this layerwise does not"),
    "model from a file": (_set("arch/model", "/tmp/evil.py:factory"), "which this layerwise does not have"),
    "num_classes 0": (_set("arch/num_classes", 0), "num_classes 0 is not an integer in 1..1000000"),
    "num_classes huge": (_set("arch/num_classes", 10 ** 12), "num_classes 1000000000000"),
    "input_shape huge": (_set("arch/input_shape", [1, 2 ** 20, 2 ** 20]), "input_shape"),
    "input_shape str": (_set("arch/input_shape", "1x28x28"), "input_shape '1x28x28'"),
    "options not a dict": (_set("arch/options", [1]), "model options [1]"),
    "unknown option": (_set("arch/options", {"width": 7}), "cannot be built"),
    "structured str": (_set("structured", "yes"), "'structured' is 'yes'"),
    "renamed tensor": (_set(f"tensors/{BIAS}/name", "fc.other"), "does not fit the rebuilt tiny-cnn"),
    "smaller shape": (lambda m, p: (_set(f"tensors/{BIAS}/shape", [5])(m, p),
                                    _set(f"tensors/{BIAS}/section", [tensor(m, BIAS)["section"][0], 10])(m, p)),
                      "does not fit the rebuilt tiny-cnn"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_forged_metadata_is_a_packed_file_error(name, tmp_path):
    fn, words = CASES[name]
    data = edit(fn)
    path = tmp_path / "forged.lwpk"
    path.write_bytes(data)
    with pytest.raises(PackedFileError) as info:
        load_packed(path)
    msg = str(info.value)
    assert words in msg and "\n" not in msg
    assert str(path) in msg
    assert path.read_bytes() == data  # the loader never writes


def _payload(fn):
    """Forge payload bytes at a tensor's section (``fn(meta, payload)`` edits them)."""
    return edit(fn)


def test_forged_payload_is_a_packed_file_error():
    def csr_decreasing(meta, payload):
        off = tensor(meta, FC)["mask"]["section"][0]
        payload[off + 1], payload[off + 2] = 200, 3  # row_ptr[1] = 200 > row_ptr[2] = 3

    def nan_scale(meta, payload):
        off = tensor(meta, FC)["scale"][0]
        payload[off:off + 2] = np.array([np.nan], dtype="<f2").tobytes()

    def zero_scale(meta, payload):
        off = tensor(meta, CONV1)["scale"][0]
        payload[off:off + 2] = b"\0\0"

    def csr_column(meta, payload):  # a column delta past the 256 columns of fc
        t = tensor(meta, FC)
        off = t["mask"]["section"][0] + (10 + 1) * 1
        payload[off] = 255
        payload[off + 1] = 255

    def bitmask_count(meta, payload):  # one more kept weight than nnz says
        off = tensor(meta, CONV2)["mask"]["section"][0]
        for i in range(300):
            if payload[off + i] != 0xFF:
                payload[off + i] |= 0xFF
                break

    def bool_value(meta, payload):
        t = tensor(meta, BIAS)
        t["dtype"], t["section"] = "bool", [t["section"][0], 10]
        payload[t["section"][0]] = 7

    for fn, words in [(csr_decreasing, "CSR row pointers"), (nan_scale, "scales that are not finite"),
                      (zero_scale, "scales that are not finite and positive"),
                      (csr_column, "fc.weight: CSR column index out of range"),
                      (bitmask_count, "mask keeps"), (bool_value, "bool values other than 0 and 1")]:
        with pytest.raises(PackedFileError, match=words) as info:
            load_packed_bytes(_payload(fn))
        assert "corrupted" in str(info.value), fn.__name__


def test_header_and_metadata_container_errors():
    meta, payload = split(valid())
    bomb = zlib.compress(b" " * (MAX_META_BYTES + 10))  # ~16 KiB that inflates past the cap
    cases = [
        (forge(meta, payload, raw_meta=bomb, compress=False, flags=FLAG_ZLIB), "inflates to more than"),
        (forge(meta, payload, raw_meta=b"[1, 2]"), "metadata is a JSON list, not an object"),
        (forge(meta, payload, raw_meta=b"[" * 100_000 + b"]" * 100_000), "metadata cannot be read"),
        (forge(meta, payload, raw_meta=b"{\"format\": 1" + b"9" * 5000 + b"}"), "metadata cannot be read"),
        (forge(meta, payload, raw_meta=b"\xff\xfe{}"), "metadata cannot be read"),
        (forge(meta, payload, flags=0x80), "unknown header flags 0x80"),
        (forge(meta, payload, version=2), "version 2"),
        (forge({**meta, "format": ["x"]}, payload), "has format ['x']"),
    ]
    for data, words in cases:
        with pytest.raises(PackedFileError) as info:
            load_packed_bytes(data, "f.lwpk")
        assert words in str(info.value) and "\n" not in str(info.value), words
    with pytest.raises(PackedFileError, match="expected the bytes of a packed file, got str"):
        load_packed_bytes("LWPK")  # type: ignore[arg-type]


def test_nothing_sized_by_forged_metadata_is_allocated():
    """Just below the element cap, a forged raw tensor is refused before its 512 MiB are allocated."""
    data = edit(lambda m, p: (_set(f"tensors/{BIAS}/shape", [MAX_ELEMENTS - 10_000])(m, p),
                              _set(f"tensors/{BIAS}/section", [0, 2 * (MAX_ELEMENTS - 10_000)])(m, p)))
    tracemalloc.start()
    try:
        with pytest.raises(PackedFileError, match="points outside the"):
            load_packed_bytes(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2 ** 20


# ---- fuzzing -------------------------------------------------------------------------------------

def _load_only_packed_errors(data: bytes) -> None:
    try:
        load_packed_bytes(data, "fuzz.lwpk")
    except PackedFileError as exc:
        assert "\n" not in str(exc)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=3000))
def test_fuzz_random_bytes(data):
    _load_only_packed_errors(data)


@FUZZ
@given(st.binary(max_size=2000), st.binary(max_size=500), st.integers(0, 255))
def test_fuzz_random_metadata_with_valid_checksum(meta_bytes, payload, flags):
    body = HEADER.pack(MAGIC, VERSION, flags, 0, len(meta_bytes)) + meta_bytes + payload
    _load_only_packed_errors(body + hashlib.sha256(body).digest())


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), min_size=1, max_size=8),
       st.booleans(), st.booleans())
def test_fuzz_mutations_of_a_valid_file(edits, rehash, plain_json):
    """Byte edits anywhere (checksum error), or re-hashed after the edit (so the metadata/payload
    parsers see them); with plain JSON metadata the edits hit the JSON text itself."""
    meta, payload = split(valid())
    data = bytearray(forge(meta, payload, compress=not plain_json))
    for pos, value in edits:
        data[pos % len(data)] = value
    if rehash:
        body = bytes(data[:-DIGEST])
        data = bytearray(body + hashlib.sha256(body).digest())
    _load_only_packed_errors(bytes(data))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@FUZZ
@given(st.data())
def test_fuzz_forged_metadata_fields(data):
    """Any metadata field (or the whole document) replaced by any JSON value, with a valid checksum."""
    meta, payload = split(valid())
    meta = copy.deepcopy(meta)
    paths = list(_paths(meta))
    path = data.draw(st.sampled_from(paths))
    value = data.draw(JSON)
    if not path:
        meta = value
    else:
        node = meta
        for k in path[:-1]:
            node = node[k]
        if data.draw(st.booleans()) and isinstance(node, dict):
            del node[path[-1]]
        else:
            node[path[-1]] = value
    text = json.dumps(meta, allow_nan=True).encode()
    _load_only_packed_errors(forge(None, payload, raw_meta=text))
