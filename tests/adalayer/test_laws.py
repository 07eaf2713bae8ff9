"""Laws the packed AdaLayerNet format relies on.

* ``pack_signed`` / ``unpack_signed`` (layerwise.adalayer.bitpack): every width the quantizer
  supports (2..16 bits, ``quantize.qmax``), every signed B-bit code (the whole two's complement
  range the packer accepts), any length (not only multiples of 8). The packed bytes are compared
  with a reference packer written here from the format's description (LSB first, no padding
  between codes, last byte zero-padded).
* ``quantize_codes`` / ``dequantize`` (layerwise.adalayer.quantize): a weight already on the grid
  ``code * scale`` comes back exactly; an arbitrary weight is off by at most half a step
  (``scale / 2``) per output channel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from layerwise.errors import LayerwiseError
from hypothesis import given, settings
from hypothesis import strategies as st

from layerwise.adalayer import pack_signed, unpack_signed
from layerwise.adalayer.quantize import (MIN_SCALE, channel_scale, dequantize, qmax, quantize_codes,
                                         quantize_weight)

LAW = settings(max_examples=60, deadline=None)
BITS = st.integers(2, 16)  # qmax(bits) accepts exactly these


def reference_pack(codes: list[int], bits: int) -> bytes:
    """The format as documented: each code's B-bit two's complement, LSB first, codes back to
    back, the last byte zero-padded."""
    stream = []
    for c in codes:
        u = c % (1 << bits)  # two's complement
        stream += [(u >> k) & 1 for k in range(bits)]
    stream += [0] * (-len(stream) % 8)
    return bytes(sum(bit << k for k, bit in enumerate(stream[i:i + 8])) for i in range(0, len(stream), 8))


@st.composite
def codes_of(draw, bits: int, max_len: int = 130):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    n = draw(st.integers(0, max_len))
    edge = st.sampled_from([lo, hi, -1, 0, 1, qmax(bits), -qmax(bits)])
    return draw(st.lists(st.one_of(st.integers(lo, hi), edge), min_size=n, max_size=n))


@LAW
@given(bits=BITS, data=st.data())
def test_pack_unpack_round_trips_every_width_and_length(bits, data):
    codes = data.draw(codes_of(bits))
    buf = pack_signed(np.asarray(codes, dtype=np.int64), bits)
    assert len(buf) == math.ceil(len(codes) * bits / 8)
    assert buf == reference_pack(codes, bits)
    out = unpack_signed(buf, bits, len(codes))
    assert out.dtype == np.int32
    assert out.tolist() == codes


@LAW
@given(bits=BITS, n=st.integers(0, 100), data=st.data())
def test_every_buffer_with_zero_padding_is_a_packing(bits, n, data):
    # unpack then pack is the identity on buffers of the right length whose padding bits are 0:
    # the format wastes no code points and the padding carries nothing.
    nbytes = math.ceil(n * bits / 8)
    raw = bytearray(data.draw(st.binary(min_size=nbytes, max_size=nbytes)))
    pad = nbytes * 8 - n * bits
    if pad:
        raw[-1] &= (1 << (8 - pad)) - 1  # clear the top `pad` bits of the last byte
    codes = unpack_signed(bytes(raw), bits, n)
    assert codes.min(initial=0) >= -(2 ** (bits - 1)) and codes.max(initial=0) <= 2 ** (bits - 1) - 1
    assert pack_signed(codes, bits) == bytes(raw)


# --------------------------------------------------------------------------- quantization

fp16_scales = st.floats(MIN_SCALE, 8.0).map(lambda s: float(torch.tensor(s, dtype=torch.float16)))


@st.composite
def grid_weight(draw, bits: int):
    """(codes [out, k], fp16 scales [out]) with every code in [-qmax, qmax]."""
    out = draw(st.integers(1, 4))
    k = draw(st.integers(1, 9))
    m = qmax(bits)
    codes = [[draw(st.integers(-m, m)) for _ in range(k)] for _ in range(out)]
    scales = [draw(fp16_scales) for _ in range(out)]
    return torch.tensor(codes, dtype=torch.int32), torch.tensor(scales, dtype=torch.float16)


@LAW
@given(bits=BITS, data=st.data())
def test_values_on_the_grid_round_trip_exactly(bits, data):
    codes, scale = data.draw(grid_weight(bits))
    w = dequantize(codes, scale)
    # independent: code * scale in float64 is within float32 rounding of the dequantised value
    ref = codes.double() * scale.double()[:, None]
    assert torch.allclose(w.double(), ref, rtol=2 ** -23, atol=0)
    again = quantize_codes(w, scale, bits)
    assert torch.equal(again, codes)
    assert torch.equal(dequantize(again, scale), w)


@LAW
@given(bits=BITS, data=st.data())
def test_grid_weights_with_a_full_scale_code_survive_quantize_weight(bits, data):
    # channel_scale recovers the scale exactly when each channel holds a code of +-qmax, so
    # the whole eq. (4) path (scale, codes, dequantise) is the identity on such weights.
    codes, scale = data.draw(grid_weight(bits))
    col = data.draw(st.integers(0, codes.shape[1] - 1))
    codes[:, col] = qmax(bits) * data.draw(st.sampled_from([-1, 1]))
    w = dequantize(codes, scale)
    qw = quantize_weight(w, torch.ones_like(w, dtype=torch.bool), bits)
    assert torch.equal(qw.scale, scale)
    assert torch.equal(qw.codes, codes)
    assert torch.equal(qw.dequantize(), w)


def _weights(out: int, k: int, data, bound: float):
    vals = st.one_of(st.floats(-bound, bound, allow_nan=False, width=32), st.just(0.0))
    return torch.tensor([[data.draw(vals) for _ in range(k)] for _ in range(out)], dtype=torch.float32)


def _half_step_excess(w: torch.Tensor, bits: int) -> float:
    """max over weights of |dequantize(quantize(w)) - w| / scale - 1/2 (float64, with slack)."""
    scale = channel_scale(w, bits)
    err = (dequantize(quantize_codes(w, scale, bits), scale).double() - w.double()).abs()
    step = scale.double()[:, None]
    # float32 rounding of w / scale and of code * scale: a few ulps of |w|
    slack = 4 * 2 ** -24 * w.double().abs() / step
    return float((err / step - 0.5 - slack).max())


@LAW
@given(bits=st.integers(2, 11), out=st.integers(1, 4), k=st.integers(1, 9),
       bound=st.sampled_from([2.0 ** -10, 1.0, 1024.0]), data=st.data())
def test_quantization_error_is_at_most_half_a_step(bits, out, k, bound, data):
    w = _weights(out, k, data, bound)
    assert _half_step_excess(w, bits) <= 0.0


# Law failures this file found, fixed in channel_scale (scale rounded up, overflow refused):

@pytest.mark.parametrize("bits,value", [(12, 2047.98), (16, 32767.9)])
def test_half_step_bound_for_wide_bit_widths(bits, value):
    # bits=12: value/qmax = 1.000479..., rounds to fp16 1.0; round(2047.98) = 2048 clips to 2047:
    # the error is 0.98 steps.
    w = torch.tensor([[value]])
    assert _half_step_excess(w, bits) <= 0.0


def test_huge_weight_is_refused_never_dequantised_to_nan():
    # max|w| / qmax = 1e5 is beyond float16's 65504: a clear error, not an inf scale and NaN weights
    with pytest.raises(LayerwiseError, match="beyond float16's range"):
        channel_scale(torch.tensor([[1e5]]), 2)
    w = torch.tensor([[6e4]])                       # within range at 2 bits: finite
    scale = channel_scale(w, 2)
    assert torch.isfinite(dequantize(quantize_codes(w, scale, 2), scale)).all()
