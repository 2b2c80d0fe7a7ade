"""Build of the fastcells extension.

The kernel variants come from the registry csrc/kernels/kernels.def: for each FC_KERNEL line a
small translation unit is generated (its tile, ISA and family) and compiled with that line's
flags only; everything else (the Cython bridge, the driver, dispatch, packing, the family
tables) builds with the baseline flags. Kernels with wide-ISA flags only ever run after
run-time dispatch has checked the CPU. Never -march=native: the wheel must run on any x86-64
(or aarch64) CPU; each FC_ISA line's arch field says on which machine its kernels are built.
All units compile in parallel (up to os.cpu_count()).

The shipped .so is stripped (-s); FASTCELLS_DEBUG_BUILD=1, or sanitizer CFLAGS
(tools/sanitize.sh), keep its symbols.
"""
import os
import platform
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:
    from setuptools.modified import newer_group
except ImportError:                                         # setuptools < 69
    from distutils.dep_util import newer_group

CSRC = Path("csrc")
REGISTRY = CSRC / "kernels" / "kernels.def"
COMMON_CFLAGS = ["-O3", "-std=gnu11", "-pthread", "-Wall", "-Wextra", "-Wno-unused-parameter"]
X86 = platform.machine().lower() in ("x86_64", "amd64")
ARM64 = platform.machine().lower() in ("aarch64", "arm64")
BUILT_HERE = {"ANY": True, "X86": X86, "ARM64": ARM64}      # FC_ISA arch -> built on this machine
KEEP_SYMBOLS = (os.environ.get("FASTCELLS_DEBUG_BUILD") == "1"
                or "-fsanitize" in os.environ.get("CFLAGS", ""))

# one registry entry per line (kernels.def states the fields)
_ISA = re.compile(r"^FC_ISA\(\s*(\w+)\s*,\s*(\w+)\s*,\s*(ANY|X86|ARM64)\s*\)", re.M)
_FAMILY = re.compile(r'^FC_FAMILY\(\s*(\w+)\s*,\s*(\w+)\s*,\s*(\w+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,'
                     r'\s*(\w+)\s*,\s*"([^"]+)"\s*\)', re.M)
_KERNEL = re.compile(r'^FC_KERNEL\(\s*(\w+)\s*,\s*"([^"]+)"\s*,\s*(\w+)\s*,\s*(\w+)\s*,'
                     r'\s*(DISPATCH|UPGRADE|TEST)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*"([^"]*)"\s*,'
                     r'\s*"([^"]*)"\s*\)', re.M)
_I8GEMM = re.compile(r'^FC_I8GEMM\(\s*(\w+)\s*,\s*"([^"]+)"\s*,\s*(\w+)\s*,\s*(\d+)\s*,'
                     r'\s*"([^"]*)"\s*,\s*"([^"]*)"\s*\)', re.M)
# the reduced-precision units (an FC_FAMILY line whose precision is not NATIVE: int8, bf16):
# their fp32 epilogue must not be contracted into FMAs (fastcells/reference_quant.py)
NO_CONTRACT = ["-ffp-contract=off"]


def read_registry(path=REGISTRY):
    """The kernels of the registry this machine builds, as dicts; raises on a malformed line."""
    text = path.read_text()
    for macro, pattern in (("FC_ISA", _ISA), ("FC_FAMILY", _FAMILY), ("FC_KERNEL", _KERNEL)):
        lines = re.findall(rf"^{macro}\(.*$", text, re.M)
        if len(lines) != len(pattern.findall(text)):
            bad = [ln for ln in lines if not pattern.match(ln)]
            raise ValueError(f"{path}: malformed {macro} line(s): {bad}")
    isa_arch = {isa: arch for isa, _name, arch in _ISA.findall(text)}
    families = {m[0]: m[6] for m in _FAMILY.findall(text)}
    reduced = {m[0] for m in _FAMILY.findall(text) if m[2] != "NATIVE"}
    kernels = []
    for symbol, name, family, isa, role, mr, vw, features, cflags in _KERNEL.findall(text):
        if isa not in isa_arch or family not in families:
            raise ValueError(f"{path}: {name}: unknown ISA {isa!r} or family {family!r}")
        if cflags and "-march=native" in cflags:
            raise ValueError(f"{path}: {name}: -march=native would tie the build to this CPU")
        if not BUILT_HERE[isa_arch[isa]]:
            continue
        kernels.append({"symbol": symbol, "name": name, "isa": isa, "mr": int(mr),
                        "vw": int(vw), "template": families[family],
                        "cflags": shlex.split(cflags)
                        + (NO_CONTRACT if family in reduced else [])})
    return kernels


