"""The network: activations, forward, backward, the ``MLP`` estimator, attribution.

Everything that computes with the parameters of the softmax MLP lives here.
Kernels are pairs: ``_name`` is a pure ``@njit`` function of arrays and
scalars, ``name`` is the public wrapper that validates its inputs and checks
its result. The vectorised exp/sigmoid/tanh the kernels use are in
``numerics.py``; the shared-bias network of Question 2 is ``shared_bias.py``.

Parameter layout (shared by every kernel)
-----------------------------------------
A network with layer widths ``sizes = [d, h1, ..., hL, K]`` has one weight
matrix ``W[l]`` of shape ``(sizes[l+1], sizes[l])`` (fan_out, fan_in) and one
bias ``b[l]`` of shape ``(sizes[l+1],)`` per layer; a layer computes
``a = W x + b``. Kernels see all parameters as one flat contiguous vector
``theta``: for each layer in order, ``W[l]`` row-major, then ``b[l]``.
``pack``/``unpack`` convert between the list form and the flat form;
``unpack`` returns views, so writing into them writes into ``theta``.

Hidden activations are rows of ``ACTIVATION_TABLE`` (name, integer code,
formulas); kernels take the code, never a string, and dispatch through the
table. The output layer is always softmax.

Sections, in file order
-----------------------
activations (the registry) and parameter layout; forward (tiled softmax
forward pass); backward (tiled, block-parallel loss + gradient); their plain
NumPy reference (``reference_*``); the validating wrappers ``loss_and_grads``
/ ``forward``; the ``MLP`` estimator; attribution (Part C:
``input_gradients``, ``feature_attribution``, ``permutation_check``,
``randomization_check``).
"""
import hashlib
import os
import tempfile
import warnings
from typing import Callable, NamedTuple


def _kernel_cache_dir():
    """numba's cache folder for the kernels, keyed by the source of the modules
    that hold them. numba checks only the time stamp of a kernel's own file,
    but the kernels here inline numerics.py and those of shared_bias.py inline
    this file's registry: editing any of the three must recompile them all.
    Next to this file, or in a temporary directory when that is not writable."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha1()
    for name in ("mlp.py", "numerics.py", "shared_bias.py"):
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

import numpy as np
import numba as nb

nb.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]    # also when numba was imported first
from numba import literal_unroll, njit, prange
from numba.core.errors import NumbaExperimentalFeatureWarning

from numerics import fast_sigmoid, fast_tanh, sigmoid_for_float32

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


#: The registry of hidden activations. Adding one is one row here and its
#: formulas above; every kernel, the NumPy reference and the name checks
#: read it. Codes are the row positions.
ACTIVATION_TABLE = (
    Activation("relu", 0, _relu, _relu, _relu_grad, _relu_mul_grad,
               lambda z: np.maximum(z, 0.0), lambda a: (a > 0).astype(a.dtype)),
    Activation("sigmoid", 1, _sigmoid, _sigmoid_float32, _sigmoid_grad, _sigmoid_mul_grad,
               _reference_sigmoid, lambda a: a * (1 - a)),
    Activation("tanh", 2, _tanh, _tanh, _tanh_grad, _tanh_mul_grad, np.tanh, lambda a: 1 - a * a),
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
def _mul_act_grad(D, A, code):
    """D <- D * g'(z), with g'(z) written from the activation output A = g(z)."""
    r, m = D.shape
    known = False
    for act in literal_unroll(_KERNEL_ACTIVATIONS):
        if act[0] == code:
            known = True
            for i in range(r):
                for j in range(m):
                    D[i, j] = act[4](D[i, j], A[i, j])
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
# bitwise identical for any number of numba threads. Per-tile products use
# np.dot on 2-D slices (numba calls SciPy's BLAS gemm), which the wrappers limit
# to one BLAS thread so it does not compete with the prange workers.
TILE = 256
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
def _tile_workspaces(sizes, tile, dt):
    """Per-block buffers reused by every tile: the activations acts[l] (tile,
    sizes[l+1]) and two ping-pong rows for the deltas of the backward pass."""
    L = sizes.shape[0] - 1
    maxw = 0
    for l in range(L + 1):
        maxw = max(maxw, sizes[l])
    acts = [np.empty((tile, sizes[l + 1]), dtype=dt) for l in range(L)]
    dbuf = np.empty((2, tile * maxw), dtype=dt)
    return acts, dbuf


@njit(cache=True)
def _delta_view(dbuf, k, r, width):
    """(r, width) view of ping-pong buffer k % 2; the output delta uses k = 0
    and the delta of layer l's input k = L - l, so consecutive layers alternate."""
    return dbuf[k % 2, :r * width].reshape(r, width)


# ==================================================================== forward
@njit(cache=True)
def _tile_forward(Ws, bs, code, Xt, acts):
    """acts[l] = g(acts[l-1] W[l]^T + b[l]) for hidden l; the last is the logits."""
    r = Xt.shape[0]
    L = len(Ws)
    A = Xt                                      # (r, d)
    for l in range(L):
        Z = acts[l][:r]                         # (r, sizes[l+1])
        np.dot(A, Ws[l].T, Z)
        b = bs[l]
        m = Z.shape[1]
        if l < L - 1:
            _bias_act(Z, b, code)
        else:
            for i in range(r):
                for j in range(m):
                    Z[i, j] += b[j]
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


@njit(cache=True, parallel=True)
def _forward(theta, sizes, code, X, tile, log):
    """P = softmax(f(X)) (or log P when ``log``), shape (n, K), tile by tile."""
    n = X.shape[0]
    L = sizes.shape[0] - 1
    K = sizes[L]
    dt = theta.dtype
    out = np.empty((n, K), dtype=dt)
    n_tiles = (n + tile - 1) // tile
    Ws, bs = _layer_views(theta, sizes)
    for t in nb.prange(n_tiles):                # each tile writes its own rows
        acts = [np.empty((tile, sizes[l + 1]), dtype=dt) for l in range(L)]
        ez = np.empty(K)
        s = t * tile
        e = min(s + tile, n)
        Z = _tile_forward(Ws, bs, code, X[s:e], acts)
        for i in range(e - s):
            _, zmax, ssum = _softmax_row(Z, i, ez)
            lse = zmax + np.log(ssum)
            for k in range(K):
                if log:
                    out[s + i, k] = np.float64(Z[i, k]) - lse
                else:
                    out[s + i, k] = np.exp(np.float64(Z[i, k]) - lse)
    return out


# =================================================================== backward
@njit(cache=True)
def _tile_logits(Ws, bs, code, X, s, stop, tile, acts, dbuf):
    """Forward pass of the tile of rows [s, min(s + tile, stop)) of X: returns its
    rows Xt (r, d), their logits (r, K) and the (r, K) buffer for the logit delta."""
    Xt = X[s:min(s + tile, stop)]                              # (r, d)
    Z = _tile_forward(Ws, bs, code, Xt, acts)                  # (r, K) logits
    return Xt, Z, _delta_view(dbuf, 0, Xt.shape[0], Z.shape[1])


@njit(cache=True)
def _delta_to_input(D, W, A, code, Dn):
    """Dn = (D W) * g'(z): the delta at the input of layer W from the delta D at its
    output, with A = g(z) the activation that layer read. (r, fan_in)."""
    np.dot(D, W, Dn)                                           # dL/dA
    _mul_act_grad(Dn, A, code)                                 # dL/dZ
    return Dn


@njit(cache=True)
def _block_loss_grad(theta, sizes, code, X, y, scale, start, stop, tile, g):
    """Add d/dtheta of sum_i scale_i * CE_i over rows [start, stop) into ``g``.

    Returns (sum_i scale_i * CE_i in float64, number of correct argmax predictions).
    """
    dt = theta.dtype
    L = sizes.shape[0] - 1
    Ws, bs = _layer_views(theta, sizes)
    gWs, gbs = _layer_views(g, sizes)
    maxp = 0
    for l in range(L):
        maxp = max(maxp, sizes[l + 1] * sizes[l])
    acts, dbuf = _tile_workspaces(sizes, tile, dt)
    gtmp = np.empty(maxp, dtype=dt)
    K = sizes[L]
    ez = np.empty(K)                                           # exp(z - max z), float64
    loss = 0.0
    correct = 0
    for s in range(start, stop, tile):
        Xt, Zout, D = _tile_logits(Ws, bs, code, X, s, stop, tile, acts, dbuf)
        r = Xt.shape[0]
        for i in range(r):
            best, zmax, ssum = _softmax_row(Zout, i, ez)
            yi = y[s + i]
            if best == yi:
                correct += 1
            lse = zmax + np.log(ssum)                          # log sum_k exp(z_k)
            loss += scale[s + i] * (lse - Zout[i, yi])
            # softmax + CE fused: dCE/dz_k = p_k - [k == y], the softmax Jacobian
            # contracted with -1/p_y collapses to P - Y.
            c = scale[s + i] / ssum
            for k in range(K):
                D[i, k] = c * ez[k]
            D[i, yi] -= scale[s + i]
        for l in range(L - 1, -1, -1):
            A = Xt if l == 0 else acts[l - 1][:r]              # (r, fan_in)
            fo = sizes[l + 1]
            fi = sizes[l]
            gt = gtmp[:fo * fi].reshape(fo, fi)
            np.dot(D.T, A, gt)                                 # (fan_out, fan_in)
            gW = gWs[l]
            for a in range(fo):
                for c in range(fi):
                    gW[a, c] += gt[a, c]
            gb = gbs[l]
            for i in range(r):
                for a in range(fo):
                    gb[a] += D[i, a]
            if l > 0:
                D = _delta_to_input(D, Ws[l], A, code, _delta_view(dbuf, L - l, r, fi))
    return loss, correct


