"""Measure, on a simulated MSP430, what UnIT's compare-and-skip test costs in MCLK cycles.

Run: ``python bench/msp430_cycles.py [--n 8 24] [--m 8 24] [--frac-bits 15] [--no-trace]
[--out runs/msp430_cycles.json] [--build-dir DIR]`` (about 1.5 min; ``--no-trace`` about 6 s).

Needs the Debian packages ``clang``, ``lld`` and ``mspdebug`` (exits 2 naming them when one is
missing). It generates a seeded int16 Linear (Q15 operands by default, 32-bit accumulators),
compiles ``bench/msp430/kernel.c`` with ``clang --target=msp430 -O2 -ffreestanding -nostdlib``
once per kernel, multiply mode and size, links it with ``ld.lld -T bench/msp430/link.ld`` and
runs it under ``mspdebug sim`` from reset to the ``done`` label of ``start.S``, reading the
tracer's MCLK count. Every run's accumulators are read back from the simulated RAM and checked
against the same sums computed in Python (so the multiplies and the skips really happen).

Kernels (see ``bench/msp430/kernel.c``):

* ``dense``: every MAC, no tests, UnIT's input-stationary order (accumulators in RAM);
* ``keep``: the UnIT kernel (zero test per input, ``t = T / |x_p|`` once per input, per-MAC test
  ``|w| > t``) with ``T = min|w|`` so every test keeps its MAC;
* ``skip``: the same kernel with ``T = max|w| * max|x|`` so every test skips its MAC;
* ``dense_os``: dense in output-stationary order (accumulator in registers / in the multiplier's
  MACS accumulator), the best dense baseline, which UnIT's loop order cannot use;
* ``div`` / ``nodiv``: a per-input loop with / without the exact ``T / |x_p|`` (at a median
  ``|x*w|`` threshold), for the cost of one division.

Multiply modes: ``swmul`` (``__mspabi_mpyl``, software shift-and-add, ``msp430/mul_sw.S``),
``hwmul`` (the 16-bit memory-mapped multiplier written inline, operand 1 once per input row),
``hwcall`` (``__mspabi_mpyl_hw``, what clang calls under ``-mhwmult=16bit``: three 16-bit
multiplies, ``msp430/mul_hw.S``).

Each kernel runs at the four sizes (n1|n2) x (m1|m2); with C(n, m) its cycles,
``per_iteration = (C(n2,m2) - C(n2,m1) - C(n1,m2) + C(n1,m1)) / ((n2-n1)(m2-m1))`` is the cost of
one inner-loop iteration with every fixed, per-input and per-output cost cancelled. Derived:

* ``dense_mac``: per iteration of ``dense`` (load + multiply + accumulate + loop step);
* ``kept_test``: per iteration of ``keep`` minus ``dense_mac`` (the test's extra when it keeps);
* ``skipped_test``: per iteration of ``skip`` (load + test + loop step: what a skipped MAC still
  costs; like ``dense_mac`` it includes the loop step, so dense = NM * dense_mac and UnIT =
  kept * (dense_mac + kept_test) + skipped * skipped_test);
* ``dense_mac_os``, ``skip_saving`` (= dense_mac - skipped_test), ``skip_saving_vs_os``;
* ``division``: per input of ``div`` minus ``nodiv`` (one call of the exact 32/32 division);
* ``unit_row_overhead_keep`` / ``_skip``: per input of ``keep`` / ``skip`` minus ``dense``
  (division + |x| + clamp + zero test + threshold setup, at that kernel's T);
* ``break_even_m_all_skip``: outputs per input above which even skipping every MAC beats dense
  (``unit_row_overhead_skip / skip_saving``; ``None`` when skipping saves nothing).

Cycle tables: Debian's mspdebug 0.22 charges constant-generator sources (#0 #1 #2 #4 #8 #-1,
e.g. ``inc``, ``incd``, ``dec``, ``clrc``, ``add #4``) like memory operands (#1: +2 cycles, the
others +1), which the MSP430x1xx/x2xx user's guides (and mspdebug upstream since 2014) do not.
Unless ``--no-trace``, every run is therefore also single-stepped; its instruction trace is
costed with mspdebug 0.22's table (which must reproduce mspdebug's MCLK exactly, or the run
fails) and with the datasheet table: both sets of figures are reported ("dbg" / "ds").

The software multiply loops over the bits of |x_p|, so the swmul figures depend on the data
(``--frac-bits``); the hwmul ones do not.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import random
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from layerwise.export.host import runtime_file
from layerwise.export.msp430 import find_tool

HERE = Path(__file__).resolve().parent
SRC = HERE / "msp430"
ROOT = HERE.parent

INSTALL_HINT = "apt-get install clang lld mspdebug"

# mode -> (MUL define, extra clang flags, helper assembly files, add the hwmult device)
MODES = {
    "swmul": (0, [], ["mul_sw"], False),
    "hwmul": (1, [], [], True),
    "hwcall": (2, ["-mhwmult=16bit"], ["mul_hw"], True),
}
KINDS = {"dense": 0, "keep": 1, "skip": 1, "div": 2, "nodiv": 3, "dense_os": 4}
ASM_FILES = ["start", "div_sw"]   # div_sw.S: the one the package ships (layerwise/export/runtime)
CFLAGS = ["--target=msp430", "-O2", "-ffreestanding", "-nostdlib"]


class MissingTool(RuntimeError):
    pass


class MeasureError(RuntimeError):
    pass


# --------------------------------------------------------------------------- tools

def find_tools() -> dict[str, str]:
    """Paths of clang, ld.lld and mspdebug; raises :class:`MissingTool` naming the missing ones."""
    tools = {n: find_tool(n) for n in ("clang", "ld.lld", "mspdebug")}
    missing = [n for n, p in tools.items() if not p]
    if missing:
        raise MissingTool(f"missing {', '.join(missing)}: install with `{INSTALL_HINT}`")
    tools["llvm-objdump"] = find_tool("llvm-objdump")  # optional: disassembly listings
    return tools


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else ""


def tool_versions(tools: dict[str, str]) -> dict[str, str]:
    return {"clang": _first_line([tools["clang"], "--version"]),
            "ld.lld": _first_line([tools["ld.lld"], "--version"]),
            "mspdebug": _first_line([tools["mspdebug"], "--version"])}


# --------------------------------------------------------------------------- data

def make_data(nmax: int, mmax: int, seed: int, frac_bits: int = 15) -> dict:
    """Seeded fixed-point operands with ``frac_bits`` fraction bits (15: Q15, 5: SONIC's Q10.5):
    x_p = +-U(0.05, 0.5), w = N(0, 0.1), clipped to int16; no zero weights, |x| >= 2."""
    rng = random.Random(seed)
    scale = float(1 << frac_bits)
    xs = []
    for _ in range(nmax):
        v = max(2, int(round(rng.uniform(0.05, 0.5) * scale)))
        xs.append(v if rng.random() < 0.5 else -v)
    ws = []
    for _ in range(nmax):
        row = []
        for _ in range(mmax):
            v = int(round(rng.gauss(0.0, 0.1) * scale))
            v = max(-32767, min(32767, v)) or 1
            row.append(v)
        ws.append(row)
    absw = [abs(v) for r in ws for v in r]
    absx = [abs(v) for v in xs]
    prods = sorted(abs(x * w) for x, r in zip(xs, ws) for w in r)
    return {
        "x": xs, "w": ws,
        # T / |x| <= min|w| / 2 < min|w| for |x| >= 2: every |w| > t, every MAC kept
        "T_keep": min(absw),
        # T / |x| >= max|w| for every x: no |w| > t, every MAC skipped
        "T_skip": max(absw) * max(absx),
        # a calibrated-like threshold (median |x*w|) for the division micro-benchmark
        "T_div": prods[len(prods) // 2],
    }


def _data_header(data: dict, n: int, m: int, T: int, transposed: bool = False) -> str:
    xs, ws = data["x"], data["w"]
    lines = ["/* generated by bench/msp430_cycles.py */",
             f"#define NMAX {len(xs)}", f"#define MMAX {len(ws[0])}",
             f"#define N_RUN {n}", f"#define M_RUN {m}", f"#define T_RUN {T}UL",
             "static const int16_t X[NMAX] = {" + ", ".join(map(str, xs)) + "};",
             "static const int16_t W[NMAX][MMAX] = {"]
    lines += ["    {" + ", ".join(map(str, r)) + "}," for r in ws]
    lines.append("};")
    if transposed:
        lines.append("static const int16_t WT[MMAX][NMAX] = {")
        lines += ["    {" + ", ".join(str(r[j]) for r in ws) + "}," for j in range(len(ws[0]))]
        lines.append("};")
    return "\n".join(lines) + "\n"


def expected_acc(data: dict, n: int, m: int, T: int, kind: str) -> list[int]:
    """What the kernel leaves in acc[0:m] (int32 wrap-around), computed the kernel's way."""
    out = []
    for j in range(m):
        s = 0
        for p in range(n):
            x, w = data["x"][p], data["w"][p][j]
            if kind in ("keep", "skip"):
                if x == 0:
                    continue
                t = min(T // abs(x), 0xFFFF)
                if not abs(w) > t:
                    continue
            s += x * w
        s &= 0xFFFFFFFF
        out.append(s - (1 << 32) if s >= 1 << 31 else s)
    return out


# --------------------------------------------------------------------------- build / run

def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    if out.returncode != 0:
        raise MeasureError(f"command failed ({out.returncode}): {' '.join(cmd)}\n"
                           f"{out.stdout}{out.stderr}")
    return out


def _symbols(map_path: Path, names: tuple[str, ...]) -> dict[str, int]:
    """Addresses of ``names`` from an ld.lld map file (``VMA LMA Size Align ... symbol``)."""
    found = {}
    for line in map_path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in names:
            try:
                found[parts[-1]] = int(parts[0], 16)
            except ValueError:
                continue
    missing = [n for n in names if n not in found]
    if missing:
        raise MeasureError(f"symbols {missing} not in {map_path}")
    return found


def mspdebug_script(elf: str, done: int, hwmult: bool, reads: list[tuple[int, int]]) -> str:
    cmds = [f"prog {elf}", "simio add tracer t"]
    if hwmult:
        cmds.append("simio add hwmult hw")
    cmds += [f"setbreak 0x{done:04x}", "run", "simio info t"]
    cmds += [f"md 0x{addr:04x} {size}" for addr, size in reads]
    return "\n".join(cmds) + "\n"


def _parse_md(text: str, addr: int, size: int) -> bytes:
    mem = {}
    for m in re.finditer(r"^\s*([0-9a-fA-F]{4,5}):((?:\s[0-9a-fA-F]{2})+)", text, re.M):
        base = int(m.group(1), 16)
        for i, b in enumerate(m.group(2).split()):
            mem[base + i] = int(b, 16)
    try:
        return bytes(mem[a] for a in range(addr, addr + size))
    except KeyError as exc:
        raise MeasureError(f"mspdebug md output lacks address {exc}") from None


# --------------------------------------------------------------------------- cycle tables

def elf_image(path: Path) -> dict[int, int]:
    """Address -> byte of an ELF32 little-endian file's allocated PROGBITS sections."""
    import struct
    blob = path.read_bytes()
    if blob[:4] != b"\x7fELF" or blob[4] != 1 or blob[5] != 1:
        raise MeasureError(f"{path}: not a little-endian ELF32 file")
    shoff, = struct.unpack_from("<I", blob, 0x20)
    shentsize, shnum = struct.unpack_from("<HH", blob, 0x2E)
    mem: dict[int, int] = {}
    for i in range(shnum):
        (_name, stype, flags, addr, off, size, *_rest) = struct.unpack_from(
            "<IIIIIIIIII", blob, shoff + i * shentsize)
        if stype == 1 and flags & 0x2:          # SHT_PROGBITS, SHF_ALLOC
            for k in range(size):
                mem[addr + k] = blob[off + k]
    return mem


def _is_cg(reg: int, As: int) -> bool:
    """Constant generator source: R3 in any mode, R2 in modes @R2 (#4) and @R2+ (#8)."""
    return reg == 3 or (reg == 2 and As >= 2)


def insn_cycles(word: int, rule: str) -> int:
    """Cycles of the classic-core instruction whose first word is ``word``.

    ``rule="mspdebug-0.22"`` reproduces Debian's mspdebug 0.22 simulator (drivers/sim.c of that
    release), which charges a constant-generator source (#0 #1 #2 #4 #8 #-1) like the addressing
    mode it is encoded with: #1 as indexed (+2), #2 #4 #8 #-1 as @Rn / @Rn+ (+1). ``rule=
    "datasheet"`` charges it as a register source, as the MSP430x1xx/x2xx family guides' cycle
    tables do (and upstream mspdebug since commit 7abeef3, Dec 2014).
    """
    if rule not in ("mspdebug-0.22", "datasheet"):
        raise ValueError(rule)
    if 0x2000 <= word <= 0x3FFF:                    # conditional / unconditional jumps
        return 2
    if 0x1000 <= word <= 0x13FF:                    # format II
        op, As, reg = (word >> 7) & 7, (word >> 4) & 3, word & 0xF
        if rule == "datasheet" and _is_cg(reg, As):
            As = 0
        if op == 4:                                 # PUSH
            if As == 0:
                return 3
            return 4 if As == 2 or (As == 3 and reg == 0) else 5
        if op == 5:                                 # CALL
            return 4 if As in (0, 2) else 5
        if op == 6:                                 # RETI
            return 5
        return 4 if As == 1 else 1 if As == 0 else 3
    if word < 0x4000:
        raise MeasureError(f"not a classic MSP430 instruction: 0x{word:04x}")
    src, Ad, As, dst = (word >> 8) & 0xF, (word >> 7) & 1, (word >> 4) & 3, word & 0xF
    if rule == "datasheet" and _is_cg(src, As):
        As = 0
    if Ad == 0 and dst == 0:                        # destination PC
        return 2 if As in (0, 2) else 3
    c = 2 if As in (2, 3) else 3 if As == 1 else 1
    return c + 3 if Ad else c


class Builder:
    """Compiles the shared objects once and builds / runs one ELF per (mode, kind, n, m)."""

    def __init__(self, tools: dict[str, str], data: dict, build: Path, trace: bool = True):
        self.tools, self.data, self.build, self.trace = tools, data, build, trace
        self.commands: dict[str, str] = {}
        self._asm_done: set[str] = set()

    def _asm(self, name: str) -> Path:
        obj = self.build / f"{name}.o"
        if name not in self._asm_done:
            src = runtime_file(f"{name}.S") if name == "div_sw" else SRC / f"{name}.S"
            cmd = [self.tools["clang"], *CFLAGS, "-c", str(src), "-o", str(obj)]
            _run(cmd)
            self.commands.setdefault("assemble", " ".join(cmd))
            self._asm_done.add(name)
        return obj

    def _trace(self, tag: str, elf: Path, hwmult: bool, steps: int, done: int
               ) -> tuple[Counter, dict[int, int]]:
        """Single-step the program ``steps`` times under mspdebug: (PC -> times executed,
        the ELF's memory image)."""
        mem = elf_image(elf)
        pc = mem[0xFFFE] | mem[0xFFFF] << 8             # reset vector
        script = self.build / f"{tag}.steps"
        script.write_text(f"prog {elf}\n" + ("simio add hwmult hw\n" if hwmult else "")
                          + "step\n" * steps)
        hist: Counter = Counter()
        pat = re.compile(r"\( PC: ([0-9a-fA-F]+)\)")
        with script.open() as fin:
            proc = subprocess.Popen([self.tools["mspdebug"], "-q", "sim"], stdin=fin,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                mt = pat.search(line)
                if mt:
                    hist[pc] += 1
                    pc = int(mt.group(1), 16)
            rc = proc.wait()
        script.unlink()
        if rc != 0 or sum(hist.values()) != steps or pc != done:
            raise MeasureError(f"{tag}: trace of {steps} steps ended at 0x{pc:04x} "
                               f"after {sum(hist.values())} steps (rc {rc}), not at done")
        return hist, mem

    def run(self, mode: str, kind: str, n: int, m: int, T: int) -> dict:
        mul, extra, helpers, hwmult = MODES[mode]
        tag = f"{mode}_{kind}_{n}x{m}"
        d = self.build / tag
        d.mkdir(parents=True, exist_ok=True)
        (d / "data.h").write_text(_data_header(self.data, n, m, T, kind == "dense_os"))
        obj, elf, mp = d / "kernel.o", d / "net.elf", d / "net.map"
        cc = [self.tools["clang"], *CFLAGS, *extra, f"-I{d}", f"-DKIND={KINDS[kind]}",
              f"-DMUL={mul}", "-c", str(SRC / "kernel.c"), "-o", str(obj)]
        _run(cc)
        objs = [self._asm(a) for a in ASM_FILES + helpers]
        ld = [self.tools["ld.lld"], "-T", str(SRC / "link.ld"), "-Map", str(mp),
              str(objs[0]), str(obj), *map(str, objs[1:]), "-o", str(elf)]
        _run(ld)
        self.commands.setdefault(f"compile[{mode}]", " ".join(cc))
        self.commands.setdefault(f"link[{mode}]", " ".join(ld))
        if self.tools.get("llvm-objdump"):
            dis = subprocess.run([self.tools["llvm-objdump"], "-d", str(elf)],
                                 capture_output=True, text=True)
            (d / "net.dis").write_text(dis.stdout)
        sym = _symbols(mp, ("done", "acc", "g_sink_t"))
        reads = [(sym["acc"], 4 * m), (sym["g_sink_t"], 2)]
        script = mspdebug_script(str(elf), sym["done"], hwmult, reads)
        sim = [self.tools["mspdebug"], "-q", "sim"]
        out = _run(sim, input=script).stdout
        self.commands.setdefault(
            f"run[{mode}]", "printf '" + script.replace("\n", "\\n") + "' | " + " ".join(sim))
        # mspdebug prints the stop PC as "( PC: 04008)"
        if not re.search(rf"\( PC: 0*{sym['done']:x}\)", out, re.I):
            raise MeasureError(f"{tag}: simulation did not stop at done\n{out[-2000:]}")
        cyc = re.search(r"^MCLK:\s*(\d+)", out, re.M)
        ins = re.search(r"^Instruction count:\s*(\d+)", out, re.M)
        if not cyc or not ins:
            raise MeasureError(f"{tag}: no MCLK / instruction count in mspdebug output\n{out}")
        raw = _parse_md(out, sym["acc"], 4 * m)
        got = [int.from_bytes(raw[4 * j:4 * j + 4], "little", signed=True) for j in range(m)]
        if kind in ("dense", "keep", "skip", "dense_os"):
            want = expected_acc(self.data, n, m, T, kind)
            if got != want:
                raise MeasureError(f"{tag}: accumulators {got} != expected {want}")
        else:
            sink = int.from_bytes(_parse_md(out, sym["g_sink_t"], 2), "little")
            want_sink = min(T // abs(self.data["x"][n - 1]), 0xFFFF) if kind == "div" \
                else min(T, 0xFFFF)
            if sink != want_sink:
                raise MeasureError(f"{tag}: threshold {sink} != expected {want_sink}")
        rec = {"mode": mode, "kind": kind, "n": n, "m": m, "T": T,
               "mclk": int(cyc.group(1)), "instructions": int(ins.group(1)), "verified": True}
        if self.trace:
            hist, mem = self._trace(tag, elf, hwmult, rec["instructions"], sym["done"])
            tot = {}
            for rule in ("mspdebug-0.22", "datasheet"):
                tot[rule] = sum(k * insn_cycles(mem[a] | mem[a + 1] << 8, rule)
                                for a, k in hist.items())
            if tot["mspdebug-0.22"] != rec["mclk"]:
                raise MeasureError(
                    f"{tag}: replaying the trace with mspdebug 0.22's cycle table gives "
                    f"{tot['mspdebug-0.22']} cycles, mspdebug reported {rec['mclk']}: the "
                    "cycle-table model does not match this mspdebug (run with --no-trace)")
            rec["mclk_datasheet"] = tot["datasheet"]
        return rec


# --------------------------------------------------------------------------- measurement

def _derive(c: dict, n1: int, n2: int, m1: int, m2: int) -> dict:
    """Per inner iteration, per input row, per output column and fixed, from the 4 corners."""
    dn, dm = n2 - n1, m2 - m1
    it = (c[n2, m2] - c[n2, m1] - c[n1, m2] + c[n1, m1]) / (dn * dm)
    row = (c[n2, m1] - c[n1, m1]) / dn - it * m1
    col = (c[n1, m2] - c[n1, m1]) / dm - it * n1
    return {"per_iteration": it, "per_row": row, "per_col": col,
            "fixed": c[n1, m1] - it * n1 * m1 - row * n1 - col * m1}


METRICS = {"mspdebug": "mclk", "datasheet": "mclk_datasheet"}


def _figures(cyc: dict, n1: int, n2: int, m1: int, m2: int) -> dict:
    fit = {k: _derive(cyc[k], n1, n2, m1, m2) for k in ("dense", "keep", "skip", "dense_os")}
    dense_mac = fit["dense"]["per_iteration"]
    return {
        "dense_mac": dense_mac,
        "dense_mac_os": fit["dense_os"]["per_iteration"],
        "kept_test": fit["keep"]["per_iteration"] - dense_mac,
        "skipped_test": fit["skip"]["per_iteration"],
        "skip_saving": dense_mac - fit["skip"]["per_iteration"],
        "skip_saving_vs_os": fit["dense_os"]["per_iteration"] - fit["skip"]["per_iteration"],
        "division": ((cyc["div"][n2] - cyc["div"][n1])
                     - (cyc["nodiv"][n2] - cyc["nodiv"][n1])) / (n2 - n1),
        "unit_row_overhead_keep": fit["keep"]["per_row"] - fit["dense"]["per_row"],
        "unit_row_overhead_skip": fit["skip"]["per_row"] - fit["dense"]["per_row"],
        # outputs per input above which the all-skip kernel beats dense (row cost / saving)
        "break_even_m_all_skip": (
            (fit["skip"]["per_row"] - fit["dense"]["per_row"])
            / (dense_mac - fit["skip"]["per_iteration"])
            if dense_mac > fit["skip"]["per_iteration"] else None),
        "fit": fit,
    }


def measure(n_sizes=(8, 24), m_sizes=(8, 24), modes=tuple(MODES), seed: int = 0,
            build_dir: str | Path | None = None, tools: dict[str, str] | None = None,
            trace: bool = True, frac_bits: int = 15) -> dict:
    """Build and run every kernel; return the result dict that ``main`` writes as JSON.

    ``trace=True`` also single-steps every run to replay it with two cycle tables (mspdebug
    0.22's, checked against its MCLK count, and the datasheet's; see :func:`insn_cycles`).
    """
    n1, n2 = sorted(int(v) for v in n_sizes)
    m1, m2 = sorted(int(v) for v in m_sizes)
    if not (0 < n1 < n2 and 0 < m1 < m2):
        raise ValueError("need two distinct positive sizes for --n and for --m")
    if n2 * m2 * 4 > 0x8000:
        raise ValueError("W and its transpose must fit the 48 KiB ROM: keep n * m <= 8192")
    tools = tools or find_tools()
    if not 1 <= frac_bits <= 15:
        raise ValueError("frac_bits must be 1..15")
    data = make_data(n2, m2, seed, frac_bits)
    tmp = None
    if build_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="msp430_cycles_")
        build = Path(tmp.name)
    else:
        build = Path(build_dir)
        build.mkdir(parents=True, exist_ok=True)
    metrics = {k: v for k, v in METRICS.items() if trace or k == "mspdebug"}
    try:
        b = Builder(tools, data, build, trace)
        thresholds = {"dense": 0, "dense_os": 0, "keep": data["T_keep"], "skip": data["T_skip"],
                      "div": data["T_div"], "nodiv": data["T_div"]}
        corners = [(n1, m1), (n2, m1), (n1, m2), (n2, m2)]
        nmid, mmid = (n1 + n2) // 2, (m1 + m2) // 2
        raw: list[dict] = []
        derived: dict = {metric: {} for metric in metrics}
        linearity: dict = {metric: {} for metric in metrics}
        for mode in modes:
            runs: dict = {}
            for kind in ("dense", "keep", "skip", "dense_os"):
                for n, m in corners:
                    runs[kind, n, m] = b.run(mode, kind, n, m, thresholds[kind])
            for kind in ("div", "nodiv"):
                for n in (n1, n2):
                    runs[kind, n] = b.run(mode, kind, n, m1, thresholds[kind])
            mid = b.run(mode, "dense", nmid, mmid, 0)
            mid["role"] = "linearity check"
            raw += list(runs.values()) + [mid]
            for metric, key in metrics.items():
                cyc = {k: {} for k in KINDS}
                for rk, r in runs.items():
                    cyc[rk[0]][rk[1:] if len(rk) == 3 else rk[1]] = r[key]
                fig = _figures(cyc, n1, n2, m1, m2)
                derived[metric][mode] = fig
                # a fifth size, against the corner fit of the dense kernel; and the check as
                # one would do it by hand: the difference of two sizes, less what their rows
                # and columns cost, per MAC of difference
                f = fig["fit"]["dense"]
                pred = f["fixed"] + f["per_row"] * nmid + f["per_col"] * mmid \
                    + f["per_iteration"] * nmid * mmid
                by_hand = (cyc["dense"][n2, m2] - mid[key] - f["per_row"] * (n2 - nmid)
                           - f["per_col"] * (m2 - mmid)) / (n2 * m2 - nmid * mmid)
                linearity[metric][mode] = {
                    "size": [nmid, mmid], "measured": mid[key], "predicted": pred,
                    "error_cycles": mid[key] - pred, "per_mac_from_difference": by_hand,
                    "dense_mac": fig["dense_mac"]}
        best = "datasheet" if trace else "mspdebug"
        absx = [abs(v) for v in data["x"]]
        return {
            "tool": "bench/msp430_cycles.py",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "estimated": False,
            "source": "mspdebug sim (classic MSP430 core, no FRAM wait states), MCLK cycles",
            "versions": tool_versions(tools),
            "commands": b.commands,
            "build_dir": str(build) if tmp is None else "(temporary, deleted; keep it with "
                                                        "--build-dir)",
            "sizes": {"n": [n1, n2], "m": [m1, m2], "linearity": [nmid, mmid]},
            "data": {"seed": seed, "frac_bits": frac_bits,
                     "format": f"Q{15 - frac_bits}.{frac_bits} int16 operands, 32-bit "
                               "accumulators",
                     "x": "+-U(0.05, 0.5) scaled by 2^frac_bits, |x| >= 2",
                     "w": "N(0, 0.1) scaled by 2^frac_bits, clipped to int16, no zeros",
                     "mean_bits_abs_x_rows_n1_to_n2":
                         sum(v.bit_length() for v in absx[n1:n2]) / (n2 - n1),
                     "T_keep": data["T_keep"], "T_skip": data["T_skip"],
                     "T_div": data["T_div"]},
            "cycle_tables": {
                "mspdebug": "MCLK as mspdebug 0.22 counts it",
                "datasheet": "the same instruction trace costed with the MSP430x1xx/x2xx "
                             "cycle tables (constant-generator sources as register mode); "
                             "mspdebug 0.22 charges #1 two and #2/#4/#8/#-1 one cycle more"}
            if trace else {"mspdebug": "MCLK as mspdebug 0.22 counts it"},
            "raw": raw,
            "derived": derived,
            "linearity": linearity,
            "model_figures": {
                "cycle_table": best,
                **{mode: {"mac": d["dense_mac"], "compare_branch_keep": d["kept_test"],
                          "compare_branch_skip": d["skipped_test"],
                          "division_exact": d["division"]}
                   for mode, d in derived[best].items()}},
            "notes": [
                "per_iteration figures include the inner loop's step (pointer/counter update, "
                "branch) in both dense_mac and skipped_test, so dense = N*M*dense_mac and UnIT = "
                "kept*(dense_mac + kept_test) + skipped*skipped_test",
                "swmul: __mspabi_mpyl loops over the bits of |x_p| (clang passes w first), so its "
                "figures are averages over this seeded data (see mean_bits_abs_x_rows_n1_to_n2)",
                "kept_test depends on the sign of w: w > t keeps after one compare, w < -t after "
                "two",
                "hwmul writes MPYS once per input row (UnIT's input-stationary order) and OP2 per "
                "MAC; hwcall is what plain C gets under -mhwmult=16bit (a 32x32 libcall)",
                "division: unsigned 32/32 restoring division, 32 iterations (the MSP430 "
                "multiplier has no divider); cost varies a little with the quotient's bits",
                "32-bit accumulate and int16->int32 sign extension are inline asm (add/addc; "
                "rla/subc/inv) because clang 14's msp430 backend does not use addc",
            ],
        }
    finally:
        if tmp is not None:
            tmp.cleanup()


ROWS = [("dense MAC", "dense_mac"), ("dense MAC, output-stat.", "dense_mac_os"),
        ("kept test (extra)", "kept_test"),
        ("skipped test", "skipped_test"), ("saving per skip", "skip_saving"),
        ("saving vs output-stat.", "skip_saving_vs_os"),
        ("division T/|x|", "division"), ("UnIT row extra (keep T)", "unit_row_overhead_keep"),
        ("UnIT row extra (skip T)", "unit_row_overhead_skip"),
        ("break-even M (all skip)", "break_even_m_all_skip")]


def format_table(res: dict) -> str:
    cols = [(metric, mode) for metric, per in res["derived"].items() for mode in per]
    short = {"mspdebug": "dbg", "datasheet": "ds"}
    head = f"{'MCLK cycles per':<26}" + "".join(
        f"{mode + '/' + short[metric]:>11}" for metric, mode in cols)
    lines = [head, "-" * len(head)]
    for label, key in ROWS:
        vals = [res["derived"][metric][mode][key] for metric, mode in cols]
        lines.append(f"{label:<26}" + "".join(
            f"{'never':>11}" if v is None else f"{v:>11.2f}" for v in vals))
    lines.append(f"{'linearity error':<26}" + "".join(
        f"{res['linearity'][metric][mode]['error_cycles']:>11.1f}" for metric, mode in cols))
    s = res["sizes"]
    legend = "dbg: mspdebug's MCLK" + ("; ds: the same trace with datasheet cycle tables"
                                       if "datasheet" in res["derived"] else "")
    lines.append(f"{legend}. sizes n={s['n']} m={s['m']} (linearity check at {s['linearity']}); "
                 f"{len(res['raw'])} runs, all outputs verified")
    lines.append("; ".join(f"{k}: {v}" for k, v in res["versions"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs=2, default=[8, 24], metavar=("N1", "N2"),
                    help="two input counts (default 8 24)")
    ap.add_argument("--m", type=int, nargs=2, default=[8, 24], metavar=("M1", "M2"),
                    help="two output counts (default 8 24)")
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frac-bits", type=int, default=15,
                    help="fixed-point fraction bits of x and w (default 15 = Q15; 5 = SONIC's "
                         "Q10.5); the software multiply's cost grows with the bits of |x|")
    ap.add_argument("--no-trace", action="store_true",
                    help="only mspdebug's MCLK (skip the single-step replay with datasheet "
                         "cycle tables; much faster)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "msp430_cycles.json"))
    ap.add_argument("--build-dir", default=None,
                    help="keep sources, ELFs, maps and disassembly (net.dis) here")
    args = ap.parse_args(argv)
    try:
        tools = find_tools()
    except MissingTool as exc:
        print(f"msp430_cycles: {exc}", file=sys.stderr)
        return 2
    try:
        res = measure(args.n, args.m, args.modes, args.seed, args.build_dir, tools,
                      trace=not args.no_trace, frac_bits=args.frac_bits)
    except (MeasureError, ValueError) as exc:
        print(f"msp430_cycles: {exc}", file=sys.stderr)
        return 1
    res["argv"] = ["python", "bench/msp430_cycles.py",
                   *(argv if argv is not None else sys.argv[1:])]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(format_table(res))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
