"""The benchmark harness's logic (fastcells.benchmarks), not speed: the round-robin scheduler
(with a fake clock), the minimum of medians, the floor arithmetic on fixed limits, the machine
probes (positive, finite, quick), the stacked sequence cases' checks, and the command line.
No assertion here is about how fast anything runs."""
import dataclasses
import io
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fastcells
from fastcells import _core
from fastcells.benchmarks import _harness, _limits, quantized, sequences
from fastcells.benchmarks._harness import Runner


# ---------------------------------------------------------------------------------------------
# Round robin
# ---------------------------------------------------------------------------------------------

def test_rotations_rotate_and_cover_every_contender_each_round():
    orders = _harness.rotations(["a", "b", "c"], 4)
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert _harness.rotations([], 2) == [[], []]


def test_median_odd_even_and_empty():
    assert _harness.median([3.0, 1.0, 2.0]) == 2.0
    assert _harness.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError, match="values: expected at least one sample"):
        _harness.median([])


def test_minimum_of_medians_on_fixed_samples():
    got = _harness.minimum_of_medians({"a": [[3.0, 1.0, 2.0], [5.0, 4.0, 6.0]],
                                       "b": [[1.0, 10.0], [2.0, 2.0]],
                                       "c": [[7.0]]})
    # a: medians 2, 5 -> 2; b: medians 5.5, 2 -> 2 (the lucky 1.0 alone does not count); c: 7
    assert got == {"a": 2.0, "b": 2.0, "c": 7.0}