@njit(cache=True, parallel=True)
def _loss_and_grad(theta, sizes, code, X, y, scale, l2, tile, n_blocks):
    """L = sum_i scale_i CE_i + l2/2 sum_l ||W_l||^2 and dL/dtheta; also #correct."""
    n = X.shape[0]
    P = theta.shape[0]
    G = np.zeros((n_blocks, P), dtype=theta.dtype)             # per-block gradients
    losses = np.zeros(n_blocks)
    corrects = np.zeros(n_blocks, dtype=np.int64)
    for b in nb.prange(n_blocks):
        start, stop = _block_rows(b, n_blocks, n, tile)
        lb, cb = _block_loss_grad(theta, sizes, code, X, y, scale, start, stop, tile, G[b])
        losses[b] = lb
        corrects[b] = cb
    # fixed-order reduction over blocks -> independent of the thread count
    grad = np.zeros(P)
    loss = 0.0
    correct = 0
    for b in range(n_blocks):
        loss += losses[b]
        correct += corrects[b]
        for p in range(P):
            grad[p] += G[b, p]
    if l2 != 0.0:
        off = _offsets(sizes)
        for l in range(sizes.shape[0] - 1):
            for p in range(off[l], off[l] + sizes[l + 1] * sizes[l]):
                w = np.float64(theta[p])
                loss += 0.5 * l2 * w * w
                grad[p] += l2 * w
    return loss, grad.astype(theta.dtype), correct


# ============================================================ NumPy reference
def _reference_act(z, activation):
    """g(z) in NumPy for the activation named ``activation`` (``ValueError`` if unknown)."""
    return ACTIVATION_TABLE[activation_code(activation)].reference_g(z)


def _reference_act_grad(a, activation):
    """g'(z) in NumPy from the activation output a = g(z)."""
    return ACTIVATION_TABLE[activation_code(activation)].reference_dg(a)


def reference_softmax(Z):
    """Row-wise softmax of Z (n, K) in NumPy, shifted by the row max (no overflow)."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def reference_forward(weights, biases, X, activation):
    """Softmax probabilities in plain NumPy (slow, readable; for tests and bench).

    Parameters
    ----------
    weights : list of ndarray, ``weights[l]`` of shape (fan_out, fan_in)
    biases : list of ndarray, ``biases[l]`` of shape (fan_out,)
    X : ndarray of shape (n_samples, n_features)
    activation : {"relu", "sigmoid", "tanh"}

    Returns
    -------
    P : ndarray of shape (n_samples, n_classes)
    """
    A = X
    for W, b in zip(weights[:-1], biases[:-1]):
        A = _reference_act(A @ W.T + b, activation)        # (n, fan_out)
    return reference_softmax(A @ weights[-1].T + biases[-1])   # of the (n, K) logits


def reference_loss_and_grads(weights, biases, X, y, activation, l2=0.0, sample_weight=None):
    """Loss and gradients in plain NumPy, the same math as ``loss_and_grads``.

    ``L = sum_i w_i CE_i / sum_i w_i + l2/2 sum_l ||W_l||^2``.

    Returns
    -------
    loss : float
    dweights : list of ndarray, shapes as ``weights``
    dbiases : list of ndarray, shapes as ``biases``
    """
    n = X.shape[0]
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    w = w / w.sum()
    acts = [X]
    for W, b in zip(weights[:-1], biases[:-1]):
        acts.append(_reference_act(acts[-1] @ W.T + b, activation))
    Z = acts[-1] @ weights[-1].T + biases[-1]               # (n, K)
    zmax = Z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(Z - zmax).sum(axis=1))   # (n,)
    ce = lse - Z[np.arange(n), y]
    loss = float(np.sum(w * ce)) + 0.5 * l2 * sum(float(np.sum(W * W)) for W in weights)
    P = np.exp(Z - lse[:, None])
    Y = np.zeros_like(P)
    Y[np.arange(n), y] = 1
    D = (P - Y) * w[:, None]          # softmax + CE: dCE/dz = p - onehot(y)
    dW, db = [None] * len(weights), [None] * len(weights)
    for l in range(len(weights) - 1, -1, -1):
        dW[l] = D.T @ acts[l] + l2 * weights[l]
        db[l] = D.sum(axis=0)
        if l > 0:
            D = (D @ weights[l]) * _reference_act_grad(acts[l], activation)
    return loss, dW, db



# ==================================================== validating wrappers
_BLAS_CONTROLLER = None


def _single_threaded_blas():
    """Context limiting BLAS to one thread: the kernels already run blocks in
    parallel, and gemm calls inside ``prange`` must not spawn more threads."""
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        # numba's np.dot calls SciPy's own OpenBLAS (not NumPy's); load it first
        # so the controller sees it. Unlimited, its threads spin against the
        # prange workers: measured 50x slower on a loaded 2-core machine.
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


def _check_X(X, dtype, n_features=None, name="X"):
    """``X`` as a C-contiguous finite 2-D array of ``dtype``."""
    try:
        A = np.asarray(X)
        if A.dtype == object or A.dtype.kind not in "biuf":
            A = A.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric; converting it failed ({e}); "
                         f"encode text columns first") from None
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {A.shape}"
                         + ("; use X.reshape(-1, 1) for one feature" if A.ndim == 1 else ""))
    if A.shape[0] == 0:
        raise ValueError(f"{name} has no rows; need at least one sample")
    if n_features is not None and A.shape[1] != n_features:
        raise ValueError(f"{name} has {A.shape[1]} features but the network expects "
                         f"{n_features}; use the same columns as in training")
    return _require_finite(np.ascontiguousarray(A, dtype=dtype), name)


def _check_y_index(y, n, n_classes, name="y"):
    """Class indices as int64 in 0..n_classes-1, length n."""
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with one label per row of X ({n}); "
                         f"got shape {y.shape}")
    if y.dtype.kind not in "biu":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class indices 0..{n_classes - 1}; "
                             f"got dtype {y.dtype}")
    y = np.ascontiguousarray(y, dtype=np.int64)
    bad = np.flatnonzero((y < 0) | (y >= n_classes))
    if bad.size:
        raise ValueError(f"{name} has labels outside 0..{n_classes - 1}: {name} must be in "
                         f"0..{n_classes - 1} (the network has {n_classes} outputs); "
                         f"{name}[{bad[0]}] = {y[bad[0]]}")
    return y


def _check_sample_weight(sample_weight, n):
    """Per-sample weights as float64 (n,), non-negative, finite, positive sum."""
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), one weight per row of X; "
                         f"got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        i = np.flatnonzero(~np.isfinite(w) | (w < 0))[0]
        raise ValueError(f"sample_weight must be finite and >= 0; "
                         f"sample_weight[{i}] = {w[i]}")
    if w.sum() <= 0:
        raise ValueError("sample_weight sums to 0; at least one sample needs a positive weight")
    return w


def _check_params(weights, biases, dtype):
    """theta, sizes from per-layer lists, finite; dtype float64 unless given / float32 weights."""
    if dtype is None:
        dtype = np.float32 if (len(weights) and np.asarray(weights[0]).dtype == np.float32) \
            else np.float64
    dtype = resolve_dtype(dtype)
    theta, sizes = pack(weights, biases, dtype)
    if not np.all(np.isfinite(theta)):
        raise ValueError("weights or biases contain NaN or Inf; the network diverged (train "
                         "again with a smaller learning rate) or was loaded incorrectly")
    return theta, sizes, dtype


def _run_loss_and_grad(theta, sizes, code, X, y, w, l2):
    """Kernel call on already validated arrays: (loss, grad theta, n_correct)."""
    scale = w / w.sum()
    with _single_threaded_blas():
        loss, grad, correct = _loss_and_grad(theta, sizes, np.int64(code), X, y, scale,
                                             np.float64(l2), np.int64(TILE),
                                             np.int64(_n_blocks(X.shape[0], TILE)))
    return float(loss), grad, int(correct)


def _run_forward(theta, sizes, code, X, log=False):
    with _single_threaded_blas():
        return _forward(theta, sizes, np.int64(code), X, np.int64(TILE), bool(log))


def loss_and_grads(weights, biases, X, y, activation, l2=0.0, sample_weight=None,
                   dtype=None, return_n_correct=False):
    """Full-batch softmax cross-entropy loss and its gradient (numba kernel).

    ``L = sum_i w_i CE_i / sum_i w_i + l2/2 * sum_l ||W_l||^2`` (biases are not
    penalised); ``w_i = 1`` when ``sample_weight`` is None, so L is the mean CE.

    Parameters
    ----------
    weights : list of ndarray, ``weights[l]`` of shape (sizes[l+1], sizes[l])
    biases : list of ndarray, ``biases[l]`` of shape (sizes[l+1],)
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), int class indices in 0..n_classes-1
    activation : {"relu", "sigmoid", "tanh"}, hidden activation
    l2 : float >= 0
    sample_weight : ndarray of shape (n_samples,) or None
    dtype : "float64", "float32" or None (float32 only if weights[0] is float32)
    return_n_correct : bool, also return the number of correctly classified rows

    Returns
    -------
    loss : float
    dweights : list of ndarray, same shapes as ``weights``
    dbiases : list of ndarray, same shapes as ``biases``
    n_correct : int, only if ``return_n_correct``
    """
    code = activation_code(activation)
    theta, sizes, dtype = _check_params(weights, biases, dtype)
    X = _check_X(X, dtype, n_features=int(sizes[0]))
    y = _check_y_index(y, X.shape[0], int(sizes[-1]))
    w = _check_sample_weight(sample_weight, X.shape[0])
    l2 = float(l2)
    if not np.isfinite(l2) or l2 < 0:
        raise ValueError(f"l2={l2!r} must be a finite number >= 0")
    loss, grad, correct = _run_loss_and_grad(theta, sizes, code, X, y, w, l2)
    if not np.isfinite(loss) or not np.all(np.isfinite(grad)):
        raise ValueError(f"loss or gradient is not finite (loss={loss}); the weights or "
                         f"inputs are too large: scale the inputs or shrink the weights")
    dW, db = unpack(grad, sizes)
    if return_n_correct:
        return loss, dW, db, correct
    return loss, dW, db


def forward(weights, biases, X, activation, dtype=None):
    """Softmax class probabilities of the network (numba kernel).

    Parameters
    ----------
    weights : list of ndarray, ``weights[l]`` of shape (sizes[l+1], sizes[l])
    biases : list of ndarray, ``biases[l]`` of shape (sizes[l+1],)
    X : ndarray of shape (n_samples, n_features)
    activation : {"relu", "sigmoid", "tanh"}
    dtype : "float64", "float32" or None (float32 only if weights[0] is float32)

    Returns
    -------
    P : ndarray of shape (n_samples, n_classes), rows sum to 1
    """
    code = activation_code(activation)
    theta, sizes, dtype = _check_params(weights, biases, dtype)
    X = _check_X(X, dtype, n_features=int(sizes[0]))
    P = _run_forward(theta, sizes, code, X)
    if not np.all(np.isfinite(P)):
        raise ValueError("probabilities are not finite; scale the inputs or shrink the weights")
    return P



# ================================================================ estimator
import json  # noqa: E402
import math  # noqa: E402
import struct  # noqa: E402
import tokenize  # noqa: E402
import zipfile  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

from sklearn.base import BaseEstimator, ClassifierMixin, clone  # noqa: E402
from sklearn.utils.multiclass import check_classification_targets, unique_labels  # noqa: E402
from sklearn.utils.validation import check_array, check_is_fitted, validate_data  # noqa: E402

INITS = ("normal", "glorot", "he")
_HISTORY_KEYS = ("loss", "val_loss", "train_acc", "val_acc", "grad_abs_mean")
# what ``fit`` learns; removed when a fit starts and when it fails
_FITTED = ("weights_", "biases_", "classes_", "n_features_in_", "feature_names_in_", "history_",
           "n_iter_", "best_iter_", "best_val_iter_", "_best_val_theta")
SAVE_FORMAT, SAVE_VERSION = "mlp.MLP", 1      # written by MLP.save, checked by MLP.load
_ZIP_MAGIC = b"PK\x03\x04"                     # every .npz is a zip archive
# What MLP.load allocates is bounded before it allocates: a plain (stored) entry
# by the file's own size, compressed entries together by LOAD_MAX_INFLATED
# (MLP.save compresses nothing; raise it for a big model re-saved with
# np.savez_compressed), the JSON metadata entry by _LOAD_MAX_META.
LOAD_MAX_INFLATED = 256 << 20
_LOAD_MAX_META = 32 << 20
_READ_CHUNK = 1 << 20
# What a crafted or damaged file can make the reading raise; MLP.load turns each
# into its one ValueError. (RecursionError: deeply nested JSON or .npy header.)
_LOAD_ERRORS = (ValueError, KeyError, IndexError, TypeError, OSError, EOFError, OverflowError,
                RecursionError, MemoryError, NotImplementedError, zipfile.BadZipFile, zlib.error,
                struct.error)


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and \
        not isinstance(v, (bool, np.bool_)) and np.isfinite(v)


def _refuse_1d(X, name):
    """One-line error for 1-D input (scikit-learn's own prints the whole array)."""
    ndim = getattr(X, "ndim", None)
    if ndim is None and isinstance(X, (list, tuple)):
        ndim = 1 if len(X) and not any(isinstance(r, (list, tuple, np.ndarray)) for r in X) else None
    if ndim == 1:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got 1-D input of "
                         f"length {len(X)}. Reshape your data: {name}.reshape(-1, 1) for one "
                         f"feature, {name}.reshape(1, -1) for one sample")


