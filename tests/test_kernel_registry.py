"""The kernel registry (csrc/kernels/kernels.def, read through _core.registered_kernels()) and a
kernel tester over every registered kernel this machine can run, the ref builds included.

KernelTester (in the manner of XNNPACK's microkernel testers) derives its edge cases from the
kernel's own tile: batch 1, MR-1, MR, MR+1, 2MR+1; units 1 and around VW, the block width NRU of
each gate count and PW = NR; inputs 0, 1 and odd. Every op of the kernel table is reached: the
rnn, lstm (+ peepholes, clip, projection = the linear op), gru (gates + candidate) and
reset-after gru (its 3-vector input projection + step) epilogues, and the packed GEMM. Results
are compared with fastcells.reference at test_kernels' tolerances.
"""
import io
import platform
import re
from pathlib import Path

import numpy as np
import pytest

from fastcells import _config, _core
from test_bf16_cells import bf16_oracle
from test_int8_cells import int8_oracle
from test_kernels import assert_close, make_weights, oracle, state_shapes

QUANT_ORACLES = {"int8": int8_oracle, "bf16": bf16_oracle}   # precision -> exact reference

KERNELS = _core.registered_kernels()
RUNNABLE = [k for k in KERNELS if k["available"]]
NOT_RUNNABLE = [k["name"] for k in KERNELS if not k["available"]]
REGISTRY = Path(__file__).resolve().parents[1] / "csrc" / "kernels" / "kernels.def"
X86 = platform.machine().lower() in ("x86_64", "amd64")
ARM64 = platform.machine().lower() in ("aarch64", "arm64")


def kernel_ids(kernels):
    return [k["name"] for k in kernels]


# ---- the registry itself --------------------------------------------------------------------

def test_registry_lists_every_line_of_kernels_def():
    if not REGISTRY.exists():
        pytest.skip(f"{REGISTRY} is not shipped with this installation")
    text = REGISTRY.read_text()
    # the ARM64 block sits under #if defined(__aarch64__): elsewhere not in the registry (x86
    # lines are, uncompiled, on aarch64)
    arch_here = {"ANY", "X86"} | ({"ARM64"} if ARM64 else set())
    built = {isa for isa, arch in re.findall(r"^FC_ISA\(\s*(\w+)\s*,\s*\w+\s*,\s*(\w+)", text, re.M)
             if arch in arch_here}
    lines = [name for name, isa in re.findall(
        r'^FC_KERNEL\(\s*\w+\s*,\s*"([^"]+)"\s*,\s*\w+\s*,\s*(\w+)', text, re.M) if isa in built]
    assert lines == [k["name"] for k in KERNELS]


def test_kernel_names_state_family_tile_and_isa():
    for k in KERNELS:
        name = f"{k['family']}-cells-{k['mr']}x{k['nr']}-"
        assert k["name"].startswith(name), k
        tag = k["name"][len(name):]
        if not k["dispatch"] and k["isa"] == "scalar":
            assert tag == "ref", k
        else:                                       # the ISA, or the feature it adds to it
            assert tag == k["isa"] or tag in k["features"], k
        if k["family"] in ("f32", "f64"):          # weights and math of the API dtype
            assert k["dtype"] == {"f32": "float32", "f64": "float64"}[k["family"]], k
        assert 1 <= k["mr"] <= 6 and k["nr"] % 4 == 0, k


def test_one_dispatched_kernel_per_isa_and_family():
    """One plain DISPATCH line per (ISA, family); UPGRADE lines only add to it."""
    for isa in _core.ISA_NAMES:
        for family in sorted({k["family"] for k in KERNELS}):
            found = [k for k in KERNELS if k["dispatch"] and not k["upgrade"]
                     and k["isa"] == isa and k["family"] == family]
            assert len(found) == 1, f"{isa} {family}: {kernel_ids(found)}"
            upgrades = [k for k in KERNELS if k["upgrade"] and k["isa"] == isa
                        and k["family"] == family]
            assert all(k["dispatch"] for k in upgrades)


def test_isa_lists_derive_from_the_registry():
    plain = [k for k in KERNELS if k["dispatch"] and not k["upgrade"]]
    compiled = [i for i in _core.ISA_NAMES if any(k["compiled"] for k in plain if k["isa"] == i)]
    available = [i for i in compiled
                 if all(k["available"] for k in plain if k["isa"] == i)]
    assert _core.compiled_isas() == compiled
    assert _core.available_isas() == available
    assert _core.best_isa() == available[-1]
    if X86:
        assert [k["name"] for k in KERNELS if not k["compiled"]] == []


