"""Time one full-batch gradient-descent iteration of the MLP, and what surrounds it.

Usage::

    python bench/time_epochs.py            # default run, a few minutes
    python bench/time_epochs.py --quick    # under a minute
    python bench/time_epochs.py --help

What it measures (all on the training split loaded through ``prep``; if
``prep`` or the data is unavailable, on a random problem of the same shape,
and the output says so):

1. **One iteration** = loss + gradients + in-place parameter update
   (``W -= lr * dW``) of a d-64-64-4 ReLU network, for: ``mlp.loss_and_grads``
   (numba, float64/float32, 1 and 2 numba threads), ``mlp.reference_loss_and_grads``
   (NumPy, float64/float32), scikit-learn's ``MLPClassifier`` (one
   ``partial_fit`` call with ``batch_size=n_samples`` = one iteration; its time
   includes sklearn's own input validation and loss bookkeeping) and PyTorch CPU
   (float64/float32, autograd + manual SGD step, 2 threads) when importable.
   Reported: min/median/max ms over the timed repeats after one warm-up call,
   speed-up = median(NumPy float64 reference) / median(implementation), and
   achieved GFLOP/s with its share of the matmul peak measured in the same run
   (``np.dot`` of two NxN matrices, 2*N^3 flops, median of 5, per dtype, with 1
   and 2 BLAS threads; an implementation is compared with the peak for its own
   thread count).

   FLOP count of one iteration, layer l with fan_in f_l, fan_out o_l, n rows::

       flops = sum_l 2*n*f_l*o_l * (1 [forward a = W x]
                                    + 1 [backward dW = delta^T x]
                                    + 1 [backward dX = delta W, l > 0 only])

   (activations, softmax and the update are not counted).
2. **Compile time**: a fresh subprocess with ``NUMBA_CACHE_DIR`` set to a new
   empty directory times ``import mlp`` + the first ``loss_and_grads`` call
   minus a second call (cold); a second fresh subprocess with the same cache
   directory repeats it (warm; goal: < 1 s spent compiling, i.e. first minus
   second call; the import of numba/scipy/scikit-learn is reported apart).
   ``--quick`` measures only the warm start, float64, on the project's cache.
3. **Rows scaling**: 1e4 ... 1e7 rows (``--quick``: up to 1e6) resampled with
   replacement (seeded) from the training rows; ms per iteration for numba
   float64/float32 and the NumPy reference (skipped where it would take too
   long or too much memory, with the reason), the log-log slope per
   implementation, and the peak resident memory of a child process that only
   loads X (from a temporary .npy) and runs two numba iterations, as a ratio to
   the size of X and as overhead in MB (goal: peak < 1.5 * size(X) + 200 MB at
   1e7). The peak is ``VmHWM`` from /proc/self/status: the child's
   ``ru_maxrss`` (also recorded) starts at the parent's RSS, which Linux carries
   over across fork + exec.
4. **Attribution**: ``input_gradients`` on the whole training split vs a
   per-sample Python loop (``reference_input_gradients`` on one row at a time,
   timed on ``--loop-rows`` rows and scaled per row; goal >= 100x) and vs the
   vectorised NumPy reference on all rows (goal >= 2x).
5. **Side-by-side trainings** (how ``run_all`` uses the cores): the iterations
   per second of two independent trainings run at the same time in two
   ``jobs.Jobs`` worker processes with one numba thread each, against one
   training at a time in this process with all numba threads (throughput
   ratio > 1: the workers get more done). Both workers wait for a common start
   time after their warm-up, so their timed loops overlap. Skipped with
   ``--no-subprocess``.

Writes ``<out>/bench.json`` (every number, the effective configuration and
machine info: CPU model, cores, library versions, numba threads, BLAS,
``OPENBLAS_*`` variables, which are recorded but never changed), ``<out>/bench.md``
(the tables, ready to paste into the README) and ``<out>/scaling.png``.
The machine may be shared: compare medians and ratios from one run, not single
times across runs.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numba  # noqa: E402
import mlp  # noqa: E402

LR = 0.1
N_CLASSES = 4
FALLBACK_SHAPE = (33078, 12)  # a training split of the size the bench was designed around


# ------------------------------------------------------------------- helpers
def timed(fn, repeats, warmup=1):
    """Seconds per call of ``fn()`` for ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def summary(seconds):
    """min/median/max in ms of a list of seconds."""
    ms = np.asarray(seconds) * 1e3
    return {"min_ms": float(ms.min()), "median_ms": float(np.median(ms)),
            "max_ms": float(ms.max()), "repeats": int(ms.size)}