def _numeric_hint(err, name):
    """``err`` from scikit-learn's conversion, with the fix when the cause is text or pd.NA;
    other errors (e.g. the TypeError for a dict in X) unchanged."""
    msg = str(err)
    if "could not convert" in msg:
        return ValueError(f"{name} must be numeric: {msg}; encode text columns first "
                          f"(prep.Preprocessor one-hot encodes them)")
    if "NAType" in msg:
        return ValueError(f"{name} has missing values (pd.NA) in an object column; impute or "
                          f"drop them first, or convert with {name}.astype(float)")
    return err


def _require_finite(A, name):
    """``A`` (2-D float) ready for the kernels, or a ValueError naming the rows with NaN/Inf.

    A read-only array (e.g. a memory map) is copied: numba types it apart from a
    writeable one, and each kernel would compile again for it (about 30 s here).
    """
    finite = np.isfinite(A)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=1))
        r = rows[0]
        c = np.flatnonzero(~finite[r])[0]
        raise ValueError(f"{name} has NaN or Inf in {rows.size} rows (e.g. rows {rows[:5].tolist()}); "
                         f"impute or drop them first (first bad cell at (row, column) ({r}, {c}))")
    return A if A.flags.writeable else A.copy()


def _npz_path(path):
    """``path`` with the ``.npz`` suffix ``np.savez`` adds when it is missing."""
    p = Path(os.fspath(path))
    return p if p.suffix == ".npz" else p.with_name(p.name + ".npz")


