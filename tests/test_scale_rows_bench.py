"""bench/scale_rows.py: a tiny run writes both training modes and a cluster step whose
gradient agrees with the one-process step."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_tiny_scale_rows_run(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "bench" / "scale_rows.py"), "--sizes", "5000",
                           "--repeats", "1", "--cluster-rows", "20000", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads((tmp_path / "scale_rows.json").read_text())
    modes = {(r["rows"], r["mode"]) for r in res["scaling"]}
    assert modes == {(5000, "fullbatch"), (5000, "minibatch")}
    assert all(r["epoch_s_median"] > 0 and r["peak_mb"] > r["x_mb"] for r in res["scaling"])
    cl = res["cluster_step"]
    if "skipped" in cl:
        assert not os.environ.get("CI"), "CI installs dask: the cluster step must run"
    else:
        assert cl["max_abs_gradient_difference"] < 1e-10 and cl["loss_difference"] < 1e-10
        assert cl["bytes_out_per_step"] > 0 and cl["cluster_ms"][1] > 0
    assert (tmp_path / "scale_rows.md").read_text().count("|") > 10
