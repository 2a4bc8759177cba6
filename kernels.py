"""The network's numba kernels: the activation registry, the parameter layout, the tiled
forward and backward passes (with and without dropout) and the attribution kernels.

Each kernel is a pure ``_name`` (``@njit``, arrays and scalars in, arrays out); its
validating public wrapper ``name`` and its plain NumPy reference ``reference_*`` are in
``mlp.py``, which is the module to import. This module also sets numba up before it
loads: the kernel cache folder (keyed by the kernels' sources), the threading layer.
"""
import hashlib
import os
import tempfile
import warnings
from typing import Callable, NamedTuple


def _kernel_cache_dir():
    """numba's cache folder for the kernels, keyed by the source of the modules
    that hold them. numba checks only the time stamp of a kernel's own file,
    but the kernels here inline numerics.py, mlp.py's wrappers call them and
    those of shared_bias.py inline this file's registry: editing any of the four must
    recompile them all.
    Next to this file, or in a temporary directory when that is not writable."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha1()
    for name in ("kernels.py", "mlp.py", "numerics.py", "shared_bias.py"):
        with open(os.path.join(here, name), "rb") as f:
            digest.update(f.read())
    base = (os.path.join(here, "__pycache__") if os.access(here, os.W_OK)
            else os.path.join(tempfile.gettempdir(), "mlp-numba-cache"))
    return os.path.join(base, "numba-" + digest.hexdigest()[:12])


KEEP_CACHES = 3     # kernel caches of other sources kept (switching branches back and forth)


def _prune_kernel_caches(current, keep=KEEP_CACHES):
    """Remove the ``numba-<digest>`` folders beside ``current`` but the ``keep``
    newest (by modification time): each edit of the sources leaves one behind
    (about 6 MB).
    Returns the removed paths."""
    import shutil
    parent = os.path.dirname(current)
    try:
        others = [e for e in os.scandir(parent)
                  if e.name.startswith("numba-") and e.path != current and e.is_dir()]
    except OSError:
        return []
    others.sort(key=lambda e: e.stat().st_mtime, reverse=True)
    removed = []
    for e in others[keep:]:
        shutil.rmtree(e.path, ignore_errors=True)
        removed.append(e.path)
    return removed


# an explicit NUMBA_CACHE_DIR wins (then editing one module does not recompile
# the kernels of another that inline it: clear that folder by hand)
if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = _kernel_cache_dir()
    if not os.path.isdir(os.environ["NUMBA_CACHE_DIR"]):    # a new source: once per edit
        _prune_kernel_caches(os.environ["NUMBA_CACHE_DIR"])
#: True when no compiled kernel is cached yet for these sources: the first run after an
#: install or an edit compiles them (``COLD_COMPILE_SECONDS``), later runs load them.
KERNEL_CACHE_COLD = not (os.path.isdir(os.environ["NUMBA_CACHE_DIR"]) and os.listdir(os.environ["NUMBA_CACHE_DIR"]))

import numpy as np
import numba as nb

nb.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]    # also when numba was imported first
from numba import literal_unroll, njit, prange
from numba.core.errors import NumbaExperimentalFeatureWarning

from numerics import exp_nonpositive, fast_sigmoid, fast_tanh, log_normal, sigmoid_for_float32

DTYPES = {"float64": np.float64, "float32": np.float32}

# numba would pick the OpenMP threading layer when libgomp is present; GNU
# OpenMP workers spin while waiting, and on a shared machine one parallel
# kernel call then costs ~20x more (measured: 80 vs 3.5 ms per training step).
# The workqueue layer sleeps instead. An explicit NUMBA_THREADING_LAYER wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    nb.config.THREADING_LAYER = "workqueue"

# Kernels dispatch on a code by unrolling a registry tuple of (code, jitted
# functions) with ``literal_unroll``; each function is called directly (and
# inlined) in its own copy of the loop. While typing such a tuple numba warns
# that first-class function types are experimental; no first-class (indirect)
# call is made, so the warning says nothing about this code.
warnings.filterwarnings("ignore", message="First-class function type feature is experimental",
                        category=NumbaExperimentalFeatureWarning)


# ---------------------------------------------------------------- activations
# g is the form the kernels evaluate: vectorisable (numerics.py), computed in
# float64 and rounded once on the store; g_float32 is what float32 tiles use.
# dg is g'(z) written in terms of the output a = g(z), so the backward pass
# needs only the stored activations; mul_dg(d, a) = d * g'(z) is the form the
# network's backward pass uses (relu as a select). All are inline="always" so
# they compile with the flags of the loop that calls them.
@njit(cache=True, inline="always")
def _relu(z):
    """max(z, 0) in z's own dtype."""
    return z if z > 0 else z * 0


@njit(cache=True, inline="always")
def _relu_grad(a):
    """relu'(z) from a = relu(z): 1 where a > 0, else 0."""
    return a * 0 + 1 if a > 0 else a * 0


@njit(cache=True, inline="always")
def _relu_mul_grad(d, a):
    """d * relu'(z) as a select, not a product: the loop vectorises without
    float32 -> float64 round trips (measured 6x faster than a conditional store)."""
    return d if a > 0 else 0.0


@njit(cache=True, inline="always")
def _sigmoid(z):
    """1 / (1 + exp(-z)) in float64, without overflow."""
    return fast_sigmoid(np.float64(z))


@njit(cache=True, inline="always")
def _sigmoid_float32(z):
    """sigmoid for float32 tiles: a shorter polynomial, still correctly rounded."""
    return sigmoid_for_float32(np.float64(z))


@njit(cache=True, inline="always")
def _sigmoid_grad(a):
    """sigmoid'(z) = a (1 - a)."""
    return a * (1 - a)


@njit(cache=True, inline="always")
def _sigmoid_mul_grad(d, a):
    """d * sigmoid'(z) from a = sigmoid(z)."""
    return d * _sigmoid_grad(a)


@njit(cache=True, inline="always")
def _tanh(z):
    """tanh(z) in float64."""
    return fast_tanh(np.float64(z))


@njit(cache=True, inline="always")
def _tanh_grad(a):
    """tanh'(z) = 1 - a^2."""
    return 1 - a * a


@njit(cache=True, inline="always")
def _tanh_mul_grad(d, a):
    """d * tanh'(z) from a = tanh(z)."""
    return d * _tanh_grad(a)


def _reference_sigmoid(z):
    from scipy.special import expit
    return expit(z)