def _to_json(v):
    """A parameter or label as JSON that ``_from_json`` turns back into the same value and type."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, tuple):
        return {"__tuple__": [_to_json(x) for x in v]}
    if isinstance(v, list):
        return [_to_json(x) for x in v]
    if isinstance(v, dict):
        return {"__pairs__": [[_to_json(k), _to_json(x)] for k, x in v.items()]}
    raise TypeError(f"{v!r} of type {type(v).__name__} cannot be stored without pickle")


def _from_json(v):
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    if isinstance(v, dict):
        if set(v) == {"__tuple__"}:
            return tuple(_from_json(x) for x in v["__tuple__"])
        if set(v) == {"__pairs__"}:
            return {_from_json(k): _from_json(x) for k, x in v["__pairs__"]}
        raise ValueError(f"unexpected JSON object {v!r}")
    return v


def _labels_to_json(classes):
    """``classes_`` as ``{"dtype", "values"}``: exact values, and their type (JSON
    floats round-trip exactly; an object array keeps each element's Python type)."""
    a = np.asarray(classes)
    if a.dtype.kind not in "biufUO":
        raise ValueError(f"classes_ of dtype {a.dtype} cannot be saved; use integer, float, "
                         f"bool or string labels")
    values = [_to_json(v) for v in a.tolist()]
    if not all(isinstance(v, (bool, int, float, str)) for v in values):
        raise ValueError(f"classes_ {a.tolist()!r} cannot be saved; use integer, float, bool "
                         f"or string labels")
    return {"dtype": a.dtype.str, "values": values}


def _labels_from_json(d):
    """``classes_`` from ``_labels_to_json``'s form; ValueError unless it is a list of
    plain labels with a plain dtype, small enough to be what the metadata says."""
    if not (isinstance(d, dict) and isinstance(d.get("dtype"), str) and isinstance(d.get("values"), list)
            and all(isinstance(v, (bool, int, float, str)) for v in d["values"])):
        raise ValueError("its labels ('classes' in 'meta') are not a list of labels with a dtype")
    dtype, values = np.dtype(d["dtype"]), d["values"]
    if dtype.kind not in "biufUO" or dtype.names is not None or dtype.subdtype is not None:
        raise ValueError(f"its labels have dtype {d['dtype']!r}; MLP.save writes integer, float, "
                         f"bool, string or object labels")
    if len(values) * dtype.itemsize > _LOAD_MAX_META:     # e.g. '<U2000000000'
        raise ValueError(f"its labels would take {len(values) * dtype.itemsize} bytes "
                         f"({len(values)} of dtype {d['dtype']!r})")
    if dtype == object:
        a = np.empty(len(values), dtype=object)
        a[:] = values
        return a
    return np.array(values, dtype=dtype).reshape(len(values))


class _NpzReader:
    """The arrays of an open ``.npz`` (``zipfile.ZipFile`` ``zf`` of a file of
    ``file_size`` bytes), read without ``np.load``: nothing is allocated before
    the entry's ``.npy`` header has been checked against the entry's size, and
    the entry's size against the file (a plain entry) or ``LOAD_MAX_INFLATED``
    (compressed entries together). What it finds wrong is a ValueError; the zip
    layer's own errors (``_LOAD_ERRORS``) pass through to ``MLP.load``."""

    def __init__(self, zf, file_size):
        self.zf, self.file_size = zf, file_size
        self.entries = {(i.filename[:-4] if i.filename.endswith(".npy") else i.filename): i
                        for i in zf.infolist()}
        self._inflated, self._counted, self._headers = 0, set(), {}

    def _open(self, key):
        info = self.entries.get(key)
        if info is None:
            raise ValueError(f"it has no entry {key!r} (entries: {sorted(self.entries)[:8]})")
        if info.flag_bits & 0x1:
            raise ValueError(f"its entry {key!r} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size or \
                    info.header_offset + info.compress_size > self.file_size:
                raise ValueError(f"its entry {key!r} declares {info.file_size} bytes, more than the "
                                 f"{self.file_size}-byte file holds: the archive is truncated or damaged")
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if key not in self._counted:
                self._counted.add(key)
                self._inflated += info.file_size
            if self._inflated > LOAD_MAX_INFLATED:
                raise ValueError(f"its compressed entries inflate to more than {LOAD_MAX_INFLATED} bytes "
                                 f"(mlp.LOAD_MAX_INFLATED; entry {key!r} declares {info.file_size}); "
                                 f"MLP.save compresses nothing, so it was written by something else")
        else:
            raise ValueError(f"its entry {key!r} is compressed with zip method {info.compress_type}; "
                             f"MLP.save writes plain entries")
        try:
            return info, self.zf.open(info)
        except NotImplementedError as e:     # e.g. a zip format version zipfile does not read
            raise ValueError(f"its entry {key!r} cannot be read here ({e}); MLP.save writes "
                             f"plain zip entries") from None

    def _read_header(self, key, fh, info):
        """(shape, dtype, fortran) of the ``.npy`` at the start of ``fh``, checked against
        ``info.file_size``; ``fh`` is left at the data."""
        fmt = np.lib.format
        try:
            version = fmt.read_magic(fh)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"it is .npy format version {version}; MLP.save writes 1.0")
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read(fh)
        except (ValueError, TypeError, SyntaxError, tokenize.TokenError, RecursionError,
                MemoryError, OverflowError) as e:  # NumPy parses the header's Python literal
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            raise ValueError(f"its entry {key!r} has no valid .npy header ({reason})") from None
        if dtype.hasobject:
            raise ValueError(f"its entry {key!r} holds Python objects, which would need "
                             f"unpickling (allow_pickle=True); nothing was unpickled")
        if dtype.names is not None or dtype.subdtype is not None or \
                dtype.kind not in "biufU" or dtype.itemsize == 0:
            raise ValueError(f"its entry {key!r} has dtype {dtype}, not one MLP.save writes")
        if any(n < 0 for n in shape):
            raise ValueError(f"its entry {key!r} declares the shape {shape}")
        nbytes = math.prod(shape) * dtype.itemsize          # Python ints: no overflow
        if fh.tell() + nbytes != info.file_size:
            raise ValueError(f"its entry {key!r} declares an array of shape {shape} and dtype "
                             f"{dtype} ({nbytes} bytes) but holds {info.file_size - fh.tell()} "
                             f"bytes: the file is damaged or was altered")
        return tuple(shape), dtype, fortran

    def header(self, key):
        """(shape, dtype) of entry ``key``, without reading its data."""
        if key not in self._headers:
            info, fh = self._open(key)
            with fh:
                self._headers[key] = self._read_header(key, fh, info)
        return self._headers[key][:2]

    def array(self, key):
        """The array in entry ``key`` (its data read in chunks into one new buffer)."""
        info, fh = self._open(key)
        with fh:
            shape, dtype, fortran = self._read_header(key, fh, info)
            if self._headers.setdefault(key, (shape, dtype, fortran)) != (shape, dtype, fortran):
                raise ValueError(f"its entry {key!r} changed while it was read")
            buf = bytearray(math.prod(shape) * dtype.itemsize)
            view, got = memoryview(buf), 0
            while got < len(buf):
                n = fh.readinto(view[got:got + _READ_CHUNK])
                if not n:
                    raise ValueError(f"its entry {key!r} ends early: the archive is truncated")
                got += n
            fh.read(1)          # at the end: zipfile checks the entry's CRC
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _check_meta(meta):
    """``meta`` (the JSON of a file's 'meta' entry) has every field ``MLP.save``
    writes, each of the type it writes; ValueError naming the first that has not."""
    if not isinstance(meta, dict) or meta.get("format") != SAVE_FORMAT:
        raise ValueError(f"its 'meta' entry is not {SAVE_FORMAT} metadata")
    if meta.get("version") != SAVE_VERSION:
        raise ValueError(f"it has format version {meta.get('version')!r}; this code reads "
                         f"version {SAVE_VERSION}")

    def bad(field, what):
        return ValueError(f"its metadata field {field!r} is {str(meta.get(field))[:60]!r}, "
                          f"not {what}")
    if not (isinstance(meta.get("params"), dict) and all(isinstance(k, str) for k in meta["params"])):
        raise bad("params", "a JSON object of parameters")
    for field in ("n_layers", "n_features_in"):
        if not (_is_int(meta.get(field)) and meta[field] >= 1):
            raise bad(field, "a positive integer")
    for field in ("n_iter_", "best_iter_", "best_val_iter_"):
        if meta.get(field) is not None and not (_is_int(meta[field]) and meta[field] >= 0):
            raise bad(field, "null or an integer >= 0")
    names = meta.get("feature_names_in")
    if names is not None and not (isinstance(names, list) and len(names) == meta["n_features_in"]
                                  and all(isinstance(n, str) for n in names)):
        raise bad("feature_names_in", f"null or a list of {meta['n_features_in']} names")
    history = meta.get("history")
    if not (isinstance(history, list) and all(k in _HISTORY_KEYS for k in history)):
        raise bad("history", f"a list of names from {list(_HISTORY_KEYS)}")
    if history and meta.get("n_iter_") is None:
        raise bad("n_iter_", "the length of the history it has")


class MLP(ClassifierMixin, BaseEstimator):
    """Multilayer perceptron trained by vanilla full-batch gradient descent.

    Hidden layers use ``activation``; the output layer is softmax and the loss
    is (class-weighted) cross-entropy plus ``l2/2 * sum ||W||^2``. Each
    iteration computes the loss and gradient over the whole training set with
    the tiled numba kernel and takes one step ``theta -= lr * grad``.

    A scikit-learn classifier: inputs are checked with scikit-learn's
    ``validate_data`` / ``check_classification_targets`` (so ``clone``,
    ``Pipeline``, ``GridSearchCV`` and ``check_estimator`` work), and the
    constructor arguments are validated in ``fit`` with a ``ValueError`` that
    names the parameter.

    Parameters
    ----------
    hidden : tuple of int, widths of the hidden layers (at least one)
    activation : {"relu", "sigmoid", "tanh"}
    lr : float > 0, learning rate
    n_iter : int >= 1, number of gradient steps
    init : {"normal", "glorot", "he"}; "normal" draws N(0, init_scale^2)
        weights, "glorot" U(-a, a) with a = sqrt(6 / (fan_in + fan_out)),
        "he" N(0, 2 / fan_in); biases start at zero
    init_scale : float > 0, standard deviation for ``init="normal"``
    seed : int >= 0 or None, seed of the initial weights
    dtype : {"float64", "float32"}, precision of parameters and kernels
    l2 : float >= 0, L2 penalty on the weights (not biases)
    class_weight : None, "balanced" or dict {label: weight}
    early_stopping : bool, stop when the validation loss has not improved for
        ``patience`` iterations and restore the best parameters (needs X_val)
    patience : int >= 1

    Attributes
    ----------
    weights_, biases_ : lists of ndarray, ``weights_[l]`` of shape (fan_out, fan_in)
    classes_ : ndarray of shape (n_classes,), the sorted labels of ``y``
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,), only when ``X``
        was a DataFrame with string column names
    history_ : dict of ndarray; ``loss``, ``val_loss``, ``train_acc``,
        ``val_acc`` of shape (n_iter_,) and ``grad_abs_mean`` of shape
        (n_iter_, n_layers). Entry t describes the parameters *before* step t;
        ``val_loss`` is the same objective (class weights, l2) on the validation
        set, NaN without one.
    n_iter_ : int, iterations run
    best_iter_ : int or None, iteration whose parameters were restored by early stopping
    best_val_iter_ : int or None, iteration with the lowest validation loss (None
        without validation data); its parameters are kept for
        ``replay_early_stopping`` (not written by ``save``)
    """

    def __init__(self, hidden=(64, 64), activation="relu", lr=0.1, n_iter=200,
                 init="normal", init_scale=0.1, seed=42, dtype="float64", l2=0.0,
                 class_weight=None, early_stopping=False, patience=20):
        # stored as given (scikit-learn's convention); checked in ``fit``
        self.hidden, self.activation, self.lr, self.n_iter = hidden, activation, lr, n_iter
        self.init, self.init_scale, self.seed, self.dtype = init, init_scale, seed, dtype
        self.l2, self.class_weight = l2, class_weight
        self.early_stopping, self.patience = early_stopping, patience

    def __sklearn_is_fitted__(self):
        return hasattr(self, "weights_")

    # ------------------------------------------------------------ validation
    def _check_hyper(self):
        """Validate constructor arguments; ``ValueError`` naming the parameter."""
        h = self.hidden
        if _is_int(h):
            h = (h,)
        if not isinstance(h, (tuple, list)) or len(h) == 0 or \
                not all(_is_int(v) and v >= 1 for v in h):
            raise ValueError(f"hidden={self.hidden!r} must be a non-empty tuple of positive "
                             f"layer widths, e.g. (64, 64)")
        code = activation_code(self.activation)
        if not _is_real(self.lr) or self.lr <= 0:
            raise ValueError(f"lr={self.lr!r} must be a finite number > 0, e.g. 0.1")
        if not _is_int(self.n_iter) or self.n_iter < 1:
            raise ValueError(f"n_iter={self.n_iter!r} must be an integer >= 1")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r} is not supported; use one of {list(INITS)}")
        if not _is_real(self.init_scale) or self.init_scale <= 0:
            raise ValueError(f"init_scale={self.init_scale!r} must be a finite number > 0")
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            raise ValueError(f"seed={self.seed!r} must be a non-negative integer or None")
        dtype = resolve_dtype(self.dtype)
        if not _is_real(self.l2) or self.l2 < 0:
            raise ValueError(f"l2={self.l2!r} must be a finite number >= 0")
        cw = self.class_weight
        if not (cw is None or (isinstance(cw, str) and cw == "balanced") or isinstance(cw, dict)):
            raise ValueError(f"class_weight={cw!r} must be None, 'balanced' or a dict "
                             f"{{label: weight}}")
        if isinstance(cw, dict) and not all(_is_real(v) and v >= 0 for v in cw.values()):
            raise ValueError(f"class_weight={cw!r}: every weight must be a finite number >= 0")
        if not isinstance(self.early_stopping, (bool, np.bool_)):
            raise ValueError(f"early_stopping={self.early_stopping!r} must be True or False")
        if not _is_int(self.patience) or self.patience < 1:
            raise ValueError(f"patience={self.patience!r} must be an integer >= 1")
        return tuple(int(v) for v in h), code, dtype

    def _check_X_y(self, X, y, dtype):
        """Training data via scikit-learn's ``validate_data`` (sets ``n_features_in_``
        and ``feature_names_in_``): X of ``dtype``, C-contiguous and finite; y 1-D
        classification labels. Returns X, y and the class index of each row."""
        _refuse_1d(X, "X")
        try:
            X, y = validate_data(self, X, y, dtype=dtype, order="C", ensure_all_finite=False)
        except (ValueError, TypeError) as e:
            raise _numeric_hint(e, "X") from None
        X = _require_finite(X, "X")
        try:
            check_classification_targets(y)
        except ValueError as e:
            if y.dtype != object:
                raise
            raise ValueError(f"{e} (y is an object array of non-text labels, e.g. "
                             f"{y[0]!r}; convert it, e.g. y.astype(int))") from None
        classes = unique_labels(y)
        if len(classes) < 2:
            raise ValueError(f"y has only one class ({classes.tolist()}); "
                             f"a classifier needs at least two")
        self.classes_ = classes
        return X, y, np.searchsorted(classes, y).astype(np.int64)

    def _check_X(self, X, dtype, name="X"):
        """Prediction inputs via ``validate_data`` (width and column names as in fit)."""
        _refuse_1d(X, name)
        try:
            X = validate_data(self, X, reset=False, dtype=dtype, order="C",
                              ensure_all_finite=False)
        except (ValueError, TypeError) as e:
            raise _numeric_hint(e, name) from None
        return _require_finite(X, name)

    def _check_X_val(self, X_val, dtype, n_features):
        _refuse_1d(X_val, "X_val")
        try:
            Xv = check_array(X_val, dtype=dtype, order="C", ensure_all_finite=False,
                             estimator=self, input_name="X_val")
        except (ValueError, TypeError) as e:
            raise _numeric_hint(e, "X_val") from None
        if Xv.shape[1] != n_features:
            raise ValueError(f"X_val has {Xv.shape[1]} features but X has {n_features}; "
                             f"use the same columns for both")
        return _require_finite(Xv, "X_val")

    def _sample_weight(self, yi):
        """Per-sample weights from ``class_weight`` for class indices ``yi``."""
        K = len(self.classes_)
        cw = self.class_weight
        if cw is None:
            return np.ones(yi.shape[0])
        if isinstance(cw, str):                       # "balanced": n / (K * n_k)
            counts = np.bincount(yi, minlength=K).astype(float)
            per_class = np.where(counts > 0, yi.shape[0] / (K * np.maximum(counts, 1)), 0.0)
        else:
            per_class = np.ones(K)
            known = {c: k for k, c in enumerate(self.classes_.tolist())}
            for label, wt in cw.items():
                key = label.item() if isinstance(label, np.generic) else label
                if key not in known:
                    raise ValueError(f"class_weight has label {label!r}, which is not a class "
                                     f"of y (classes: {self.classes_.tolist()})")
                per_class[known[key]] = float(wt)
        w = per_class[yi]
        if w.sum() <= 0:
            raise ValueError(f"class_weight={cw!r} gives every training sample weight 0")
        return w

    def _encode(self, y, n, name):
        """Class indices (int64, shape (n,)) of labels ``y`` taken from ``classes_``."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"{name} must be 1-D with one label per row; got shape {y.shape} "
                             f"for {n} rows")
        try:
            idx = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
            bad = np.flatnonzero(self.classes_[idx] != y)
        except TypeError:                          # labels not comparable with classes_
            idx, bad = None, np.arange(n)
        if bad.size:
            raise ValueError(f"{name}[{bad[0]}] = {y[bad[0]]!r} is not one of the training "
                             f"classes {self.classes_.tolist()}")
        return idx.astype(np.int64)

    # ------------------------------------------------------------------ fit
    def _init_params(self, sizes, dtype):
        rng = np.random.default_rng(self.seed)
        weights, biases = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            if self.init == "normal":
                W = rng.normal(0.0, self.init_scale, size=(fan_out, fan_in))
            elif self.init == "glorot":
                a = np.sqrt(6.0 / (fan_in + fan_out))
                W = rng.uniform(-a, a, size=(fan_out, fan_in))
            else:
                W = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_out, fan_in))
            weights.append(W)
            biases.append(np.zeros(fan_out))
        return pack(weights, biases, dtype)

    def fit(self, X, y, X_val=None, y_val=None, progress=None):
        """Train by full-batch gradient descent.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), numeric
        y : array-like of shape (n_samples,), classification labels (at least
            two classes; integers, strings or bools; continuous values are refused)
        X_val : array-like of shape (n_val, n_features) or None
        y_val : array-like of shape (n_val,) or None, labels from ``y``'s classes
        progress : callable(iteration, loss, val_loss) or None, called every
            iteration (val_loss is NaN without validation data)

        Returns
        -------
        self
        """
        hidden, code, dtype = self._check_hyper()
        self._forget()
        try:
            return self._fit(hidden, code, dtype, X, y, X_val, y_val, progress)
        except BaseException:
            self._forget()                   # no mixture of old weights and new metadata
            raise

    def _forget(self):
        """Drop every fitted attribute (the model is unfitted afterwards)."""
        for k in _FITTED:
            self.__dict__.pop(k, None)

    def _fit(self, hidden, code, dtype, X, y, X_val, y_val, progress):
        """``fit`` after the hyper-parameter check: validate the data, train, store."""
        X, y, yi = self._check_X_y(X, y, dtype)
        w = self._sample_weight(yi)
        has_val = X_val is not None
        if has_val != (y_val is not None):
            raise ValueError("pass both X_val and y_val, or neither")
        if self.early_stopping and not has_val:
            raise ValueError("early_stopping=True needs validation data: pass X_val and y_val "
                             "to fit")
        if progress is not None and not callable(progress):
            raise ValueError(f"progress={progress!r} must be a callable(iteration, loss, "
                             f"val_loss) or None")
        if has_val:
            Xv = self._check_X_val(X_val, dtype, X.shape[1])
            yv = self._encode(y_val, Xv.shape[0], "y_val")
            wv = self._sample_weight(yv) if self.class_weight is not None else np.ones(len(yv))
            if wv.sum() <= 0:
                wv = np.ones(len(yv))
            wv = wv / wv.sum()
        sizes = [X.shape[1], *hidden, len(self.classes_)]
        theta, sizes = self._init_params(sizes, dtype)
        L = len(sizes) - 1
        off = _offsets(sizes)
        w_slices = [slice(off[l], off[l] + sizes[l + 1] * sizes[l]) for l in range(L)]
        lr = dtype(self.lr)
        hist = {k: np.full(self.n_iter, np.nan) for k in _HISTORY_KEYS[:4]}
        hist["grad_abs_mean"] = np.full((self.n_iter, L), np.nan)
        best_loss, best_theta, best_iter = np.inf, None, None
        t = -1
        for t in range(self.n_iter):
            loss, grad, correct = _run_loss_and_grad(theta, sizes, code, X, yi, w, self.l2)
            if not np.isfinite(loss) or not np.all(np.isfinite(grad)):
                raise ValueError(
                    f"training diverged at iteration {t}: the loss is {loss} with lr={self.lr}; "
                    f"use a smaller learning rate (e.g. --lr {self.lr / 10:g})")
            hist["loss"][t] = loss
            hist["train_acc"][t] = correct / X.shape[0]
            hist["grad_abs_mean"][t] = [np.mean(np.abs(grad[s])) for s in w_slices]
            val_loss = np.nan
            if has_val:
                logP = _run_forward(theta, sizes, code, Xv, log=True)
                val_loss = float(-np.sum(wv * logP[np.arange(len(yv)), yv]) +
                                 0.5 * self.l2 * sum(float(np.sum(
                                     theta[s].astype(np.float64) ** 2)) for s in w_slices))
                hist["val_loss"][t] = val_loss
                hist["val_acc"][t] = np.mean(np.argmax(logP, axis=1) == yv)
            if progress is not None:
                progress(t, loss, val_loss)
            if has_val:
                if val_loss < best_loss:
                    best_loss, best_theta, best_iter = val_loss, theta.copy(), t
                elif self.early_stopping and t - best_iter >= self.patience:
                    break
            theta -= lr * grad
            if not np.all(np.isfinite(theta)):
                raise ValueError(
                    f"training diverged at iteration {t}: weights became non-finite with "
                    f"lr={self.lr}; use a smaller learning rate (e.g. --lr {self.lr / 10:g})")
        n_run = t + 1
        self.history_ = {k: v[:n_run].copy() for k, v in hist.items()}
        self.n_iter_ = n_run
        self.best_iter_ = best_iter if self.early_stopping else None
        self.best_val_iter_ = best_iter
        self._best_val_theta = best_theta
        if self.early_stopping and best_theta is not None:
            theta = best_theta
        self._set_params(theta, sizes)
        return self

    def _set_params(self, theta, sizes):
        Ws, bs = unpack(theta, sizes)
        self.weights_ = [W.copy() for W in Ws]
        self.biases_ = [b.copy() for b in bs]

    # -------------------------------------------------------------- predict
    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        P : ndarray of shape (n_samples, n_classes), columns in ``classes_`` order
        """
        check_is_fitted(self)
        dtype = self.weights_[0].dtype.type
        X = self._check_X(X, dtype)
        theta, sizes = pack(self.weights_, self.biases_, dtype)
        return _run_forward(theta, sizes, activation_code(self.activation), X)

    def predict(self, X):
        """Most probable class label for each row; shape (n_samples,)."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # ------------------------------------------------------- build, save, load
    @classmethod
    def from_weights(cls, weights, biases, activation, classes=None):
        """A fitted ``MLP`` from given parameters (no training).

        Parameters
        ----------
        weights : list of ndarray, ``weights[l]`` of shape (fan_out, fan_in)
        biases : list of ndarray, ``biases[l]`` of shape (fan_out,)
        activation : {"relu", "sigmoid", "tanh"}
        classes : array-like of shape (n_classes,) or None (0..n_classes-1)
        """
        activation_code(activation)
        if len(weights) < 2:
            raise ValueError(f"need at least one hidden layer (two weight matrices); "
                             f"got {len(weights)}")
        theta, sizes, dtype = _check_params(weights, biases, None)
        K = int(sizes[-1])
        classes = np.arange(K) if classes is None else np.asarray(classes)
        if classes.shape != (K,):
            raise ValueError(f"classes has shape {classes.shape}; the network has {K} outputs")
        model = cls(hidden=tuple(int(s) for s in sizes[1:-1]), activation=activation,
                    dtype=np.dtype(dtype).name)
        model.classes_ = classes
        model.n_features_in_ = int(sizes[0])
        model._set_params(theta, sizes)
        return model

    def input_gradients(self, X, y=None, target="output"):
        """Per-sample input gradients of this network (see ``input_gradients``).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) of labels from ``classes_``;
            needed for ``target="loss"``
        target : {"output", "logit", "loss"}

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        yi = None if y is None else self._encode(y, np.shape(X)[0], "y")
        return input_gradients(self.weights_, self.biases_, X, yi, self.activation, target=target)

    def feature_attribution(self, X, y=None, target="output", samples="correct",
                            feature_names=None, feature_source=None, times_input=False):
        """Rank input features by mean |input gradient| (see ``feature_attribution``).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) of labels from ``classes_``
        target, samples, feature_names, feature_source, times_input
            As in the module-level ``feature_attribution``.

        Returns
        -------
        dict, as returned by the module-level ``feature_attribution``
        """
        check_is_fitted(self)
        yi = None if y is None else self._encode(y, np.shape(X)[0], "y")
        return feature_attribution(self.weights_, self.biases_, X, yi, self.activation,
                                   target=target, samples=samples, feature_names=feature_names,
                                   feature_source=feature_source, times_input=times_input)

    def save(self, path):
        """Write parameters, hyper-parameters, labels and history to one ``.npz`` file.

        Parameters
        ----------
        path : str or os.PathLike
            ``.npz`` is appended when missing (``MLP.load`` accepts the same path).

        Returns
        -------
        Path, the file written

        Everything is a plain array or JSON text (labels keep their values and
        type: ints, floats, bools, strings), so ``MLP.load`` reads it with
        ``allow_pickle=False``. ``replay_early_stopping``'s record is not saved.
        The file is written as ``<path>.part`` (created afresh: a link of that
        name is removed, never written through) and then renamed to ``path``.
        """
        check_is_fitted(self)
        p = _npz_path(path)
        params = self.get_params()
        params["dtype"] = np.dtype(resolve_dtype(params["dtype"])).name
        try:
            params = {k: _to_json(v) for k, v in params.items()}
        except TypeError as e:
            raise ValueError(f"cannot save the model to {p}: a parameter {e}") from None
        history = getattr(self, "history_", {})
        names = getattr(self, "feature_names_in_", None)
        meta = {"format": SAVE_FORMAT, "version": SAVE_VERSION, "params": params,
                "classes": _labels_to_json(self.classes_), "n_layers": len(self.weights_),
                "n_features_in": int(self.n_features_in_),
                "feature_names_in": None if names is None else [str(c) for c in names],
                "history": list(history)}
        for k in ("n_iter_", "best_iter_", "best_val_iter_"):
            v = getattr(self, k, None)
            meta[k] = None if v is None else int(v)
        arrays = {"meta": np.array(json.dumps(meta))}
        for l, (W, b) in enumerate(zip(self.weights_, self.biases_)):
            arrays[f"W{l}"], arrays[f"b{l}"] = W, b
        for k, v in history.items():
            arrays[f"history_{k}"] = v
        tmp = p.with_name(p.name + ".part")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:                # a crashed save's, or a planted link: drop the
            os.unlink(tmp)                     # name (never write through it) and start afresh
            fd = os.open(tmp, flags, 0o666)
        try:
            with open(fd, "wb") as fh:         # a file handle: np.savez adds no suffix
                np.savez(fh, **arrays)
            os.replace(tmp, p)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return p

    @classmethod
    def load(cls, path):
        """An ``MLP`` written by ``save``; the same ``path`` (with or without ``.npz``).

        Raises ``FileNotFoundError`` when there is no such file and one
        ``ValueError`` naming the file and the problem when it is not a model
        written by ``save`` (another archive, a truncated, edited or crafted
        file). Nothing is unpickled, and nothing is allocated before the sizes
        the file declares have been checked against its real size (and its
        compressed entries against ``LOAD_MAX_INFLATED``).
        """
        p = _npz_path(path)
        if not p.is_file() and Path(os.fspath(path)).is_file():
            p = Path(os.fspath(path))                  # saved elsewhere under another name
        if not p.is_file():
            raise FileNotFoundError(f"no model file {p}: write one with MLP.save({str(path)!r})")
        try:
            with open(p, "rb") as fh:
                if fh.read(4) != _ZIP_MAGIC:
                    raise ValueError("it is not an .npz (zip) archive")
                size = os.fstat(fh.fileno()).st_size
                fh.seek(0)
                with zipfile.ZipFile(fh) as zf:
                    return cls._from_archive(_NpzReader(zf, size))
        except _LOAD_ERRORS as e:
            reason = " ".join(str(e).split()).strip("'\"") or type(e).__name__
            if isinstance(e, (zipfile.BadZipFile, EOFError, zlib.error, struct.error,
                              NotImplementedError)):
                reason = f"the archive is truncated or damaged ({reason})"
            elif isinstance(e, (OverflowError, RecursionError, MemoryError)):
                reason = (f"it declares sizes or nesting beyond what MLP.save writes "
                          f"({type(e).__name__}: {reason})")
            raise ValueError(f"cannot load {p}: {reason[:300]}; pass a file written by MLP.save") \
                from None

    @classmethod
    def _from_archive(cls, f):
        """The model stored in the ``_NpzReader`` ``f``; ValueError (or another of
        ``_LOAD_ERRORS``) if it is malformed."""
        if "meta" not in f.entries:
            raise ValueError(f"it has no 'meta' entry (entries: {sorted(f.entries)[:8]}), so it "
                             f"was not written by MLP.save")
        shape, dtype = f.header("meta")
        if shape != () or dtype.kind != "U" or dtype.itemsize > _LOAD_MAX_META:
            raise ValueError(f"its 'meta' entry is an array of shape {shape} and dtype {dtype}, "
                             f"not the JSON text (at most {_LOAD_MAX_META // 4} characters) "
                             f"MLP.save writes")
        try:
            meta = json.loads(str(f.array("meta")[()]))
        except json.JSONDecodeError as e:
            raise ValueError(f"its 'meta' entry is not valid JSON ({e})") from None
        _check_meta(meta)
        model = cls(**{k: _from_json(v) for k, v in meta["params"].items()})
        hidden, _, dtype = model._check_hyper()
        classes = _labels_from_json(meta["classes"])
        L = meta["n_layers"]
        if L != len(hidden) + 1:
            raise ValueError(f"its metadata says n_layers={L}, but hidden={hidden} makes "
                             f"{len(hidden) + 1} layers")
        # shapes and dtypes from the .npy headers first: no array is read that
        # the metadata does not account for
        heads = [(f.header(f"W{l}"), f.header(f"b{l}")) for l in range(L)]
        sizes = [heads[0][0][0][1] if len(heads[0][0][0]) == 2 else -1]
        for l, ((Ws, _), (bs, _)) in enumerate(heads):
            if len(Ws) != 2 or Ws[1] != sizes[-1]:
                raise ValueError(f"its weights W{l} have shape {Ws}; expected (fan_out, {sizes[-1]}) "
                                 f"to follow the previous layer")
            if bs != (Ws[0],):
                raise ValueError(f"its biases b{l} have shape {bs}; expected ({Ws[0]},)")
            sizes.append(Ws[0])
        dtypes = {d for pair in heads for _, d in pair}
        expected = [meta["n_features_in"], *hidden, len(classes)]
        if sizes != expected or dtypes != {np.dtype(dtype)}:
            raise ValueError(f"its weights have layer sizes {sizes} and dtype "
                             f"{heads[0][0][1]}, but its metadata says {expected} and "
                             f"{np.dtype(dtype).name}")
        n = meta["n_iter_"]
        for k in meta["history"]:
            hs, hd = f.header(f"history_{k}")
            want = (n, L) if k == "grad_abs_mean" else (n,)
            if hs != want or hd.kind != "f":
                raise ValueError(f"its history entry {k!r} has shape {hs} and dtype {hd}; "
                                 f"expected {want} floats (n_iter_={n})")
        Ws = [np.ascontiguousarray(f.array(f"W{l}")) for l in range(L)]
        bs = [np.ascontiguousarray(f.array(f"b{l}")) for l in range(L)]
        theta, _ = pack(Ws, bs, dtype)
        if not np.all(np.isfinite(theta)):
            raise ValueError("its weights contain NaN or Inf")
        model.weights_, model.biases_ = Ws, bs
        model.classes_ = classes
        model.n_features_in_ = meta["n_features_in"]
        if meta["feature_names_in"] is not None:
            model.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
        if meta["history"]:
            model.history_ = {k: f.array(f"history_{k}") for k in meta["history"]}
        for k in ("n_iter_", "best_iter_", "best_val_iter_"):
            setattr(model, k, meta[k])
        return model


