"""Command-line recipes that more than one composed command (demo, bench) uses."""

from __future__ import annotations

# LWAC's bypass-robust training for residual models, as `layerwise train` flags: stochastic depth
# 0.2 on every block and each residual branch's last BatchNorm starting at zero. A plainly trained
# ResNet loses 15-50 points when a block is bypassed; one trained this way is also an ordinary
# model for the other methods, so one base can serve compress, lwac and profile.
ROBUST_RESIDUAL = ("--drop-path", "0.2", "--drop-path-schedule", "constant", "--zero-init-residual")


def checkpoint_token(name: str) -> str:
    """The argv placeholder for the checkpoint of the shared base model ``name``."""
    return "{checkpoint:" + name + "}"


def token_base(arg: str) -> str | None:
    """The base name in a checkpoint placeholder, or None for any other argument."""
    if arg.startswith("{checkpoint:") and arg.endswith("}"):
        return arg[len("{checkpoint:"):-1]
    return None