def test_requirements_name_known_features_and_decide_availability():
    features = _core.cpu_features()
    assert list(features)[:2] == ["sse2", "avx"]
    fields = {"os_saves_avx": "os_avx", "os_saves_avx512": "os_avx512", "os_grants_amx": "os_amx"}
    have = {fields.get(n, n) for n, present in features.items() if present}
    known = {fields.get(n, n) for n in features}
    for k in KERNELS:
        assert set(k["features"]) <= known, k
        assert k["available"] == (k["compiled"] and set(k["features"]) <= have), k


def test_tiles_of_dispatched_kernels():
    for k in KERNELS:
        if k["available"] and k["precision"] is None:      # kernel_tile: the dtype's family
            assert _core.kernel_tile(k["name"], k["dtype"]) == (k["mr"], k["nr"])
            if k["dispatch"]:
                assert _core.kernel_tile(k["isa"], k["dtype"]) == (k["mr"], k["nr"])


def test_show_config_lists_every_kernel():
    out = io.StringIO()
    _config.show_config(file=out)
    for k in KERNELS:
        assert k["name"] in out.getvalue()
    assert _config.config()["kernels"] == KERNELS


def test_kernel_selection_errors_name_the_argument():
    w = make_weights(np.random.default_rng(0), "rnn", 2, 3)
    f64 = next(k["name"] for k in RUNNABLE if k["dtype"] == "float64")
    with pytest.raises(ValueError, match=r"isa: kernel .* computes float64, got dtype float32"):
        _core.PackedCell("rnn", np.float32, 2, 3, {n: v.astype(np.float32) for n, v in w.items()},
                         isa=f64)
    with pytest.raises(ValueError, match=r"isa: expected one of .* got 'f32-cells-9x9-nope'"):
        _core.PackedMatrix(np.ones((2, 2)), isa="f32-cells-9x9-nope")
    for name in NOT_RUNNABLE:
        with pytest.raises(ValueError, match="isa: kernel .* is not available"):
            _core.kernel_tile(name, "float32" if name.startswith("f32") else "float64")


def test_every_registered_kernel_is_accounted_for():
    """Kernels this CPU cannot run are reported, not silently dropped."""
    assert RUNNABLE
    if NOT_RUNNABLE:
        pytest.skip(f"kernels not runnable on this CPU/build: {NOT_RUNNABLE}")


# ---- the kernel tester ----------------------------------------------------------------------