def warm_up(dtype="float64", kernels=("network",)):
    """Compile (or load from numba's cache) kernels by running them once on a tiny problem.

    Parameters
    ----------
    dtype : "float64" or "float32", the dtype of the network kernels to prepare
    kernels : iterable of {"network"}
        "network": what ``MLP.fit`` with validation data and ``MLP.predict`` use.
        The Question 2 network has its own ``shared_bias.warm_up``.
    """
    kernels = set(kernels)
    unknown = kernels - {"network"}
    if unknown:
        raise ValueError(f"kernels={sorted(unknown)} unknown; use 'network' "
                         "(the Question 2 network: shared_bias.warm_up)")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3)), np.arange(8) % 2
    if "network" in kernels:
        # the activation is a run-time argument of the kernels: one fit compiles all
        MLP(hidden=(2,), n_iter=1, dtype=dtype).fit(X, y, X, y).predict(X)


def replay_early_stopping(model, patience):
    """The network ``early_stopping=True`` would have returned, without training it.

    With the same settings, data and seed, a run with early stopping follows
    the trajectory of ``model`` (trained without it, with validation data)
    iterate for iterate, until it stops. When the recorded validation loss of
    ``model`` never goes ``patience`` iterations without a new minimum, early
    stopping would have run every iteration and then restored the iterate with
    the lowest validation loss, which ``fit`` kept: that network is returned,
    identical to training it. Otherwise (it would have stopped earlier) None:
    train with ``early_stopping=True`` then.

    Parameters
    ----------
    model : MLP
        Fitted with validation data and ``early_stopping=False``.
    patience : int >= 1

    Returns
    -------
    MLP or None
        A fitted copy with ``early_stopping=True``, ``patience``, the best
        iterate's parameters and ``best_iter_`` set; ``model`` is unchanged.
    """
    check_is_fitted(model, "weights_")
    if not (isinstance(patience, (int, np.integer)) and patience >= 1):
        raise ValueError(f"patience must be a positive integer; got {patience!r}")
    if model.early_stopping:
        raise ValueError("model was trained with early_stopping=True already; replay needs "
                         "a model trained without it")
    theta = getattr(model, "_best_val_theta", None)
    if theta is None:
        raise ValueError("model has no validation record (fitted without X_val/y_val, or "
                         "loaded from a file); fit it with validation data")
    best, best_iter = np.inf, None
    for t, v in enumerate(model.history_["val_loss"]):
        if v < best:
            best, best_iter = v, t
        elif t - best_iter >= patience:
            return None                        # it would have stopped at iteration t
    replay = clone(model).set_params(early_stopping=True, patience=int(patience))
    replay._set_params(theta, pack(model.weights_, model.biases_)[1])
    for k in ("classes_", "n_features_in_", "feature_names_in_"):
        if hasattr(model, k):
            setattr(replay, k, getattr(model, k))
    replay.history_ = {k: v.copy() for k, v in model.history_.items()}
    replay.n_iter_ = model.n_iter_
    replay.best_iter_ = replay.best_val_iter_ = model.best_val_iter_
    replay._best_val_theta = theta
    return replay


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


