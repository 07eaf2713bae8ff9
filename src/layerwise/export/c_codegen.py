"""Emit a :class:`~layerwise.export.fixed.QNet` as one self-contained C99 ``.c`` and ``.h``.

The C computes exactly what :func:`~layerwise.export.fixed.run_fixed` computes (the host check
compares them bit for bit). Compile-time macros select the build from the same source:

* ``LW_MODE``: 0 dense (every MAC), 1 dense skipping zero operands (zero weights per weight in a
  convolution, zero inputs per MAC in a convolution and per input row in a Linear), 2 UnIT
  (the default; eq. 2-3: Linear keeps ``x*w`` iff ``|w| > t(|x|)``, Conv iff ``|x| > T/|w|``, the
  latter read from a per-weight table);
* ``LW_DIV``: the Linear ratio ``t(|x|)`` of the UnIT build, 0 exact, 1 bitshift, 2 binary_tree,
  3 bitmask (defaults to the division the network was exported with; binary_tree needs the
  pivot trees, emitted only when exported with it);
* ``LW_MUL(a, b)``: the 16 x 16 -> 32-bit product (default ``(int32_t)a * (int32_t)b``); the
  MSP430 builds define ``LW_MSP430_HWMUL`` (the memory-mapped MPY16: MPYS, OP2, RESLO, RESHI)
  or ``LW_MSP430_SWMUL`` (a shift-and-add routine ``lw_mul16`` linked in);
* ``LW_LAYER_DONE(k)``: called after layer ``k`` (default: nothing); ``-DLW_MARK_FN=f`` makes it
  call ``void f(uint16_t k)`` (the cycle counter sets a breakpoint there).

Loops: Conv is weight-outer (SONIC's order, one weight over the whole output plane, so its
ratio is read once), Linear input-stationary (one ratio per input, eq. 2). The UnIT test per MAC
is one add and one unsigned compare, without ``|.|``: ``|z| <= t  <=>  (uint16_t)(z + t) <= 2t``
for ``t < 0x8000`` (the sum wraps past ``2t`` exactly when ``z`` is outside ``[-t, t]``), with
``2t`` formed once per conv weight / Linear input and group; a ratio ``t >= 0x8000`` skips the
whole conv tap / Linear row untested (no int16 magnitude exceeds ``0x8000``), which also covers a
zero conv weight (its table entry is ``0xFFFF``). Accumulators are
``uint32_t`` (two's-complement wrap, no undefined behaviour). Nothing but ``<stdint.h>``; no
allocation: two static ping-pong activation buffers and one accumulator buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LayerwiseError
from .fixed import DIVISIONS, QLayer, QNet, bitlen

DIV_CODE = {d: i for i, d in enumerate(DIVISIONS)}


@dataclass
class Footprint:
    """Bytes the exported network needs (code size comes from a compiled build, not here)."""

    ram_activations: int     # the two ping-pong buffers (largest live activations)
    ram_accumulator: int     # int32 accumulators of one output plane / one Linear
    input_bytes: int         # the caller's input buffer
    rom_weights: int         # int16 weights + int32 biases
    rom_tables: int          # UnIT tables (per-weight conv ratios, Linear thresholds, powers)

    @property
    def ram(self) -> int:
        return self.ram_activations + self.ram_accumulator + self.input_bytes

    @property
    def rom_data(self) -> int:
        return self.rom_weights + self.rom_tables

    def to_json(self) -> dict:
        return {**self.__dict__, "ram": self.ram, "rom_data": self.rom_data}


def _arr(ctype: str, name: str, values, per_line: int = 16) -> str:
    v = [int(x) for x in np.asarray(values).reshape(-1)]
    rows = [", ".join(str(x) for x in v[i:i + per_line]) for i in range(0, len(v), per_line)]
    return f"static const {ctype} {name}[{len(v)}] = {{\n  " + ",\n  ".join(rows) + "\n};\n"


def _numel(shape) -> int:
    return int(np.prod(shape))


def _ident(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def footprint(qnet: QNet) -> Footprint:
    acts = [_numel(q.out_shape) for q in qnet.layers if q.kind not in ("relu", "flatten")]
    acc = 0
    wbytes = tbytes = 0
    for q in qnet.mac_layers():
        acc = max(acc, _numel(q.out_shape[1:]) if q.kind == "conv" else _numel(q.out_shape))
        wbytes += 2 * q.weight.size + 4 * q.bias.size
        if q.kind == "conv":
            tbytes += 2 * q.weight.size
        else:
            tbytes += 4 * q.groups + (4 * 32 if qnet.division == "bitmask" else 0)
    return Footprint(ram_activations=2 * 2 * max(acts), ram_accumulator=4 * acc,
                     input_bytes=2 * _numel(qnet.input_shape), rom_weights=wbytes,
                     rom_tables=tbytes)


# ----------------------------------------------------------------------------- layers

def _requant(q: QLayer, dst: str, src: str = "(int32_t)acc[p]") -> list[str]:
    """``floor((acc + 2**(s-1)) / 2**s)`` as ``v = acc >> (s-1); (v >> 1) + (v & 1)`` (one long
    shift, no overflow), saturated to int16."""
    s = q.shift
    head = f"{{ int32_t v = {src}"
    if s > 0:
        head += f" >> {s - 1}; v = (v >> 1) + (v & 1);"
    else:
        head += ";"
    return [head,
            "  if (v > 32767) v = 32767; else if (v < -32768) v = -32768;",
            f"  {dst} = (int16_t)v; }}"]


def _conv_code(k: int, q: QLayer, fn: str) -> str:
    nd = len(q.kernel)
    c_in = q.in_shape[0]
    ih, iw = (1, q.in_shape[1]) if nd == 1 else q.in_shape[1:]
    o_n = q.out_shape[0]
    oh, ow = (1, q.out_shape[1]) if nd == 1 else q.out_shape[1:]
    kh_n, kw_n = (1, q.kernel[0]) if nd == 1 else q.kernel
    sh, sw = (1, q.stride[0]) if nd == 1 else q.stride
    ph, pw = (0, q.padding[0]) if nd == 1 else q.padding
    dh, dw = (1, q.dilation[0]) if nd == 1 else q.dilation
    p = f"L{k}_"
    # input offsets: 16-bit where the input has fewer than 2**15 elements (the MSP430's word)
    small = c_in * ih * iw < 2 ** 15
    ot, st = ("uint16_t", "int16_t") if small else ("uint32_t", "int32_t")
    lines = [f"/* layer {k}: {q.name}: Conv{nd}d {c_in}->{o_n}, kernel {q.kernel}, stride {q.stride},"
             f" padding {q.padding}; Q.{q.f_in} x Q.{q.f_w} -> Q.{q.f_out} */",
             f"static void {fn}(const int16_t *in, int16_t *out)", "{",
             "    const int16_t *wp = " + p + "W;",
             "#if LW_MODE == 2", f"    const uint16_t *tp = {p}T;", "#endif",
             "    int16_t *op = out;",
             f"    for (uint16_t o = 0; o < {o_n}; o++, op += {oh * ow}) {{",
             f"        uint32_t bo = (uint32_t){p}B[o];",
             f"        for (uint16_t p = 0; p < {oh * ow}; p++) acc[p] = bo;",
             # running offsets instead of c * (ih*iw), kh * dh, kw * dw: the MSP430 has no
             # multiply instruction, and clang calls a helper for a variable times a constant
             f"        {ot} oc = 0;      /* c * {ih * iw} */",
             f"        for (uint16_t c = 0; c < {c_in}; c++, oc += {ih * iw}) {{",
             f"            {ot} okh = oc;    /* + kh * {dh * iw} */",
             *([f"            uint16_t khd = 0;     /* kh * {dh} */"] if ph or pw else []),
             f"            for (uint16_t kh = 0; kh < {kh_n}; kh++, okh += {dh * iw}"
             + (f", khd += {dh}" if ph or pw else "") + ") {",
             f"                {ot} okw = okh;    /* + kw * {dw} */",
             *([f"                uint16_t kwd = 0;     /* kw * {dw} */"] if ph or pw else []),
             f"                for (uint16_t kw = 0; kw < {kw_n}; kw++, okw += {dw}"
             + (f", kwd += {dw}" if ph or pw else "") + ") {",
             "                    int16_t w = *wp++;",
             "#if LW_MODE == 2",
             "                    uint16_t t = *tp++;       /* T / |w| (eq. 3), from the export-time table */",
             "                    /* every int16 |x| <= 0x8000 <= t: the whole tap skips (a zero weight's t is 0xFFFF) */",
             "                    if (t >= 0x8000u) continue;",
             "                    uint16_t span = (uint16_t)(t + t);",
             "#elif LW_MODE == 1", "                    if (w == 0) continue;", "#endif"]
    # valid output ranges for this kernel tap (padding): p*s - pad + k*d in [0, size)
    if ph or pw:
        lines += [
            f"                    int16_t r0 = (int16_t)({ph} - (int16_t)khd);",
            f"                    int16_t c0 = (int16_t)({pw} - (int16_t)kwd);",
            f"                    uint16_t p0 = r0 > 0 ? (uint16_t)((r0 + {sh - 1}) / {sh}) : 0;",
            f"                    uint16_t q0 = c0 > 0 ? (uint16_t)((c0 + {sw - 1}) / {sw}) : 0;",
            f"                    int16_t r1 = (int16_t)({ih} - 1 + {ph} - (int16_t)khd);",
            f"                    int16_t c1 = (int16_t)({iw} - 1 + {pw} - (int16_t)kwd);",
            f"                    uint16_t p1 = r1 < 0 ? 0 : (uint16_t)(r1 / {sh} + 1);",
            f"                    uint16_t q1 = c1 < 0 ? 0 : (uint16_t)(c1 / {sw} + 1);",
            f"                    if (p1 > {oh}) p1 = {oh};", f"                    if (q1 > {ow}) q1 = {ow};",
            "                    if (p0 >= p1 || q0 >= q1) continue;",
            # the first valid input element of the tap: (p0*sh - ph + khd, q0*sw - pw + kwd), by
            # additions (p0, q0 <= the padding)
            f"                    {st} off = ({st})okw - {ph * iw + pw};",
            f"                    uint16_t a0 = q0;",
            f"                    for (uint16_t i = 0; i < p0; i++) {{ off += {sh * iw}; a0 += {ow}; }}",
            f"                    for (uint16_t i = 0; i < q0; i++) off += {sw};",
            "                    const int16_t *xrow = in + off;",
            "                    uint32_t *arow = acc + a0;",
            "                    const uint16_t n = (uint16_t)(q1 - q0);"]
    else:
        lines += [f"                    const uint16_t p0 = 0, p1 = {oh}, n = {ow};",
                  "                    const int16_t *xrow = in + okw;",
                  "                    uint32_t *arow = acc;"]
    lines += [
        f"                    for (uint16_t pp = p0; pp < p1; pp++, xrow += {sh * iw}, arow += {ow}) {{",
        "                        const int16_t *xp = xrow;",
        "                        uint32_t *ap = arow, *ae = arow + n;",
        "                        for (; ap < ae; ap++) {",
        f"                            int16_t x = *xp; xp += {sw}; LW_KEEP_PTR(xp);",
        "#if LW_MODE == 1", "                            if (x == 0) continue;",
        "#elif LW_MODE == 2",
        "                            /* skip iff |x| <= t (eq. 3), as -t <= x <= t: one add, one compare */",
        "                            if ((uint16_t)((uint16_t)x + t) <= span) continue;",
        "#endif",
        "                            *ap += (uint32_t)LW_MUL(x, w);",
        "                        }", "                    }",
        "                }", "            }", "        }",
        f"        for (uint16_t p = 0; p < {oh * ow}; p++) "]
    lines += ["        " + ln for ln in _requant(q, "op[p]")]
    lines += ["    }", "}", ""]
    return "\n".join(lines)


def _tree_code(node: int, q: QLayer, t_w: int, indent: str) -> list[str]:
    tree = q.tree
    out = []
    piv = int(tree.pivot[node])
    for branch, child in (("if", int(tree.left[node])), ("else", int(tree.right[node]))):
        head = f"{indent}if (a < {1 << piv}u) {{" if branch == "if" else f"{indent}}} else {{"
        out.append(head)
        if child < 0:
            n = -child - 1
            out.append(f"{indent}    return {min(t_w >> n, 0xFFFF)}u;")
        else:
            out += _tree_code(child, q, t_w, indent + "    ")
    out.append(f"{indent}}}")
    return out


def _linear_code(k: int, q: QLayer, fn: str, with_tree: bool) -> str:
    o_n, i_n = q.weight.shape
    g = q.groups
    per = o_n // g
    p = f"L{k}_"
    t_g = [int(v) for v in q.threshold[::per][:g]]
    e_t1 = [int(bitlen(np.array([t]))[0]) for t in t_g]       # E_T + 1 (0 when T_w == 0)
    lines = [f"/* layer {k}: {q.name}: Linear {i_n}->{o_n}, {g} threshold group(s); "
             f"Q.{q.f_in} x Q.{q.f_w} -> Q.{q.f_out} */"]
    if with_tree:
        for gi in range(g):
            lines += ["#if LW_MODE == 2 && LW_DIV == 2",
                      f"static uint16_t {fn}_tree{gi}(uint16_t a)", "{"]
            lines += _tree_code(0, q, t_g[gi], "    ")
            lines += ["}", "#endif"]
    lines += ["#if LW_MODE == 2 && (LW_DIV == 0 || LW_DIV == 1)",
              f"static const uint32_t {p}TW[{g}] = {{{', '.join(f'{t}ul' for t in t_g)}}};",
              "#endif",
              "#if LW_MODE == 2 && LW_DIV == 3",
              f"static const uint16_t {p}ET1[{g}] = {{{', '.join(map(str, e_t1))}}};",
              "#endif",
              f"static void {fn}(const int16_t *in, int16_t *out)", "{",
              f"    for (uint16_t j = 0; j < {o_n}; j++) acc[j] = (uint32_t){p}B[j];",
              f"    const int16_t *wr = {p}W;",
              f"    for (uint16_t i = 0; i < {i_n}; i++, wr += {o_n}) {{",
              "        int16_t x = in[i];",
              "#if LW_MODE >= 1", "        if (x == 0) continue;", "#endif",
              "#if LW_MODE == 2",
              "        uint16_t a = (uint16_t)(x < 0 ? -x : x);",
              f"        for (uint16_t g = 0; g < {g}; g++) {{",
              "            uint16_t t;",
              "#if LW_DIV == 0",
              f"            uint32_t r = {p}TW[g] / a;            /* exact, eq. 2 */",
              "            t = r > 0xFFFFu ? 0xFFFFu : (uint16_t)r;",
              "#elif LW_DIV == 1",
              f"            uint32_t r = {p}TW[g];                /* bit shift, eq. 4 / Fig. 3 */",
              "            for (uint16_t c = a; c; c >>= 1) r >>= 1;",
              "            t = r > 0xFFFFu ? 0xFFFFu : (uint16_t)r;",
              "#elif LW_DIV == 2"]
    if with_tree:
        lines += ["            switch (g) {"]
        lines += [f"            case {gi}: t = {fn}_tree{gi}(a); break;" for gi in range(g)]
        lines += ["            default: t = 0xFFFFu;", "            }"]
    else:
        lines += ['#error "binary_tree division: export the network with --division binary_tree"']
    lines += ["#elif LW_DIV == 3",
              "            int16_t d = (int16_t)" + p + "ET1[g];     /* bit mask, eq. 6: E_T - E_a */",
              "            for (uint16_t c = a; c; c >>= 1) d--;",
              f"            t = ({p}ET1[g] == 0 || d < 0) ? 0 : (lw_pow2[d] > 0xFFFFu ? 0xFFFFu : (uint16_t)lw_pow2[d]);",
              "#endif",
              "            /* every int16 |w| <= 0x8000 <= t: the whole row of this group skips */",
              "            if (t >= 0x8000u) continue;",
              "            uint16_t span = (uint16_t)(t + t);",
              f"            const int16_t *wp = wr + g * {per};",
              f"            uint32_t *ap = acc + g * {per}, *ae = ap + {per};",
              "            for (; ap < ae; ap++) {",
              "                int16_t w = *wp++;",
              "                /* keep iff |w| > t (eq. 2), as w outside [-t, t]: one add, one compare */",
              "                if ((uint16_t)((uint16_t)w + t) <= span) continue;",
              "                *ap += (uint32_t)LW_MUL(x, w);",
              "            }", "        }",
              "#else",
              "        const int16_t *wp = wr;",
              f"        for (uint32_t *ap = acc, *ae = acc + {o_n}; ap < ae; ap++) {{",
        "            int16_t w = *wp++;",
        "            *ap += (uint32_t)LW_MUL(x, w);", "        }",
              "#endif", "    }",
              f"    for (uint16_t p = 0; p < {o_n}; p++) "]
    lines += ["    " + ln for ln in _requant(q, "out[p]")]
    lines += ["}", ""]
    return "\n".join(lines)


def _relu_code(k: int, q: QLayer, fn: str) -> str:
    n = _numel(q.in_shape)
    return "\n".join([f"/* layer {k}: {q.name}: ReLU, in place */",
                      f"static void {fn}(int16_t *io)", "{",
                      f"    for (uint16_t i = 0; i < {n}; i++) if (io[i] < 0) io[i] = 0;", "}", ""])


def _pool_code(k: int, q: QLayer, fn: str) -> str:
    nd = len(q.kernel)
    c = q.in_shape[0]
    ih, iw = (1, q.in_shape[1]) if nd == 1 else q.in_shape[1:]
    oh, ow = (1, q.out_shape[1]) if nd == 1 else q.out_shape[1:]
    kh, kw = (1, q.kernel[0]) if nd == 1 else q.kernel
    sh, sw = (1, q.stride[0]) if nd == 1 else q.stride
    is_max = q.kind == "maxpool"
    lines = [f"/* layer {k}: {q.name}: {'max' if is_max else 'average'} pooling {q.kernel}, stride {q.stride} */",
             f"static void {fn}(const int16_t *in, int16_t *out)", "{",
             f"    for (uint16_t c = 0; c < {c}; c++)",
             f"        for (uint16_t p = 0; p < {oh}; p++)",
             f"            for (uint16_t qq = 0; qq < {ow}; qq++) {{",
             f"                const int16_t *xr = in + c * {ih * iw} + p * {sh * iw} + qq * {sw};"]
    if is_max:
        lines += ["                int16_t m = xr[0];",
                  f"                for (uint16_t a = 0; a < {kh}; a++)",
                  f"                    for (uint16_t b = 0; b < {kw}; b++)",
                  f"                        if (xr[a * {iw} + b] > m) m = xr[a * {iw} + b];",
                  f"                out[(c * {oh} + p) * {ow} + qq] = m;"]
    else:
        s = int(np.log2(kh * kw))
        lines += ["                int32_t m = 0;",
                  f"                for (uint16_t a = 0; a < {kh}; a++)",
                  f"                    for (uint16_t b = 0; b < {kw}; b++) m += xr[a * {iw} + b];",
                  (f"                m >>= {s - 1}; m = (m >> 1) + (m & 1);" if s else ""),
                  f"                out[(c * {oh} + p) * {ow} + qq] = (int16_t)m;"]
    lines += ["            }", "}", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- files

def emit(qnet: QNet, name: str = "lw_net") -> tuple[str, str]:
    """``(header, source)`` of the network; ``name`` prefixes the public symbols and files."""
    if not name.isidentifier():
        raise LayerwiseError(f"C name {name!r} is not a C identifier; use letters, digits and _")
    fp = footprint(qnet)
    n_in, n_out = _numel(qnet.input_shape), qnet.num_classes
    up = name.upper()
    act = max(_numel(q.out_shape) for q in qnet.layers if q.kind not in ("relu", "flatten"))
    accn = fp.ram_accumulator // 4
    with_tree = all(q.tree is not None for q in qnet.layers if q.kind == "linear")
    header = "\n".join([
        f"/* {name}.h: generated by `layerwise export-c`; int16 fixed point, see {name}.c. */",
        f"#ifndef {up}_H", f"#define {up}_H", "#include <stdint.h>", "",
        f"#define {up}_INPUT_SIZE {n_in}      /* int16, Q.{qnet.f_input} */",
        f"#define {up}_INPUT_FRAC_BITS {qnet.f_input}",
        f"#define {up}_OUTPUT_SIZE {n_out}    /* int16 logits, Q.{qnet.f_output} */",
        f"#define {up}_OUTPUT_FRAC_BITS {qnet.f_output}",
        f"#define {up}_LAYERS {len(qnet.layers)}",
        f"#define {up}_RAM_BYTES {fp.ram}   /* activations {fp.ram_activations} + accumulators "
        f"{fp.ram_accumulator} + input {fp.input_bytes} */",
        f"#define {up}_ROM_DATA_BYTES {fp.rom_data}   /* weights {fp.rom_weights} + UnIT tables {fp.rom_tables} */",
        "",
        f"/* Run one inference: in[{up}_INPUT_SIZE] -> out[{up}_OUTPUT_SIZE] (logits). */",
        f"void {name}_infer(const int16_t *in, int16_t *out);",
        f"/* Index of the largest logit (the first one on ties). */",
        f"uint16_t {name}_argmax(const int16_t *logits);",
        "", "#endif", ""])
    src = [f"/* {name}.c: generated by `layerwise export-c` (layerwise.export.c_codegen).",
           " * Self-contained C99, int16 fixed point, no allocation, nothing but <stdint.h>.",
           " * Builds (compile-time): -DLW_MODE=0 dense, 1 dense skipping zero operands, 2 UnIT",
           " * (default); -DLW_DIV=0 exact, 1 bit shift, 2 binary tree, 3 bit mask (UnIT's Linear",
           " * threshold division; conv thresholds T/|w| are precomputed per weight).",
           " * UnIT: Unstructured Inference-Time Pruning, arXiv 2507.07885, eq. 1-6. */",
           f'#include "{name}.h"', "",
           "#ifndef LW_MODE", "#define LW_MODE 2", "#endif",
           "#ifndef LW_DIV", f"#define LW_DIV {DIV_CODE[qnet.division]}", "#endif",
           "#if defined(LW_MSP430_HWMUL)",
           "/* MSP430 16 x 16 hardware multiplier: MPYS (signed), OP2, RESLO, RESHI */",
           "#define LW_MPYS  (*(volatile int16_t *)0x0132u)",
           "#define LW_OP2   (*(volatile int16_t *)0x0138u)",
           "#define LW_RESLO (*(volatile uint16_t *)0x013Au)",
           "#define LW_RESHI (*(volatile uint16_t *)0x013Cu)",
           "static inline int32_t lw_mul_hw(int16_t a, int16_t b)",
           "{", "    LW_MPYS = a;", "    LW_OP2 = b;",
           "    return (int32_t)(((uint32_t)LW_RESHI << 16) | LW_RESLO);", "}",
           "#define LW_MUL(a, b) lw_mul_hw((a), (b))",
           "#elif defined(LW_MSP430_SWMUL)",
           "int32_t lw_mul16(int16_t a, int16_t b);   /* shift-and-add, linked in */",
           "#define LW_MUL(a, b) lw_mul16((a), (b))",
           "#endif",
           "#ifndef LW_MUL", "#define LW_MUL(a, b) ((int32_t)(a) * (int32_t)(b))", "#endif",
           "/* LW_KEEP_PTR(p): on the MSP430, keeps the convolution's input pointer a pointer (an",
           " * empty asm the optimiser cannot see through), so clang 14 reads through it with",
           " * auto-increment (mov @Rn+, 2 cycles) instead of re-deriving base + index (5 cycles) on",
           " * every MAC; no code of its own. Every build runs the same loop: all gain alike. */",
           "#if defined(__MSP430__) && defined(__GNUC__)",
           '#define LW_KEEP_PTR(p) __asm__("" : "+r"(p))',
           "#else", "#define LW_KEEP_PTR(p) ((void)0)", "#endif",
           "#ifdef LW_MARK_FN", "void LW_MARK_FN(uint16_t k);",
           "#define LW_LAYER_DONE(k) LW_MARK_FN(k)", "#endif",
           "#ifndef LW_LAYER_DONE", "#define LW_LAYER_DONE(k) ((void)0)", "#endif", "",
           "@BUFFERS@",
           f"static uint32_t acc[{accn}];", ""]
    src += ["#if LW_MODE == 2 && LW_DIV == 3",
            _arr("uint32_t", "lw_pow2", [1 << i for i in range(32)], 8).replace("[32] = {", "[32] = {"),
            "#endif"]
    calls = []
    cur = "in"
    bufs = ["buf0", "buf1"]
    nxt = 0
    for k, q in enumerate(qnet.layers):
        fn = f"layer{k}_{_ident(q.name)}"
        p = f"L{k}_"
        if q.kind in ("conv", "linear"):
            w = q.weight if q.kind == "conv" else q.weight.T          # linear: [in][out] rows
            src.append(_arr("int16_t", p + "W", w))
            src.append(_arr("int32_t", p + "B", q.bias))
            if q.kind == "conv":
                src += ["#if LW_MODE == 2", _arr("uint16_t", p + "T", q.conv_table()), "#endif"]
                src.append(_conv_code(k, q, fn))
            else:
                src.append(_linear_code(k, q, fn, with_tree))
            dst = bufs[nxt]
            calls.append(f"    {fn}({cur}, {dst}); LW_LAYER_DONE({k});")
            cur, nxt = dst, 1 - nxt
        elif q.kind == "relu":
            if cur == "in":
                raise LayerwiseError("export: a ReLU on the network input is not supported")
            src.append(_relu_code(k, q, fn))
            calls.append(f"    {fn}({cur}); LW_LAYER_DONE({k});")
        elif q.kind in ("maxpool", "avgpool"):
            src.append(_pool_code(k, q, fn))
            dst = bufs[nxt]
            calls.append(f"    {fn}({cur}, {dst}); LW_LAYER_DONE({k});")
            cur, nxt = dst, 1 - nxt
        else:
            calls.append(f"    /* layer {k}: {q.name}: flatten (channel-major, nothing to do) */"
                         f" LW_LAYER_DONE({k});")
    used = [b for b in bufs if any(f", {b})" in c or f"({b})" in c for c in calls)] or ["buf0"]
    src[src.index("@BUFFERS@")] = ("static int16_t " + ", ".join(f"{b}[{act}]" for b in used) + ";"
                                   "   /* ping-pong activations */")
    src += [f"void {name}_infer(const int16_t *in, int16_t *out)", "{", *calls,
            f"    for (uint16_t i = 0; i < {n_out}; i++) out[i] = {cur}[i];", "}", "",
            f"uint16_t {name}_argmax(const int16_t *logits)", "{", "    uint16_t best = 0;",
            f"    for (uint16_t i = 1; i < {n_out}; i++) if (logits[i] > logits[best]) best = i;",
            "    return best;", "}", ""]
    return header, "\n".join(src)
