"""Compile an exported network with the system C compiler and run it on many inputs."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import LayerwiseError

MODE_CODE = {"dense": 0, "zero_skip": 1, "unit": 2}
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror",
          "-Wno-unused-function", "-Wno-unused-parameter"]


def runtime_file(name: str) -> Path:
    """A file shipped in ``layerwise/export/runtime`` (start-up, linker script, helpers)."""
    p = Path(str(resources.files("layerwise.export").joinpath("runtime", name)))
    if not p.is_file():
        raise LayerwiseError(f"the layerwise installation lacks export/runtime/{name}; reinstall layerwise")
    return p


def find_cc() -> str | None:
    """The system C compiler (``$CC``-free: cc, gcc, clang in that order)."""
    for name in ("cc", "gcc", "clang"):
        p = shutil.which(name)
        if p:
            return p
    return None


def _run(cmd: list[str], what: str, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LayerwiseError(f"{what} failed to run ({exc})") from exc
    if out.returncode != 0:
        raise LayerwiseError(f"{what} failed (exit {out.returncode}): {' '.join(cmd)}\n"
                             f"{(out.stdout + out.stderr)[-3000:]}")
    return out


def build_host(c_file: Path, h_file: Path, build_dir: Path, *, mode: str = "unit",
               division: int | None = None, cc: str | None = None) -> Path:
    """Compile ``c_file`` + the host harness into an executable; returns its path."""
    cc = cc or find_cc()
    if cc is None:
        raise LayerwiseError("no C compiler found (cc, gcc or clang); install one, e.g. "
                             "`apt-get install gcc`")
    if mode not in MODE_CODE:
        raise LayerwiseError(f"mode {mode!r}: use one of {', '.join(MODE_CODE)}")
    build_dir.mkdir(parents=True, exist_ok=True)
    name = c_file.stem
    exe = build_dir / f"{name}_{mode}{'' if division is None else f'_div{division}'}"
    cmd = [cc, *CFLAGS, f"-DLW_MODE={MODE_CODE[mode]}",
           *([] if division is None else [f"-DLW_DIV={division}"]),
           f'-DLWH_HEADER="{h_file.name}"', f"-DLWH_INFER={name}_infer",
           f"-DLWH_IN={name.upper()}_INPUT_SIZE",
           f"-DLWH_OUT={name.upper()}_OUTPUT_SIZE",
           f"-I{h_file.parent}", str(c_file), str(runtime_file("host_main.c")), "-o", str(exe)]
    _run(cmd, "the host C build")
    return exe


def run_host(exe: Path, x_q: np.ndarray, n_out: int) -> np.ndarray:
    """int16 logits ``[B, n_out]`` of the compiled network on int16 inputs ``x_q [B, ...]``."""
    x = np.ascontiguousarray(np.asarray(x_q, dtype="<i2").reshape(len(x_q), -1))
    with tempfile.TemporaryDirectory() as tmp:
        fi, fo = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        fi.write_bytes(x.tobytes())
        _run([str(exe), str(fi), str(fo)], "the compiled network")
        y = np.frombuffer(fo.read_bytes(), dtype="<i2")
    if y.size != len(x) * n_out:
        raise LayerwiseError(f"the compiled network wrote {y.size} logits, expected {len(x) * n_out}")
    return y.reshape(len(x), n_out).astype(np.int16)
