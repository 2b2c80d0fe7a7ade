"""Build of the fastcells extension.

Baseline sources (the Cython bridge, the driver, dispatch, packing, the portable kernels) build
with the interpreter's default flags; each instruction-set directory under csrc/ builds with its
own flags and is only ever executed after run-time dispatch has checked the CPU. Never
-march=native: the wheel must run on any x86-64 (or other) CPU.
"""
import platform
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = Path("csrc")
COMMON_CFLAGS = ["-O3", "-std=gnu11", "-pthread", "-Wall", "-Wextra", "-Wno-unused-parameter"]
X86 = platform.machine().lower() in ("x86_64", "amd64")

# directory -> extra flags; only these files get wide-ISA flags
ISA_DIRS = {"avx2": ["-mavx2", "-mfma"], "avx512": ["-mavx512f", "-mfma"]} if X86 else {}


def sources(directory):
    return sorted(str(p) for p in (CSRC / directory).glob("*.c"))


class BuildExtWithISA(build_ext):
    """Compiles csrc/<isa>/*.c with that ISA's flags and links them into the extension."""

    def build_extension(self, ext):
        objects = []
        for directory, flags in ISA_DIRS.items():
            objects += self.compiler.compile(
                sources(directory), output_dir=self.build_temp, include_dirs=[str(CSRC)],
                extra_postargs=COMMON_CFLAGS + flags)
        ext.extra_objects = objects
        super().build_extension(ext)


extension = Extension(
    "fastcells._core",
    sources=["fastcells/_core.pyx", str(CSRC / "dispatch.c"), str(CSRC / "pack.c"),
             str(CSRC / "cells.c"), str(CSRC / "blocks.c"), str(CSRC / "sequence.c"),
             str(CSRC / "threads.c")] + sources("scalar"),
    include_dirs=[str(CSRC), np.get_include()],
    # headers and per-ISA sources: a change to any of them rebuilds the extension
    depends=sorted(str(p) for p in CSRC.rglob("*.h")) + [
        src for directory in ISA_DIRS for src in sources(directory)],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=COMMON_CFLAGS,
    libraries=["m"],
    extra_link_args=["-pthread"],
)

setup(
    ext_modules=cythonize([extension], language_level=3),
    cmdclass={"build_ext": BuildExtWithISA},
)