class AttributionTarget(NamedTuple):
    """One attribution target: name, kernel code, delta at the logits."""
    name: str
    code: int
    delta: Callable             # @njit (o, m, y, k) -> dt/da_k for one sample
    reference_delta: Callable   # NumPy (o (n, K), m (n,), y (n,) or None) -> (n, K)
    needs_y: bool


def _reference_target_output(o, m, y):
    n, K = o.shape
    return o[np.arange(n), m][:, None] * (np.eye(K)[m] - o)


#: The registry of attribution targets (codes are the row positions).
ATTRIBUTION_TABLE = (
    AttributionTarget("output", 0, _target_output, _reference_target_output, False),
    AttributionTarget("logit", 1, _target_logit, lambda o, m, y: np.eye(o.shape[1])[m], False),
    AttributionTarget("loss", 2, _target_loss,
                      lambda o, m, y: o - np.eye(o.shape[1])[np.asarray(y, dtype=np.int64)], True),
)
assert all(t.code == i for i, t in enumerate(ATTRIBUTION_TABLE)), "codes must be row positions"
ATTRIBUTION_TARGETS = {t.name: t.code for t in ATTRIBUTION_TABLE}
_KERNEL_TARGETS = tuple((t.code, t.delta, t.needs_y) for t in ATTRIBUTION_TABLE)


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
def _block_input_gradients(theta, sizes, code, X, y, target, start, stop, tile, G, pred):
    """Rows [start, stop) of G = dt/dx and pred = argmax o, tile by tile (see ``_input_gradients``)."""
    dt = theta.dtype
    L = sizes.shape[0] - 1
    K = sizes[L]
    Ws, bs = _layer_views(theta, sizes)
    acts, dbuf = _tile_workspaces(sizes, tile, dt)
    o = np.empty(K)                                            # softmax of one sample, float64
    for s in range(start, stop, tile):
        Xt, Z, D = _tile_logits(Ws, bs, code, X, s, stop, tile, acts, dbuf)
        r = Xt.shape[0]
        # ---- delta at the logits a, dt/da, one row per sample
        for i in range(r):
            m, _, tot = _softmax_row(Z, i, o)
            pred[s + i] = m
            for k in range(K):
                o[k] /= tot
            _target_delta(o, m, y[s:], i, target, D)
        # ---- backward: delta_l = g'(h_l) * (delta_{l+1} W_l); at l = 0 it is dt/dx
        for l in range(L - 1, -1, -1):
            if l == 0:
                np.dot(D, Ws[0], G[s:s + r])                  # (r, d): each row its own sample
            else:
                D = _delta_to_input(D, Ws[l], acts[l - 1][:r], code,
                                    _delta_view(dbuf, L - l, r, sizes[l]))