class Activation(NamedTuple):
    """One hidden activation: its name, kernel code and formulas."""
    name: str
    code: int
    g: Callable               # @njit scalar g(z), the vectorisable form (float64 tiles)
    g_float32: Callable       # @njit scalar g(z) for float32 tiles
    dg: Callable              # @njit scalar g'(z) from a = g(z)
    mul_dg: Callable          # @njit scalar d * g'(z) from (d, a), the backward pass's form
    reference_g: Callable     # NumPy g(Z), elementwise
    reference_dg: Callable    # NumPy g'(z) from A = g(Z), elementwise
    max_slope: float          # max over z of g'(z): how much a layer can pass back at best (the report says it)


#: The registry of hidden activations. Adding one is one row here and its
#: formulas above; every kernel, the NumPy reference and the name checks
#: read it. Codes are the row positions.
ACTIVATION_TABLE = (
    Activation("relu", 0, _relu, _relu, _relu_grad, _relu_mul_grad,
               lambda z: np.maximum(z, 0.0), lambda a: (a > 0).astype(a.dtype), 1.0),
    Activation("sigmoid", 1, _sigmoid, _sigmoid_float32, _sigmoid_grad, _sigmoid_mul_grad,
               _reference_sigmoid, lambda a: a * (1 - a), 0.25),
    Activation("tanh", 2, _tanh, _tanh, _tanh_grad, _tanh_mul_grad, np.tanh, lambda a: 1 - a * a, 1.0),
)
assert all(a.code == i for i, a in enumerate(ACTIVATION_TABLE)), "codes must be row positions"
ACTIVATIONS = {a.name: a.code for a in ACTIVATION_TABLE}
# what the kernels unroll over: (code, g, g_float32, dg, mul_dg)
_KERNEL_ACTIVATIONS = tuple((a.code, a.g, a.g_float32, a.dg, a.mul_dg) for a in ACTIVATION_TABLE)


def registry_code(codes, param, value):
    """``codes[value]`` (a registry's name -> code map); for an unknown name a
    ``ValueError`` that names the parameter ``param`` and the options."""
    try:
        return codes[value]
    except (KeyError, TypeError):
        raise ValueError(f"{param}={value!r} is not supported; "
                         f"use one of {sorted(codes)}") from None


def activation_code(activation):
    """Integer code of a hidden activation name; ``ValueError`` if unknown."""
    return registry_code(ACTIVATIONS, "activation", activation)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _bias_act(Z, b, code):
    """Z <- g(Z + b) in place, g the activation ``code`` (float32 tiles use g_float32).

    The dispatch sits outside the loops: one copy of the loop per activation.
    """
    r, m = Z.shape
    known = False
    for act in literal_unroll(_KERNEL_ACTIVATIONS):
        if act[0] == code:
            known = True
            if Z.itemsize == 4:
                for i in range(r):
                    for j in range(m):
                        Z[i, j] = act[2](Z[i, j] + b[j])
            else:
                for i in range(r):
                    for j in range(m):
                        Z[i, j] = act[1](Z[i, j] + b[j])
    if not known:
        raise ValueError("unknown activation code; use a code from mlp.ACTIVATIONS")


@njit(cache=True)
def _mul_act_grad(D, A, code, gb=None):
    """D <- D * g'(z), with g'(z) written from the activation output A = g(z). With
    ``gb`` also gb += the column sums of the new D, rows in order: the bias gradient
    of the layer in the same pass over D."""
    r, m = D.shape
    known = False
    for act in literal_unroll(_KERNEL_ACTIVATIONS):
        if act[0] == code:
            known = True
            if gb is None:
                for i in range(r):
                    for j in range(m):
                        D[i, j] = act[4](D[i, j], A[i, j])
            else:
                for i in range(r):
                    for j in range(m):
                        D[i, j] = act[4](D[i, j], A[i, j])
                        gb[j] += D[i, j]
    if not known:
        raise ValueError("unknown activation code; use a code from mlp.ACTIVATIONS")


