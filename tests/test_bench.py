"""Smoke test of bench/time_epochs.py: a tiny run writes every promised output.

No speed is asserted here; speed claims live in the bench's own output.
"""
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "time_epochs.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("time_epochs", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiny_run_writes_json_markdown_and_plot(bench, tmp_path):
    res = bench.main(["--quick", "--rows", "600", "--repeats", "2", "--scaling-rows", "300", "900",
                      "--loop-rows", "5", "--floor-sizes", "16", "32", "--no-subprocess", "--no-torch",
                      "--no-sklearn", "--random-data", "--out", str(tmp_path)])
    for name in ("bench.json", "bench.md", "scaling.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(res) <= set(data)
    for key in ("command", "config", "machine", "data_source", "data_is_real", "iteration",
                "compile", "scaling", "attribution", "goals", "checks", "total_s"):
        assert key in data, key
    assert data["data_is_real"] is False and "RANDOM" in data["data_source"]
    for key in ("cpu_model", "cpu_vector_features", "llvm_cpu", "blas", "logical_cores", "numpy",
                "numba", "torch", "numba_num_threads", "OPENBLAS_CORETYPE",
                "OPENBLAS_CORETYPE_is_set", "OPENBLAS_L2_SIZE"):
        assert key in data["machine"], key
    assert data["command"].startswith("python bench/time_epochs.py --quick --rows 600")

    it = data["iteration"]
    assert it["n_rows"] == 600 and it["flops_per_iteration"] > 0
    impls = {(r["impl"], r["dtype"], r["threads"]) for r in it["results"]}
    assert {("numba", "float64", 1), ("numba", "float32", 2),
            ("numpy-ref", "float64", "blas")} <= impls
    for r in it["results"]:
        assert 0 < r["min_ms"] <= r["q1_ms"] <= r["median_ms"] <= r["q3_ms"] <= r["max_ms"]
        assert r["repeats"] == 2 and r["gflops"] > 0 and r["speedup_vs_ref64"] > 0
    # one floor per dtype and thread count (the faster of the two sizes), and every
    # numba case is set against the floor of its own dtype and threads
    floors = [r for r in it["results"] if r["impl"] == "floor"]
    assert {(r["dtype"], r["threads"]) for r in floors} == {(d, k) for d in ("float32", "float64")
                                                            for k in (1, 2)}
    assert all(r["floor_size"] in (16, 32) for r in floors)
    for r in it["results"]:
        if r["impl"] == "numba":
            assert r["x_floor"]["q1"] <= r["x_floor"]["median"] <= r["x_floor"]["q3"]
    goals = {g["key"]: g for g in data["goals"]}
    assert {"float32_x_floor", "float64_x_floor", "attribution_vs_loop",
            "attribution_vs_reference"} <= set(goals)
    assert "float32_vs_torch" not in goals          # --no-torch: not measured, not claimed
    md = (tmp_path / "bench.md").read_text()
    for g in data["goals"]:
        assert g["met"] == (g["value"] <= g["target"] if g["op"] == "<=" else g["value"] >= g["target"])
        assert f"| {g['goal']} |" in md
    assert md.startswith("Command: `python bench/time_epochs.py --quick")
    assert "AVX-512" in md and "BLAS:" in md
    assert "Consistency checks" in md

    rows = [p["rows"] for p in data["scaling"]["points"]]
    assert rows == [300, 900]
    for p in data["scaling"]["points"]:
        for key in ("numba_float64", "numba_float32", "numpy-ref_float64"):
            assert p[key]["median_ms"] > 0
    assert set(data["scaling"]["slopes"]) == {"numba_float64", "numba_float32",
                                              "numpy-ref_float64"}
    at = data["attribution"]
    assert at["kernel"]["median_ms"] > 0 and at["speedup_vs_loop"] > 0
    assert at["speedup_vs_reference"] > 0
    assert "| numba | float64 | 1 |" in md
    assert data["side_by_side"] == {"skipped": "--no-subprocess"}   # needs worker processes


def test_bad_flag_value_names_the_flag(bench):
    with pytest.raises(ValueError, match="--repeats 0"):
        bench.parse_args(["--repeats", "0"])
    with pytest.raises(ValueError, match="--threads"):
        bench.parse_args(["--threads", "99"])


def test_flop_count_by_hand(bench):
    # 2-3-2 net, n = 10: layer 0 forward + dW = 2*10*2*3*2 = 240,
    # layer 1 forward + dW + dX = 2*10*3*2*3 = 360
    assert bench.iteration_flops([2, 3, 2], 10) == 600


def test_shift_sweep_scores_cases_of_the_independent_generator(tmp_path):
    """``bench/shift_sweep.py`` end to end on two small cases: the table it writes says
    whether each verdict was right (a control and a planted broken relationship)."""
    import subprocess
    import sys
    import pandas as pd
    res = subprocess.run([sys.executable, str(BENCH.parent / "shift_sweep.py"), "--seeds", "1",
                          "--mech", "none,relationship_broken", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    df = pd.read_csv(tmp_path / "results.csv")
    assert list(df["mechanism"]) == ["none", "relationship_broken"]
    assert df["right"].all(), df[["mechanism", "kinds", "suspects", "culprits"]]
    assert df.loc[1, "suspects"] == df.loc[1, "culprits"]
    assert "hit rate per mechanism" in (tmp_path / "summary.md").read_text()


def _result(impl, dtype, threads, ms):
    return {"impl": impl, "dtype": dtype, "threads": threads, "median_ms": ms}


def _res(results, points=(), side=None, goals_extra=None):
    """A minimal bench result for ``evaluate``."""
    return {"config": {"threads": [1, 2]}, "machine": {"numba_num_threads": 2},
            "iteration": {"n_rows": 33078, "results": results, "floors": {}},
            "scaling": {"points": list(points)}, "compile": {},
            "attribution": {"skipped": "test"}, "side_by_side": side or {}}


def test_checks_flag_a_reference_slower_on_fewer_rows(bench):
    """The contradiction of the issue: the NumPy reference at 10,000 rows (part 3)
    slower than on all 33,078 rows (part 1)."""
    res = _res([_result("numpy-ref", "float64", "blas", 142.6)],
               points=[{"rows": 10000, "numpy-ref_float64": {"median_ms": 472.0}}])
    goals, checks = bench.evaluate(res)
    assert len(checks) == 1 and "numpy-ref_float64 took 472.0 ms at 10,000 rows" in checks[0]
    assert "slower on fewer rows" in checks[0]
    ok = _res([_result("numpy-ref", "float64", "blas", 142.6)],
              points=[{"rows": 10000, "numpy-ref_float64": {"median_ms": 45.0}}])
    assert bench.evaluate(ok)[1] == []


def test_checks_flag_design_ratios_below_one(bench):
    side = {"results": {"float32": {"throughput_ratio": 0.97, "in_process_threads": 2},
                        "float64": {"throughput_ratio": 1.12, "in_process_threads": 2}}}
    res = _res([_result("numba", "float32", 1, 10.0), _result("numba", "float32", 2, 11.0)],
               side=side)
    checks = bench.evaluate(res)[1]
    assert len(checks) == 2
    assert any("2 threads 11.00 ms, slower than 1 thread" in c for c in checks)
    assert any("float32: two 1-thread workers get 0.97x" in c and "run_all.py" in c for c in checks)


def test_every_goal_is_met_or_missed_on_its_unrounded_value(bench):
    """99.4x is a miss of '>= 100x' (printed 99.4, never rounded to 100), 1.5 meets '<= 1.5'."""
    g = bench._goal("attribution_vs_loop", 99.4)
    assert not g["met"] and bench._goal_text(g) == "99.4"
    assert bench._goal("float32_x_floor", 1.5)["met"]
    assert not bench._goal("float32_x_floor", 1.5001)["met"]
    assert bench._goal("float32_vs_torch", 1.3)["met"]
    assert set(bench.GOALS) >= {"float32_x_floor", "float64_x_floor", "float32_vs_torch"}


def test_floor_step_makes_the_flops_it_is_asked_for(bench):
    step, made = bench.floor_step(10 ** 7, "float32", 2, 32)
    step()
    assert made == 2 * 32 ** 3 * round(10 ** 7 / (2 * 32 ** 3))
    assert abs(made - 10 ** 7) <= 32 ** 3


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="reads Linux's /proc")
def test_peak_memory_counts_the_command_and_its_children(tmp_path):
    """bench/peak_memory.py: the exit code passes through; the largest process's peak and the
    sum over the command and the child it starts cover what each of them allocated."""
    import subprocess
    import sys
    script = Path(__file__).resolve().parents[1] / "bench" / "peak_memory.py"
    hold = "b = bytearray(60 << 20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(1.5)"
    parent = (f"import subprocess, sys; c = subprocess.Popen([sys.executable, '-c', {hold!r}]); "
              f"{hold}; c.wait(); sys.exit(3)")
    out = tmp_path / "m.json"
    done = subprocess.run([sys.executable, str(script), "--interval", "0.05", "--json", str(out), "--",
                           sys.executable, "-c", parent], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    r = json.loads(out.read_text())
    assert r["exit_code"] == 3 and "largest process's peak resident set" in done.stderr
    assert r["largest_process_peak_rss_kb"] >= 60 << 10
    assert r["peak_total_pss_kb"] >= 2 * (60 << 10) and r["peak_total_rss_kb"] >= r["peak_total_pss_kb"]
    bad = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert bad.returncode == 2 and "give the command to measure after --" in bad.stderr
