"""Rows scaling of full-batch and mini-batch training, and the Dask cluster's step.

1. **Rows scaling** (issue #23): for 1e4 ... 1e7 generated rows (8 features, a
   8-64-64-4 ReLU network, float32 as ``run_all.py``), the time of one epoch of
   full-batch gradient descent (one step over every row) and of mini-batch Adam
   (``--batch-size`` rows a step, default 512), each in a fresh child process
   that also reports its peak memory (``ru_maxrss``) beside the size of X.
   Medians of ``--repeats`` epochs after one warm-up epoch; compile time is not
   in them (the kernels load from numba's cache in the warm-up).
2. **Cluster step**: one full-batch step at ``--cluster-rows`` rows (default
   1e6) computed by a local Dask cluster of two single-threaded workers holding
   the rows (``cluster.py``) against the same step in one process with two
   numba threads, timed alternately (A B A B), medians and spread, and the
   bytes that cross per step (weights out to each worker, one gradient back per
   partition). Skipped with a note when dask.distributed is not installed.

    python bench/scale_rows.py            # 1e4 .. 1e7 rows, a few minutes
    python bench/scale_rows.py --quick    # 1e4 .. 1e5 rows and a 1e5-row cluster step, < 1 min

Writes ``scale_rows.json`` and ``scale_rows.md`` to ``--out`` (default out/bench).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FEATURES, CLASSES, HIDDEN = 8, 4, (64, 64)


def _rows(n, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, FEATURES)).astype(dtype)
    y = (np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.7, 0.0, 0.7])).astype(np.int64)
    return X, y


def child(n, mode, batch, repeats):
    """In a fresh process: median seconds of one epoch, and the peak memory."""
    import mlp
    X, y = _rows(n)
    kw = dict(hidden=HIDDEN, n_iter=1, seed=0, dtype="float32")
    if mode == "minibatch":
        kw.update(batch_size=batch, solver="adam", lr=0.001)
    mlp.MLP(**kw).fit(X[:2000], y[:2000])                  # warm-up: kernels from the cache
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        mlp.MLP(**kw).fit(X, y)
        times.append(time.perf_counter() - t)
    times = times[1:]                                        # the first epoch: warm caches
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rows": n, "mode": mode, "batch_size": batch if mode == "minibatch" else None,
                      "epoch_s_median": float(np.median(times)), "epoch_s_min": min(times),
                      "epoch_s_max": max(times), "peak_mb": peak / 2**20,
                      "x_mb": X.nbytes / 2**20}))


def scaling(sizes, batch, repeats):
    out = []
    for n in sizes:
        for mode in ("fullbatch", "minibatch"):
            r = repeats if n <= 10**6 else 1
            done = subprocess.run([sys.executable, __file__, "--child", str(n), mode, str(batch),
                                   str(r)], capture_output=True, text=True, timeout=3600)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  {n:>10,} rows  {mode:<9}  epoch {row['epoch_s_median']:8.3f} s "
                  f"(min {row['epoch_s_min']:.3f}, max {row['epoch_s_max']:.3f})  "
                  f"peak {row['peak_mb']:7.0f} MB (X {row['x_mb']:.0f} MB)", flush=True)
            out.append(row)
    return out


def cluster_step(n, repeats):
    try:
        import distributed  # noqa: F401
    except ImportError:
        return {"skipped": "dask.distributed is not installed (pip install -r "
                           "requirements-cluster.txt)"}
    import numba
    import cluster
    import mlp
    X, y = _rows(n, dtype=np.float64)
    net = mlp.MLP(hidden=HIDDEN, dtype="float64", seed=0)
    sizes = [FEATURES, *HIDDEN, CLASSES]
    theta, sizes = net._init_params(sizes, np.float64)
    code = mlp.activation_code("relu")
    w = np.ones(n)
    client = cluster.connect("local:2")
    try:
        parts = cluster.scatter_rows(client, X, y, n_parts=2)
        rows = cluster._ClusterRows(parts, np.ones(CLASSES))
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        one = lambda: mlp._run_loss_and_grad(theta, sizes, code, X, y, w, 0.0)  # noqa: E731
        many = lambda: rows.loss_and_grad(None, theta, sizes, code, 0.0, 0.0, 0, 0)  # noqa: E731
        l1, g1, _ = one()
        l2, g2, _ = many()
        agree = float(np.max(np.abs(g1 - g2)))
        for _ in range(2):
            one(), many()
        t_one, t_many = [], []
        for _ in range(repeats):
            t = time.perf_counter(); one(); t_one.append(time.perf_counter() - t)
            t = time.perf_counter(); many(); t_many.append(time.perf_counter() - t)
    finally:
        cluster.close(client)
    ratio = np.array(t_many) / np.array(t_one)
    return {"rows": n, "workers": 2, "single_process_threads": 2,
            "single_ms": [1e3 * min(t_one), 1e3 * float(np.median(t_one)), 1e3 * max(t_one)],
            "cluster_ms": [1e3 * min(t_many), 1e3 * float(np.median(t_many)), 1e3 * max(t_many)],
            "ratio_median": float(np.median(ratio)),
            "overhead_ms_median": 1e3 * float(np.median(np.array(t_many) - np.array(t_one))),
            "bytes_out_per_step": int(theta.nbytes * 2), "bytes_back_per_step": int(g1.nbytes * 2),
            "max_abs_gradient_difference": agree, "loss_difference": abs(l1 - l2)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1e4..1e5 rows, a 1e5-row cluster step")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="rows to time")
    p.add_argument("--batch-size", type=int, default=512, help="mini-batch rows (default 512)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per size (default 3)")
    p.add_argument("--cluster-rows", type=int, default=None, help="rows of the cluster step")
    p.add_argument("--out", default=os.path.join(ROOT, "out", "bench"))
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        n, mode, batch, r = a.child
        return child(int(n), mode, int(batch), int(r))
    sizes = a.sizes or ([10**4, 10**5] if a.quick else [10**4, 10**5, 10**6, 10**7])
    c_rows = a.cluster_rows or (10**5 if a.quick else 10**6)
    print("rows scaling (one epoch; float32, 8-64-64-4):", flush=True)
    rows = scaling(sizes, a.batch_size, a.repeats)
    print(f"cluster step at {c_rows:,} rows (float64): local cluster of 2 workers vs one "
          f"process with 2 threads", flush=True)
    cl = cluster_step(c_rows, 7 if a.quick else 15)
    if "skipped" in cl:
        print(f"  skipped: {cl['skipped']}")
    else:
        print(f"  one process {cl['single_ms'][1]:.1f} ms (min {cl['single_ms'][0]:.1f}, max "
              f"{cl['single_ms'][2]:.1f}); cluster {cl['cluster_ms'][1]:.1f} ms (min "
              f"{cl['cluster_ms'][0]:.1f}, max {cl['cluster_ms'][2]:.1f}); ratio "
              f"{cl['ratio_median']:.2f}x, overhead {cl['overhead_ms_median']:.1f} ms a step; "
              f"{cl['bytes_out_per_step']:,} bytes out and {cl['bytes_back_per_step']:,} back "
              f"a step; gradients agree to {cl['max_abs_gradient_difference']:.1e}")
    os.makedirs(a.out, exist_ok=True)
    result = {"scaling": rows, "cluster_step": cl, "cpu_count": os.cpu_count()}
    with open(os.path.join(a.out, "scale_rows.json"), "w") as f:
        json.dump(result, f, indent=1)
    lines = ["| rows | mode | epoch s (median) | peak MB | X MB |", "|--:|---|--:|--:|--:|"]
    lines += [f"| {r['rows']:,} | {r['mode']} | {r['epoch_s_median']:.3f} | {r['peak_mb']:.0f} | "
              f"{r['x_mb']:.0f} |" for r in rows]
    with open(os.path.join(a.out, "scale_rows.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {os.path.join(a.out, 'scale_rows.json')}")
    return None


if __name__ == "__main__":
    main()
