"""pytest-benchmark suites of fastcells beside its peers: one cell call
(bench/test_bench_cells.py), a whole sequence (bench/test_bench_sequences.py) and the
input-projection GEMM (bench/test_bench_gemm.py).

    pytest bench/ --benchmark-only                        the default grids
    FASTCELLS_BENCH_FULL=1 pytest bench/ --benchmark-only  the bigger grids

Not collected by a plain `pytest` (pyproject's testpaths = ["tests"]). pytest-benchmark times
one function per test, one after another; a comparison of peers timed minutes apart on a shared
machine is not one. So after the tests, every group (one per case) is timed again by
fastcells.benchmarks._harness.round_robin (rounds that each time every peer of the group once,
in a rotated order; a peer's time = the minimum over rounds of its round's median), and the
summary per suite and group prints those: the ratio peer time / baseline time (the suite's
fastcells benchmark), the baseline's GFLOP/s and, where the suite gives a floor, the row's floor
on this machine and % of floor (fastcells.benchmarks._limits, limits measured by this run).
With --benchmark-json the same ratios are written under the key "fastcells_ratios" (one entry
per group, every suite). FASTCELLS_BENCH_ROUNDS sets the rounds (default 5).

A suite other than the cell one describes itself to ``bench_results.record(..., suite=SUITE)``
with a dict: name, title, baseline (peer name), peers (names in column order), unit ("us" or
"ms": the baseline time column), optionally peer_gflops (True: a GFLOP/s column per peer) and
note (a line printed under the title), floor (floor(case, limits) -> _limits.Floor: the
floor columns). Its tests put extra_info["baseline"] for the JSON, and pass compare=(make_subject,
make_runner) to record (bench_peer does) so that the summary can time the group round robin.
"""
import importlib.util
import os
import pathlib
import sys

import pytest

if importlib.util.find_spec("fastcells") is None:
    # An in-tree build (python setup.py build_ext --inplace) that is not pip-installed: import
    # the checkout's package, as `python -m pytest` would.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

try:
    import pytest_benchmark
except ImportError:                      # the test module skips with the reason
    pytest_benchmark = None

import fastcells  # noqa: E402
from fastcells.benchmarks import (Unavailable, _harness, _limits, cells,  # noqa: E402
                                  cpu_snapshot, other_cores, warm_up)
from fastcells.benchmarks.cells import BASELINE, PEERS  # noqa: E402

_RESULTS = pytest.StashKey[list]()              # rows of the cell suite (as before)
_SUITES = pytest.StashKey[dict]()               # name -> (suite dict, rows), other suites
_COMPARE = pytest.StashKey[dict]()              # (suite name, group) -> (case, peers, compare)
ROUNDS_ENV = "FASTCELLS_BENCH_ROUNDS"

CELL_SUITE = {"name": "cell", "title": "one cell call", "baseline": BASELINE,
              "peers": tuple(PEERS), "unit": "us",
              "floor": lambda case, limits: cells.floor(case, limits, cells.empty_call(case))}


def pytest_configure(config):
    config.stash[_RESULTS] = []
    config.stash[_SUITES] = {}
    config.stash[_COMPARE] = {}


class _Recorder:
    def __init__(self, rows, suites, compare):
        self._rows = rows
        self._suites = suites
        self._compare = compare

    def record(self, case, peer, benchmark, other_cores=None, suite=None, compare=None):
        """Keeps (group, peer, min s, median s, flops, other cores) of a finished benchmark,
        under `suite` (a dict, see the module docstring; None: the cell suite); compare:
        (make_subject(case), make_runner(peer, subject)) to time the group round robin."""
        meta = benchmark.stats               # None when benchmarks are disabled
        if meta is None or not getattr(meta, "stats", None):
            return
        suite = CELL_SUITE if suite is None else suite
        if suite["name"] == CELL_SUITE["name"]:
            rows = self._rows
        else:
            rows = self._suites.setdefault(suite["name"], (suite, []))[1]
        rows.append((case.id, peer, meta.stats.min, meta.stats.median, case.flops, other_cores))
        if compare is not None:
            entry = self._compare.setdefault((suite["name"], case.id), (case, [], compare))
            entry[1].append(peer)


@pytest.fixture
def bench_results(request):
    return _Recorder(request.config.stash[_RESULTS], request.config.stash[_SUITES],
                     request.config.stash[_COMPARE])