def iteration_flops(sizes, n):
    """Multiply-add flops of forward + backward of one iteration (see module docstring)."""
    total = 0
    for l, (f, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        total += 2 * n * f * o * (3 if l > 0 else 2)
    return int(total)


def init_params(sizes, dtype, seed=0, scale=0.1):
    """Normal(0, scale) weights of shape (fan_out, fan_in), zero biases, as ``dtype``."""
    rng = np.random.default_rng(seed)
    weights = [np.ascontiguousarray(scale * rng.standard_normal((o, f)), dtype=dtype)
               for f, o in zip(sizes[:-1], sizes[1:])]
    biases = [np.zeros(o, dtype=dtype) for o in sizes[1:]]
    return weights, biases


def load_problem(data_dir, rows, seed, random_data=False):
    """(X_train float64, y_train int64, source note): the real data via ``prep``, else a
    random problem of the same shape (``--random-data``, or when no data folder is found)."""
    import prep
    reason = "--random-data"
    if not random_data:
        try:
            path = prep.find_data_dir(data_dir)
        except prep.DataError as e:
            raise ValueError(str(e)) from None
        reason = "no folder with train.csv and test.csv (see prep.find_data_dir)" if path is None else None
    if reason is None:
        enc = prep.encode(prep.load_data(path))
        X = np.ascontiguousarray(enc.X_train, dtype=np.float64)
        y = np.ascontiguousarray(enc.y_train, dtype=np.int64)
        source = f"real data: prep.encode(prep.load_data('{path}'))['X_train']"
    else:
        rng = np.random.default_rng(seed)
        X = rng.standard_normal(FALLBACK_SHAPE)
        y = np.argmax(X @ rng.standard_normal((X.shape[1], N_CLASSES)), axis=1).astype(np.int64)
        source = f"RANDOM fallback problem of shape {FALLBACK_SHAPE}: {reason}"
    if rows is not None:
        X, y = X[:rows], y[:rows]
    return X, y, source


def machine_info():
    """CPU, cores, library versions, thread settings and BLAS environment."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu_model": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_num_threads": int(numba.config.NUMBA_NUM_THREADS),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "OPENBLAS_CORETYPE_is_set": "OPENBLAS_CORETYPE" in os.environ,
        "blas_env": {k: v for k, v in os.environ.items()
                     if k.startswith(("OPENBLAS", "OMP_", "MKL_", "NUMBA_"))},
    }
    try:
        import threadpoolctl
        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "architecture",
                                               "num_threads")}
                        for p in threadpoolctl.threadpool_info()]
    except ImportError:
        info["blas"] = None
    for name, dist in (("sklearn", "scikit-learn"), ("torch", "torch")):
        try:  # installed version, without paying for the import
            info[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    return info


def blas_threads(k):
    """Context manager limiting BLAS to ``k`` threads (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=k, user_api="blas")
    except ImportError:
        import contextlib
        return contextlib.nullcontext()


def matmul_peak(n, threads, repeats=5, seed=0):
    """GFLOP/s of ``np.dot`` on two n x n matrices, per dtype, for each BLAS thread count."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in ("float64", "float32"):
        A = rng.standard_normal((n, n)).astype(name)
        B = rng.standard_normal((n, n)).astype(name)
        for k in threads:
            with blas_threads(k):
                s = summary(timed(lambda: np.dot(A, B), repeats))
            out[f"{name}_t{k}"] = {**s, "gflops": 2 * n ** 3 / (s["median_ms"] * 1e-3) / 1e9}
    return out


# ------------------------------------------------------------ one iteration
def mlp_step(fn, weights, biases, X, y):
    """One full-batch GD iteration with ``fn`` (mlp.loss_and_grads or the reference)."""
    def step():
        loss, dW, db = fn(weights, biases, X, y, "relu")
        for W, g in zip(weights, dW):
            W -= LR * g
        for b, g in zip(biases, db):
            b -= LR * g
        return loss
    return step


def sklearn_step(X, y, hidden):
    """One ``partial_fit`` call of scikit-learn's MLPClassifier = one full-batch iteration."""
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=tuple(hidden), activation="relu", solver="sgd",
                        batch_size=X.shape[0], learning_rate_init=LR, momentum=0.0,
                        nesterovs_momentum=False, alpha=0.0, max_iter=1, shuffle=False,
                        random_state=0)
    classes = np.arange(N_CLASSES)

    def step():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.partial_fit(X, y, classes=classes)
    return step


