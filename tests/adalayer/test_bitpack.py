"""Bit-packing round trips and the choice of sparsity encoding."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerwise.adalayer import decode_mask, encode_mask, pack_signed, unpack_signed
from layerwise.errors import LayerwiseError


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 8), data=st.data())
def test_pack_round_trip_every_bit_width(bits, data):
    m = 2 ** (bits - 1) - 1
    codes = np.array(data.draw(st.lists(st.integers(-m, m), max_size=300)), dtype=np.int32)
    buf = pack_signed(codes, bits)
    assert len(buf) == (codes.size * bits + 7) // 8
    assert np.array_equal(unpack_signed(buf, bits, codes.size), codes)


def test_pack_rejects_out_of_range():
    with pytest.raises(LayerwiseError, match="signed 4-bit range"):
        pack_signed(np.array([9]), 4)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 12), cols=st.integers(1, 40), density=st.floats(0.0, 1.0), seed=st.integers(0, 99))
def test_mask_encodings_round_trip(rows, cols, density, seed):
    mask = np.random.default_rng(seed).random((rows, cols)) < density
    for force in ("bitmask", "csr"):
        enc = encode_mask(mask, force=force)
        assert np.array_equal(decode_mask(enc.to_json(), enc.data, mask.shape), mask)
    best = encode_mask(mask)
    assert len(best.data) == min(len(encode_mask(mask, force=f).data) for f in ("bitmask", "csr")) or \
        best.encoding == "dense"


def test_encoding_choice_on_constructed_sparsities():
    shape = (64, 576)  # a 64-out 3x3x64 conv, flattened
    dense = np.ones(shape, bool)
    assert encode_mask(dense).encoding == "dense" and encode_mask(dense).data == b""
    half = np.zeros(shape, bool)
    half[:, ::2] = True  # 50 %: bitmask 4608 B, csr >= 18432 B
    assert encode_mask(half).encoding == "bitmask"
    assert len(encode_mask(half).data) == 64 * 576 // 8
    sparse = np.zeros(shape, bool)
    sparse[:, ::100] = True  # 1 %: csr = 65 row_ptr x 2 B + 384 x 1 B = 514 B < 4608 B bitmask
    enc = encode_mask(sparse)
    assert enc.encoding == "csr" and enc.row_ptr_width == 2 and enc.col_width == 1
    assert len(enc.data) == 65 * 2 + 384
    assert np.array_equal(decode_mask(enc.to_json(), enc.data, shape), sparse)


def test_csr_with_empty_leading_rows():
    mask = np.zeros((4, 10), bool)
    mask[2, [1, 7]] = True
    mask[3, 9] = True
    enc = encode_mask(mask, force="csr")
    assert np.array_equal(decode_mask(enc.to_json(), enc.data, mask.shape), mask)