@pytest.fixture
def bench_peer(benchmark, bench_results):
    """``bench_peer(case, peer, make_subject, make_runner, warm_seconds=0.1, suite=None)``:
    builds the case's subject (asserting fastcells against the float64 oracle) and the peer's
    runner (asserting its first output; an Unavailable peer skips with the reason), then
    benchmarks runner.fn inside runner.context() after a warm-up (see
    fastcells.benchmarks.warm_up: why, besides caches) and records it for the summary."""
    def run(case, peer, make_subject, make_runner, warm_seconds=0.1, suite=None):
        subject = make_subject(case)
        try:
            runner = make_runner(peer, subject)
        except Unavailable as e:
            pytest.skip(f"{peer}: {e}")
        benchmark.extra_info["checked_against"] = runner.checked
        before = cpu_snapshot()
        with runner.context():
            warm_up(runner.fn, warm_seconds)
            benchmark(runner.fn)
        others = other_cores(before, cpu_snapshot())
        benchmark.extra_info["other_cores"] = others
        bench_results.record(case, peer, benchmark, others, suite=suite,
                             compare=(make_subject, make_runner))
    return run


def compare_groups(compare, rounds, samples=5, min_seconds=0.005, limits=None,
                   floors=None):
    """Times every recorded group again, its peers round robin (_harness.round_robin), and
    returns rows (group, peer, seconds (minimum of medians), seconds, flops, other cores) in
    the shape of the recorded ones, plus {group: Floor} for suites with a floor
    (floors: {suite name: floor(case, limits)})."""
    rows, floor_of = {}, {}
    for (suite_name, group), (case, peers, (make_subject, make_runner)) in compare.items():
        floor = (floors or {}).get(suite_name)
        if floor is not None and limits is not None:
            floor_of[group] = floor(case, limits)
        subject = make_subject(case)
        runners = {}
        for peer in peers:
            try:
                runners[peer] = make_runner(peer, subject)
            except Unavailable:
                continue
        result = _harness.round_robin(runners, rounds, samples, min_seconds,
                                      slow_call=(0.05, 3))
        rows.setdefault(suite_name, []).extend(
            (group, peer, t, t, case.flops, result.other_cores)
            for peer, t in result.seconds.items())
    return rows, floor_of


@pytest.hookimpl(hookwrapper=True, tryfirst=True)   # outside pytest-benchmark's own wrapper,
def pytest_sessionfinish(session, exitstatus):       # which saves its JSON
    _compare_round_robin(session.config)
    yield


def _compare_round_robin(config):
    compare = config.stash.get(_COMPARE, {})
    if not compare:
        return
    rounds = int(os.environ.get(ROUNDS_ENV) or 5)
    floors = {CELL_SUITE["name"]: CELL_SUITE["floor"]}
    for suite, _rows in config.stash.get(_SUITES, {}).values():
        if suite.get("floor") is not None:
            floors[suite["name"]] = suite["floor"]
    limits = _limits.measure_limits(fastcells.get_num_threads())
    rows, floor_of = compare_groups(compare, rounds, limits=limits, floors=floors)
    config.stash[_ROUND_ROBIN] = (rows, floor_of, limits, rounds)


_ROUND_ROBIN = pytest.StashKey[tuple]()        # (rows by suite, {group: Floor}, limits, rounds)


def ratios(rows, baseline=BASELINE):
    """{group: {"flops", "fastcells-call_s", "gflops", "other_cores", peer: peer time / baseline
    time}} from rows (group, peer, min s, median s, flops, other cores); "other_cores" is the
    most any of the group's benchmarks saw other processes use (None off Linux); groups without
    a baseline time are left out."""
    groups = {}
    for group, peer, best, _median, flops, others in rows:
        g = groups.setdefault(group, {"flops": flops, "times": {}, "others": None})
        g["times"][peer] = best
        if others is not None:
            g["others"] = max(others, g["others"] or 0.0)
    result = {}
    for group, g in groups.items():
        base = g["times"].get(baseline)
        if not base:
            continue
        entry = {"flops": g["flops"], f"{baseline}_s": base, "gflops": g["flops"] / base / 1e9,
                 "other_cores": g["others"]}
        entry.update({p: t / base for p, t in g["times"].items() if p != baseline})
        result[group] = entry
    return result