# ------------------------------------------------------------ parameter layout
def resolve_dtype(dtype):
    """``np.float64`` or ``np.float32`` from a name or dtype; ``ValueError`` otherwise."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use 'float64' or 'float32'")
    return DTYPES[name]


def n_params(sizes):
    """Number of scalars in the flat parameter vector for layer widths ``sizes``."""
    sizes = [int(s) for s in sizes]
    return sum(o * i + o for i, o in zip(sizes[:-1], sizes[1:]))


def pack(weights, biases, dtype=np.float64):
    """Flatten per-layer weights and biases into one contiguous vector.

    Parameters
    ----------
    weights : list of ndarray, ``weights[l]`` of shape (sizes[l+1], sizes[l])
    biases : list of ndarray, ``biases[l]`` of shape (sizes[l+1],)
    dtype : float64 or float32

    Returns
    -------
    theta : ndarray of shape (n_params(sizes),)
    sizes : ndarray of int64, shape (n_layers + 1,)
    """
    if len(weights) == 0 or len(weights) != len(biases):
        raise ValueError(f"need one bias per weight matrix and at least one layer; "
                         f"got {len(weights)} weights and {len(biases)} biases")
    sizes = [np.shape(weights[0])[1]]
    for l, (W, b) in enumerate(zip(weights, biases)):
        W, b = np.asarray(W), np.asarray(b)
        if W.ndim != 2 or W.shape[1] != sizes[-1]:
            raise ValueError(f"weights[{l}] has shape {W.shape}; expected "
                             f"(fan_out, {sizes[-1]}) to follow the previous layer")
        if b.shape != (W.shape[0],):
            raise ValueError(f"biases[{l}] has shape {b.shape}; expected ({W.shape[0]},)")
        sizes.append(W.shape[0])
    theta = np.concatenate([np.concatenate([np.ravel(W), np.ravel(b)])
                            for W, b in zip(weights, biases)]).astype(dtype)
    return np.ascontiguousarray(theta), np.asarray(sizes, dtype=np.int64)


def unpack(theta, sizes):
    """Views of ``theta`` as per-layer ``(weights, biases)`` lists (see ``pack``)."""
    weights, biases, off = [], [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        fan_in, fan_out = int(fan_in), int(fan_out)
        weights.append(theta[off:off + fan_out * fan_in].reshape(fan_out, fan_in))
        off += fan_out * fan_in
        biases.append(theta[off:off + fan_out])
        off += fan_out
    return weights, biases


@njit(cache=True)
def _offsets(sizes):
    """Start of W[l] in theta for each layer, and the total length (last entry)."""
    L = sizes.shape[0] - 1
    off = np.empty(L + 1, dtype=np.int64)
    off[0] = 0
    for l in range(L):
        off[l + 1] = off[l] + sizes[l + 1] * sizes[l] + sizes[l + 1]
    return off



# ===================================================================== tiling
# Samples are cut into tiles of TILE rows; a tile's forward and backward pass
# run while its activations (TILE x width) are in cache, so no (n, width)
# matrix ever exists. Tiles are grouped into a FIXED number of contiguous
# blocks (min(n_tiles, MAX_BLOCKS), independent of the thread count); blocks run
# in parallel (prange), each accumulating into its own gradient buffer, and the
# buffers are summed in block order afterwards. The result is therefore
# bitwise identical for any number of numba threads; with one thread the
# wrappers call the ``*_one_thread`` twins, which run the same blocks in order
# on the calling thread (no parallel launch). Per-tile products use
# np.dot on 2-D slices (numba calls SciPy's BLAS gemm), which the wrappers limit
# to one BLAS thread so it does not compete with the prange workers.
# TILE is set by what the products cost: OpenBLAS (AVX-512 kernels) multiplies
# small operands directly, without packing them first, up to about 10^6
# multiply-adds per call. With 128 rows a (128, 64) x (64, 64) product stays
# below that and ran at 111-113 GFLOP/s float32 (56 float64) on one core,
# against 85 (43) for 256 rows, which the library packs first; one whole
# 12-64-64-4 step spent 23% less time in products (bench/time_epochs.py, part 1,
# shows the step against the products' floor).
TILE = 128
MAX_BLOCKS = 16


def _n_blocks(n, tile):
    n_tiles = -(-n // tile)
    return min(n_tiles, MAX_BLOCKS)


@njit(cache=True)
def _block_rows(b, n_blocks, n, tile):
    """Rows [start, stop) of block b: whole tiles, contiguous, blocks in order."""
    n_tiles = (n + tile - 1) // tile
    start = min((b * n_tiles // n_blocks) * tile, n)
    stop = min(((b + 1) * n_tiles // n_blocks) * tile, n)
    return start, stop


@njit(cache=True)
def _layer_views(theta, sizes):
    """Views W[l] (fan_out, fan_in) and b[l] (fan_out,) into the flat ``theta``."""
    off = _offsets(sizes)
    L = sizes.shape[0] - 1
    Ws = [theta[off[l]:off[l] + sizes[l + 1] * sizes[l]].reshape(sizes[l + 1], sizes[l])
          for l in range(L)]
    bs = [theta[off[l] + sizes[l + 1] * sizes[l]:off[l + 1]] for l in range(L)]
    return Ws, bs


@njit(cache=True)
def _transposed(Ws):
    """W[l]^T as contiguous (fan_in, fan_out) copies. The forward product A W^T
    then reaches BLAS untransposed: (128, 64) x (64, 64) float32 ran at 113
    GFLOP/s against 85 with the transposed view (56 against 43 in float64)."""
    return [np.ascontiguousarray(W.T) for W in Ws]


ALIGN = 128    # bytes


@njit(cache=True)
def _aligned_empty(rows, cols, dt):
    """np.empty((rows, cols), dt) starting on an ALIGN-byte boundary; with cols *
    itemsize a multiple of ALIGN every row starts on one. numba's own allocations
    are 32-byte aligned, so a tile's buffers lay at any multiple of 32 bytes from
    each other, and that costs: ``_mul_act_grad`` on a (128, 64) float32 tile took
    0.7 us when its two buffers were a multiple of 128 bytes apart and 1.3 us when
    an odd multiple of 64 (both 64-byte aligned; measured on AMD Zen 4, cause not
    pinned down). Where a buffer starts changes no result."""
    buf = np.empty(rows * cols + ALIGN, dtype=dt)
    skip = ((ALIGN - buf.ctypes.data % ALIGN) % ALIGN) // buf.itemsize
    return buf[skip:skip + rows * cols].reshape(rows, cols)


@njit(cache=True)
def _tile_workspaces(sizes, tile, dt):
    """Per-block buffers reused by every tile: the activations acts[l] (tile,
    sizes[l+1]) and two ping-pong rows for the deltas of the backward pass, each
    on an ALIGN-byte boundary (``_aligned_empty``)."""
    L = sizes.shape[0] - 1
    maxw = 0
    for l in range(L + 1):
        maxw = max(maxw, sizes[l])
    acts = [_aligned_empty(tile, sizes[l + 1], dt) for l in range(L)]
    row = -(-tile * maxw // ALIGN) * ALIGN                     # elements: the second row aligned too
    dbuf = _aligned_empty(2, row, dt)
    return acts, dbuf


@njit(cache=True)
def _delta_view(dbuf, k, r, width):
    """(r, width) view of ping-pong buffer k % 2; the output delta uses k = 0
    and the delta of layer l's input k = L - l, so consecutive layers alternate."""
    return dbuf[k % 2, :r * width].reshape(r, width)


# ==================================================================== forward
@njit(cache=True)
def _add_bias_by_column(Z, b):
    """Z += b (the logits' bias), one column at a time: with K = 4 columns a row at a
    time ran 2.5x slower in float32 (0.36 against 0.14 us a 128-row tile)."""
    for j in range(Z.shape[1]):
        bj = b[j]
        for i in range(Z.shape[0]):
            Z[i, j] += bj


@njit(cache=True)
def _tile_forward(WTs, bs, code, Xt, acts):
    """acts[l] = g(acts[l-1] W[l]^T + b[l]) for hidden l; the last is the logits.
    WTs[l] is W[l]^T, contiguous (``_transposed``)."""
    r = Xt.shape[0]
    L = len(WTs)
    A = Xt                                      # (r, d)
    for l in range(L):
        Z = acts[l][:r]                         # (r, sizes[l+1])
        np.dot(A, WTs[l], Z)
        b = bs[l]
        if l < L - 1:
            _bias_act(Z, b, code)
        else:
            _add_bias_by_column(Z, b)
        A = Z
    return A                                    # logits (r, K)


@njit(cache=True, inline="always")
def _softmax_row(Z, i, ez):
    """ez[k] = exp(z_k - max z) for the logits z = Z[i] (float64, each <= 1: no
    overflow); returns (argmax z, first on ties; max z; sum_k ez[k]). Softmax is
    ez / sum and log-sum-exp is max z + log(sum)."""
    K = Z.shape[1]
    zmax = Z[i, 0]
    best = 0
    for k in range(1, K):
        if Z[i, k] > zmax:
            zmax = Z[i, k]
            best = k
    ssum = 0.0
    for k in range(K):
        ez[k] = np.exp(np.float64(Z[i, k]) - zmax)
        ssum += ez[k]
    return best, zmax, ssum


