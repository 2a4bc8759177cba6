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
   Beside them, the **floor**: the same number of flops as cache-resident
   square matrix products (N x N, N in ``--floor-sizes``, the fastest N counts)
   through the BLAS the kernels call (numba's ``np.dot``: SciPy's OpenBLAS),
   one BLAS thread per numba thread, split evenly over 1 and 2 numba threads.
   Every case is timed once per round, rounds alternate (round-robin), so load
   from other processes on a shared machine hits them alike; after a library
   whose own threads spin on after a call (OpenBLAS via NumPy, PyTorch's
   OpenMP) the next case waits ``SETTLE_S`` untimed, so it does not share its
   cores with them. Reported: min,
   quartiles, median and max ms over the timed rounds after one warm-up round,
   speed-up = median(NumPy float64 reference) / median(implementation), GFLOP/s,
   and "x floor" = median over rounds of (implementation / floor of its dtype
   and thread count in the same round): 1.0 would be products only, at the
   speed of cache-resident square ones.

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
   vectorised NumPy reference on all rows (goal >= 2x), kernel and reference
   alternated.
5. **Side-by-side trainings** (how ``run_all`` uses the cores): the iterations
   per second of two independent trainings run at the same time in two
   ``jobs.Jobs`` worker processes with one numba thread each, against one
   training at a time in this process with all numba threads (throughput
   ratio > 1: the workers get more done, the reason ``run_all.py`` trains in
   worker processes). Both workers wait for a common start time after their
   warm-up, so their timed loops overlap; workers and the in-process training
   alternate over three rounds (median ratio). Skipped with ``--no-subprocess``.

**The bench checks itself.** Every goal it states (the step against the floor
and against PyTorch, compile time, memory, attribution) is printed with its
measured value and *met* or *MISSED*. Results that contradict each other are
flagged: an implementation slower on fewer rows than on more (parts 1 and 3),
two numba threads slower than one, and a side-by-side ratio below 1 (the
design of ``run_all.py`` assumes more than 1). A flag means the timings of this
run are not to be trusted as they are (another process, a bug), not that a
goal is missed.

Writes ``<out>/bench.json`` (every number, the command, the effective
configuration and machine info: CPU model, cores, the CPU's vector features
(AVX2, AVX-512) and LLVM's target, library versions, numba threads, each BLAS
with its version, kernel architecture and what uses it, ``OPENBLAS_*``
variables, which are recorded but never changed), ``<out>/bench.md`` (the
tables, goals and checks, headed by the command, CPU and BLAS: ready to paste
into the README) and ``<out>/scaling.png``.
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
    """min/quartiles/median/max in ms of a list of seconds."""
    ms = np.asarray(seconds) * 1e3
    return {"min_ms": float(ms.min()), "q1_ms": float(np.percentile(ms, 25)),
            "median_ms": float(np.median(ms)), "q3_ms": float(np.percentile(ms, 75)),
            "max_ms": float(ms.max()), "repeats": int(ms.size)}


#: Untimed pause after a case whose library keeps its own worker threads busy
#: after a call: OpenBLAS's threads (NumPy, scikit-learn) spin for about 2^28
#: cycles before they sleep, PyTorch's OpenMP threads for a shorter while
#: (measured here: 0.6 of a core for 10 ms and 0.3 for the next 90 ms after the
#: NumPy reference). Without it the next case shares its cores with them.
SETTLE_S = 0.15


def round_robin(cases, repeats, notes):
    """Seconds per call of each case, timed once per round over ``repeats`` rounds
    after one warm-up round, so that load from other processes hits all cases
    alike. ``cases`` maps a key to (step, before) or (step, before, settle):
    ``before`` None or called untimed before each call, ``settle`` seconds
    slept untimed after it (``SETTLE_S`` for libraries with spinning threads);
    a case that raises is dropped with a note. Returns {key: [seconds per
    round]}; lists of cases that never failed are aligned by round (for paired
    ratios)."""
    times = {k: [] for k in cases}
    for r in range(repeats + 1):  # r == 0 is the warm-up
        for k, (step, before, *settle) in cases.items():
            if k not in times:
                continue
            if before is not None:
                before()
            try:
                t0 = time.perf_counter()
                step()
                dt = time.perf_counter() - t0
            except Exception as e:
                notes.append(f"{k}: failed ({type(e).__name__}: {e})")
                del times[k]
                continue
            if settle and settle[0]:
                time.sleep(settle[0])
            if r > 0:
                times[k].append(dt)
    return times