class KernelTester:
    """One cell configuration run through one registered kernel and checked against the
    reference: KernelTester(kernel).kind("lstm").batch(4).units(17).inputs(1).test()."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.dtype = np.dtype(kernel["dtype"])
        self._kind, self._batch, self._units, self._inputs = "rnn", 1, 1, 0
        self._proj, self._peepholes, self._options = None, False, {}

    def kind(self, kind, proj=None, peepholes=False, **options):
        self._kind, self._proj, self._peepholes, self._options = kind, proj, peepholes, options
        return self

    def batch(self, b):
        self._batch = b
        return self

    def units(self, u):
        self._units = u
        return self

    def inputs(self, i):
        self._inputs = i
        return self

    def test(self, rng):
        B, I, U = self._batch, self._inputs, self._units
        P = self._proj or U
        what = (f"{self.kernel['name']} {self._kind} {self._options} B={B} I={I} U={U} P={P} "
                f"peepholes={self._peepholes}")
        precision = self.kernel["precision"]
        if self._kind == "matmul":
            b = rng.standard_normal((I, U)).astype(self.dtype)
            bias = rng.standard_normal(U).astype(self.dtype)
            a = rng.standard_normal((B, I)).astype(self.dtype)
            mat = _core.PackedMatrix(b, bias, isa=self.kernel["name"])
            assert mat.isa == self.kernel["name"]
            want = a.astype(np.float64) @ b.astype(np.float64) + bias
            assert_close(mat.matmul(a), want, self.dtype.type, what)
            return
        options = self._options
        if precision is not None:   # exact-arithmetic activations: compared bit for bit below
            options = dict(options, activation="relu")
            if self._kind != "rnn":
                options["gate_activation"] = "hard_sigmoid"
        w = {n: v.astype(self.dtype)
             for n, v in make_weights(rng, self._kind, I, U, P, self._peepholes).items()}
        cell = _core.PackedCell(self._kind, self.dtype, I, U, w, isa=self.kernel["name"],
                                precision=precision, **options)
        assert cell.isa == self.kernel["name"]
        x = rng.standard_normal((B, I)).astype(self.dtype)
        state = tuple(rng.standard_normal(s).astype(self.dtype)
                      for s in state_shapes(self._kind, B, U, P))
        if precision == "int8":     # h with the fixed scale must lie in [-1, 1]
            state = state[:-1] + (np.tanh(state[-1]),)
        out = tuple(np.full_like(s, np.nan) for s in state)
        cell.step(x, state, out)
        # int8, bf16: the exact scheme's reference, the same bits (with tanh/sigmoid the
        # kernels' transcendentals differ from NumPy's by an ulp, which a later rounding of the
        # LSTM's m can make one bf16 or int8 step: tests/test_bf16_cells.py bounds that case)
        want = QUANT_ORACLES.get(precision, oracle)(self._kind, x, state, w, **options)
        for name, got, expected in zip(("c", "h") if self._kind == "lstm" else ("h",), out, want):
            if precision is None:
                assert_close(got, expected, self.dtype.type, f"{what}: {name}")
            else:
                np.testing.assert_array_equal(got, expected, err_msg=f"{what}: {name}")


def edge_cases(kernel):
    """(batches, units, inputs) from the kernel's tile."""
    mr, pw = kernel["mr"], kernel["nr"]
    vw = pw // 4
    batches = sorted({1, mr - 1, mr, mr + 1, 2 * mr + 1} - {0})
    nru = {pw // g for g in (1, 2, 4)} | {vw}          # block widths: G = 1, 2, 4 and gru_ra
    units = sorted({u + d for u in nru | {vw} for d in (-1, 0, 1)} | {1, 2 * pw + 1} - {0})
    return batches, units, (0, 1, 7)


OPS = [  # (kind, options): every op of the kernel table
    ("rnn", {}),
    ("lstm", {}),
    ("lstm", {"peepholes": True, "cell_clip": 0.4, "proj": 5, "proj_clip": 0.3}),
    ("gru", {}),
    ("gru_ra", {}),
    ("matmul", {}),
]


@pytest.mark.parametrize("kind,options", OPS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(OPS)])
@pytest.mark.parametrize("kernel", RUNNABLE, ids=kernel_ids(RUNNABLE))
def test_kernel_matches_reference_at_its_tile_edges(kernel, kind, options):
    if kind == "matmul" and kernel["precision"] is not None:
        pytest.skip("PackedMatrix packs in its dtype (int8 GEMM: tests/test_int8_gemm.py)")
    rng = np.random.default_rng(4321)
    opts = dict(options)
    proj, peepholes = opts.pop("proj", None), opts.pop("peepholes", False)
    batches, units, inputs = edge_cases(kernel)
    for I in inputs:
        if kind == "matmul" and I == 0:
            continue                            # a product needs K >= 1 here: PackedMatrix b
        for U in units:
            for B in batches:
                (KernelTester(kernel).kind(kind, proj, peepholes, **opts)
                 .batch(B).units(U).inputs(I).test(rng))


@pytest.mark.parametrize("kernel", [k for k in RUNNABLE if not k["dispatch"]],
                         ids=kernel_ids([k for k in RUNNABLE if not k["dispatch"]]))
def test_ref_build_agrees_with_the_dispatched_kernel_of_its_tile(kernel):
    """A ref build and the ISA kernel of the same tile run the same template: same results up
    to rounding (the ISA build fuses multiply-adds)."""
    twin = [k for k in RUNNABLE if k["dispatch"] and k["family"] == kernel["family"]
            and (k["mr"], k["nr"]) == (kernel["mr"], kernel["nr"])]
    if not twin:
        pytest.skip(f"no runnable dispatched kernel with the tile of {kernel['name']}")
    rng = np.random.default_rng(5)
    dtype = np.dtype(kernel["dtype"])
    B, I, U = 2 * kernel["mr"] + 1, 7, kernel["nr"] + 3
    w = {n: v.astype(dtype) for n, v in make_weights(rng, "lstm", I, U).items()}
    x = rng.standard_normal((B, I)).astype(dtype)
    state = tuple(rng.standard_normal((B, U)).astype(dtype) for _ in range(2))
    state = state[:-1] + (np.tanh(state[-1]),)     # (int8: h of the fixed scale in [-1, 1])
    got = [_core.PackedCell("lstm", dtype, I, U, w, isa=k["name"],
                            precision=kernel["precision"]).call(x, state)
           for k in (kernel, twin[0])]
    for a, b in zip(*got):
        assert_close(a, np.asarray(b, np.float64), dtype.type, f"{kernel['name']} vs twin")