@njit(cache=True)
def _forward_tile(t, WTs, bs, sizes, code, X, tile, log, out):
    """Rows of tile t of ``_forward``'s output (each tile writes its own rows)."""
    L = sizes.shape[0] - 1
    K = sizes[L]
    acts = [np.empty((tile, sizes[l + 1]), dtype=out.dtype) for l in range(L)]
    ez = np.empty(K)
    s = t * tile
    e = min(s + tile, X.shape[0])
    Z = _tile_forward(WTs, bs, code, X[s:e], acts)
    for i in range(e - s):
        _, zmax, ssum = _softmax_row(Z, i, ez)
        lse = zmax + np.log(ssum)
        for k in range(K):
            if log:
                out[s + i, k] = np.float64(Z[i, k]) - lse
            else:
                out[s + i, k] = np.exp(np.float64(Z[i, k]) - lse)


@njit(cache=True, parallel=True)
def _forward(theta, sizes, code, X, tile, log):
    """P = softmax(f(X)) (or log P when ``log``), shape (n, K), tile by tile."""
    n = X.shape[0]
    out = np.empty((n, sizes[sizes.shape[0] - 1]), dtype=theta.dtype)
    Ws, bs = _layer_views(theta, sizes)
    WTs = _transposed(Ws)
    for t in nb.prange((n + tile - 1) // tile):
        _forward_tile(np.int64(t), WTs, bs, sizes, code, X, tile, log, out)
    return out


@njit(cache=True)
def _forward_one_thread(theta, sizes, code, X, tile, log):
    """``_forward`` on the calling thread, for one numba thread: the same tiles, no
    parallel launch (see ``_loss_and_grad_one_thread``)."""
    n = X.shape[0]
    out = np.empty((n, sizes[sizes.shape[0] - 1]), dtype=theta.dtype)
    Ws, bs = _layer_views(theta, sizes)
    WTs = _transposed(Ws)
    for t in range((n + tile - 1) // tile):
        _forward_tile(t, WTs, bs, sizes, code, X, tile, log, out)
    return out


# =================================================================== backward
@njit(cache=True)
def _tile_logits(WTs, bs, code, X, s, stop, tile, acts, dbuf):
    """Forward pass of the tile of rows [s, min(s + tile, stop)) of X: returns its
    rows Xt (r, d), their logits (r, K) and the (r, K) buffer for the logit delta."""
    Xt = X[s:min(s + tile, stop)]                              # (r, d)
    Z = _tile_forward(WTs, bs, code, Xt, acts)                 # (r, K) logits
    return Xt, Z, _delta_view(dbuf, 0, Xt.shape[0], Z.shape[1])


@njit(cache=True)
def _delta_to_input(D, W, A, code, Dn):
    """Dn = (D W) * g'(z): the delta at the input of layer W from the delta D at its
    output, with A = g(z) the activation that layer read. (r, fan_in)."""
    np.dot(D, W, Dn)                                           # dL/dA
    _mul_act_grad(Dn, A, code)                                 # dL/dZ
    return Dn


@njit(cache=True)
def _softmax_workspace(tile, K):
    """Buffers of ``_output_delta`` for one tile: T (K, tile) and stats (3, tile),
    float64, and best (tile,) int64."""
    return np.empty((K, tile)), np.empty((3, tile)), np.empty(tile, dtype=np.int64)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _softmax_tile(Z, T, zmax, ssum, best):
    """For each row i of the logits Z (r, K): zmax[i] = max_k z_ik, best[i] its first
    argmax, T[k, i] = exp(z_ik - zmax[i]) in (0, 1] (float64: no overflow) and
    ssum[i] = sum_k T[k, i], added in k order. Softmax is T / ssum and log-sum-exp
    zmax + log(ssum). The logits are copied class-major into T first, so every
    later pass runs over contiguous rows and compiles to packed code
    (numerics.exp_nonpositive): 0.2 ms per step of 33,078 rows against 0.7 ms
    for a row at a time with np.exp."""
    r, K = Z.shape
    for k in range(K):                                         # class by class: contiguous stores
        for i in range(r):
            T[k, i] = Z[i, k]                                  # (K, r)
    for i in range(r):
        zmax[i] = T[0, i]
        best[i] = 0
    for k in range(1, K):
        for i in range(r):
            z = T[k, i]
            up = z > zmax[i]
            best[i] = k if up else best[i]
            zmax[i] = z if up else zmax[i]
    for i in range(r):
        ssum[i] = 0.0
    for k in range(K):
        for i in range(r):
            e = exp_nonpositive(T[k, i] - zmax[i])
            T[k, i] = e
            ssum[i] += e


@njit(cache=True, error_model="numpy")
def _output_delta(Zout, y, scale, s, sm, D, loss, correct):
    """D = d(sum_i scale_i CE_i)/dz at the logits Zout (r, K) of rows s.. of y;
    returns (loss + sum_i scale_i CE_i in float64, correct + number of correct
    argmax predictions). The running sum comes in so that it adds row by row
    across tiles: the same rounding as one loop over the block. ``sm`` is
    ``_softmax_workspace``."""
    r, K = Zout.shape
    T, stats, best = sm
    zmax, ssum, c = stats[0], stats[1], stats[2]
    _softmax_tile(Zout, T, zmax, ssum, best)
    for i in range(r):
        # log sum_k exp(z_k): ssum is in [1, K], a normal number, so log_normal applies
        zmax[i] += log_normal(ssum[i])
        c[i] = scale[s + i] / ssum[i]
    # softmax + CE fused: dCE/dz_k = p_k - [k == y], the softmax Jacobian
    # contracted with -1/p_y collapses to P - Y.
    for k in range(K):                                         # class by class, as T
        for i in range(r):
            D[i, k] = c[i] * T[k, i]
    for i in range(r):
        yi = y[s + i]
        D[i, yi] -= scale[s + i]
        loss += scale[s + i] * (zmax[i] - Zout[i, yi])
        if best[i] == yi:
            correct += 1
    return loss, correct


@njit(cache=True)
def _add_weight_grad(D, A, gbuf, gW):
    """gW += D^T A (fan_out, fan_in), through the flat buffer gbuf. When fan_in <
    fan_out the product is formed as A^T D (fan_in, fan_out) and added transposed:
    (12, 128) x (128, 64) float32 ran at 112 GFLOP/s against 86 for (64, 128) x (128, 12)."""
    fo = D.shape[1]
    fi = A.shape[1]
    if fi < fo:
        gt = gbuf[:fi * fo].reshape(fi, fo)
        np.dot(A.T, D, gt)                                     # (fan_in, fan_out)
        for c in range(fi):                                    # gt row by row: 1.3x faster
            for a in range(fo):
                gW[a, c] += gt[c, a]
    else:
        gt = gbuf[:fo * fi].reshape(fo, fi)
        np.dot(D.T, A, gt)                                     # (fan_out, fan_in)
        for a in range(fo):
            for c in range(fi):
                gW[a, c] += gt[a, c]


@njit(cache=True)
def _add_col_sums(D, gb):
    """gb += column sums of D, rows in order (the output layer's bias gradient). Each
    column's sum runs in a register, the same additions in the same order: through
    gb in memory, a row at a time, a (128, 4) tile took 0.42 us against 0.23."""
    for a in range(D.shape[1]):
        acc = gb[a]
        for i in range(D.shape[0]):
            acc += D[i, a]
        gb[a] = acc


@njit(cache=True)
def _block_workspace(theta, sizes, tile):
    """What ``_block_loss_grad_in`` reads and overwrites: the layers' views (Ws, bs),
    W^T copies, tile buffers, the weight-gradient buffer and the softmax workspace.
    One block at a time may use it."""
    L = sizes.shape[0] - 1
    Ws, bs = _layer_views(theta, sizes)
    maxp = 0
    for l in range(L):
        maxp = max(maxp, sizes[l + 1] * sizes[l])
    acts, dbuf = _tile_workspaces(sizes, tile, theta.dtype)
    gtmp = _aligned_empty(1, maxp, theta.dtype)[0]
    return Ws, bs, _transposed(Ws), acts, dbuf, gtmp, _softmax_workspace(tile, sizes[L])


@njit(cache=True)
def _block_loss_grad(theta, sizes, code, X, y, scale, start, stop, tile, g):
    """Add d/dtheta of sum_i scale_i * CE_i over rows [start, stop) into ``g``.

    Returns (sum_i scale_i * CE_i in float64, number of correct argmax predictions).
    """
    return _block_loss_grad_in(_block_workspace(theta, sizes, tile), sizes, code, X, y, scale,
                               start, stop, tile, g)


@njit(cache=True)
def _block_loss_grad_in(ws, sizes, code, X, y, scale, start, stop, tile, g):
    """``_block_loss_grad`` in the workspace ``ws`` (``_block_workspace``)."""
    Ws, bs, WTs, acts, dbuf, gtmp, sm = ws
    L = sizes.shape[0] - 1
    gWs, gbs = _layer_views(g, sizes)
    loss = 0.0
    correct = np.int64(0)        # not the literal 0: one compiled _output_delta
    for s in range(start, stop, tile):
        Xt, Zout, D = _tile_logits(WTs, bs, code, X, s, stop, tile, acts, dbuf)
        r = Xt.shape[0]
        loss, correct = _output_delta(Zout, y, scale, s, sm, D, loss, correct)
        _add_col_sums(D, gbs[L - 1])
        for l in range(L - 1, -1, -1):
            A = Xt if l == 0 else acts[l - 1][:r]              # (r, fan_in)
            _add_weight_grad(D, A, gtmp, gWs[l])
            if l > 0:
                # the delta at layer l's input, (D W) * g'(z); its column sums are
                # layer l-1's bias gradient, added in the same pass
                Dn = _delta_view(dbuf, L - l, r, sizes[l])
                np.dot(D, Ws[l], Dn)
                _mul_act_grad(Dn, A, code, gbs[l - 1])
                D = Dn
    return loss, correct


@njit(cache=True)
def _reduce_blocks(theta, sizes, G, losses, corrects, l2):
    """Sum the per-block gradients, losses and counts in block order (independent
    of the thread count: each parameter summed over the blocks in order) and add
    l2/2 sum_l ||W_l||^2 and its gradient. Serial, one block's row at a time (it
    vectorises): 11 us for 16 blocks of the 12-64-64-4 network (float32), where
    a parallel loop over chunks of parameters took 58 us of work plus a parallel
    launch of ~50 us, with one thread or two."""
    P = theta.shape[0]
    grad = np.zeros(P)
    for b in range(G.shape[0]):
        Gb = G[b]
        for p in range(P):
            grad[p] += Gb[p]
    loss = 0.0
    correct = 0
    for b in range(G.shape[0]):
        loss += losses[b]
        correct += corrects[b]
    loss = _add_l2(theta, sizes, l2, grad, loss)
    return loss, grad.astype(theta.dtype), correct


@njit(cache=True)
def _block_buffers(n_blocks, theta):
    """What the blocks fill: gradients G (n_blocks, >= n_params), losses and counts.
    The rows of G are padded to a multiple of ALIGN elements, so each starts on an
    ALIGN-byte boundary (``_aligned_empty``); ``_layer_views`` and ``_reduce_blocks``
    read only the first n_params."""
    cols = -(-theta.shape[0] // ALIGN) * ALIGN
    return (_aligned_empty(n_blocks, cols, theta.dtype), np.zeros(n_blocks),
            np.zeros(n_blocks, dtype=np.int64))


@njit(cache=True)
def _fill_block(b, ws, sizes, code, X, y, scale, tile, G, losses, corrects):
    """Block b of ``_loss_and_grad`` in the workspace ``ws`` (``_block_workspace``):
    G[b] (zeroed here, by the thread that fills it), losses[b] and corrects[b]."""
    G[b] = 0
    start, stop = _block_rows(b, G.shape[0], X.shape[0], tile)
    lb, cb = _block_loss_grad_in(ws, sizes, code, X, y, scale, start, stop, tile, G[b])
    losses[b] = lb
    corrects[b] = cb


@njit(cache=True, parallel=True)
def _loss_and_grad(theta, sizes, code, X, y, scale, l2, tile, n_blocks):
    """L = sum_i scale_i CE_i + l2/2 sum_l ||W_l||^2 and dL/dtheta; also #correct."""
    G, losses, corrects = _block_buffers(n_blocks, theta)
    # the index as int64 (prange's is unsigned): the _fill_block that
    # _loss_and_grad_one_thread calls, compiled once for both
    for b in nb.prange(n_blocks):
        _fill_block(np.int64(b), _block_workspace(theta, sizes, tile), sizes, code, X, y, scale,
                    tile, G, losses, corrects)
    return _reduce_blocks(theta, sizes, G, losses, corrects, l2)


@njit(cache=True)
def _loss_and_grad_one_thread(theta, sizes, code, X, y, scale, l2, tile, n_blocks):
    """``_loss_and_grad`` on the calling thread, for one numba thread: the same blocks
    in the same order, so the same bits, without the parallel launch (with one
    thread it hands the loop to the pool's worker and waits for it: ~50 us a call)
    and with one workspace for all blocks."""
    G, losses, corrects = _block_buffers(n_blocks, theta)
    ws = _block_workspace(theta, sizes, tile)
    for b in range(n_blocks):
        _fill_block(b, ws, sizes, code, X, y, scale, tile, G, losses, corrects)
    return _reduce_blocks(theta, sizes, G, losses, corrects, l2)


@njit(cache=True)
def _add_l2(theta, sizes, l2, grad, loss):
    """loss + l2/2 sum_l ||W_l||^2, and grad (float64) += l2 W_l, weight by weight in order."""
    if l2 != 0.0:
        off = _offsets(sizes)
        for l in range(sizes.shape[0] - 1):
            for p in range(off[l], off[l] + sizes[l + 1] * sizes[l]):
                w = np.float64(theta[p])
                loss += 0.5 * l2 * w * w
                grad[p] += l2 * w
    return loss


@njit(cache=True)
def _loss_and_grad_serial(theta, sizes, code, X, y, scale, l2, tile):
    """``_loss_and_grad`` as one block on this thread, for mini-batches: a parallel
    launch costs more than a small batch (256 rows, float32 d-64-64-4 on 2 shared
    cores: 166 us a call serial against 361 us with prange). One thread, so the result
    does not depend on the thread count."""
    g = np.zeros(theta.shape[0], dtype=theta.dtype)
    loss, correct = _block_loss_grad(theta, sizes, code, X, y, scale, 0, X.shape[0], tile, g)
    grad = g.astype(np.float64)
    loss = _add_l2(theta, sizes, l2, grad, loss)
    return loss, grad.astype(theta.dtype), correct


# ==================================================================== dropout
# Inverted dropout on the hidden layers while training: unit j of hidden layer l
# of sample i is kept with probability 1 - rate and then scaled by 1 / (1 - rate),
# so prediction (no dropout) needs no rescaling. The keep decision is a counter
# hash of (key, iteration, row, layer, unit), not a draw from a sequential
# generator: the masks are the same for any tiling, block split or thread count,
# and ``dropout_masks`` reproduces them for the NumPy reference.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, inline="always")
def _mix64(z):
    """splitmix64's finaliser: a bijection of uint64 whose output bits all depend on every input bit."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _fill_dropout_mask(M, key, iteration, row0, layer, rate):
    """M[i, j] = 1 / (1 - rate) when u >= rate else 0, u in [0, 1) hashed from
    (key, iteration, row0 + i, layer, j)."""
    r, m = M.shape
    keep = 1.0 / (1.0 - rate)
    base = _mix64(key ^ _mix64(np.uint64(iteration) * _GOLDEN + np.uint64(layer)))
    for i in range(r):
        h = _mix64(base + np.uint64(row0 + i) * _GOLDEN)
        for j in range(m):
            u = np.float64(_mix64(h + np.uint64(j)) >> np.uint64(11)) * (1.0 / 9007199254740992.0)
            M[i, j] = keep if u >= rate else 0.0


@njit(cache=True)
def _tile_forward_dropout(WTs, bs, code, Xt, s, acts, kept, masks, key, iteration, rate):
    """``_tile_forward`` with dropout: acts[l] = g(kept[l-1] W[l]^T + b[l]) and
    kept[l] = acts[l] * masks[l] for hidden l, masks drawn for rows s.. ; the last
    acts is the logits. WTs[l] is W[l]^T, contiguous."""
    r = Xt.shape[0]
    L = len(WTs)
    A = Xt                                                     # (r, d)
    for l in range(L):
        Z = acts[l][:r]                                        # (r, sizes[l+1])
        np.dot(A, WTs[l], Z)
        b = bs[l]
        if l < L - 1:
            _bias_act(Z, b, code)
            M = masks[l][:r]
            _fill_dropout_mask(M, key, iteration, s, l, rate)
            Kp = kept[l][:r]
            for i in range(r):
                for j in range(Z.shape[1]):
                    Kp[i, j] = Z[i, j] * M[i, j]
            A = Kp
        else:
            _add_bias_by_column(Z, b)
            A = Z
    return A                                                   # logits (r, K)


@njit(cache=True)
def _block_loss_grad_dropout(theta, sizes, code, X, y, scale, start, stop, tile, g, key,
                             iteration, rate):
    """``_block_loss_grad`` with inverted dropout on the hidden layers."""
    dt = theta.dtype
    L = sizes.shape[0] - 1
    Ws, bs, WTs, acts, dbuf, gtmp, sm = _block_workspace(theta, sizes, tile)
    gWs, gbs = _layer_views(g, sizes)
    kept = [_aligned_empty(tile, sizes[l + 1], dt) for l in range(L)]
    masks = [_aligned_empty(tile, sizes[l + 1], dt) for l in range(L)]
    loss = 0.0
    correct = np.int64(0)        # not the literal 0: one compiled _output_delta
    for s in range(start, stop, tile):
        Xt = X[s:min(s + tile, stop)]                          # (r, d)
        r = Xt.shape[0]
        Zout = _tile_forward_dropout(WTs, bs, code, Xt, s, acts, kept, masks, key, iteration, rate)
        D = _delta_view(dbuf, 0, r, Zout.shape[1])
        loss, correct = _output_delta(Zout, y, scale, s, sm, D, loss, correct)
        _add_col_sums(D, gbs[L - 1])
        for l in range(L - 1, -1, -1):
            A = Xt if l == 0 else kept[l - 1][:r]              # what layer l read, (r, fan_in)
            _add_weight_grad(D, A, gtmp, gWs[l])
            if l > 0:
                # dL/dkept = D W; kept = g(z) * mask, so dL/dz = (D W) * mask * g'(z)
                Dn = _delta_view(dbuf, L - l, r, sizes[l])
                np.dot(D, Ws[l], Dn)
                M = masks[l - 1][:r]
                for i in range(r):
                    for j in range(sizes[l]):
                        Dn[i, j] *= M[i, j]
                _mul_act_grad(Dn, acts[l - 1][:r], code, gbs[l - 1])   # and layer l-1's bias gradient
                D = Dn
    return loss, correct


@njit(cache=True)
def _fill_block_dropout(b, theta, sizes, code, X, y, scale, tile, G, losses, corrects, key,
                        iteration, rate):
    """Block b of ``_loss_and_grad_dropout`` (see ``_fill_block``)."""
    G[b] = 0
    start, stop = _block_rows(b, G.shape[0], X.shape[0], tile)
    lb, cb = _block_loss_grad_dropout(theta, sizes, code, X, y, scale, start, stop, tile,
                                      G[b], key, iteration, rate)
    losses[b] = lb
    corrects[b] = cb


@njit(cache=True, parallel=True)
def _loss_and_grad_dropout(theta, sizes, code, X, y, scale, l2, tile, n_blocks, key, iteration,
                           rate):
    """``_loss_and_grad`` with inverted dropout (rate, masks from key and iteration)."""
    G, losses, corrects = _block_buffers(n_blocks, theta)
    for b in nb.prange(n_blocks):
        _fill_block_dropout(np.int64(b), theta, sizes, code, X, y, scale, tile, G, losses,
                            corrects, key, iteration, rate)
    return _reduce_blocks(theta, sizes, G, losses, corrects, l2)


@njit(cache=True)
def _loss_and_grad_dropout_one_thread(theta, sizes, code, X, y, scale, l2, tile, n_blocks, key,
                                      iteration, rate):
    """``_loss_and_grad_dropout`` on the calling thread, for one numba thread: the same
    blocks in the same order, no parallel launch (see ``_loss_and_grad_one_thread``)."""
    G, losses, corrects = _block_buffers(n_blocks, theta)
    for b in range(n_blocks):
        _fill_block_dropout(b, theta, sizes, code, X, y, scale, tile, G, losses, corrects, key,
                            iteration, rate)
    return _reduce_blocks(theta, sizes, G, losses, corrects, l2)


@njit(cache=True)
def _dropout_masks(widths, n, key, iteration, rate):
    """The masks of ``_loss_and_grad_dropout`` for rows 0..n-1: one (n, widths[l]) per hidden layer."""
    out = [np.empty((n, widths[l])) for l in range(widths.shape[0])]
    for l in range(widths.shape[0]):
        _fill_dropout_mask(out[l], key, iteration, 0, l, rate)
    return out


# ================================================================ attribution (Part C)
# Gradient-based feature attribution: input gradients of a trained network
# (sensitivity analysis, Aggarwal sec. 2.8), their aggregation into per-feature
# scores, and two cross-checks (permutation importance; weight randomisation,
# Adebayo et al. 2018). The derivation is in docs/partC_derivation.md.



# Attribution targets t, each as the delta dt/da_k at the logits a of one sample
# (o = softmax(a), m = argmax a, y the true label). The kernel form fills one
# entry; the reference form builds the whole (n, K) matrix.
@njit(cache=True, inline="always")
def _target_output(o, m, y, k):
    """t = o_m: d o_m / d a_k = o_m (1[k = m] - o_k)."""
    return o[m] * ((1.0 if k == m else 0.0) - o[k])


@njit(cache=True, inline="always")
def _target_logit(o, m, y, k):
    """t = a_m: d a_m / d a_k = 1[k = m]."""
    return 1.0 if k == m else 0.0


@njit(cache=True, inline="always")
def _target_loss(o, m, y, k):
    """t = -log o_y: softmax + cross-entropy fused, dL/da_k = o_k - 1[k = y], valid
    because d log o_y / d a_k = 1[k = y] - o_k."""
    return o[k] - (1.0 if k == y else 0.0)


# The value t itself (integrated gradients' completeness check compares the sum
# of the attributions with t(x) - t(baseline)): Z the tile's logits, i the row,
# lse = log sum_k exp(z_k).
@njit(cache=True, inline="always")
def _value_output(o, Z, i, lse, m, y):
    """t = o_m."""
    return o[m]


@njit(cache=True, inline="always")
def _value_logit(o, Z, i, lse, m, y):
    """t = a_m."""
    return np.float64(Z[i, m])


@njit(cache=True, inline="always")
def _value_loss(o, Z, i, lse, m, y):
    """t = -log o_y = lse - a_y (no log of a rounded probability)."""
    return lse - np.float64(Z[i, y])


class AttributionTarget(NamedTuple):
    """One attribution target: name, kernel code, delta at the logits, value."""
    name: str
    code: int
    delta: Callable             # @njit (o, m, y, k) -> dt/da_k for one sample
    reference_delta: Callable   # NumPy (o (n, K), m (n,), y (n,) or None) -> (n, K)
    needs_y: bool
    value: Callable             # @njit (o, Z, i, lse, m, y) -> t for sample i of a tile
    reference_value: Callable   # NumPy (o (n, K), z (n, K), m (n,), y (n,) or None) -> (n,)


def _reference_target_output(o, m, y):
    n, K = o.shape
    return o[np.arange(n), m][:, None] * (np.eye(K)[m] - o)


def _reference_value_loss(o, z, m, y):
    n = z.shape[0]
    zmax = z.max(axis=1)
    lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=1))
    return lse - z[np.arange(n), np.asarray(y, dtype=np.int64)]


#: The registry of attribution targets (codes are the row positions).
ATTRIBUTION_TABLE = (
    AttributionTarget("output", 0, _target_output, _reference_target_output, False,
                      _value_output, lambda o, z, m, y: o[np.arange(o.shape[0]), m]),
    AttributionTarget("logit", 1, _target_logit, lambda o, m, y: np.eye(o.shape[1])[m], False,
                      _value_logit, lambda o, z, m, y: z[np.arange(z.shape[0]), m]),
    AttributionTarget("loss", 2, _target_loss,
                      lambda o, m, y: o - np.eye(o.shape[1])[np.asarray(y, dtype=np.int64)], True,
                      _value_loss, _reference_value_loss),
)
assert all(t.code == i for i, t in enumerate(ATTRIBUTION_TABLE)), "codes must be row positions"
ATTRIBUTION_TARGETS = {t.name: t.code for t in ATTRIBUTION_TABLE}
_KERNEL_TARGETS = tuple((t.code, t.delta, t.needs_y, t.value) for t in ATTRIBUTION_TABLE)


@njit(cache=True)
def _target_delta(o, m, y, i, target, D):
    """D[i, k] = dt/da_k for the target with code ``target`` (one sample)."""
    K = o.shape[0]
    known = False
    for tg in literal_unroll(_KERNEL_TARGETS):
        if tg[0] == target:
            known = True
            yi = y[i] if tg[2] else -1              # y is empty unless the target needs it
            for k in range(K):
                D[i, k] = tg[1](o, m, yi, k)
    if not known:
        raise ValueError("unknown attribution target code; use a code from "
                         "mlp.ATTRIBUTION_TARGETS")


@njit(cache=True)
def _target_value(o, Z, i, lse, m, y, target):
    """t of sample i for the target with code ``target``."""
    val = 0.0
    known = False
    for tg in literal_unroll(_KERNEL_TARGETS):
        if tg[0] == target:
            known = True
            yi = y[i] if tg[2] else -1
            val = tg[3](o, Z, i, lse, m, yi)
    if not known:
        raise ValueError("unknown attribution target code; use a code from "
                         "mlp.ATTRIBUTION_TARGETS")
    return val


@njit(cache=True)
def _tile_input_gradients(Ws, WTs, bs, sizes, code, X, s, stop, tile, y, cls, target, acts, dbuf,
                          o, G, pred, value):
    """For the r rows [s, min(s + tile, stop)) of X: G (r, d) = dt/dx, pred (r,) = argmax o
    and value (r,) = t. y and cls (the class m of each row; empty: m = argmax o) are
    indexed from the tile's first row."""
    L = sizes.shape[0] - 1
    K = sizes[L]
    Xt, Z, D = _tile_logits(WTs, bs, code, X, s, stop, tile, acts, dbuf)
    r = Xt.shape[0]
    # ---- delta at the logits a, dt/da, one row per sample
    for i in range(r):
        m, zmax, tot = _softmax_row(Z, i, o)
        pred[i] = m
        for k in range(K):
            o[k] /= tot
        if cls.shape[0] > 0:
            m = cls[i]
        _target_delta(o, m, y, i, target, D)
        value[i] = _target_value(o, Z, i, zmax + np.log(tot), m, y, target)
    # ---- backward: delta_l = g'(h_l) * (delta_{l+1} W_l); at l = 0 it is dt/dx
    for l in range(L - 1, -1, -1):
        if l == 0:
            np.dot(D, Ws[0], G)                                # (r, d): each row its own sample
        else:
            D = _delta_to_input(D, Ws[l], acts[l - 1][:r], code,
                                _delta_view(dbuf, L - l, r, sizes[l]))


@njit(cache=True)
def _block_input_gradients(theta, sizes, code, X, y, cls, target, start, stop, tile, G, pred,
                           value):
    """Rows [start, stop) of G = dt/dx, pred = argmax o and value = t, tile by tile
    (see ``_input_gradients``)."""
    Ws, bs = _layer_views(theta, sizes)
    WTs = _transposed(Ws)
    acts, dbuf = _tile_workspaces(sizes, tile, theta.dtype)
    o = np.empty(sizes[sizes.shape[0] - 1])                    # softmax of one sample, float64
    for s in range(start, stop, tile):
        e = min(s + tile, stop)
        _tile_input_gradients(Ws, WTs, bs, sizes, code, X, s, stop, tile, y[s:], cls[s:], target,
                              acts, dbuf, o, G[s:e], pred[s:e], value[s:e])


@njit(cache=True, parallel=True)
def _input_gradients(theta, sizes, code, X, y, target, cls):
    """G[s] = dt/dx at x = X[s], t = o_m (target 0), a_m (1) or -log o_y (2); m =
    cls[s] (argmax o when cls is empty). Also pred = argmax o and the value t.

    Tiles of TILE samples go forward and backward as matrix products (like
    ``_loss_and_grad``); a fixed number of contiguous blocks run in parallel and
    every sample writes only its own row of G and entries of pred and value.
    """
    n, d = X.shape
    G = np.empty((n, d), dtype=X.dtype)
    pred = np.empty(n, dtype=np.int64)
    value = np.empty(n)
    tile = np.int64(TILE)      # not a literal: the _tile_logits the training compiled
    n_blocks = min((n + tile - 1) // tile, MAX_BLOCKS)
    for b in prange(n_blocks):
        start, stop = _block_rows(b, n_blocks, n, tile)
        _block_input_gradients(theta, sizes, code, X, y, cls, target, start, stop, tile, G, pred,
                               value)
    return G, pred, value


@njit(cache=True)
def _block_integrated_gradients(theta, sizes, code, X, B, y, cls, target, alphas, wts,
                                start, stop, tile, A):
    """Rows [start, stop) of A = (X - B) * sum_k wts[k] dt/dx at B + alphas[k] (X - B)."""
    dt = theta.dtype
    d = X.shape[1]
    Ws, bs = _layer_views(theta, sizes)
    WTs = _transposed(Ws)
    acts, dbuf = _tile_workspaces(sizes, tile, dt)
    o = np.empty(sizes[sizes.shape[0] - 1])
    P = np.empty((tile, d), dtype=dt)                          # one tile of path points
    Gt = np.empty((tile, d), dtype=dt)                         # their gradients
    acc = np.empty((tile, d))                                  # sum over steps, float64
    pred = np.empty(tile, dtype=np.int64)                      # unused here
    value = np.empty(tile)                                     # unused here
    one = B.shape[0] == 1                                      # one baseline for every row
    for s in range(start, stop, tile):
        r = min(s + tile, stop) - s
        acc[:r] = 0.0
        for k in range(alphas.shape[0]):                       # the steps in a fixed order
            a = alphas[k]
            for i in range(r):
                bi = 0 if one else s + i
                for j in range(d):
                    P[i, j] = B[bi, j] + a * (X[s + i, j] - B[bi, j])
            _tile_input_gradients(Ws, WTs, bs, sizes, code, P, np.int64(0), r, tile, y[s:],
                                  cls[s:], target, acts, dbuf, o, Gt[:r], pred, value)
            for i in range(r):
                for j in range(d):
                    acc[i, j] += wts[k] * Gt[i, j]
        for i in range(r):
            bi = 0 if one else s + i
            for j in range(d):
                A[s + i, j] = (np.float64(X[s + i, j]) - np.float64(B[bi, j])) * acc[i, j]


@njit(cache=True, parallel=True)
def _integrated_gradients(theta, sizes, code, X, B, y, cls, target, alphas, wts):
    """A[s] = (x - b) * sum_k wts[k] dt/dx(b + alphas[k] (x - b)), x = X[s], b = B[s]
    (or B[0]), the class m = cls[s] fixed along the path; float64 (n, d).

    Blocks of rows as in ``_input_gradients``; each row's sum over the steps is
    its own, in step order, so the result does not depend on the thread count.
    """
    n, d = X.shape
    A = np.empty((n, d))
    tile = np.int64(TILE)      # not a literal: the _tile_logits the training compiled
    n_blocks = min((n + tile - 1) // tile, MAX_BLOCKS)
    for b in prange(n_blocks):
        start, stop = _block_rows(b, n_blocks, n, tile)
        _block_integrated_gradients(theta, sizes, code, X, B, y, cls, target, alphas, wts,
                                    start, stop, tile, A)
    return A


