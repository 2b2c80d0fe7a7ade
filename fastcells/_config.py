"""show_config(): what the CPU offers, which kernels were compiled, which ones run (all read
from _core, whose lists come from csrc/kernels/kernels.def and features.def)."""
from __future__ import annotations

import sys
from typing import IO, Optional

import numpy as np

from fastcells import _core


def config():
    """The configuration as a dict (what show_config prints)."""
    default = _core.default_isa()
    return {
        "cpu_features": _core.cpu_features(),
        "compiled_isas": _core.compiled_isas(),
        "available_isas": _core.available_isas(),
        "best_isa": _core.best_isa(),
        "default_isa": default,
        "tiles": {str(np.dtype(t)): _core.kernel_tile(default, t)
                  for t in (np.float32, np.float64)},
        "kernels": _core.registered_kernels(),
    }


def show_config(file: Optional[IO[str]] = None) -> None:
    """Prints the detected CPU features, the compiled and available instruction sets, and the
    one new cells use (FASTCELLS_ISA=scalar|avx2|avx512, or neon on aarch64, forces it).

    Also printed: the register tile of each dtype on that instruction set and every registered
    kernel with its role (dispatch or test) and whether it runs here.

    Parameters
    ----------
    file : text stream, optional
        Where to print; None means ``sys.stdout``.

    Returns
    -------
    None

    Examples
    --------
    >>> import io
    >>> import fastcells
    >>> text = io.StringIO()
    >>> fastcells.show_config(file=text)
    >>> [line.split(":")[0].strip() for line in text.getvalue().splitlines()[1:5]]
    ['cpu features', 'compiled ISAs', 'available ISAs', 'in use']
    """
    out = file or sys.stdout
    c = config()
    feats = ", ".join(k for k, v in c["cpu_features"].items() if v) or "none"
    print(f"fastcells {__import__('fastcells').__version__}", file=out)
    print(f"  cpu features:    {feats}", file=out)
    print(f"  compiled ISAs:   {', '.join(c['compiled_isas'])}", file=out)
    print(f"  available ISAs:  {', '.join(c['available_isas'])}", file=out)
    print(f"  in use:          {c['default_isa']} (best available: {c['best_isa']})", file=out)
    for dtype, (rows, cols) in c["tiles"].items():
        print(f"  {dtype} tile:    {rows} batch rows x {cols} gate columns", file=out)
    print("  kernels:", file=out)
    for k in c["kernels"]:
        state = ("runs here" if k["available"] else
                 "compiled, CPU lacks it" if k["compiled"] else "not compiled")
        role = "dispatch" if k["dispatch"] else "test"
        print(f"    {k['name']:<24} {role:<8} {state}", file=out)