@njit(cache=True, parallel=True)
def _input_gradients(theta, sizes, code, X, y, target):
    """G[s] = dt/dx at x = X[s], t = o_m (target 0), a_m (1) or -log o_y (2); m = argmax o.

    Tiles of TILE samples go forward and backward as matrix products (like
    ``_loss_and_grad``); a fixed number of contiguous blocks run in parallel and
    every sample writes only its own row of G and entry of pred.
    """
    n, d = X.shape
    G = np.empty((n, d), dtype=X.dtype)
    pred = np.empty(n, dtype=np.int64)
    tile = TILE
    n_blocks = min((n + tile - 1) // tile, MAX_BLOCKS)
    for b in prange(n_blocks):
        start, stop = _block_rows(b, n_blocks, n, tile)
        _block_input_gradients(theta, sizes, code, X, y, target, start, stop, tile, G, pred)
    return G, pred


# ------------------------------------------------------------------ validation
def _attr_target_code(target):
    """Integer code of an attribution target name; ``ValueError`` if unknown."""
    return registry_code(ATTRIBUTION_TARGETS, "target", target)


def _attr_inputs(weights, biases, X, y, activation, target, dtype):
    """Validated (theta, sizes, code, X, y, target_code) for ``_input_gradients``."""
    code = activation_code(activation)
    tcode = _attr_target_code(target)
    X_arr = np.asarray(X)
    if dtype is None:
        dtype = np.float32 if X_arr.dtype == np.float32 else np.float64
    theta, sizes, dtype = _check_params(weights, biases, dtype)
    if X_arr.ndim == 2 and X_arr.shape[1] != sizes[0]:
        raise ValueError(f"X has {X_arr.shape[1]} columns but the network expects {sizes[0]} "
                         f"inputs (weights[0] has shape {np.shape(weights[0])}); encode X "
                         f"the same way as the training data")
    X_arr = _check_X(X_arr, dtype)
    if y is None:
        if ATTRIBUTION_TABLE[tcode].needs_y:
            others = [t.name for t in ATTRIBUTION_TABLE if not t.needs_y]
            raise ValueError(f"target={target!r} needs the true labels y; pass y "
                             f"or use target={' / '.join(map(repr, others))}")
        y_arr = np.zeros(0, dtype=np.int64)
    else:
        y_arr = _check_y_index(y, X_arr.shape[0], int(sizes[-1]))
    return theta, sizes, code, X_arr, y_arr, tcode


def _gradients_and_predictions(weights, biases, X, y, activation, target, dtype):
    theta, sizes, code, X_arr, y_arr, tcode = _attr_inputs(weights, biases, X, y,
                                                           activation, target, dtype)
    with _single_threaded_blas():
        G, pred = _input_gradients(theta, sizes, np.int64(code), X_arr, y_arr, np.int64(tcode))
    if not np.all(np.isfinite(G)):
        raise ValueError("input gradients are not finite; check the weights for huge values "
                         "(retrain with a lower learning rate) or use dtype='float64'")
    return G, pred, X_arr


# ------------------------------------------------------------------ public API
def input_gradients(weights, biases, X, y, activation, target="output", dtype=None):
    """Gradient of one scalar per sample with respect to that sample's input.

    Parameters
    ----------
    weights : list of ndarray, ``weights[l]`` of shape (sizes[l+1], sizes[l])
    biases : list of ndarray, ``biases[l]`` of shape (sizes[l+1],)
    X : ndarray of shape (n_samples, n_features)
        Inputs, encoded and scaled like the training data; finite.
    y : ndarray of shape (n_samples,) of int in [0, n_classes), or None
        True labels; required for ``target="loss"`` only.
    activation : {"relu", "sigmoid", "tanh"}
        Hidden activation; the output layer is softmax.
    target : {"output", "logit", "loss"}
        ``"output"``: d o_m / dx, o_m the softmax output of the predicted class m
        (Aggarwal sec. 2.8). ``"logit"``: d a_m / dx, the predicted class's
        pre-softmax logit (does not saturate). ``"loss"``: dL/dx of the
        cross-entropy with the true label, dL/dx = W1^T delta1.
    dtype : {None, "float64", "float32"}
        Computation dtype; None uses float32 if X is float32, else float64.

    Returns
    -------
    G : ndarray of shape (n_samples, n_features), dtype ``dtype``
        ``G[s, i]`` is the derivative of sample s's target with respect to ``X[s, i]``.
    """
    G, _, _ = _gradients_and_predictions(weights, biases, X, y, activation, target, dtype)
    return G


def reference_input_gradients(weights, biases, X, y, activation, target="output"):
    """Slow, readable float64 NumPy version of ``input_gradients`` (same arguments).

    Returns
    -------
    G : ndarray of shape (n_samples, n_features), float64
    """
    activation_code(activation)
    tgt = ATTRIBUTION_TABLE[_attr_target_code(target)]
    if tgt.needs_y and y is None:
        raise ValueError(f"target={target!r} needs the true labels y")
    Ws = [np.asarray(W, dtype=np.float64) for W in weights]
    bs = [np.asarray(b, dtype=np.float64) for b in biases]
    h = [np.asarray(X, dtype=np.float64)]               # h[0] = x, h[l] = layer l output
    for l, (W, b) in enumerate(zip(Ws, bs)):
        a = h[-1] @ W.T + b                              # (n, sizes[l+1])
        h.append(_reference_act(a, activation) if l < len(Ws) - 1 else a)
    z = h[-1]
    o = reference_softmax(z)                            # (n, K)
    m = np.argmax(z, axis=1)
    delta = tgt.reference_delta(o, m, y)                # (n, K) dt/da at the logits
    for l in range(len(Ws) - 1, -1, -1):
        delta = delta @ Ws[l]                            # (n, sizes[l]) = W_l^T delta
        if l > 0:
            delta = delta * _reference_act_grad(h[l], activation)
    return delta


def _labels_and_sources(d, feature_names, feature_source):
    names = [f"x{i}" for i in range(d)] if feature_names is None else [str(f) for f in feature_names]
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} entries but X has {d} columns; "
                         f"pass one name per encoded column")
    source = names if feature_source is None else [str(f) for f in feature_source]
    if len(source) != d:
        raise ValueError(f"feature_source has {len(source)} entries but X has {d} columns; "
                         f"pass the original column of every encoded column")
    return names, source


def _aggregate_by_source(scores, source):
    """Sum ``scores`` over encoded columns sharing a source, in first-appearance order."""
    order = list(dict.fromkeys(source))
    idx = {s: k for k, s in enumerate(order)}
    total = np.zeros(len(order))
    counts = np.zeros(len(order), dtype=np.int64)
    for sc, s in zip(scores, source):
        total[idx[s]] += sc
        counts[idx[s]] += 1
    return order, total, counts