def torch_step(X, y, sizes, dtype, torch):
    """Autograd forward/backward of the same network and a manual SGD step."""
    tdtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=dtype))
    yt = torch.from_numpy(y)
    weights, biases = init_params(sizes, dtype)
    params = [torch.tensor(p, dtype=tdtype, requires_grad=True) for p in weights + biases]
    L = len(weights)

    def step():
        h = Xt
        for l in range(L):
            h = torch.addmm(params[L + l], h, params[l].T)  # (n, fan_out)
            if l < L - 1:
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, yt)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(LR * g)
    return step


def bench_iteration(X, y, sizes, args, peak):
    """Part 1: ms per iteration of every implementation, speed-ups, GFLOP/s, share of peak."""
    n = X.shape[0]
    flops = iteration_flops(sizes, n)
    Xs = {d: np.ascontiguousarray(X, dtype=d) for d in ("float64", "float32")}
    results, notes = [], []
    default_threads = numba.get_num_threads()

    cases = []  # (impl, dtype, threads, step, before-each-call, peak key)

    def numba_threads(k):
        return lambda: numba.set_num_threads(k)

    for dtype in ("float64", "float32"):
        for k in args.threads:
            w, b = init_params(sizes, dtype)
            cases.append(("numba", dtype, k, mlp_step(mlp.loss_and_grads, w, b, Xs[dtype], y),
                          numba_threads(k), f"{dtype}_t{k}"))
    top = max(args.threads)
    for dtype in ("float64", "float32"):
        w, b = init_params(sizes, dtype)
        cases.append(("numpy-ref", dtype, "blas", mlp_step(mlp.reference_loss_and_grads, w, b,
                                                           Xs[dtype], y), None, f"{dtype}_t{top}"))
    if not args.no_sklearn:
        cases.append(("sklearn", "float64", "blas", sklearn_step(Xs["float64"], y, sizes[1:-1]),
                      None, f"float64_t{top}"))
        notes.append("sklearn: one partial_fit call per iteration; includes its input "
                     "validation and loss bookkeeping (Glorot init, its own loss)")
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            notes.append("torch not importable: PyTorch skipped (it is not a project dependency)")
    else:
        notes.append("torch skipped (--no-torch)")
    if torch is not None:
        torch.set_num_threads(2)
        for dtype in ("float64", "float32"):
            cases.append(("torch", dtype, 2, torch_step(X, y, sizes, dtype, torch), None,
                          f"{dtype}_t2"))

    # round-robin: every repeat times each case once, so load from other processes
    # on a shared machine hits all implementations alike and the ratios stay fair
    times = {i: [] for i in range(len(cases))}
    failed = set()
    for r in range(args.repeats + 1):  # r == 0 is the warm-up
        for i, (impl, dtype, _, step, before, _) in enumerate(cases):
            if i in failed:
                continue
            if before is not None:
                before()
            try:
                t0 = time.perf_counter()
                step()
                dt = time.perf_counter() - t0
            except Exception as e:
                notes.append(f"{impl} {dtype}: failed ({type(e).__name__}: {e})")
                failed.add(i)
                continue
            if r > 0:
                times[i].append(dt)
    numba.set_num_threads(default_threads)
    for i, (impl, dtype, threads, _, _, peak_key) in enumerate(cases):
        if i in failed:
            continue
        s = summary(times[i])
        gf = flops / (s["median_ms"] * 1e-3) / 1e9
        pk = peak.get(peak_key, {}).get("gflops")
        results.append({"impl": impl, "dtype": dtype, "threads": threads, **s,
                        "gflops": gf, "peak_share": gf / pk if pk else None})

    ref = next((r for r in results if r["impl"] == "numpy-ref" and r["dtype"] == "float64"), None)
    for r in results:
        r["speedup_vs_ref64"] = ref["median_ms"] / r["median_ms"] if ref else None
    return {"n_rows": n, "sizes": [int(s) for s in sizes], "flops_per_iteration": flops,
            "results": results, "notes": notes}


# ------------------------------------------------------------- compile time
_COMPILE_CHILD = r"""
import json, os, sys, time
import numpy as np
t0 = time.perf_counter()
import mlp
t_import = time.perf_counter() - t0
out = {"import_s": t_import}
rng = np.random.default_rng(0)
sizes = [13, 64, 64, 4]
for dtype in os.environ.get("BENCH_DTYPES", "float64,float32").split(","):
    W = [np.ascontiguousarray(0.1 * rng.standard_normal((o, f)), dtype=dtype)
         for f, o in zip(sizes[:-1], sizes[1:])]
    b = [np.zeros(o, dtype=dtype) for o in sizes[1:]]
    X = rng.standard_normal((256, 13)).astype(dtype)
    y = rng.integers(0, 4, 256)
    calls = []
    for _ in range(2):
        t0 = time.perf_counter()
        mlp.loss_and_grads(W, b, X, y, "relu")
        calls.append(time.perf_counter() - t0)
    out[dtype] = {"first_call_s": calls[0], "second_call_s": calls[1]}
print(json.dumps(out))
"""


