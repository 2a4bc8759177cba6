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
                      "--loop-rows", "5", "--peak-size", "100", "--no-subprocess", "--no-torch",
                      "--no-sklearn", "--random-data", "--out", str(tmp_path)])
    for name in ("bench.json", "bench.md", "scaling.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(res) <= set(data)
    for key in ("config", "machine", "data_source", "data_is_real", "matmul_peak", "iteration",
                "compile", "scaling", "attribution", "total_s"):
        assert key in data, key
    assert data["data_is_real"] is False and "RANDOM" in data["data_source"]
    for key in ("cpu_model", "logical_cores", "numpy", "numba", "torch", "numba_num_threads",
                "OPENBLAS_CORETYPE", "OPENBLAS_CORETYPE_is_set", "OPENBLAS_L2_SIZE"):
        assert key in data["machine"], key

    it = data["iteration"]
    assert it["n_rows"] == 600 and it["flops_per_iteration"] > 0
    impls = {(r["impl"], r["dtype"], r["threads"]) for r in it["results"]}
    assert {("numba", "float64", 1), ("numba", "float32", 2),
            ("numpy-ref", "float64", "blas")} <= impls
    for r in it["results"]:
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"] and r["repeats"] == 2
        assert r["gflops"] > 0 and r["speedup_vs_ref64"] > 0
    assert all(v["gflops"] > 0 for v in data["matmul_peak"].values())

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
    assert "| numba | float64 | 1 |" in (tmp_path / "bench.md").read_text()
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