def _ranking_table(names, scores, **extra):
    """DataFrame (feature, score, rank, share, *extra) sorted by score, rank 1 = largest."""
    import pandas as pd   # here, not at the top: a training worker never needs it
    scores = np.asarray(scores, dtype=np.float64)
    tot = scores.sum()
    df = pd.DataFrame({"feature": list(names), "score": scores,
                       "share": scores / tot if tot > 0 else np.zeros_like(scores), **extra})
    df = df.sort_values("score", ascending=False, kind="mergesort").reset_index(drop=True)
    df.insert(2, "rank", np.arange(1, len(df) + 1))
    return df


def feature_attribution(weights, biases, X, y, activation, target="output", samples="correct",
                        feature_names=None, feature_source=None, times_input=False, dtype=None):
    """Rank input features by mean absolute input gradient (sensitivity analysis).

    Parameters
    ----------
    weights, biases, activation, target, dtype
        As in ``input_gradients``.
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) or None
        True labels; required for ``samples="correct"`` and ``target="loss"``.
    samples : {"correct", "all"}
        Average over the correctly classified samples (Aggarwal sec. 2.8) or all.
    feature_names : list of str of length n_features, optional
        Names of the encoded columns; default ``x0, x1, ...``.
    feature_source : list of str of length n_features, optional
        Original column of each encoded column (e.g. the categorical a one-hot
        column came from); default ``feature_names`` (one to one).
    times_input : bool
        Score mean |g * x| (gradient x input) instead of mean |g|.

    Returns
    -------
    result : dict
        ``scores`` ndarray of shape (n_features,) in column order;
        ``table`` DataFrame (feature, score, rank, share, source) sorted by
        score, rank 1 = most important, share = score / sum of scores;
        ``by_source`` DataFrame (feature, score, rank, share, n_columns) per
        original column, the scores of its encoded columns summed;
        ``n_samples`` rows averaged over; ``n_total`` rows in X; ``mask`` bool
        ndarray of shape (n_samples,) of the rows used; ``target``,
        ``samples``, ``times_input`` echo the arguments.
    """
    if samples not in ("correct", "all"):
        raise ValueError(f"samples={samples!r} is not supported; use 'correct' or 'all'")
    if samples == "correct" and y is None:
        raise ValueError("samples='correct' needs the true labels y; pass y or use samples='all'")
    if not isinstance(times_input, (bool, np.bool_)):
        raise ValueError(f"times_input must be True or False; got {times_input!r}")
    G, pred, X_arr = _gradients_and_predictions(weights, biases, X, y, activation, target, dtype)
    names, source = _labels_and_sources(X_arr.shape[1], feature_names, feature_source)
    if samples == "correct":
        mask = pred == _check_y_index(y, X_arr.shape[0], len(biases[-1]))
        if not mask.any():
            raise ValueError("no sample is classified correctly, so there is nothing to average; "
                             "check that X and y match the network or use samples='all'")
    else:
        mask = np.ones(X_arr.shape[0], dtype=bool)
    A = G[mask].astype(np.float64)                       # (n_used, d)
    if times_input:
        A = A * X_arr[mask]
    scores = np.abs(A).mean(axis=0)                      # (d,)
    order, total, counts = _aggregate_by_source(scores, source)
    return {
        "scores": scores,
        "table": _ranking_table(names, scores, source=source),
        "by_source": _ranking_table(order, total, n_columns=counts),
        "n_samples": int(mask.sum()),
        "n_total": int(X_arr.shape[0]),
        "mask": mask,
        "target": target,
        "samples": samples,
        "times_input": bool(times_input),
    }


# ---------------------------------------------------------------- cross-checks
def _spearman(a, b):
    """Spearman rank correlation; NaN when undefined (fewer than 2 items, constant input)."""
    from scipy.stats import spearmanr   # here: scipy.stats takes ~1 s to import
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)


def permutation_check(estimator, X, y, attribution_scores, feature_names, feature_source=None,
                      n_repeats=5, seed=0):
    """Compare attribution scores with permutation importance of a fitted classifier.

    Per encoded column, ``sklearn.inspection.permutation_importance`` (drop of
    ``estimator.score`` when the column is shuffled). Per original column, all
    of its encoded columns are shuffled jointly with one row permutation
    (scikit-learn has no feature groups), so a one-hot group moves as a whole.

    Parameters
    ----------
    estimator : fitted classifier with ``predict`` and ``score(X, y)``
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    attribution_scores : ndarray of shape (n_features,) or dict from ``feature_attribution``
    feature_names : list of str of length n_features
    feature_source : list of str of length n_features, optional
        Original column of each encoded column; default ``feature_names``.
    n_repeats : int >= 1
        Shuffles per column (or group).
    seed : int
        Seed of both permutation loops.

    Returns
    -------
    result : dict
        ``encoded`` and ``original`` DataFrames (feature, attribution,
        perm_mean, perm_std, attribution_rank, perm_rank; ``original`` also
        n_columns), ``spearman_encoded`` and ``spearman_original`` (Spearman
        rank correlation of attribution and permutation importance; NaN if
        undefined), ``baseline_score`` (estimator.score on the unshuffled X).
    """
    import pandas as pd
    from sklearn.inspection import permutation_importance

    if isinstance(attribution_scores, dict):
        attribution_scores = attribution_scores["scores"]
    X_arr = np.asarray(X, dtype=np.float64)
    if X_arr.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X_arr.shape}")
    n, d = X_arr.shape
    y_arr = np.asarray(y)
    if y_arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X; got {y_arr.shape}")
    attr = np.asarray(attribution_scores, dtype=np.float64)
    if attr.shape != (d,):
        raise ValueError(f"attribution_scores has shape {attr.shape}; expected ({d},), "
                         f"one score per column of X")
    if not (isinstance(n_repeats, (int, np.integer)) and n_repeats >= 1):
        raise ValueError(f"n_repeats must be a positive integer; got {n_repeats!r}")
    names, source = _labels_and_sources(d, feature_names, feature_source)

    pi = permutation_importance(estimator, X_arr, y_arr, n_repeats=n_repeats, random_state=seed)
    enc = pd.DataFrame({"feature": names, "source": source, "attribution": attr,
                        "perm_mean": pi.importances_mean, "perm_std": pi.importances_std})

    order, attr_src, counts = _aggregate_by_source(attr, source)
    baseline = float(estimator.score(X_arr, y_arr))
    rng = np.random.default_rng(seed)
    drops = np.zeros((len(order), n_repeats))
    Xp = X_arr.copy()
    for g, src in enumerate(order):
        cols = [i for i, s in enumerate(source) if s == src]
        for r in range(n_repeats):
            perm = rng.permutation(n)
            Xp[:, cols] = X_arr[perm][:, cols]          # one row permutation for the group
            drops[g, r] = baseline - float(estimator.score(Xp, y_arr))
        Xp[:, cols] = X_arr[:, cols]
    orig = pd.DataFrame({"feature": order, "n_columns": counts, "attribution": attr_src,
                         "perm_mean": drops.mean(axis=1), "perm_std": drops.std(axis=1)})
    for df in (enc, orig):
        df["attribution_rank"] = df["attribution"].rank(ascending=False, method="min").astype(int)
        df["perm_rank"] = df["perm_mean"].rank(ascending=False, method="min").astype(int)
    return {
        "encoded": enc.sort_values("attribution", ascending=False, kind="mergesort").reset_index(drop=True),
        "original": orig.sort_values("attribution", ascending=False, kind="mergesort").reset_index(drop=True),
        "spearman_encoded": _spearman(enc["attribution"], enc["perm_mean"]),
        "spearman_original": _spearman(orig["attribution"], orig["perm_mean"]),
        "baseline_score": baseline,
    }


def compare_rankings(scores_a, scores_b, threshold=0.5):
    """Sanity check: do two attribution score vectors rank features differently?

    Parameters
    ----------
    scores_a, scores_b : ndarray of shape (n_features,)
    threshold : float in (-1, 1]
        The check passes when the Spearman correlation is below ``threshold``.
        With 13 features two unrelated rankings exceed 0.5 about 4% of the time.

    Returns
    -------
    result : dict
        ``spearman`` (NaN if undefined, e.g. constant scores), ``threshold``,
        ``passed`` (bool; False when the correlation is NaN or >= threshold).
    """
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"scores_a and scores_b must be 1-D of equal length; "
                         f"got shapes {a.shape} and {b.shape}")
    if not (-1.0 < float(threshold) <= 1.0):
        raise ValueError(f"threshold must be in (-1, 1]; got {threshold!r}")
    rho = _spearman(a, b)
    return {"spearman": rho, "threshold": float(threshold),
            "passed": bool(np.isfinite(rho) and rho < threshold)}


def randomization_check(weights, biases, X, y, activation, seed=0, threshold=0.5,
                        target="output", samples="correct"):
    """Model-randomisation sanity check for the attribution (Adebayo et al. 2018).

    Every layer's weights and biases are redrawn from N(0, s^2) with s the
    standard deviation of that trained layer's weights (biases: of its biases),
    the architecture kept. A faithful attribution must change: the Spearman
    correlation of the trained and randomised rankings should fall below
    ``threshold``. Both are averaged over the same rows (those selected by
    ``samples`` for the trained network); each network differentiates its own
    winning class.

    Parameters
    ----------
    weights, biases, X, y, activation, target, samples
        As in ``feature_attribution``.
    seed : int
        Seed of the re-randomisation.
    threshold : float
        As in ``compare_rankings``.

    Returns
    -------
    result : dict
        ``spearman``, ``threshold``, ``passed`` (see ``compare_rankings``),
        ``trained_scores`` and ``random_scores`` ndarrays of shape (n_features,).
    """
    trained = feature_attribution(weights, biases, X, y, activation, target=target,
                                  samples=samples)
    rng = np.random.default_rng(seed)
    rand_w = [rng.normal(0.0, np.std(W), size=np.shape(W)) for W in weights]
    rand_b = [rng.normal(0.0, np.std(b), size=np.shape(b)) for b in biases]
    mask = trained["mask"]
    y_used = None if y is None else np.asarray(y)[mask]
    random = feature_attribution(rand_w, rand_b, np.asarray(X)[mask], y_used, activation,
                                 target=target, samples="all")
    result = compare_rankings(trained["scores"], random["scores"], threshold)
    result["trained_scores"] = trained["scores"]
    result["random_scores"] = random["scores"]
    return result