def run_child(code, env_extra, args=()):
    """Run ``code`` in a fresh interpreter rooted at the repo; parse its last stdout line as JSON."""
    env = {**os.environ, **env_extra, "PYTHONPATH": ROOT}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"child process failed (exit {p.returncode}): "
                           f"{p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ''}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


def bench_compile(cache_dir, dtypes=("float64", "float32"), phases=("cold", "warm")):
    """Part 2: cold (empty NUMBA_CACHE_DIR) and warm (same dir again) import + first call.

    ``cache_dir=None`` uses the project's own numba cache, which this process has
    just filled: a warm measurement without the cold one (``--quick``).
    """
    res = {"numba_cache_dir": cache_dir or "project default"}
    env = {"BENCH_DTYPES": ",".join(dtypes)}
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    for phase in phases:
        r = run_child(_COMPILE_CHILD, env)
        for dtype in dtypes:
            d = r[dtype]
            # compile/load cost of this dtype's specialisation: first call minus a steady call
            d["compile_s"] = d["first_call_s"] - d["second_call_s"]
        r["import_plus_first_call_s"] = (r["import_s"] + r["float64"]["compile_s"])
        res[phase] = r
    return res


# ----------------------------------------------------------------- scaling
_RSS_CHILD = r"""
import json, resource, sys
import numpy as np


def hwm_kb():
    # VmHWM is this process's own peak RSS; ru_maxrss would also count the parent's
    # RSS at fork time, which Linux carries over into the child across exec
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


import mlp
xpath, ypath, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
rss_import = hwm_kb()
X = np.load(xpath)
y = np.load(ypath)
rss_loaded = hwm_kb()
rng = np.random.default_rng(0)
sizes = [X.shape[1], *[int(h) for h in sys.argv[4].split(",")], 4]
W = [np.ascontiguousarray(0.1 * rng.standard_normal((o, f)), dtype=X.dtype)
     for f, o in zip(sizes[:-1], sizes[1:])]
b = [np.zeros(o, dtype=X.dtype) for o in sizes[1:]]
for _ in range(iters):
    loss, dW, db = mlp.loss_and_grads(W, b, X, y, "relu")
    for p, g in zip(W + b, list(dW) + list(db)):
        p -= 0.1 * g
print(json.dumps({"rss_after_import_kb": rss_import, "rss_after_load_kb": rss_loaded,
                  "peak_rss_kb": hwm_kb(),
                  "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def mem_available_bytes():
    """MemAvailable from /proc/meminfo (bytes), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss(X, y, hidden, tmpdir, env_extra, iters=2):
    """Peak RSS of a child that loads X (saved as .npy) and runs ``iters`` numba iterations."""
    xpath, ypath = os.path.join(tmpdir, "X.npy"), os.path.join(tmpdir, "y.npy")
    np.save(xpath, X)
    np.save(ypath, y)
    try:
        r = run_child(_RSS_CHILD, env_extra, (xpath, ypath, iters, ",".join(map(str, hidden))))
    finally:
        os.remove(xpath)
        os.remove(ypath)
    x_mb = X.nbytes / 2 ** 20
    peak_mb = r["peak_rss_kb"] / 1024  # KiB -> MiB
    return {"x_mb": x_mb, "peak_mb": peak_mb,
            "after_import_mb": r["rss_after_import_kb"] / 1024,
            "ru_maxrss_mb": r["ru_maxrss_kb"] / 1024,
            "peak_over_x": peak_mb / x_mb, "overhead_mb": peak_mb - x_mb,
            "goal_mb": 1.5 * x_mb + 200, "meets_goal": peak_mb < 1.5 * x_mb + 200}