def summary_lines(rows, suite=None, floors=None):
    """The summary table of one suite from rows (group, peer, seconds, ...); floors: {group:
    Floor} adds the floor columns."""
    suite = CELL_SUITE if suite is None else suite
    floors = floors or {}
    baseline, unit = suite["baseline"], suite.get("unit", "us")
    table = ratios(rows, baseline)
    if not table:
        return []
    others = [p for p in suite["peers"] if p != baseline]
    width = max(len(p) for p in others) + 2
    scale = 1e6 if unit == "us" else 1e3
    subject = "fastcells cell(x, state)" if suite is CELL_SUITE else baseline
    time_col = f"call {unit}" if suite is CELL_SUITE else f"{baseline[:9]} {unit}"
    gw = max(len(time_col) + 2, 9)
    peer_gflops = suite.get("peer_gflops", False)
    lines = [f"ratio = peer time / {baseline} time, both timed round robin in this run (the "
             f"minimum over rounds of each round's median; > 1: {subject} is faster); GFLOP/s "
             f"of {baseline}"
             + (" and of each peer" if peer_gflops else "") + "; other = cores other "
             "processes used while the group was timed round robin (above ~0.2 the group is "
             "disturbed: rerun it, e.g. with -k)"]
    if suite.get("note"):
        lines.append(suite["note"])
    gwidth = max(len(p) for p in others) + 10
    name_w = max(24, max(len(g) for g in table) + 2)
    lines.append(f"{'group (case)':<{name_w}}{time_col:>{gw}}{'GFLOP/s':>9}" + "".join(
        f"{p:>{width}}" for p in others)
        + ("".join(f"{p + ' GFLOP/s':>{gwidth}}" for p in others) if peer_gflops else "")
        + (f"{'floor ' + unit:>10}{'bound':>8}{'%floor':>7}" if floors else "")
        + f"{'other':>7}")
    lines.append("-" * len(lines[-1]))
    for group, e in table.items():
        cells = "".join(f"{e[p]:>{width}.2f}" if p in e else f"{'-':>{width}}" for p in others)
        if peer_gflops:
            cells += "".join(f"{e['gflops'] / e[p]:>{gwidth}.1f}" if p in e
                             else f"{'-':>{gwidth}}" for p in others)
        if floors:
            f = floors.get(group)
            cells += (f"{f.seconds * scale:>10.3f}{f.bound:>8}"
                      f"{f.percent(e[f'{baseline}_s']):>7.1f}" if f is not None
                      else f"{'-':>10}{'-':>8}{'-':>7}")
        load = "-" if e["other_cores"] is None else f"{e['other_cores']:.1f}"
        lines.append(f"{group:<{name_w}}{e[f'{baseline}_s'] * scale:>{gw}.3f}"
                     f"{e['gflops']:>9.1f}{cells}{load:>7}")
    return lines


@pytest.hookimpl(trylast=True)          # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _ROUND_ROBIN not in config.stash:
        return
    rows_by_suite, floor_of, limits, rounds = config.stash[_ROUND_ROBIN]
    terminalreporter.write_sep("-", f"fastcells vs peers: {rounds} round-robin rounds per group")
    for line in [_limits.machine_line()] + limits.lines():
        terminalreporter.write_line(line)
    lines = summary_lines(rows_by_suite.get(CELL_SUITE["name"], []), CELL_SUITE, floor_of)
    if lines:
        terminalreporter.write_sep("-", "fastcells vs peers: one cell call")
        for line in lines:
            terminalreporter.write_line(line)
    for suite, _rows in config.stash.get(_SUITES, {}).values():
        lines = summary_lines(rows_by_suite.get(suite["name"], []), suite,
                              floor_of if suite.get("floor") else None)
        if lines:
            terminalreporter.write_sep("-", f"fastcells vs peers: {suite['title']}")
            for line in lines:
                terminalreporter.write_line(line)


if pytest_benchmark is not None:
    def pytest_benchmark_update_json(config, benchmarks, output_json):
        """Adds "fastcells_ratios" (as the terminal summaries: every suite's groups timed round
        robin; a group's baseline is its benchmarks' extra_info["baseline"], else
        fastcells-call) to --benchmark-json's output; without the round-robin times (no group
        recorded) the ratios of pytest-benchmark's minimum times."""
        if _ROUND_ROBIN in config.stash:
            rows_by_suite = config.stash[_ROUND_ROBIN][0]
            suites = {CELL_SUITE["name"]: CELL_SUITE}
            suites.update({s["name"]: s for s, _ in config.stash.get(_SUITES, {}).values()})
            result = {}
            for name, rows in rows_by_suite.items():
                result.update(ratios(rows, suites[name]["baseline"]))
            output_json["fastcells_ratios"] = result
            return
        by_baseline = {}
        for b in output_json.get("benchmarks", []):
            info = b.get("extra_info", {})
            if "peer" not in info:
                continue
            by_baseline.setdefault(info.get("baseline", BASELINE), []).append(
                (b["group"], info.get("peer"), b["stats"]["min"], b["stats"]["median"],
                 info.get("flops"), info.get("other_cores")))
        result = {}
        for baseline, rows in by_baseline.items():
            result.update(ratios(rows, baseline))
        output_json["fastcells_ratios"] = result