def paired_ratio(num, den):
    """Median and quartiles of num[r] / den[r] over rounds r (two aligned lists of seconds)."""
    q = np.asarray(num) / np.asarray(den)
    return {"median": float(np.median(q)), "q1": float(np.percentile(q, 25)),
            "q3": float(np.percentile(q, 75))}


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
        "cpu_vector_features": cpu_vector_features(),
        "llvm_cpu": _llvm_cpu(),
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
        import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot calls SciPy's BLAS)
        import threadpoolctl
        info["blas"] = [{**{k: p.get(k) for k in ("internal_api", "version", "architecture",
                                                  "num_threads", "filepath")},
                         "used_by": _blas_role(p.get("filepath") or "")}
                        for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        info["blas"] = None
    for name, dist in (("sklearn", "scikit-learn"), ("torch", "torch")):
        try:  # installed version, without paying for the import
            info[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None

    return info


VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl",
                "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_vector_features():
    """The CPU's vector instruction sets among ``VECTOR_FLAGS`` (from /proc/cpuinfo;
    NumPy's runtime detection where that file is missing)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in VECTOR_FLAGS if f in flags]
    except OSError:
        pass
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
        return [f for f, name in (("avx2", "AVX2"), ("fma", "FMA3"), ("avx512f", "AVX512F"),
                                  ("avx512bw", "AVX512BW"), ("avx512vl", "AVX512VL"))
                if feats.get(name)]
    except ImportError:
        return None


def _llvm_cpu():
    """The CPU name numba's LLVM compiles the kernels for (e.g. znver4, skylake-avx512)."""
    try:
        import llvmlite.binding as llvm
        return llvm.get_host_cpu_name()
    except Exception:   # noqa: BLE001 -- recorded as unknown, never fatal
        return None


def _blas_role(path):
    """What uses the BLAS library at ``path``: numba's np.dot calls SciPy's, NumPy
    (the NumPy reference, scikit-learn) its own."""
    folder = os.path.basename(os.path.dirname(path))        # e.g. numpy.libs, scipy.libs
    if folder.startswith("numpy"):
        return "NumPy's: the NumPy reference and scikit-learn"
    if folder.startswith("scipy"):
        return "SciPy's: numba's np.dot, so the kernels and the floor"
    return "other"


def describe_machine(m):
    """One line: CPU, cores, vector features and the BLAS libraries with their roles."""
    feats = m.get("cpu_vector_features")
    avx512 = [f for f in (feats or []) if f.startswith("avx512")]
    vec = ("unknown vector features" if feats is None else
           f"AVX2 {'yes' if 'avx2' in feats else 'no'}, AVX-512 "
           + (f"yes ({', '.join(avx512)})" if avx512 else "no"))
    blas = "; ".join(f"{b['internal_api']} {b['version']} with its {b['architecture']} kernels "
                     f"({b['used_by']})" for b in (m.get("blas") or []))
    torch = (f"; PyTorch {m['torch']} ({m.get('torch_blas') or 'its own BLAS'})"
             if m.get("torch") else "")
    return (f"CPU: {m['cpu_model']}, {m['usable_cores']} usable cores, {vec}; LLVM target "
            f"{m.get('llvm_cpu')}. BLAS: {blas or 'unknown (threadpoolctl missing)'}{torch}.")


def blas_threads(k):
    """Context manager limiting BLAS to ``k`` threads (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=k, user_api="blas")
    except ImportError:
        import contextlib
        return contextlib.nullcontext()


@numba.njit(parallel=True)     # not cached: numba cannot cache a function of __main__
def _floor_products(A, B, C, counts):
    """counts[t] products C[t] = A[t] B[t] for each chunk t; chunks in parallel."""
    for t in numba.prange(A.shape[0]):
        for _ in range(counts[t]):
            np.dot(A[t], B[t], C[t])


def floor_step(flops, dtype, threads, size, seed=0):
    """The floor of an iteration of ``flops`` flops: as many (size x size) products
    of cache-resident matrices as make ``flops``, split evenly over ``threads``
    numba threads with one BLAS thread each (the BLAS numba calls, as the kernels).
    Returns (step, flops of the step as made)."""
    n_products = max(threads, round(flops / (2 * size ** 3)))
    counts = np.full(threads, n_products // threads, dtype=np.int64)
    counts[:n_products % threads] += 1
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((threads, size, size)).astype(dtype)
    B = rng.standard_normal((threads, size, size)).astype(dtype)
    C = np.empty_like(A)

    def step():
        with mlp._single_threaded_blas():
            _floor_products(A, B, C, counts)
    return step, 2 * size ** 3 * n_products


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


def bench_iteration(X, y, sizes, args):
    """Part 1: ms per iteration of every implementation and of the floor, alternated;
    speed-ups, GFLOP/s, x floor, the numba kernels against PyTorch."""
    n = X.shape[0]
    flops = iteration_flops(sizes, n)
    Xs = {d: np.ascontiguousarray(X, dtype=d) for d in ("float64", "float32")}
    notes = []
    default_threads = numba.get_num_threads()

    cases, meta = {}, {}   # key -> (step, before); key -> (impl, dtype, threads, size, flops)

    def numba_threads(k):
        return lambda: numba.set_num_threads(k)

    for dtype in ("float64", "float32"):
        for k in args.threads:
            w, b = init_params(sizes, dtype)
            key = f"numba {dtype} t{k}"
            cases[key] = (mlp_step(mlp.loss_and_grads, w, b, Xs[dtype], y), numba_threads(k))
            meta[key] = ("numba", dtype, k, None, flops)
            for size in args.floor_sizes:
                fkey = f"floor {dtype} t{k} N{size}"
                step, made = floor_step(flops, dtype, k, size)
                cases[fkey] = (step, numba_threads(k))
                meta[fkey] = ("floor", dtype, k, size, made)
    for dtype in ("float64", "float32"):
        w, b = init_params(sizes, dtype)
        key = f"numpy-ref {dtype}"
        cases[key] = (mlp_step(mlp.reference_loss_and_grads, w, b, Xs[dtype], y), None, SETTLE_S)
        meta[key] = ("numpy-ref", dtype, "blas", None, flops)
    if not args.no_sklearn:
        cases["sklearn float64"] = (sklearn_step(Xs["float64"], y, sizes[1:-1]), None, SETTLE_S)
        meta["sklearn float64"] = ("sklearn", "float64", "blas", None, flops)
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
            cases[f"torch {dtype}"] = (torch_step(X, y, sizes, dtype, torch), None, SETTLE_S)
            meta[f"torch {dtype}"] = ("torch", dtype, 2, None, flops)

    times = round_robin(cases, args.repeats, notes)
    numba.set_num_threads(default_threads)
    results = []
    for key, secs in times.items():
        impl, dtype, threads, size, made = meta[key]
        s = summary(np.asarray(secs) * (flops / made))   # a floor scaled to the iteration's flops
        results.append({"impl": impl, "dtype": dtype, "threads": threads, **s,
                        **({"floor_size": size} if size else {}),
                        "gflops": flops / (s["median_ms"] * 1e-3) / 1e9})

    floors = {}   # (dtype, threads) -> the fastest floor
    for r in results:
        if r["impl"] == "floor":
            best = floors.get((r["dtype"], r["threads"]))
            if best is None or r["median_ms"] < best["median_ms"]:
                floors[(r["dtype"], r["threads"])] = r
    results = [r for r in results if r["impl"] != "floor" or floors.get((r["dtype"], r["threads"])) is r]
    ref = next((r for r in results if r["impl"] == "numpy-ref" and r["dtype"] == "float64"), None)
    for r in results:
        r["speedup_vs_ref64"] = ref["median_ms"] / r["median_ms"] if ref else None
        key = f"floor {r['dtype']} t{r['threads']} N{floors[(r['dtype'], r['threads'])]['floor_size']}" \
            if r["impl"] == "numba" and (r["dtype"], r["threads"]) in floors else None
        if key in times and f"numba {r['dtype']} t{r['threads']}" in times:
            # paired per round: both were timed in the same round, under the same load
            fl = np.asarray(times[key]) * (flops / meta[key][4])
            r["x_floor"] = paired_ratio(times[f"numba {r['dtype']} t{r['threads']}"], fl)
        tkey = f"torch {r['dtype']}"
        if r["impl"] == "numba" and r["threads"] == 2 and tkey in times:
            r["torch_over_numba"] = paired_ratio(times[tkey], times[f"numba {r['dtype']} t2"])
    return {"n_rows": n, "sizes": [int(s) for s in sizes], "flops_per_iteration": flops,
            "results": results, "notes": notes,
            "floors": {f"{d}_t{k}": v for (d, k), v in floors.items()}}


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
    """Part 3: ms per iteration vs rows (resampled with replacement; numba float64 and
    float32 and the NumPy reference alternated at each size), slope, peak RSS."""
    rng = np.random.default_rng(args.seed)
    mem = mem_available_bytes()
    points, notes, last_ref = [], [], None
    widest = sum(sizes[1:])
    for rows in args.scaling_rows:
        idx = rng.integers(0, X.shape[0], size=rows)
        Xb64, yb = np.ascontiguousarray(X[idx]), np.ascontiguousarray(y[idx])
        del idx
        Xb32 = Xb64.astype(np.float32)
        point = {"rows": int(rows), "x_float64_mb": Xb64.nbytes / 2 ** 20}
        # fewer repeats where one iteration is long; never fewer than 3
        reps = args.repeats if rows < 10 ** 6 else 3
        cases = {f"numba_{d}": (mlp_step(mlp.loss_and_grads, *init_params(sizes, d), Xb, yb), None)
                 for d, Xb in (("float64", Xb64), ("float32", Xb32))}
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
            cases["numpy-ref_float64"] = (mlp_step(mlp.reference_loss_and_grads,
                                                   *init_params(sizes, "float64"), Xb64, yb), None,
                                          SETTLE_S)
        for key, secs in round_robin(cases, reps, notes).items():
            point[key] = summary(secs)
        if "median_ms" in point.get("numpy-ref_float64", {}):
            last_ref = (rows, point["numpy-ref_float64"]["median_ms"] * 1e-3)
        # --quick: peak memory only at the largest size (each is a fresh process)
        if not args.no_subprocess and (not args.quick or rows == max(args.scaling_rows)):
            for d, Xb in (("float64", Xb64), ("float32", Xb32)):
                with tempfile.TemporaryDirectory(prefix="bench-rss-") as td:
                    point[f"rss_numba_{d}"] = peak_rss(Xb, yb, sizes[1:-1], td, env_extra)
        del Xb64, Xb32
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
    notes = []
    t = round_robin({"kernel": (lambda: fast(w, b, X, y, "relu", target="output"), None),
                     "reference": (lambda: ref(w, b, X, y, "relu", target="output"), None,
                                   SETTLE_S)},
                    args.repeats, notes)
    if len(t) < 2:
        return {"skipped": "; ".join(notes)}
    fast_s, ref_s = summary(t["kernel"]), summary(t["reference"])
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


def bench_side_by_side(X, y, sizes, iters, rounds=3, lead_s=5.0):
    """Part 5: two concurrent single-threaded worker trainings vs one all-thread
    training, alternated over ``rounds`` rounds of ``iters`` iterations each."""
    import jobs
    out = {}
    threads = numba.get_num_threads()
    with jobs.Jobs(2) as pool:
        for dtype in ("float32", "float64"):
            Xd = np.ascontiguousarray(X, dtype=dtype)
            worker_ms, in_process, ratios = [], [], []
            step = mlp_step(mlp.loss_and_grads, *init_params(sizes, dtype), Xd, y)
            step()
            for r in range(rounds):
                # time to start and warm the workers (once warm, a second is plenty)
                start = time.perf_counter() + (lead_s if r == 0 else 1.0)
                futs = [pool.submit((dtype, r, k), _timed_iterations, Xd, y, sizes, dtype, iters,
                                    start) for k in range(2)]
                w = [f.result() for f in futs]
                t = summary(timed(step, iters, warmup=0))
                worker_ms.append(w)
                in_process.append(t)
                # two workers finish 2 iterations per mean(w); this process 1 per median
                ratios.append(t["median_ms"] / (np.mean(w) / 2))
            out[dtype] = {"worker_ms_per_iteration": [float(np.mean(w)) for w in worker_ms],
                          "in_process_ms": [t["median_ms"] for t in in_process],
                          "in_process_threads": threads, "round_ratios": ratios,
                          "throughput_ratio": float(np.median(ratios))}
    return {"iterations": iters, "rounds": rounds, "results": out}


# ------------------------------------------------------------- goals and checks
#: The goals this bench states: (key, text, target, "<=" or ">=").
GOALS = {
    "float32_x_floor": ("float32 step at most 1.5x the float32 floor", 1.5, "<="),
    "float64_x_floor": ("float64 step at most 1.3x the float64 floor", 1.3, "<="),
    "float32_vs_torch": ("float32 step at least 1.3x faster than PyTorch float32", 1.3, ">="),
    "compile_warm_s": ("a warm process start spends < 1 s compiling (s)", 1.0, "<"),
    "memory_1e7": ("peak memory at 1e7 rows < 1.5 x size(X) + 200 MB (MB)", None, "<"),
    "attribution_vs_loop": ("input_gradients at least 100x a per-sample Python loop", 100.0, ">="),
    "attribution_vs_reference": ("input_gradients at least 2x the vectorised NumPy reference",
                                 2.0, ">="),
}


def _goal(key, value, target=None, detail=""):
    text, default, op = GOALS[key]
    target = default if target is None else target
    met = {"<=": value <= target, ">=": value >= target, "<": value < target}[op]
    return {"key": key, "goal": text, "value": float(value), "op": op, "target": float(target),
            "met": bool(met), "detail": detail}


def evaluate(res):
    """(goals, checks): every goal the bench states with its value and met/missed,
    and the results that contradict each other (a list of sentences)."""
    goals, checks = [], []
    it = res["iteration"]
    top = max(res["config"]["threads"])
    by = {(r["impl"], r["dtype"], r["threads"]): r for r in it["results"]}
    for dtype in ("float32", "float64"):
        r = by.get(("numba", dtype, top))
        if r and "x_floor" in r:
            q = r["x_floor"]
            fl = it["floors"][f"{dtype}_t{top}"]
            goals.append(_goal(f"{dtype}_x_floor", q["median"], detail=(
                f"{r['median_ms']:.2f} ms against a floor of {fl['median_ms']:.2f} ms "
                f"({fl['floor_size']}x{fl['floor_size']} products), {top} threads; "
                f"x floor per round: median {q['median']:.3f}, quartiles {q['q1']:.3f}-{q['q3']:.3f}")))
    r = by.get(("numba", "float32", 2))
    if r and "torch_over_numba" in r:
        q = r["torch_over_numba"]
        t = by[("torch", "float32", 2)]
        goals.append(_goal("float32_vs_torch", q["median"], detail=(
            f"PyTorch {t['median_ms']:.2f} ms, numba {r['median_ms']:.2f} ms, 2 threads each; "
            f"ratio per round: median {q['median']:.3f}, quartiles {q['q1']:.3f}-{q['q3']:.3f}")))
    comp = res.get("compile") or {}
    if "warm" in comp:
        goals.append(_goal("compile_warm_s", comp["warm"]["float64"]["compile_s"],
                           detail="first minus second float64 call in a fresh process"))
    big = [p for p in res["scaling"]["points"] if "rss_numba_float64" in p and p["rows"] >= 10 ** 7]
    if big:
        m = big[-1]["rss_numba_float64"]
        goals.append(_goal("memory_1e7", m["peak_mb"], m["goal_mb"],
                           detail=f"{big[-1]['rows']:,} rows, X {m['x_mb']:.0f} MB float64"))
    at = res["attribution"]
    if "skipped" not in at:
        goals.append(_goal("attribution_vs_loop", at["speedup_vs_loop"], detail=at["loop_note"]))
        goals.append(_goal("attribution_vs_reference", at["speedup_vs_reference"],
                           detail=f"{at['n_rows']:,} rows"))

    # an implementation is never faster on more rows (part 1 at n_rows, part 3 resampled)
    n = it["n_rows"]
    default = res["machine"]["numba_num_threads"]
    series = {"numba_float64": [], "numba_float32": [], "numpy-ref_float64": []}
    for key, (impl, dtype, threads) in (("numba_float64", ("numba", "float64", default)),
                                        ("numba_float32", ("numba", "float32", default)),
                                        ("numpy-ref_float64", ("numpy-ref", "float64", "blas"))):
        if (impl, dtype, threads) in by:
            series[key].append((n, by[(impl, dtype, threads)]["median_ms"], "part 1"))
        for p in res["scaling"]["points"]:
            if "median_ms" in p.get(key, {}):
                series[key].append((p["rows"], p[key]["median_ms"], "part 3"))
    for key, pts in series.items():
        pts.sort()
        for i, (ra, ta, pa) in enumerate(pts):
            for rb, tb, pb in pts[i + 1:]:
                if rb > ra and ta > tb:
                    checks.append(f"{key} took {ta:.1f} ms at {ra:,} rows ({pa}) but {tb:.1f} ms at "
                                  f"{rb:,} rows ({pb}): slower on fewer rows")
    for dtype in ("float64", "float32"):
        r1, r2 = by.get(("numba", dtype, 1)), by.get(("numba", dtype, 2))
        if r1 and r2 and r2["median_ms"] > r1["median_ms"]:
            checks.append(f"numba {dtype}: 2 threads {r2['median_ms']:.2f} ms, slower than 1 thread "
                          f"{r1['median_ms']:.2f} ms: a speed-up below 1")
    sbs = res.get("side_by_side") or {}
    for dtype, r in (sbs.get("results") or {}).items():
        if r["throughput_ratio"] < 1:
            checks.append(f"side by side, {dtype}: two 1-thread workers get {r['throughput_ratio']:.2f}x "
                          f"the iterations per second of one {r['in_process_threads']}-thread training, "
                          f"below 1: this contradicts the reason run_all.py trains in worker "
                          f"processes (README)")
    return goals, checks


# ------------------------------------------------------------------ output
def _goal_text(g):
    v = g["value"]
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def tables(res):
    """Markdown tables of every part, the goals and the checks (also printed)."""
    it = res["iteration"]
    lines = [f"Command: `{res['command']}` ({res['started']}, {res['total_s']:.0f} s)", "",
             describe_machine(res["machine"]), "",
             f"Data: {res['data_source']}", "",
             f"One full-batch GD iteration, {it['n_rows']:,} rows, layers "
             f"{'-'.join(map(str, it['sizes']))} ReLU, "
             f"{it['flops_per_iteration'] / 1e9:.3f} GFLOP/iteration, {res['config']['repeats']} "
             f"rounds, every case once per round; speed-up = NumPy float64 reference median / "
             f"median; x floor = median over rounds of time / floor time of the same dtype and "
             f"threads in the same round.", "",
             "| implementation | dtype | threads | median ms | quartiles ms | min-max ms "
             "| speed-up | GFLOP/s | x floor |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in it["results"]:
        sp = f"{r['speedup_vs_ref64']:.1f}x" if r["speedup_vs_ref64"] else "-"
        xf = (f"{r['x_floor']['median']:.2f} ({r['x_floor']['q1']:.2f}-{r['x_floor']['q3']:.2f})"
              if "x_floor" in r else "1 (floor)" if r["impl"] == "floor" else "-")
        name = (f"floor: {r['floor_size']}x{r['floor_size']} products" if r["impl"] == "floor"
                else r["impl"])
        lines.append(f"| {name} | {r['dtype']} | {r['threads']} | {r['median_ms']:.2f} | "
                     f"{r['q1_ms']:.2f}-{r['q3_ms']:.2f} | {r['min_ms']:.2f}-{r['max_ms']:.2f} | "
                     f"{sp} | {r['gflops']:.1f} | {xf} |")
    for r in it["results"]:
        if "torch_over_numba" in r:
            q = r["torch_over_numba"]
            lines.append(f"- PyTorch {r['dtype']} / numba {r['dtype']} (2 threads each), per round: "
                         f"median {q['median']:.2f}x, quartiles {q['q1']:.2f}-{q['q3']:.2f}x")
    lines.append(f"- floor: square products of the fastest size among "
                 f"{', '.join(map(str, res['config']['floor_sizes']))}, "
                 f"as many as the iteration has flops, through numba's np.dot (the kernels' BLAS), "
                 f"split evenly over the threads")
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
                     f"{'met' if warm['float64']['compile_s'] < 1 else 'MISSED'}; importing mlp "
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
                         f"= {r['goal_mb']:.0f} MB: {'met' if r['meets_goal'] else 'MISSED'}")
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
        vr, vl = at["speedup_vs_reference"], at["speedup_vs_loop"]
        lines += ["", f"Attribution, input_gradients on {at['n_rows']:,} rows "
                  ":", "",
                  "| method | median ms (all rows) | kernel speed-up | goal |",
                  "|---|---:|---:|---:|",
                  f"| numba kernel | {at['kernel']['median_ms']:.2f} | 1x | |",
                  f"| NumPy vectorised reference | {at['reference']['median_ms']:.2f} | "
                  f"{vr:.3g}x | >= 2x: {'met' if vr >= 2 else 'MISSED'} |",
                  f"| per-sample Python loop (est.) | {at['loop_full_estimate_ms']:.0f} | "
                  f"{vl:.3g}x | >= 100x: {'met' if vl >= 100 else 'MISSED'} |",
                  f"- {at['loop_note']}"]
    sbs = res.get("side_by_side")
    if sbs and "results" in sbs:
        lines += ["", f"Side-by-side trainings ({sbs['rounds']} rounds of {sbs['iterations']} timed "
                  "iterations, workers and this process alternated; throughput = iterations "
                  "per second of the whole machine; ratio > 1: the workers get more done):", "",
                  "| dtype | 2 workers x 1 thread, ms/iteration (mean of both), per round "
                  "| 1 process, all threads, ms/iteration, per round | throughput ratio per round "
                  "| median ratio |", "|---|---:|---:|---:|---:|"]
        for dtype, r in sbs["results"].items():
            lines.append(f"| {dtype} | {' / '.join(f'{v:.1f}' for v in r['worker_ms_per_iteration'])} | "
                         f"{' / '.join(f'{v:.1f}' for v in r['in_process_ms'])} "
                         f"({r['in_process_threads']} threads) | "
                         f"{' / '.join(f'{v:.2f}' for v in r['round_ratios'])} | "
                         f"{r['throughput_ratio']:.2f}x |")
    elif sbs:
        lines += ["", f"Side-by-side trainings: {sbs.get('skipped')}"]
    lines += ["", "Goals stated by this bench, measured in this run:", "",
              "| goal | measured | target | |", "|---|---:|---:|---|"]
    for g in res["goals"]:
        lines.append(f"| {g['goal']} | {_goal_text(g)} | {g['op']} {g['target']:.4g} | "
                     f"{'met' if g['met'] else 'MISSED'} |")
    for g in res["goals"]:
        if g["detail"]:
            lines.append(f"- {g['goal']}: {g['detail']}")
    lines += ["", "Consistency checks (results that contradict each other):", ""]
    lines += ([f"- CONTRADICTION: {c}" for c in res["checks"]] or
              ["- none: no implementation is slower on fewer rows, two threads beat one, "
               "and the side-by-side ratio (if measured) is above 1"])
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
    p.add_argument("--floor-sizes", type=int, nargs="+", default=[64, 128, 256],
                   help="sizes N of the floor's N x N products; the fastest counts "
                        "(default 64 128 256)")
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
    for name in ("repeats", "loop_rows", "rows"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} {v} must be a positive integer")
    if any(r < 1 for r in args.scaling_rows + args.hidden + args.floor_sizes):
        raise ValueError("--scaling-rows, --hidden and --floor-sizes take positive integers; "
                         f"got {args.scaling_rows}, {args.hidden} and {args.floor_sizes}")
    if any(not 1 <= k <= numba.config.NUMBA_NUM_THREADS for k in args.threads):
        raise ValueError(f"--threads {args.threads}: each must be between 1 and "
                         f"{numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS)")
    return args


def main(argv=None):
    """Run every part, print the tables, write bench.json, bench.md and scaling.png."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    X, y, source = load_problem(args.data_dir, args.rows, args.seed, args.random_data)
    sizes = [X.shape[1], *args.hidden, N_CLASSES]
    print(f"data: {source}", flush=True)
    res = {"command": " ".join(["python bench/time_epochs.py", *argv]),
           "started": time.strftime("%Y-%m-%d %H:%M"),
           "config": {**vars(args), "lr": LR, "sizes": sizes},
           "machine": machine_info(), "data_source": source,
           "data_is_real": source.startswith("real data")}
    print("part 1: one iteration, beside the floor ...", flush=True)
    res["iteration"] = bench_iteration(X, y, sizes, args)
    if "torch" in sys.modules:   # imported by part 1
        res["machine"]["torch_blas"] = ("MKL" if sys.modules["torch"].backends.mkl.is_available()
                                        else "its own BLAS, not MKL")
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
        res["side_by_side"] = bench_side_by_side(X, y, sizes, 20 if args.quick else 50)
    res["goals"], res["checks"] = evaluate(res)
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
