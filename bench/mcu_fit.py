"""Refit the MSP430 cycle model's costs to simulator measurements and print the errors.

    python bench/mcu_fit.py RUN/results.json [...]     # results.json files written by layerwise export-c
"""

from __future__ import annotations

import sys

from layerwise.export.fit import fit_summary


def main(argv: list[str] | None = None) -> int:
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: python bench/mcu_fit.py RESULTS.json [...]", file=sys.stderr)
        return 2
    _, lines = fit_summary(paths)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