def read_i8_registry(path=REGISTRY):
    """The FC_I8GEMM kernels this machine builds: (source, flags) pairs."""
    text = path.read_text()
    isa_arch = {isa: arch for isa, _name, arch in _ISA.findall(text)}
    lines = re.findall(r"^FC_I8GEMM\(.*$", text, re.M)
    found = _I8GEMM.findall(text)
    if len(lines) != len(found):
        raise ValueError(f"{path}: malformed FC_I8GEMM line(s): {lines}")
    units = []
    for symbol, name, isa, _mr, _features, cflags in found:
        if "-march=native" in cflags:
            raise ValueError(f"{path}: {name}: -march=native would tie the build to this CPU")
        if isa not in isa_arch:
            raise ValueError(f"{path}: {name}: unknown ISA {isa!r}")
        if not BUILT_HERE[isa_arch[isa]]:
            continue
        tag = name.rsplit("-", 1)[1]
        units.append((str(CSRC / "kernels" / f"i8-gemm-{tag}.c"),
                      COMMON_CFLAGS + shlex.split(cflags) + NO_CONTRACT))
    return units


def kernel_unit(kernel):
    """The source of the translation unit that compiles one registry line."""
    return (f"/* {kernel['name']}: generated by setup.py from {REGISTRY.as_posix()} */\n"
            f"#define FC_KERNEL_SYMBOL {kernel['symbol']}\n"
            f"#define FC_KERNEL_NAME \"{kernel['name']}\"\n"
            f"#define FC_ISA_ID FC_ISA_{kernel['isa']}\n"
            f"#define FC_MR {kernel['mr']}\n"
            f"#define FC_VW {kernel['vw']}\n"
            f"#include \"{kernel['template']}\"\n")


class BuildExtWithKernels(build_ext):
    """Compiles the extension's sources and one unit per registry kernel in parallel, each
    kernel with its own flags, then links them."""

    def build_extension(self, ext):
        kernels = read_registry()
        target = self.get_ext_fullpath(ext.name)
        if not (self.force or newer_group(ext.sources + ext.depends, target, "newer")):
            return
        unit_dir = Path(self.build_temp) / "fc_kernels"
        unit_dir.mkdir(parents=True, exist_ok=True)
        jobs = [(src, ext.extra_compile_args + (NO_CONTRACT if src.endswith("i8gemm.c") else []),
                 ext.define_macros) for src in ext.sources]
        jobs += [(src, flags, []) for src, flags in read_i8_registry()]
        for kernel in kernels:
            unit = unit_dir / f"{kernel['name']}.c"
            text = kernel_unit(kernel)
            if not unit.exists() or unit.read_text() != text:
                unit.write_text(text)
            jobs.append((str(unit), COMMON_CFLAGS + kernel["cflags"], []))

        def compile_one(job):
            src, flags, macros = job
            return self.compiler.compile([src], output_dir=self.build_temp, macros=macros,
                                         include_dirs=ext.include_dirs, debug=self.debug,
                                         extra_postargs=flags, depends=ext.depends)

        with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
            objects = [obj for objs in pool.map(compile_one, jobs) for obj in objs]
        sources, depends = ext.sources, ext.depends
        ext.sources, ext.extra_objects, ext.depends = [], objects, depends + objects
        try:
            super().build_extension(ext)            # links only: nothing left to compile
        finally:
            ext.sources, ext.depends = sources, depends


extension = Extension(
    "fastcells._core",
    sources=["fastcells/_core.pyx"] + [str(CSRC / name) for name in (
        "dispatch.c", "pack.c", "cells.c", "blocks.c", "sequence.c", "threads.c",
        "kernels/families.c", "i8gemm.c", "bf16.c",
        "probes/probes.c")],          # the benchmarks' machine-limit probes (_core._probe_*)
    include_dirs=[str(CSRC), np.get_include()],
    # headers, templates and the registry: a change to any of them rebuilds the extension
    depends=sorted(str(p) for p in CSRC.rglob("*")
                   if p.suffix in (".h", ".def") or p.name.startswith("i8-gemm-")),
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=COMMON_CFLAGS,
    libraries=["m"],
    extra_link_args=["-pthread"] + ([] if KEEP_SYMBOLS else ["-s"]),
)

setup(
    ext_modules=cythonize([extension], language_level=3),
    cmdclass={"build_ext": BuildExtWithKernels},
)