def bench_scaling(X, y, sizes, args, env_extra):
    """Part 3: ms per iteration vs rows (resampled with replacement), slope, peak RSS."""
    rng = np.random.default_rng(args.seed)
    mem = mem_available_bytes()
    points, notes, last_ref = [], [], None
    widest = sum(sizes[1:])
    for rows in args.scaling_rows:
        idx = rng.integers(0, X.shape[0], size=rows)
        Xb64, yb = np.ascontiguousarray(X[idx]), np.ascontiguousarray(y[idx])
        del idx
        point = {"rows": int(rows), "x_float64_mb": Xb64.nbytes / 2 ** 20}
        # fewer repeats where one iteration is long; never fewer than 3
        reps = args.repeats if rows < 10 ** 6 else 3
        for dtype in ("float64", "float32"):
            Xb = Xb64 if dtype == "float64" else Xb64.astype(np.float32)
            w, b = init_params(sizes, dtype)
            point[f"numba_{dtype}"] = summary(timed(
                mlp_step(mlp.loss_and_grads, w, b, Xb, yb), reps))
            # --quick: peak memory only at the largest size (each is a fresh process)
            if not args.no_subprocess and (not args.quick or rows == max(args.scaling_rows)):
                with tempfile.TemporaryDirectory(prefix="bench-rss-") as td:
                    point[f"rss_numba_{dtype}"] = peak_rss(Xb, yb, sizes[1:-1], td, env_extra)
            if dtype == "float64":
                # the reference keeps a few (n, width) arrays alive at once
                need = 4 * rows * widest * 8
                est = last_ref[1] * rows / last_ref[0] * (reps + 1) if last_ref else 0.0
                why = None
                if args.quick and rows > 10 ** 5:
                    why = "skipped in --quick above 1e5 rows"
                elif mem is not None and need > 0.4 * mem:
                    why = (f"skipped: would need ~{need / 2 ** 30:.1f} GiB "
                           f"(> 40% of {mem / 2 ** 30:.1f} GiB available)")
                elif est > args.ref_budget:
                    why = f"skipped: estimated {est:.0f} s > --ref-budget {args.ref_budget:.0f} s"
                if why:
                    notes.append(f"numpy-ref at {rows} rows {why}")
                    point["numpy-ref_float64"] = {"skipped": why}
                else:
                    w, b = init_params(sizes, dtype)
                    s = summary(timed(mlp_step(mlp.reference_loss_and_grads, w, b, Xb, yb), reps))
                    point["numpy-ref_float64"] = s
                    last_ref = (rows, s["median_ms"] * 1e-3)
            del Xb
        points.append(point)
        print(f"  scaling: {rows:>10,d} rows done", flush=True)
    slopes = {}
    for key in ("numba_float64", "numba_float32", "numpy-ref_float64"):
        pts = [(p["rows"], p[key]["median_ms"]) for p in points
               if key in p and "median_ms" in p[key]]
        if len(pts) >= 2:
            r, t = np.log10(np.array(pts, dtype=float)).T
            slopes[key] = float(np.polyfit(r, t, 1)[0])
    return {"points": points, "slopes": slopes, "notes": notes}


