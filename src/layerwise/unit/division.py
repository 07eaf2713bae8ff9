"""UnIT's fast approximations of the threshold ratio ``T / |c|`` (paper section 2.2).

Every method exists twice with bit-identical results: a vectorised torch form
(:func:`threshold_ratio`) and a compiled scalar numba form (:func:`ratio_scalar`, used inside the
kernels of :mod:`layerwise.unit.kernels`). ``c > 0`` always (zero control terms are skipped before
any division); ``T >= 0``. All results are float32.

* ``exact``: ``T / c`` in float32.
* ``bitshift`` (fixed-point devices, eq. 4 and Fig. 3). ``c`` is put in fixed point with
  ``frac_bits`` fractional bits, truncating (``c_q = floor(c * 2**f)``, saturated at
  ``2**word_bits - 1``). The shift loop counts right shifts until ``c_q`` becomes 0, which gives its
  bit length ``n``: the smallest ``n`` with ``c_q < 2**n``. The divisor is replaced by ``2**n``, so
  in fixed point the ratio is ``(T_q << f) >> n`` (the same scaling as the exact integer division
  ``(T_q << f) // c_q``) and in value terms ``T * 2**(f - n)``. Here ``T`` stays float32 (only the
  divisor is approximated) and ``T * 2**(f - n)`` is exact in float32.
  Bound, for ``2**-f <= c < 2**(word_bits - f)`` and ``start = 0``: ``T/(2c) <= approx < T/c``
  (``2**(n-1) <= c_q`` gives the left side, with equality when ``c`` is a power of two;
  ``c < 2**(n-f)`` the strict right side). The approximation never exceeds the exact ratio, so it
  never skips a MAC that exact division keeps (it keeps a superset). Below the fixed-point
  resolution, ``0 < c < 2**-f``, ``c_q = 0`` and ``n = 0``: the ratio is ``T * 2**f`` (still
  ``< T/c``); above the word, ``c_q`` saturates and ``n = word_bits``.
  ``start`` (the paper: "the shift count can be initialized from a nonzero value for coarser
  estimation, effectively quantizing the threshold"): our reading is that ``c_q`` is pre-shifted
  by ``start`` and the counter starts at ``start``, so ``n = max(bitlen(c_q), start)``: every
  divisor below ``2**(start - f)`` shares one ratio ``T * 2**(f - start)``, i.e. the ratio (and so
  the per-input threshold) is capped; the loop runs ``max(bitlen - start, 0)`` iterations.
* ``binary_tree`` (Fig. 4): the same ``n`` found by comparing ``c_q`` with power-of-two pivots
  ``2**p`` down a binary search tree (:class:`PivotTree`) whose leaves are the exponents
  ``lo..hi``; ``n = clamp(bitlen(c_q), lo, hi)``, so a tree over ``[start, word_bits]`` gives
  exactly bitshift's ``n``. The default tree is balanced over ``[0, word_bits]``;
  :func:`calibrate_pivots` builds the tree that minimises the average number of comparisons on
  calibration data (frequent exponents sit shallower). Same bound as bitshift.
* ``bitmask`` (IEEE-754, eq. 5-6): ``2**(E_T - E_c)`` built from the exponent fields alone
  (mantissas ignored): view float32 as int32, mask bits 23..30, subtract, re-add the bias 127,
  shift back. Bound for normal ``T`` and ``c``: ``T/(2c) < approx < 2T/c`` (the mantissa ratio
  lies in (1/2, 2)). Edge cases: ``T`` with exponent field 0 (zero or subnormal) gives 0; a
  result exponent below the normal range is clamped to the smallest normal ``2**-126``; above it,
  the result is ``inf`` (every MAC of that control term is skipped; the exact ratio is then
  ``>= 2**127`` too). A subnormal ``c`` has exponent field 0 and is treated as ``2**-127``.

The approximations are meant to decide ``keep iff |z| > ratio``;
:func:`decision_agreement` measures how often they decide as exact division does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from numba import njit
from torch import Tensor

from ..errors import LayerwiseError

METHODS = ("exact", "bitshift", "binary_tree", "bitmask")
METHOD_CODE = {name: i for i, name in enumerate(METHODS)}
DEFAULT_FRAC_BITS = 5   # SONIC's Q10.5 (see layerwise.unit.fixed_point)
DEFAULT_WORD_BITS = 32  # float path: a 32-bit register holds c_q; the int16 path uses 16
_MAX_WORD_BITS = 52     # keeps c * 2**f exact in float64 and every 2**(f - n) a normal float32


# ----------------------------------------------------------------------------- pivot trees

@dataclass(frozen=True)
class PivotTree:
    """Binary search tree over the exponents ``lo..hi`` (leaves) with power-of-two pivots.

    Node ``k`` compares ``c_q < 2**pivot[k]``: true goes to ``left[k]`` (exponents ``<= pivot``),
    false to ``right[k]``. A child ``>= 0`` is another node; a child ``< 0`` is the leaf
    ``n = -child - 1``. Node 0 is the root. ``depth[n - lo]`` is the number of comparisons a
    lookup ending at leaf ``n`` makes; ``average_depth`` is the mean over the calibration data
    (over uniform exponents for a balanced tree).
    """

    lo: int
    hi: int
    pivot: np.ndarray
    left: np.ndarray
    right: np.ndarray
    depth: np.ndarray
    average_depth: float
    weights: np.ndarray = field(repr=False, default=None)

    def comparisons(self, n: int) -> int:
        """Comparisons made by a lookup that ends at exponent ``n`` (clamped to the range)."""
        return int(self.depth[min(max(n, self.lo), self.hi) - self.lo])

    def expected_comparisons(self, counts) -> float:
        """Average comparisons per lookup for a histogram over the exponents ``lo..hi``."""
        c = np.asarray(counts, dtype=np.float64)
        return float((c * self.depth).sum() / c.sum()) if c.sum() > 0 else 0.0


def _optimal_splits(w: np.ndarray) -> list[list[int]]:
    """Optimal alphabetic tree over leaves with weights ``w`` (O(L^3) dynamic programme).

    ``cost[i][j]`` is the least total weighted depth of a tree over leaves ``i..j``; every
    comparison on the way to a leaf costs that leaf's weight. Ties take the split nearest the
    middle, so uniform weights give the balanced tree.
    """
    n = len(w)
    pref = np.concatenate([[0.0], np.cumsum(w)])
    cost = [[0.0] * n for _ in range(n)]
    split = [[-1] * n for _ in range(n)]
    for length in range(2, n + 1):
        for i in range(0, n - length + 1):
            j = i + length - 1
            mid = (i + j) / 2.0
            best, best_s = None, -1
            for s in range(i, j):
                c = cost[i][s] + cost[s + 1][j]
                nearer = abs(s + 0.5 - mid) < abs(best_s + 0.5 - mid)
                if best is None or c < best - 1e-12 or (abs(c - best) <= 1e-12 and nearer):
                    best, best_s = c, s
            cost[i][j] = best + (pref[j + 1] - pref[i])
            split[i][j] = best_s
    return split


def _build_tree(lo: int, hi: int, weights: np.ndarray, data_counts: np.ndarray) -> PivotTree:
    if hi <= lo:
        raise LayerwiseError(f"a pivot tree needs hi > lo, got lo={lo}, hi={hi}; widen the range")
    split = _optimal_splits(weights)
    pivot: list[int] = []
    left: list[int] = []
    right: list[int] = []
    depth = np.zeros(hi - lo + 1, dtype=np.int64)

    def build(i: int, j: int, d: int) -> int:
        if i == j:
            depth[i] = d
            return -(lo + i) - 1
        k = len(pivot)
        pivot.append(0)
        left.append(0)
        right.append(0)
        s = split[i][j]
        pivot[k] = lo + s                       # c_q < 2**(lo+s)  <=>  n <= lo+s
        left[k] = build(i, s, d + 1)
        right[k] = build(s + 1, j, d + 1)
        return k

    build(0, hi - lo, 0)
    avg = (float((data_counts * depth).sum() / data_counts.sum())
           if data_counts.sum() > 0 else float(depth.mean()))
    return PivotTree(lo=lo, hi=hi, pivot=np.asarray(pivot, np.int64),
                     left=np.asarray(left, np.int64), right=np.asarray(right, np.int64),
                     depth=depth, average_depth=avg, weights=np.asarray(weights, np.float64))


def balanced_tree(lo: int = 0, hi: int = DEFAULT_WORD_BITS) -> PivotTree:
    """The default tree: balanced over the exponents ``lo..hi`` (Fig. 4)."""
    w = np.ones(hi - lo + 1)
    return _build_tree(lo, hi, w, w)


def calibrate_pivots(values, *, frac_bits: int = DEFAULT_FRAC_BITS,
                     word_bits: int = DEFAULT_WORD_BITS, lo: int = 0, hi: int | None = None,
                     smoothing: float = 1e-3) -> PivotTree:
    """Tree whose frequent exponents sit shallower (section 2.2: "pivot points can be adapted via
    calibration, with frequent magnitudes occupying shallower branches").

    ``values`` are calibration samples of the control term (Linear: input activations; Conv:
    weights); zeros are ignored (they never reach a division). Their exponents
    ``n = clamp(bitlen(floor(|v| * 2**frac_bits)), lo, hi)`` are histogrammed and the optimal
    alphabetic tree for that histogram is built (minimum expected comparisons, exactly, by dynamic
    programming). ``smoothing`` (a fraction of the sample count added to every exponent) keeps
    unseen exponents reachable at a bounded depth. ``average_depth`` of the result is the expected
    comparisons per lookup on ``values``.
    """
    hi = word_bits if hi is None else hi
    v = torch.as_tensor(values, dtype=torch.float32).reshape(-1).abs()
    v = v[v > 0]
    n, _ = bitshift_exponent(v, frac_bits=frac_bits, word_bits=word_bits, start=lo)
    n = n.clamp(lo, hi)
    counts = torch.bincount(n - lo, minlength=hi - lo + 1).numpy().astype(np.float64)
    weights = counts + smoothing * max(counts.sum(), 1.0)
    return _build_tree(lo, hi, weights, counts)


# --------------------------------------------------------------------- vectorised (torch)

def _check_bits(frac_bits: int, word_bits: int, start: int = 0) -> None:
    if not 0 <= frac_bits <= 30:
        raise LayerwiseError(f"frac_bits={frac_bits} is out of range; use 0..30")
    if not 1 <= word_bits <= _MAX_WORD_BITS:
        raise LayerwiseError(f"word_bits={word_bits} is out of range; use 1..{_MAX_WORD_BITS}")
    if not 0 <= start <= word_bits:
        raise LayerwiseError(f"start={start} is out of range; use 0..word_bits ({word_bits})")


def _fixed_scaled(c: Tensor, frac_bits: int) -> Tensor:
    return c.to(torch.float64).abs() * float(2 ** frac_bits)   # exact: power-of-two scale


def bitshift_exponent(c: Tensor, *, frac_bits: int = DEFAULT_FRAC_BITS,
                      word_bits: int = DEFAULT_WORD_BITS, start: int = 0) -> tuple[Tensor, Tensor]:
    """Vectorised shift loop of Fig. 3: ``(n, shift_steps)`` per element (int64 tensors).

    ``n = max(bitlen(c_q), start)`` with ``c_q = min(floor(|c| * 2**f), 2**word_bits - 1)``;
    ``shift_steps = max(bitlen(c_q) - start, 0)`` loop iterations.
    """
    _check_bits(frac_bits, word_bits, start)
    y = _fixed_scaled(c, frac_bits)
    # bitlen(floor(y)) == frexp(y).exponent for y >= 1: 2**(e-1) <= y < 2**e
    e = torch.frexp(y).exponent.to(torch.int64)
    bl = torch.where(y >= 1.0, e, torch.zeros_like(e))
    bl = torch.where(y >= float(2 ** word_bits), torch.full_like(bl, word_bits), bl)
    return bl.clamp_min(start), (bl - start).clamp_min(0)


def tree_exponent(c: Tensor, tree: PivotTree, *, frac_bits: int = DEFAULT_FRAC_BITS,
                  word_bits: int = DEFAULT_WORD_BITS) -> tuple[Tensor, Tensor]:
    """Vectorised walk down ``tree`` (Fig. 4): ``(n, comparisons)`` per element."""
    _check_bits(frac_bits, word_bits)
    y = _fixed_scaled(c, frac_bits)
    cq = torch.where(y >= float(2 ** word_bits), torch.full_like(y, float(2 ** word_bits - 1)),
                     torch.floor(y)).to(torch.int64)
    pivot = torch.as_tensor(tree.pivot)
    left = torch.as_tensor(tree.left)
    right = torch.as_tensor(tree.right)
    node = torch.zeros_like(cq)
    n = torch.zeros_like(cq)
    comps = torch.zeros_like(cq)
    active = torch.ones_like(cq, dtype=torch.bool)
    one = torch.ones((), dtype=torch.int64)
    while bool(active.any()):
        p = pivot[node]
        go_left = cq < torch.bitwise_left_shift(one, p)
        child = torch.where(go_left, left[node], right[node])
        comps = comps + active.to(torch.int64)
        leaf = active & (child < 0)
        n = torch.where(leaf, -child - 1, n)
        active = active & ~leaf
        node = torch.where(active, child, node)
    return n, comps


def _pow2_f32(k: Tensor) -> Tensor:
    """``2**k`` as float32 built from its bits (exact for -126 <= k <= 127)."""
    return torch.bitwise_left_shift((k + 127).to(torch.int32), 23).view(torch.float32)


def _bitmask(t: Tensor, c: Tensor) -> Tensor:
    # eq. (6): 2**(E_T - E_c) from the exponent fields (bits 23..30) of the float32 words
    et = torch.bitwise_right_shift(t.view(torch.int32), 23) & 0xFF
    ec = torch.bitwise_right_shift(c.view(torch.int32), 23) & 0xFF
    er = (et - ec + 127).clamp(1, 255)                    # 1: smallest normal; 255: inf
    r = torch.bitwise_left_shift(er, 23).view(torch.float32)
    return torch.where(et == 0, torch.zeros_like(r), r)


def _resolve(method: str, opts: dict) -> dict:
    if method not in METHOD_CODE:
        raise LayerwiseError(f"unknown division method {method!r}; use one of {', '.join(METHODS)}")
    allowed = {"exact": set(), "bitmask": set(),
               "bitshift": {"frac_bits", "word_bits", "start"},
               "binary_tree": {"frac_bits", "word_bits", "tree"}}[method]
    bad = set(opts) - allowed
    if bad:
        raise LayerwiseError(
            f"division {method!r} takes no option(s) {sorted(bad)}; "
            f"it accepts {sorted(allowed) or 'none'}")
    frac_bits = int(opts.get("frac_bits", DEFAULT_FRAC_BITS))
    word_bits = int(opts.get("word_bits", DEFAULT_WORD_BITS))
    start = int(opts.get("start", 0))
    _check_bits(frac_bits, word_bits, start)
    tree = opts.get("tree")
    if method == "binary_tree":
        if tree is None:
            tree = balanced_tree(0, word_bits)
        if not isinstance(tree, PivotTree):
            raise LayerwiseError("tree must be a PivotTree (balanced_tree or calibrate_pivots)")
        if tree.lo < 0 or tree.hi > word_bits:
            raise LayerwiseError(
                f"the pivot tree covers exponents {tree.lo}..{tree.hi}, outside 0..word_bits "
                f"({word_bits}); build it with hi <= word_bits")
    return {"code": METHOD_CODE[method], "frac_bits": frac_bits, "word_bits": word_bits,
            "start": start, "tree": tree}


def threshold_ratio(T: Tensor, c: Tensor, method: str = "exact", **opts) -> Tensor:
    """``T / c`` for ``c > 0`` (elementwise, broadcasting), exactly or approximated (float32).

    ``method``: ``"exact"``, ``"bitshift"`` (options ``frac_bits``, ``word_bits``, ``start``),
    ``"binary_tree"`` (``frac_bits``, ``word_bits``, ``tree``) or ``"bitmask"``; see the module
    docstring for the exact definitions and bounds.
    """
    r = _resolve(method, opts)
    t = torch.as_tensor(T, dtype=torch.float32)
    cc = torch.as_tensor(c, dtype=torch.float32)
    t, cc = torch.broadcast_tensors(t, cc)
    t, cc = t.contiguous(), cc.contiguous()
    if method == "exact":
        return t / cc
    if method == "bitmask":
        return _bitmask(t, cc)
    if method == "bitshift":
        n, _ = bitshift_exponent(cc, frac_bits=r["frac_bits"], word_bits=r["word_bits"],
                                 start=r["start"])
    else:
        n, _ = tree_exponent(cc, r["tree"], frac_bits=r["frac_bits"], word_bits=r["word_bits"])
    return t * _pow2_f32(r["frac_bits"] - n)               # value form of (T_q << f) >> n


def division_steps(c: Tensor, method: str = "exact", **opts) -> Tensor:
    """Per element: shift-loop iterations (bitshift), tree comparisons (binary_tree), else 0."""
    r = _resolve(method, opts)
    cc = torch.as_tensor(c, dtype=torch.float32)
    if method == "bitshift":
        return bitshift_exponent(cc, frac_bits=r["frac_bits"], word_bits=r["word_bits"],
                                 start=r["start"])[1]
    if method == "binary_tree":
        return tree_exponent(cc, r["tree"], frac_bits=r["frac_bits"], word_bits=r["word_bits"])[1]
    return torch.zeros(cc.shape, dtype=torch.int64)


# ---------------------------------------------------------------------- scalar (numba)

_DUMMY = np.zeros(1, dtype=np.int64)


@njit(cache=True)
def bitlen_shift(cq: np.int64) -> np.int64:
    """Fig. 3's loop: shift right until the value is 0; the count is the bit length."""
    n = 0
    while cq != 0:
        cq >>= 1
        n += 1
    return n


@njit(cache=True)
def fixed_of(c: np.float32, frac_bits: np.int64, word_bits: np.int64) -> np.int64:
    """``min(floor(|c| * 2**f), 2**word_bits - 1)`` for ``c >= 0``."""
    y = np.float64(abs(c)) * np.float64(2.0 ** frac_bits)
    top = np.float64(2.0 ** word_bits)
    if y >= top:
        return np.int64(2 ** word_bits - 1)
    return np.int64(y)


@njit(cache=True)
def tree_lookup(cq: np.int64, pivot, left, right):
    """Walk the pivot tree: ``(n, comparisons)``."""
    node = 0
    comps = 0
    while True:
        comps += 1
        if cq < (np.int64(1) << pivot[node]):
            child = left[node]
        else:
            child = right[node]
        if child < 0:
            return -child - 1, comps
        node = child


@njit(cache=True)
def bitmask_scalar(T: np.float32, c: np.float32, scratch_f, scratch_i) -> np.float32:
    """eq. (6) on the float32 words; ``scratch_i`` is an int32 view of the float32 ``scratch_f``."""
    scratch_f[0] = T
    scratch_f[1] = c
    et = (scratch_i[0] >> 23) & 0xFF
    ec = (scratch_i[1] >> 23) & 0xFF
    if et == 0:
        return np.float32(0.0)
    er = et - ec + 127
    if er < 1:
        er = 1
    elif er > 255:
        er = 255
    scratch_i[2] = np.int32(er << 23)
    return scratch_f[2]


@njit(cache=True)
def ratio_scalar(T, c, code, frac_bits, word_bits, start, pivot, left, right,
                 scratch_f, scratch_i):
    """Scalar ``T / c`` by method ``code`` (0 exact, 1 bitshift, 2 binary_tree, 3 bitmask).

    Returns ``(ratio float32, steps)``; steps are shift iterations or tree comparisons.
    """
    t = np.float32(T)
    cc = np.float32(c)
    if code == 0:
        return np.float32(t / cc), 0
    if code == 3:
        return bitmask_scalar(t, cc, scratch_f, scratch_i), 0
    cq = fixed_of(cc, frac_bits, word_bits)
    if code == 1:
        if start > 0:
            cq >>= start            # coarse start: the counter begins at `start`
        steps = bitlen_shift(cq)
        n = start + steps
    else:
        n, steps = tree_lookup(cq, pivot, left, right)
    return np.float32(t * np.float32(2.0 ** (frac_bits - n))), steps


def scratch() -> tuple[np.ndarray, np.ndarray]:
    """Scratch words for :func:`bitmask_scalar` (a float32 buffer and its int32 view)."""
    f = np.zeros(4, dtype=np.float32)
    return f, f.view(np.int32)


def kernel_args(method: str = "exact", **opts) -> tuple:
    """``(code, frac_bits, word_bits, start, pivot, left, right)`` for the compiled kernels."""
    r = _resolve(method, opts)
    tree = r["tree"]
    pivot, left, right = ((tree.pivot, tree.left, tree.right) if tree is not None
                          else (_DUMMY, _DUMMY, _DUMMY))
    return (r["code"], r["frac_bits"], r["word_bits"], r["start"], pivot, left, right)


@njit(cache=True)
def _ratio_many(T, c, code, frac_bits, word_bits, start, pivot, left, right):
    sf = np.zeros(4, dtype=np.float32)
    si = sf.view(np.int32)
    out = np.empty(c.shape[0], dtype=np.float32)
    steps = np.empty(c.shape[0], dtype=np.int64)
    for k in range(c.shape[0]):
        out[k], steps[k] = ratio_scalar(T[k], c[k], code, frac_bits, word_bits, start,
                                        pivot, left, right, sf, si)
    return out, steps


def scalar_threshold_ratio(T, c, method: str = "exact", **opts) -> tuple[np.ndarray, np.ndarray]:
    """The compiled scalar form applied element by element: ``(ratio, steps)`` numpy arrays."""
    t = torch.as_tensor(T, dtype=torch.float32)
    cc = torch.as_tensor(c, dtype=torch.float32)
    t, cc = torch.broadcast_tensors(t, cc)
    tn = np.ascontiguousarray(t.reshape(-1).numpy())
    cn = np.ascontiguousarray(cc.reshape(-1).numpy())
    r, s = _ratio_many(tn, cn, *kernel_args(method, **opts))
    return r.reshape(tuple(cc.shape)), s.reshape(tuple(cc.shape))


# ------------------------------------------------------------------------ agreement

def decision_agreement(T, x_values, w_values, method: str, *, control: str = "x",
                       **opts) -> float:
    """Fraction of keep/skip decisions that agree with exact division at threshold ``T``.

    ``x_values`` and ``w_values`` broadcast against each other into MAC pairs (pass
    ``x[:, None]`` and ``w[None, :]`` for all pairs). ``control`` is the divisor: ``"x"`` for
    Linear (eq. 2: keep iff ``|w| > T/|x|``), ``"w"`` for Conv (eq. 3: keep iff ``|x| > T/|w|``).
    Only pairs with both operands nonzero count: zero operands are skipped before any division,
    identically for every method. Returns 1.0 when there is no such pair.
    """
    if control not in ("x", "w"):
        raise LayerwiseError(f"control must be 'x' (Linear) or 'w' (Conv), got {control!r}")
    x = torch.as_tensor(x_values, dtype=torch.float32)
    w = torch.as_tensor(w_values, dtype=torch.float32)
    x, w = torch.broadcast_tensors(x, w)
    c, z = (x.abs(), w.abs()) if control == "x" else (w.abs(), x.abs())
    nz = (c != 0) & (z != 0)
    if not bool(nz.any()):
        return 1.0
    c, z = c[nz], z[nz]
    t = torch.as_tensor(T, dtype=torch.float32)
    exact = z > threshold_ratio(t, c, "exact")
    approx = z > threshold_ratio(t, c, method, **opts)
    return float((exact == approx).to(torch.float64).mean())
