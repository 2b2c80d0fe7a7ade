"""pytest-benchmark suite of fastcells beside its peers (bench/test_bench_cells.py).

    pytest bench/ --benchmark-only                        the default grid (~3 min on 2 cores)
    FASTCELLS_BENCH_FULL=1 pytest bench/ --benchmark-only  the bigger grid

Not collected by a plain `pytest` (pyproject's testpaths = ["tests"]). After pytest-benchmark's
tables, a summary per group (one group per case): the ratio peer time / fastcells-call time and
fastcells' GFLOP/s, from the minimum round time of each benchmark of this same run. With
--benchmark-json the same ratios are written under the key "fastcells_ratios".
"""
import importlib.util
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

from peers import BASELINE, PEER_NAMES

_RESULTS = pytest.StashKey[list]()


def pytest_configure(config):
    config.stash[_RESULTS] = []


class _Recorder:
    def __init__(self, rows):
        self._rows = rows

    def record(self, case, peer, benchmark, other_cores=None):
        """Keeps (group, peer, min s, median s, flops, other cores) of a finished benchmark."""
        meta = benchmark.stats               # None when benchmarks are disabled
        if meta is None or not getattr(meta, "stats", None):
            return
        self._rows.append((case.id, peer, meta.stats.min, meta.stats.median, case.flops,
                           other_cores))


@pytest.fixture
def bench_results(request):
    return _Recorder(request.config.stash[_RESULTS])


def ratios(rows):
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
        base = g["times"].get(BASELINE)
        if not base:
            continue
        entry = {"flops": g["flops"], f"{BASELINE}_s": base, "gflops": g["flops"] / base / 1e9,
                 "other_cores": g["others"]}
        entry.update({p: t / base for p, t in g["times"].items() if p != BASELINE})
        result[group] = entry
    return result


def summary_lines(rows):
    table = ratios(rows)
    if not table:
        return []
    others = [p for p in PEER_NAMES if p != BASELINE]
    width = max(len(p) for p in others) + 2
    lines = [f"ratio = peer time / {BASELINE} time, from the min round of each benchmark in this "
             f"run (> 1: fastcells cell(x, state) is faster); GFLOP/s of {BASELINE}; other = "
             f"most cores other processes used during one of the group's benchmarks (above ~0.2 "
             f"the group is disturbed: rerun it, e.g. with -k)",
             f"{'group (case)':<24}{'call us':>9}{'GFLOP/s':>9}" + "".join(
                 f"{p:>{width}}" for p in others) + f"{'other':>7}"]
    lines.append("-" * len(lines[-1]))
    for group, e in table.items():
        cells = "".join(f"{e[p]:>{width}.2f}" if p in e else f"{'-':>{width}}" for p in others)
        load = "-" if e["other_cores"] is None else f"{e['other_cores']:.1f}"
        lines.append(f"{group:<24}{e[f'{BASELINE}_s'] * 1e6:>9.2f}{e['gflops']:>9.1f}{cells}"
                     f"{load:>7}")
    return lines


@pytest.hookimpl(trylast=True)          # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = summary_lines(config.stash.get(_RESULTS, []))
    if lines:
        terminalreporter.write_sep("-", "fastcells vs peers: one cell call")
        for line in lines:
            terminalreporter.write_line(line)


if pytest_benchmark is not None:
    def pytest_benchmark_update_json(config, benchmarks, output_json):
        """Adds "fastcells_ratios" (as the terminal summary) to --benchmark-json's output."""
        rows = [(b["group"], b["extra_info"].get("peer"), b["stats"]["min"],
                 b["stats"]["median"], b["extra_info"].get("flops"),
                 b["extra_info"].get("other_cores"))
                for b in output_json.get("benchmarks", []) if "peer" in b.get("extra_info", {})]
        output_json["fastcells_ratios"] = ratios(rows)