def plot_scaling(scaling, path):
    """Log-log ms per iteration vs rows, one line per implementation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for key, marker in (("numba_float64", "o"), ("numba_float32", "s"),
                        ("numpy-ref_float64", "^")):
        pts = [(p["rows"], p[key]["median_ms"]) for p in scaling["points"]
               if key in p and "median_ms" in p[key]]
        if pts:
            r, t = zip(*pts)
            slope = scaling["slopes"].get(key)
            label = key + (f" (slope {slope:.2f})" if slope is not None else "")
            ax.plot(r, t, marker=marker, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training rows (resampled with replacement)")
    ax.set_ylabel("ms per full-batch iteration (median)")
    ax.set_title("One GD iteration vs rows (slope 1 = linear)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------- attribution
def bench_attribution(X, y, sizes, args):
    """Part 4: input_gradients kernel vs per-sample Python loop and vectorised reference."""
    fast, ref = mlp.input_gradients, mlp.reference_input_gradients
    w, b = init_params(sizes, "float64")
    n = X.shape[0]
    fast_s = summary(timed(lambda: fast(w, b, X, y, "relu", target="output"), args.repeats))
    ref_s = summary(timed(lambda: ref(w, b, X, y, "relu", target="output"), args.repeats))
    m = min(args.loop_rows, n)

    def loop():
        for i in range(m):
            ref(w, b, X[i:i + 1], y[i:i + 1], "relu", target="output")
    loop_s = summary(timed(loop, max(1, min(3, args.repeats))))
    loop_full_ms = loop_s["median_ms"] / m * n
    return {"n_rows": n, "kernel": fast_s, "reference": ref_s,
            "loop_rows_timed": m, "loop": loop_s, "loop_full_estimate_ms": loop_full_ms,
            "speedup_vs_loop": loop_full_ms / fast_s["median_ms"],
            "speedup_vs_reference": ref_s["median_ms"] / fast_s["median_ms"],
            "goals": {"vs_loop": 100.0, "vs_reference": 2.0},
            "loop_note": f"reference_input_gradients called on one row at a time for {m} "
                         f"rows, scaled to {n} rows"}


# ---------------------------------------------------- side-by-side trainings
def _timed_iterations(X, y, sizes, dtype, iters, start_at):
    """Worker job of part 5: one warm-up iteration, wait until ``start_at``
    (``time.perf_counter``, shared by the processes of one machine), then
    ``iters`` timed iterations; returns ms per iteration."""
    w, b = init_params(sizes, dtype)
    step = mlp_step(mlp.loss_and_grads, w, b, X, y)
    step()
    time.sleep(max(0.0, start_at - time.perf_counter()))
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - t0) / iters * 1e3


def bench_side_by_side(X, y, sizes, iters, lead_s=5.0):
    """Part 5: two concurrent single-threaded worker trainings vs one all-thread training."""
    import jobs
    out = {}
    threads = numba.get_num_threads()
    with jobs.Jobs(2) as pool:
        for dtype in ("float32", "float64"):
            Xd = np.ascontiguousarray(X, dtype=dtype)
            start = time.perf_counter() + lead_s          # time to start and warm the workers
            futs = [pool.submit((dtype, k), _timed_iterations, Xd, y, sizes, dtype, iters, start)
                    for k in range(2)]
            worker_ms = [f.result() for f in futs]
            in_process = summary(timed(mlp_step(mlp.loss_and_grads, *init_params(sizes, dtype), Xd, y),
                                       iters))
            # two workers finish 2 iterations per mean(worker_ms); this process 1 per median
            ratio = in_process["median_ms"] / (np.mean(worker_ms) / 2)
            out[dtype] = {"worker_ms_per_iteration": worker_ms, "in_process": in_process,
                          "in_process_threads": threads, "throughput_ratio": ratio}
    return {"iterations": iters, "results": out}


# ------------------------------------------------------------------ output
def tables(res):
    """Markdown tables of every part (also printed to the console)."""
    it = res["iteration"]
    lines = [f"Data: {res['data_source']}", "",
             f"One full-batch GD iteration, {it['n_rows']:,} rows, layers "
             f"{'-'.join(map(str, it['sizes']))} ReLU, "
             f"{it['flops_per_iteration'] / 1e9:.2f} GFLOP/iteration; "
             f"speed-up = NumPy float64 reference median / median.", "",
             "| implementation | dtype | threads | min ms | median ms | max ms | speed-up "
             "| GFLOP/s | % of matmul peak |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in it["results"]:
        sp = f"{r['speedup_vs_ref64']:.1f}x" if r["speedup_vs_ref64"] else "-"
        ps = f"{100 * r['peak_share']:.0f}%" if r["peak_share"] else "-"
        lines.append(f"| {r['impl']} | {r['dtype']} | {r['threads']} | {r['min_ms']:.2f} | "
                     f"{r['median_ms']:.2f} | {r['max_ms']:.2f} | {sp} | {r['gflops']:.1f} | {ps} |")
    pk = res["matmul_peak"]
    lines += ["", "Matmul peak (np.dot, {0}x{0}, median): ".format(res["config"]["peak_size"])
              + ", ".join(f"{k} {v['gflops']:.1f} GFLOP/s" for k, v in pk.items())]
    for n in it["notes"]:
        lines.append(f"- {n}")
    comp = res.get("compile")
    if comp and "warm" in comp:
        lines += ["", "| compile (fresh process) | import mlp s | float64 first-second call s "
                  "| import + float64 s | float32 first-second call s |",
                  "|---|---:|---:|---:|---:|"]
        for ph in ("cold", "warm"):
            if ph not in comp:
                lines.append(f"| {ph} | skipped with --quick | | | |")
                continue
            c = comp[ph]
            f32 = f"{c['float32']['compile_s']:.2f}" if "float32" in c else "- (--quick)"
            lines.append(f"| {ph} | {c['import_s']:.2f} | {c['float64']['compile_s']:.2f} | "
                         f"{c['import_plus_first_call_s']:.2f} | {f32} |")
        warm = comp["warm"]
        lines.append(f"- goal: a warm process start spends < 1 s compiling (first minus second "
                     f"float64 call): {warm['float64']['compile_s']:.2f} s, "
                     f"{'met' if warm['float64']['compile_s'] < 1 else 'NOT met'}; importing mlp "
                     f"(numpy, numba, scipy, scikit-learn) takes {warm['import_s']:.2f} s on top")
    elif comp:
        lines += ["", f"Compile time: {comp.get('skipped')}"]
    sc = res["scaling"]
    lines += ["", "| rows | numba f64 ms | numba f32 ms | NumPy ref f64 ms | size(X) f64 MB "
              "| peak RSS f64 MB | peak/size(X) | overhead MB | peak RSS f32 MB | RSS after import MB |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(p, key):
        v = p.get(key)
        return f"{v['median_ms']:.1f}" if v and "median_ms" in v else "skip" if v else "-"
    for p in sc["points"]:
        r64, r32 = p.get("rss_numba_float64"), p.get("rss_numba_float32")
        lines.append(
            f"| {p['rows']:,} | {cell(p, 'numba_float64')} | {cell(p, 'numba_float32')} | "
            f"{cell(p, 'numpy-ref_float64')} | {p['x_float64_mb']:.0f} | "
            + (f"{r64['peak_mb']:.0f} | {r64['peak_over_x']:.2f} | {r64['overhead_mb']:.0f} | "
               if r64 else "- | - | - | ")
            + (f"{r32['peak_mb']:.0f} | {r32['after_import_mb']:.0f} |" if r32 else "- | - |"))
    big = [p for p in sc["points"] if "rss_numba_float64" in p]
    if big:
        r = big[-1]["rss_numba_float64"]
        if big[-1]["rows"] >= 10 ** 7:
            lines.append(f"- goal at {big[-1]['rows']:,} rows, float64: peak < 1.5 x size(X) + 200 MB "
                         f"= {r['goal_mb']:.0f} MB: {'met' if r['meets_goal'] else 'NOT met'}")
        else:
            lines.append(f"- the memory goal (peak < 1.5 x size(X) + 200 MB) is set at 1e7 rows; this "
                         f"run stopped at {big[-1]['rows']:,} rows, where the fixed ~200 MB of the "
                         f"imported libraries dominates (run without --quick)")
    lines.append("- log-log slope: " + ", ".join(f"{k} {v:.2f}" for k, v in sc["slopes"].items()))
    for n in sc["notes"]:
        lines.append(f"- {n}")
    at = res["attribution"]
    if "skipped" in at:
        lines += ["", f"Attribution: {at['skipped']}"]
    else:
        lines += ["", f"Attribution, input_gradients on {at['n_rows']:,} rows "
                  ":", "",
                  "| method | median ms (all rows) | kernel speed-up | goal |",
                  "|---|---:|---:|---:|",
                  f"| numba kernel | {at['kernel']['median_ms']:.2f} | 1x | |",
                  f"| NumPy vectorised reference | {at['reference']['median_ms']:.2f} | "
                  f"{at['speedup_vs_reference']:.1f}x | >= 2x |",
                  f"| per-sample Python loop (est.) | {at['loop_full_estimate_ms']:.0f} | "
                  f"{at['speedup_vs_loop']:.0f}x | >= 100x |",
                  f"- {at['loop_note']}"]
    sbs = res.get("side_by_side")
    if sbs and "results" in sbs:
        lines += ["", f"Side-by-side trainings ({sbs['iterations']} timed iterations each; "
                  "throughput = iterations per second of the whole machine):", "",
                  "| dtype | 2 workers x 1 thread, ms/iteration each | 1 process, all threads, "
                  "ms/iteration | throughput ratio |", "|---|---:|---:|---:|"]
        for dtype, r in sbs["results"].items():
            lines.append(f"| {dtype} | {' / '.join(f'{v:.1f}' for v in r['worker_ms_per_iteration'])} | "
                         f"{r['in_process']['median_ms']:.1f} ({r['in_process_threads']} threads) | "
                         f"{r['throughput_ratio']:.2f}x |")
    elif sbs:
        lines += ["", f"Side-by-side trainings: {sbs.get('skipped')}"]
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats, scaling up to 1e6 rows (under a minute)")
    p.add_argument("--out", default=os.path.join(ROOT, "out", "bench"),
                   help="output folder (default out/bench)")
    p.add_argument("--markdown", default=None,
                   help="path of the markdown tables (default <out>/bench.md)")
    p.add_argument("--data-dir", default=None,
                   help="folder with train.csv and test.csv (default: prep.find_data_dir order, "
                        "$MLP_DATA_DIR, ./data, <repo>/data, ../shared/data)")
    p.add_argument("--random-data", action="store_true",
                   help="use a random problem of the training split's shape instead of the data")
    p.add_argument("--rows", type=int, default=None,
                   help="use only the first ROWS training rows for parts 1 and 4 (default all)")
    p.add_argument("--scaling-rows", type=int, nargs="+", default=None,
                   help="row counts for part 3 (default 1e4 1e5 1e6 1e7; --quick: up to 1e6)")
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64],
                   help="hidden layer widths (default 64 64)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="numba thread counts for part 1 (default 1 2)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats after warm-up (default 15; --quick: 5)")
    p.add_argument("--loop-rows", type=int, default=500,
                   help="rows timed in the per-sample attribution loop (default 500)")
    p.add_argument("--peak-size", type=int, default=2000,
                   help="matrix size N of the np.dot peak measurement (default 2000)")
    p.add_argument("--ref-budget", type=float, default=120.0,
                   help="skip the NumPy reference at a scaling size when its estimated "
                        "time exceeds this many seconds (default 120)")
    p.add_argument("--no-subprocess", action="store_true",
                   help="skip compile-time and peak-memory child processes")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    p.add_argument("--no-sklearn", action="store_true", help="skip scikit-learn")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 15
    if args.scaling_rows is None:
        args.scaling_rows = [10 ** k for k in range(4, 7 if args.quick else 8)]
    for name in ("repeats", "loop_rows", "peak_size", "rows"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} {v} must be a positive integer")
    if any(r < 1 for r in args.scaling_rows) or any(h < 1 for h in args.hidden):
        raise ValueError("--scaling-rows and --hidden take positive integers; "
                         f"got {args.scaling_rows} and {args.hidden}")
    if any(not 1 <= k <= numba.config.NUMBA_NUM_THREADS for k in args.threads):
        raise ValueError(f"--threads {args.threads}: each must be between 1 and "
                         f"{numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS)")
    return args


def main(argv=None):
    """Run every part, print the tables, write bench.json, bench.md and scaling.png."""
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    X, y, source = load_problem(args.data_dir, args.rows, args.seed, args.random_data)
    sizes = [X.shape[1], *args.hidden, N_CLASSES]
    print(f"data: {source}", flush=True)
    res = {"config": {**vars(args), "lr": LR, "sizes": sizes},
           "machine": machine_info(), "data_source": source,
           "data_is_real": source.startswith("real data")}
    print("matmul peak ...", flush=True)
    res["matmul_peak"] = matmul_peak(args.peak_size, sorted(set(args.threads)))
    print("part 1: one iteration ...", flush=True)
    res["iteration"] = bench_iteration(X, y, sizes, args, res["matmul_peak"])
    with tempfile.TemporaryDirectory(prefix="bench-numba-cache-") as cache:
        if args.no_subprocess:
            res["compile"] = {"skipped": "--no-subprocess"}
        else:
            print("part 2: compile time (fresh processes) ...", flush=True)
            # --quick: warm start only, on the cache this process filled (a cold
            # compile alone takes ~20 s)
            res["compile"] = (bench_compile(None, ("float64",), ("warm",)) if args.quick
                              else bench_compile(cache))
        print("part 3: rows scaling ...", flush=True)
        # the peak-memory children reuse the warm cache so they measure iterations, not LLVM
        env_extra = {"NUMBA_CACHE_DIR": cache} if "cold" in res["compile"] else {}
        res["scaling"] = bench_scaling(X, y, sizes, args, env_extra)
    plot_path = os.path.join(args.out, "scaling.png")
    plot_scaling(res["scaling"], plot_path)
    print("part 4: attribution ...", flush=True)
    res["attribution"] = bench_attribution(X, y, sizes, args)
    if args.no_subprocess:
        res["side_by_side"] = {"skipped": "--no-subprocess"}
    else:
        print("part 5: side-by-side trainings in worker processes ...", flush=True)
        res["side_by_side"] = bench_side_by_side(X, y, sizes, 30 if args.quick else 100)
    res["total_s"] = time.perf_counter() - t_start
    res["machine"]["numba_threads_default"] = numba.get_num_threads()
    try:
        res["machine"]["numba_threading_layer"] = numba.threading_layer()
    except ValueError:
        res["machine"]["numba_threading_layer"] = None
    md = tables(res)
    print("\n" + md + "\n")
    md_path = args.markdown or os.path.join(args.out, "bench.md")
    with open(md_path, "w") as fh:
        fh.write(md + "\n")
    with open(os.path.join(args.out, "bench.json"), "w") as fh:
        json.dump(res, fh, indent=2, default=str)
    print(f"wrote {os.path.join(args.out, 'bench.json')}, {md_path}, {plot_path} "
          f"({res['total_s']:.0f} s)")
    return res


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