class FakeClock:
    """A clock that advances only when a fake contender runs."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _contender(clock, log, name, cost):
    """A Runner whose call logs `name` and advances the clock by cost(call number)."""
    calls = [0]

    def fn():
        clock.now += cost(calls[0])
        calls[0] += 1
        log.append(name)

    return Runner(fn)


def _turns(log):
    """The log of calls collapsed into turns: consecutive calls of one contender are one."""
    turns = []
    for name in log:
        if not turns or turns[-1] != name:
            turns.append(name)
    return turns


def test_round_robin_alternates_in_rotated_order_and_takes_the_minimum_of_medians():
    clock, log = FakeClock(), []
    runners = {
        "a": _contender(clock, log, "a", lambda i: 1e-3),
        "b": _contender(clock, log, "b", lambda i: 2e-3),
        "c": _contender(clock, log, "c", lambda i: 3e-3),
    }
    result = _harness.round_robin(runners, rounds=3, samples=3, min_seconds=1e-3,
                                  clock=clock, settle=lambda: None,
                                  warm=lambda fn, seconds: fn())
    assert result.orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    # after the warm-up/calibration turns (one per contender, in order), the timed turns follow
    # the rotated orders exactly: every round times every contender once
    timed = _turns(log)[3:]
    assert timed == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {k: len(v) for k, v in result.samples.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(len(s) == 3 for v in result.samples.values() for s in v)
    for name, cost in (("a", 1e-3), ("b", 2e-3), ("c", 3e-3)):
        assert result.seconds[name] == pytest.approx(cost, rel=1e-9)
    assert result.ratio("c", "a") == pytest.approx(3.0, rel=1e-9)


def test_round_robin_passes_over_a_disturbed_round():
    clock, log = FakeClock(), []
    state = {"round": 0}
    # "a" is slow (10 ms) while "b" flags a disturbance, i.e. in the round where b ran first
    disturbed = {"on": False}

    def cost_a(i):
        return 10e-3 if disturbed["on"] else 1e-3

    def cost_b(i):
        return 1e-3

    runners = {"a": _contender(clock, log, "a", cost_a), "b": _contender(clock, log, "b", cost_b)}

    def settle():
        # the turn about to run is the first of round 1 ("b" then "a"): disturb "a" there only
        state["round"] += 1
        disturbed["on"] = state["round"] in (3, 4)      # turns 3 and 4 = round 1

    result = _harness.round_robin(runners, rounds=3, samples=5, min_seconds=1e-3, clock=clock,
                                  settle=settle, warm=lambda fn, seconds: None)
    medians_a = [_harness.median(s) for s in result.samples["a"]]
    assert medians_a[1] == pytest.approx(10e-3)           # the disturbed round is seen...
    assert result.seconds["a"] == pytest.approx(1e-3)     # ...and passed over
    assert result.ratio("a", "b") == pytest.approx(1.0)


def test_time_peers_marks_unavailable_peers_and_keeps_the_order():
    def unavailable(subject):
        raise _harness.Unavailable("not here")

    peers = {"x": lambda s: Runner(lambda: None), "gone": unavailable,
             "y": lambda s: Runner(lambda: None)}
    times, _others = _harness.time_peers(None, peers, 1e-4, 2, lambda p: 0.0, samples=2)
    assert list(times) == ["x", "gone", "y"]
    assert times["gone"] is None
    assert times["x"] > 0 and times["y"] > 0


# ---------------------------------------------------------------------------------------------
# Floors
# ---------------------------------------------------------------------------------------------

MIB = 1 << 20
LIMITS = _limits.Limits(isa="avx2", threads=2, fp32_path="f32-avx2", fp32_peak_gflops=100.0,
                        int8_path="", int8_peak_gops=0.0, gemm_size=512,
                        blas_gemm_gflops=150.0, packed_gemm_gflops=120.0, l2_bytes=1 * MIB,
                        l3_bytes=8 * MIB, cache_source="test", l2_gbps=100.0, l3_gbps=40.0,
                        dram_gbps=10.0)


def test_level_picks_the_cache_a_share_fits_in():
    assert LIMITS.level(MIB) == ("L2", 100.0)
    assert LIMITS.level(MIB + 1) == ("L3", 40.0)
    assert LIMITS.level(8 * MIB) == ("L3", 40.0)
    assert LIMITS.level(8 * MIB + 1) == ("DRAM", 10.0)


def test_bandwidth_bound_floor_on_fixed_limits():
    # B=1, 2 threads, 1.5 MiB streamed a step: 0.75 MiB a thread, in L2 (100 GB/s), 10 steps;
    # 4 MiB read once: 2 MiB a thread, in L3 (40 GB/s); empty call 2 us
    f = _limits.row_floor(LIMITS, 1, 1e6, 1.5 * MIB, 10, 4 * MIB, 2e-6)
    want = 10 * 0.75 * MIB / 100e9 + 2 * MIB / 40e9 + 2e-6
    assert f.bound == "bw L2"
    assert f.seconds == pytest.approx(want, rel=1e-12)
    assert f.gemm_seconds == pytest.approx(1e6 / 150e9 + 2e-6, rel=1e-12)
    assert f.percent(2 * want) == pytest.approx(50.0, rel=1e-12)
    # 4 MiB a thread a step: L3; 40 MiB: DRAM
    assert _limits.row_floor(LIMITS, 4, 1e6, 8 * MIB, 1, 0, 0.0).bound == "bw L3"
    g = _limits.row_floor(LIMITS, 2, 1e6, 80 * MIB, 3, 0, 0.0)
    assert g.bound == "bw DRAM"
    assert g.seconds == pytest.approx(3 * 40 * MIB / 10e9, rel=1e-12)


def test_compute_bound_floor_on_fixed_limits():
    # B=5 > 4: FLOPs / (threads x peak) + empty call
    f = _limits.row_floor(LIMITS, 5, 4e9, 1e9, 100, 1e9, 1e-5)
    assert f.bound == "fma"
    assert f.seconds == pytest.approx(4e9 / (2 * 100e9) + 1e-5, rel=1e-12)
    one = _limits.row_floor(LIMITS, 64, 4e9, 0, 1, 0, 0.0, threads=1)
    assert one.seconds == pytest.approx(4e9 / 100e9, rel=1e-12)


def test_precision_floors_on_fixed_limits():
    # compute-bound: the precision's peak (bf16: the faster of its probe and fp32's); int8
    # without a probe has no compute floor
    limits = dataclasses.replace(LIMITS, int8_path="i8-avx512vnni", int8_peak_gops=400.0,
                                 bf16_path="bf16-avx512bf16", bf16_peak_gflops=160.0)
    for precision, peak in (("fp32", 100.0), ("bf16", 160.0), ("int8", 400.0)):
        f = _limits.row_floor(limits, 64, 4e9, 0, 1, 0, 0.0, precision=precision)
        assert f.bound == "fma" and f.seconds == pytest.approx(4e9 / (2 * peak * 1e9), rel=1e-12)
    assert LIMITS.peak("bf16") == 100.0
    assert dataclasses.replace(limits, bf16_peak_gflops=60.0).peak("bf16") == 100.0
    with pytest.raises(ValueError, match="no int8 probe runs for isa avx2"):
        LIMITS.peak("int8")
    with pytest.raises(ValueError, match="precision: expected 'fp32', 'bf16' or 'int8'"):
        LIMITS.peak("fp16")
    # bandwidth-bound: the weights' bytes shrink with the precision (4 / 2 / 1 bytes a weight);
    # the packed columns come from the tile of an ISA this machine has (4H = 1024 columns are
    # whole panels of every tile)
    case = sequences.SeqCase("lstm", 1, 256, 256, 10)
    here = dataclasses.replace(LIMITS, isa=_core.default_isa())
    fp32, bf16, int8 = (quantized.floor(case, here, 0.0, p) for p in ("fp32", "bf16", "int8"))
    assert fp32.bound == bf16.bound == int8.bound == "bw L2"
    assert bf16.seconds == pytest.approx(fp32.seconds / 2, rel=1e-12)
    assert int8.seconds == pytest.approx(fp32.seconds / 4, rel=1e-12)


def test_precision_list_is_parsed_and_checked():
    assert quantized.parse_precisions("int8, fp32,int8") == ("int8", "fp32")
    for bad in ("", "fp32,int4", ","):
        with pytest.raises(ValueError, match="--precision: expected a comma-separated list"):
            quantized.parse_precisions(bad)
    with pytest.raises(ValueError, match="precisions: expected a non-empty sequence"):
        quantized.run(precisions=("fp16",))


def test_precision_grid_has_the_documented_rows():
    ids = [case.id for case in quantized.grid()]
    assert ids == ["lstm-B1-I128-H128-T100", "lstm-B1-I256-H256-T100", "lstm-B1-I512-H512-T100",
                   "lstm-B1-I1024-H1024-T50", "lstm-B64-I512-H512-T50", "gru-B1-I128-H128-T100",
                   "gru-B1-I256-H256-T100", "gru-B1-I512-H512-T100", "gru-B64-I512-H512-T50",
                   "rnn-B1-I512-H512-T100"]
    full = quantized.grid(full=True)
    assert all(c.layers == 1 and c.directions == 1 and not c.variable_lengths for c in full)
    assert len({c.id for c in full}) == len(full) > len(ids)


def _installed(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_precision_table_structure_and_accuracy():
    """A quick run of the precision table on small cases: every contender has a row, fastcells
    int8 / bf16 are within 1.5e-2 / 5e-3 relative L2 of fastcells fp32, the installed peers
    have their accuracy column, the ones without an int8 form are skipped with a reason."""
    cases = [sequences.SeqCase("lstm", 1, 64, 64, 30), sequences.SeqCase("gru", 1, 64, 64, 30),
             sequences.SeqCase("rnn", 1, 64, 64, 30)]
    out = io.StringIO()
    results = quantized.run(out=out, quick=True, cases=cases, rounds=1)
    text = out.getvalue()
    assert "machine: " in text and "limits (this run, this machine)" in text
    header = next(line for line in text.splitlines() if line.startswith("case "))
    for column in ("contender", "prec", "ms", "rel L2", "floor", "bound", "%floor", "other"):
        assert column in header
    ort, torch = _installed("onnxruntime"), _installed("torch")
    for case in cases:
        row = results[case.id]
        assert set(row) == set(quantized.CONTENDERS) | {"other_cores"}
        for name in quantized.CONTENDERS:
            if "unavailable" in row[name]:
                assert row[name]["unavailable"]                      # a reason
                continue
            r = row[name]
            assert r["seconds"] > 0 and r["floor_s"] > 0 and r["bound"].startswith("bw ")
            assert math.isfinite(r["rel_l2"]) and r["rel_l2"] >= 0
        assert row["fastcells-fp32"]["rel_l2"] == 0
        assert row["fastcells-int8"]["rel_l2"] <= 1.5e-2
        assert row["fastcells-bf16"]["rel_l2"] <= 5e-3
        assert row["fastcells-int8"]["precision"] == "int8"
        int8_peers = {"ort-int8": ort and case.kind == "lstm",
                      "torch-int8": torch and case.kind != "rnn"}
        for name, present in {"ort-fp32": ort, "torch-fp32": torch, **int8_peers}.items():
            assert ("rel_l2" in row[name]) == present, (case.id, name, row[name])
            if present:
                bound = 1e-5 if name.endswith("fp32") else quantized.ACCURACY_GUARD
                assert row[name]["rel_l2"] <= bound, (case.id, name, row[name])
                assert row[name]["rel_l2"] > 0 or name.endswith("fp32")
        assert any(line.startswith(case.id + " ") for line in text.splitlines())


def test_sequence_case_work_of_stacks():
    case = sequences.SeqCase("lstm", 1, 64, 64, 100, directions=2, layers=2)
    assert case.id == "lstm-B1-I64-H64-T100-bi-L2"
    # layer 0: I=64; layer 1: I=2H=128; each x 2 directions, 8*B*H*(I+H) per step
    assert case.flops == 100 * 2 * (8 * 64 * (64 + 64) + 8 * 64 * (128 + 64))
    recurrent, once = case.weight_bytes(64)
    assert recurrent == 2 * 64 * 256 * 4
    assert once == 2 * (65 + 129) * 256 * 4
    assert sequences.SeqCase("gru", 1, 8, 10, 1).weight_bytes(16) == (10 * 32 * 4, 9 * 32 * 4)
    limits = dataclasses.replace(LIMITS, isa=_core.default_isa())
    tile_recurrent, tile_once = case.weight_bytes(_core.kernel_tile(limits.isa, np.float32)[1])
    f = sequences.floor(case, limits, 1e-6)
    assert f.bound == "bw L2"             # 2 threads: a share of tens of KiB, in a 1 MiB L2
    # T x layers = 200 steps of each thread's half of both directions' recurrent weights, the
    # input weights once, all at L2's 100 GB/s, plus the empty call
    assert f.seconds == pytest.approx(200 * tile_recurrent / 2 / 100e9
                                      + tile_once / 2 / 100e9 + 1e-6, rel=1e-12)
    with pytest.raises(ValueError, match="directions: expected 1 or 2, got 3"):
        sequences.SeqCase("lstm", 1, 8, 8, 2, directions=3)
    with pytest.raises(ValueError, match="layers: expected >= 1, got 0"):
        sequences.SeqCase("lstm", 1, 8, 8, 2, layers=0)


def test_cell_case_floor_reads_the_packed_kernel_once():
    from fastcells.benchmarks import cells
    limits = dataclasses.replace(LIMITS, isa=_core.default_isa())
    tile = _core.kernel_tile(limits.isa, np.float32)[1]
    cols = -(-4 * 100 // tile) * tile                       # 4H = 400 columns, padded
    f = cells.floor(cells.Case("lstm", 1, 60, 100), limits, 3e-6)
    assert f.bound == "bw L2"
    assert f.seconds == pytest.approx((60 + 100 + 1) * cols * 4 / 2 / 100e9 + 3e-6, rel=1e-12)
    g = cells.floor(cells.Case("rnn", 8, 60, 100), limits, 3e-6)
    assert g.bound == "fma"
    assert g.seconds == pytest.approx(2 * 8 * 100 * 160 / (2 * 100e9) + 3e-6, rel=1e-12)


def test_grid_has_the_small_and_speech_rows():
    ids = {c.id for c in sequences.grid()}
    for want in ("lstm-B1-I32-H32-T63", "lstm-B1-I32-H32-T63-bi", "lstm-B1-I64-H64-T63",
                 "lstm-B1-I64-H64-T63-bi", "lstm-B1-I64-H64-T100-bi-L2",
                 "lstm-B1-I128-H128-T100", "lstm-B16-I256-H256-T100-varlen"):
        assert want in ids


@pytest.mark.parametrize("case", [
    sequences.SeqCase("lstm", 2, 5, 4, 3, directions=2, layers=2),
    sequences.SeqCase("gru", 3, 4, 6, 4, directions=2, variable_lengths=True),
    sequences.SeqCase("rnn", 2, 3, 5, 3, layers=2),
], ids=str)
def test_stacked_cases_check_every_peer(case):
    """make_subject asserts fastcells against the float64 oracle; every peer's first result is
    asserted against fastcells (rtol 1e-5, atol 1e-6); peers that are not installed skip."""
    subject = sequences.make_subject(case)
    width = case.directions * case.H
    assert subject.expected["output"].shape == (case.B, case.T, width)
    assert sum(k.startswith("h_l") for k in subject.expected) == case.layers * case.directions
    made = []
    for peer in sequences.PEERS:
        try:
            sequences.make_runner(peer, subject)
        except sequences.Unavailable:
            continue
        made.append(peer)
    assert {"fastcells", "numpy-loop"} <= set(made)
    sequences.make_subject.cache_clear()


# ---------------------------------------------------------------------------------------------
# Probes and limits
# ---------------------------------------------------------------------------------------------

def test_probes_return_positive_finite_numbers_quickly():
    start = time.perf_counter()
    ran = 0
    for path in _core.PROBE_PATHS:
        if not _core._probe_supported(path):
            continue
        if path.startswith("read-"):
            buf = _limits.aligned_floats(64 << 10)
            total = _core._probe_read(path, buf, 3)
            assert total == pytest.approx(3 * buf.size, rel=1e-6)   # buffer of ones
            gbps = _limits.read_bandwidth(path, 256 << 10, seconds=0.002, repeat=2)
        else:
            assert _core._probe_madd(path, 1000) > 0
            gbps = _limits.madd_peak(path, seconds=0.002, repeat=2)
        assert math.isfinite(gbps) and gbps > 0, (path, gbps)
        ran += 1
    assert ran >= 2                                    # the baseline paths run everywhere
    assert time.perf_counter() - start < 2.0


def test_probe_arguments_are_checked():
    with pytest.raises(ValueError, match="path: expected one of"):
        _core._probe_madd("f32-sve", 10)
    with pytest.raises(ValueError, match="iters: expected >= 1, got 0"):
        _core._probe_madd("f32-baseline", 0)
    buf = _limits.aligned_floats(4096)
    with pytest.raises(ValueError, match="buf: expected a 64-byte aligned float32 array"):
        _core._probe_read("read-baseline", buf[1:129], 1)
    with pytest.raises(ValueError, match="buf: expected a 64-byte aligned"):
        _core._probe_read("read-baseline", buf[:100], 1)
    with pytest.raises(ValueError, match="passes: expected >= 1, got 0"):
        _core._probe_read("read-baseline", buf, 0)


def test_probe_path_the_cpu_lacks_is_refused():
    buf = _limits.aligned_floats(4096)
    missing = [p for p in _core.PROBE_PATHS if not _core._probe_supported(p)]
    if not missing:
        pytest.skip("every probe path runs on this CPU: no unsupported path to refuse")
    with pytest.raises(RuntimeError, match="does not run on this CPU"):
        if missing[0].startswith("read-"):
            _core._probe_read(missing[0], buf, 1)
        else:
            _core._probe_madd(missing[0], 10)


def test_fp32_probe_follows_the_dispatched_isa():
    assert _limits.FMA_PATH[_core.default_isa()] in _core.PROBE_PATHS
    assert _core._probe_supported(_limits.FMA_PATH[_core.default_isa()])


def test_cache_sizes_parse_sysfs(tmp_path):
    for index, (level, kind, size, shared) in enumerate([
            (1, "Data", "48K", "0"), (1, "Instruction", "32K", "0"),
            (2, "Unified", "2048K", "0"), (3, "Unified", "32M", "0-3,8-11")]):
        d = tmp_path / f"index{index}"
        d.mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size),
                            ("shared_cpu_list", shared)):
            (d / name).write_text(f"{value}\n")
    caches = _limits._sysfs_caches(str(tmp_path))
    assert caches == {1: (48 << 10, 1), 2: (2 << 20, 1), 3: (32 << 20, 8)}
    assert _limits._sysfs_caches(str(tmp_path / "missing")) == {}
    l2, l3, source = _limits.cache_sizes()
    assert l2 > 0 and l3 > 0 and source in ("sysfs", "sysconf", "defaults")


def test_machine_line_names_cpu_threads_and_isa():
    line = _limits.machine_line(3)
    assert line.startswith("machine: ")
    assert "3 thread(s)" in line and f"isa {_core.default_isa()}" in line


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------

def _fastcells_cli(*args, timeout=120):
    env = dict(os.environ)
    # where the tested package lives: the checkout when built in place, site-packages when
    # installed (the checkout's source folder then has no compiled _core)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastcells.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "fastcells", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=root)


def test_bench_seq_help():
    res = _fastcells_cli("bench-seq", "--help")
    assert res.returncode == 0, res.stderr
    for option in ("--quick", "--rounds", "--case", "--precision"):
        assert option in res.stdout


def test_bench_seq_unknown_case_is_refused():
    res = _fastcells_cli("bench-seq", "--case", "lstm-B0")
    assert res.returncode == 2
    assert "--case: expected ids of the bench-seq grid" in res.stderr and "lstm-B0" in res.stderr


def test_bench_seq_tiny_quick_run_prints_floor_columns():
    res = _fastcells_cli("bench-seq", "--quick", "--rounds", "1", "--case",
                         "lstm-B1-I32-H32-T63")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "machine: " in out and "limits (this run, this machine)" in out
    header = next(line for line in out.splitlines() if line.startswith("case "))
    for column in ("floor", "bound", "%floor", "%gemm", "best x"):
        assert column in header
    row = next(line for line in out.splitlines() if line.startswith("lstm-B1-I32-H32-T63 "))
    assert "bw L" in row or "bw DRAM" in row


def test_bench_seq_precision_is_checked():
    res = _fastcells_cli("bench-seq", "--precision", "fp32,int4")
    assert res.returncode == 2
    assert "--precision: expected a comma-separated list of fp32, bf16, int8" in res.stderr
    res = _fastcells_cli("bench", "--precision", "int8")
    assert res.returncode == 2 and "--precision: expected with bench-seq" in res.stderr
    res = _fastcells_cli("bench-seq", "--precision", "int8", "--case", "lstm-B1-I64-H64-T100-bi")
    assert res.returncode == 2
    assert "--case: expected ids of the bench-seq --precision grid" in res.stderr


def test_bench_seq_precision_tiny_quick_run_prints_every_contender():
    res = _fastcells_cli("bench-seq", "--quick", "--rounds", "1", "--precision", "int8,bf16",
                         "--case", "lstm-B1-I32-H32-T63")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    header = next(line for line in lines if line.startswith("case "))
    assert "rel L2" in header and "%floor" in header
    start = next(i for i, line in enumerate(lines) if line.startswith("lstm-B1-I32-H32-T63 "))
    names = [line.split()[0] for line in [lines[start][len("lstm-B1-I32-H32-T63"):]]
             + lines[start + 1:start + 6]]
    assert names == ["fastcells-int8", "fastcells-bf16", "ort-fp32", "ort-int8", "torch-fp32",
                     "torch-int8"]
