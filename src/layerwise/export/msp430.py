"""Build an exported network for the MSP430 and count its cycles in ``mspdebug sim``.

Toolchain (Debian packages ``clang``, ``lld``, ``mspdebug``): ``clang --target=msp430 -O2
-ffreestanding -nostdlib`` compiles the network and the harness (``runtime/msp_main.c``), the
start-up file ``runtime/start.S`` and the helpers (``runtime/div_sw.S``: 32/32 unsigned
division for exact UnIT ratios; ``runtime/mul16_sw.S``: 16 x 16 shift-and-add multiply for the
software-multiply build; ``runtime/mpyi.S``: the 16-bit multiply helpers clang calls for index
arithmetic it cannot reduce to shifts); ``ld.lld -T runtime/link.ld`` links them. ``mspdebug -q sim`` with its
``tracer`` device (plus ``hwmult`` for the hardware-multiplier build, ``-mhwmult=16bit``) runs one
inference, stopping at ``lw_mark`` before the network and after every layer and at ``done``;
the MCLK count at each stop gives the cycles of every layer. The logits left in RAM are read
back and must equal the Python int16 reference's (:func:`~layerwise.export.fixed.run_fixed`).

``mspdebug sim`` runs the classic MSP430 instruction set in a flat 64 KB address space without
FRAM wait states: a network whose weights and tables do not fit (about 44 KB of ROM here) is
refused with the sizes, and the cycles are those of a classic core, an MSP430FR5994 at <= 8 MHz.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LayerwiseError
from .fixed import DIVISIONS
from .host import MODE_CODE, runtime_file

INSTALL_HINT = "apt-get install clang lld mspdebug"
CFLAGS = ["--target=msp430", "-O2", "-ffreestanding", "-nostdlib"]
MULTIPLIERS = ("swmul", "hwmul")
ROM_START, ROM_END = 0x5000, 0xFF80


class MissingToolchain(LayerwiseError):
    """clang, ld.lld or mspdebug is not installed."""


def find_tool(name: str) -> str | None:
    """``name`` on PATH, else the highest versioned ``name-NN`` (Debian's clang-14, ld.lld-14)."""
    path = shutil.which(name)
    if path:
        return path
    best: tuple[int, str] | None = None
    for d in os.environ.get("PATH", "").split(os.pathsep):
        for cand in glob.glob(os.path.join(d, f"{name}-[0-9]*")):
            m = re.fullmatch(re.escape(name) + r"-(\d+)", os.path.basename(cand))
            if m and os.access(cand, os.X_OK) and (best is None or int(m.group(1)) > best[0]):
                best = (int(m.group(1)), cand)
    return best[1] if best else None


def find_toolchain() -> dict[str, str]:
    """Paths of clang, ld.lld, mspdebug; raises :class:`MissingToolchain` naming the missing."""
    tools = {n: find_tool(n) for n in ("clang", "ld.lld", "mspdebug")}
    missing = [n for n, p in tools.items() if not p]
    if missing:
        raise MissingToolchain(f"missing {', '.join(missing)}: the MSP430 measurement needs "
                               f"them; install with `{INSTALL_HINT}`")
    return tools  # type: ignore[return-value]


@dataclass
class McuRun:
    """One inference measured in ``mspdebug sim``."""

    mode: str
    division: str | None
    multiplier: str
    cycles: int                           # the network, from the first lw_mark to the last
    per_layer: dict[str, int]             # layer name -> cycles
    instructions: int
    logits: list[int]
    text_bytes: int
    rodata_bytes: int
    data_bss_bytes: int
    seconds: float                        # wall time of the simulation
    commands: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _run(cmd: list[str], what: str, input: str | None = None, timeout: float = 1800
         ) -> subprocess.CompletedProcess:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LayerwiseError(f"{what} failed to run ({exc})") from exc
    if out.returncode != 0:
        raise LayerwiseError(f"{what} failed (exit {out.returncode}): {' '.join(cmd)}\n"
                             f"{(out.stdout + out.stderr)[-3000:]}")
    return out


def _symbols(map_path: Path) -> dict[str, int]:
    found = {}
    for line in map_path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and re.fullmatch(r"[0-9a-fA-F]+", parts[0]):
            found[parts[-1]] = int(parts[0], 16)
    return found


def _sections(map_path: Path) -> dict[str, int]:
    """Output section sizes from an ld.lld map (``VMA LMA Size Align Out``)."""
    sizes = {}
    for line in map_path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[4].startswith(".") and re.fullmatch(r"[0-9a-fA-F]+", parts[2]):
            sizes[parts[4]] = int(parts[2], 16)
    return sizes


def sample_header(x_q: np.ndarray) -> str:
    v = [int(a) for a in np.asarray(x_q).reshape(-1)]
    rows = [", ".join(map(str, v[i:i + 16])) for i in range(0, len(v), 16)]
    return ("/* generated by layerwise.export.msp430: one int16 input */\n"
            f"static const int16_t lw_sample[{len(v)}] = {{\n  " + ",\n  ".join(rows) + "\n};\n")


def build(c_file: Path, h_file: Path, x_q: np.ndarray, build_dir: Path, *, mode: str = "unit",
          division: str | None = None, multiplier: str = "swmul",
          tools: dict[str, str] | None = None) -> tuple[Path, Path, dict[str, str]]:
    """Compile and link one variant: ``(elf, map, commands)``."""
    tools = tools or find_toolchain()
    if mode not in MODE_CODE:
        raise LayerwiseError(f"mode {mode!r}: use one of {', '.join(MODE_CODE)}")
    if multiplier not in MULTIPLIERS:
        raise LayerwiseError(f"multiplier {multiplier!r}: use one of {', '.join(MULTIPLIERS)}")
    if division is not None and division not in DIVISIONS:
        raise LayerwiseError(f"division {division!r}: use one of {', '.join(DIVISIONS)}")
    name = c_file.stem
    tag = f"{mode}{'' if division is None else '_' + division}_{multiplier}"
    d = build_dir / tag
    d.mkdir(parents=True, exist_ok=True)
    (d / "sample.h").write_text(sample_header(x_q))
    defs = [f"-DLW_MODE={MODE_CODE[mode]}", "-DLW_MARK_FN=lw_mark",
            f'-DLWH_HEADER="{h_file.name}"', f"-DLWH_INFER={name}_infer",
            f"-DLWH_OUT={name.upper()}_OUTPUT_SIZE"]
    if division is not None:
        defs.append(f"-DLW_DIV={DIVISIONS.index(division)}")
    if multiplier == "hwmul":
        defs += ["-DLW_MSP430_HWMUL", "-mhwmult=16bit"]
    else:
        defs += ["-DLW_MSP430_SWMUL", "-mhwmult=none"]
    objs = []
    cmds = {}
    for src in (c_file, runtime_file("msp_main.c")):
        obj = d / (src.stem + ".o")
        cmd = [tools["clang"], *CFLAGS, *defs, f"-I{h_file.parent}", f"-I{d}", "-c", str(src),
               "-o", str(obj)]
        _run(cmd, f"clang (msp430) on {src.name}")
        cmds.setdefault("compile", " ".join(cmd))
        objs.append(obj)
    for asm in ("start.S", "div_sw.S", "mul16_sw.S", "mpyi.S"):
        obj = d / (Path(asm).stem + ".o")
        _run([tools["clang"], *CFLAGS, "-c", str(runtime_file(asm)), "-o", str(obj)],
             f"clang (msp430) on {asm}")
        objs.append(obj)
    elf, mp = d / f"{name}.elf", d / f"{name}.map"
    ld = [tools["ld.lld"], "-T", str(runtime_file("link.ld")), "-Map", str(mp),
          str(objs[2]), *(str(o) for i, o in enumerate(objs) if i != 2), "-o", str(elf)]
    out = subprocess.run(ld, capture_output=True, text=True)
    if out.returncode != 0:
        if "will not fit" in out.stderr or "overflowed" in out.stderr:
            raise LayerwiseError(
                f"{name} does not fit the classic MSP430's 64 KB address space that mspdebug sim "
                f"simulates ({out.stderr.strip().splitlines()[0]}); measure it layer by layer or "
                "use a smaller model")
        raise LayerwiseError(f"ld.lld failed: {' '.join(ld)}\n{out.stderr[-3000:]}")
    cmds["link"] = " ".join(ld)
    return elf, mp, cmds


def _mclk(text: str) -> list[int]:
    return [int(v) for v in re.findall(r"^MCLK:\s*(\d+)", text, re.M)]


def measure(c_file: Path, h_file: Path, x_q: np.ndarray, layer_names: list[str], n_out: int,
            build_dir: Path, *, mode: str = "unit", division: str | None = None,
            multiplier: str = "swmul", tools: dict[str, str] | None = None,
            timeout: float = 1800) -> McuRun:
    """Build one variant and run one inference of ``x_q`` under ``mspdebug sim``."""
    tools = tools or find_toolchain()
    elf, mp, cmds = build(c_file, h_file, x_q, build_dir, mode=mode, division=division,
                          multiplier=multiplier, tools=tools)
    sym = _symbols(mp)
    for s in ("lw_mark", "done", "lw_logits"):
        if s not in sym:
            raise LayerwiseError(f"symbol {s} missing from {mp}")
    stops = len(layer_names) + 2          # before the network, after each layer, done
    script = [f"prog {elf}", "simio add tracer t"]
    if multiplier == "hwmul":
        script.append("simio add hwmult hw")
    script += [f"setbreak 0x{sym['lw_mark']:04x}", f"setbreak 0x{sym['done']:04x}"]
    script += ["run", "simio info t"] * stops
    script.append(f"md 0x{sym['lw_logits']:04x} {2 * n_out}")
    sim = [tools["mspdebug"], "-q", "sim"]
    t0 = time.perf_counter()
    out = _run(sim, "mspdebug sim", input="\n".join(script) + "\n", timeout=timeout).stdout
    seconds = time.perf_counter() - t0
    cmds["run"] = "printf '" + "\\n".join(script) + "\\n' | " + " ".join(sim)
    mclk = _mclk(out)
    if len(mclk) != stops:
        raise LayerwiseError(f"mspdebug sim stopped {len(mclk)} times, expected {stops}:\n{out[-2000:]}")
    ins = [int(v) for v in re.findall(r"^Instruction count:\s*(\d+)", out, re.M)]
    per_layer = {n: mclk[i + 1] - mclk[i] for i, n in enumerate(layer_names)}
    mem = {}
    for m in re.finditer(r"^\s*([0-9a-fA-F]{4,5}):((?:\s[0-9a-fA-F]{2})+)", out, re.M):
        base = int(m.group(1), 16)
        for i, b in enumerate(m.group(2).split()):
            mem[base + i] = int(b, 16)
    try:
        raw = bytes(mem[a] for a in range(sym["lw_logits"], sym["lw_logits"] + 2 * n_out))
    except KeyError:
        raise LayerwiseError(f"mspdebug did not print the logits:\n{out[-2000:]}") from None
    logits = np.frombuffer(raw, dtype="<i2").astype(int).tolist()
    secs = _sections(mp)
    return McuRun(mode=mode, division=division, multiplier=multiplier,
                  cycles=mclk[-2] - mclk[0], per_layer=per_layer,
                  instructions=ins[-2] - ins[0] if len(ins) >= 2 else 0, logits=logits,
                  text_bytes=secs.get(".text", 0), rodata_bytes=secs.get(".rodata", 0),
                  data_bss_bytes=secs.get(".data", 0) + secs.get(".bss", 0), seconds=seconds,
                  commands=cmds)
