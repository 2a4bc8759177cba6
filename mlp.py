"""The network: numba kernels, the ``MLP`` estimator, attribution, shared bias.

Everything that computes with the network's parameters lives here. Kernels are
pairs: ``_name`` is a pure ``@njit`` function of arrays and scalars, ``name`` is
the public wrapper that validates its inputs and checks its result.

Parameter layout (shared by every kernel)
-----------------------------------------
A network with layer widths ``sizes = [d, h1, ..., hL, K]`` has one weight
matrix ``W[l]`` of shape ``(sizes[l+1], sizes[l])`` (fan_out, fan_in) and one
bias ``b[l]`` of shape ``(sizes[l+1],)`` per layer; a layer computes
``a = W x + b``. Kernels see all parameters as one flat contiguous vector
``theta``: for each layer in order, ``W[l]`` row-major, then ``b[l]``.
``pack``/``unpack`` convert between the list form and the flat form;
``unpack`` returns views, so writing into them writes into ``theta``.

Hidden activations are coded as small integers (``ACTIVATIONS``) so kernels
take no strings; the output layer is always softmax.
"""
import os
import tempfile

# numba writes its on-disk cache next to this file; fall back to a temporary
# directory when that is not writable (read-only install, shared checkout).
if "NUMBA_CACHE_DIR" not in os.environ and not os.access(
        os.path.dirname(os.path.abspath(__file__)), os.W_OK):
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), "mlp-numba-cache")

import numpy as np
import numba as nb
from numba import njit

ACTIVATIONS = {"relu": 0, "sigmoid": 1, "tanh": 2}
RELU, SIGMOID, TANH = 0, 1, 2
DTYPES = {"float64": np.float64, "float32": np.float32}

# numba would pick the OpenMP threading layer when libgomp is present; GNU
# OpenMP workers spin while waiting, and on a shared machine one parallel
# kernel call then costs ~20x more (measured: 80 vs 3.5 ms per training step).
# The workqueue layer sleeps instead. An explicit NUMBA_THREADING_LAYER wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    nb.config.THREADING_LAYER = "workqueue"


# ---------------------------------------------------------------- activations
@njit(cache=True, inline="always")
def _act(z, code):
    """g(z) for the hidden activation ``code`` (relu, sigmoid, tanh)."""
    if code == RELU:
        return z if z > 0 else z * 0
    elif code == SIGMOID:
        # two branches so exp never overflows
        if z >= 0:
            return 1 / (1 + np.exp(-z))
        e = np.exp(z)
        return e / (1 + e)
    else:
        return np.tanh(z)


@njit(cache=True, inline="always")
def _act_grad(a, code):
    """g'(z) written in terms of the output a = g(z)."""
    if code == RELU:
        return a * 0 + 1 if a > 0 else a * 0
    elif code == SIGMOID:
        return a * (1 - a)
    else:
        return 1 - a * a


# ------------------------------------------------------------ parameter layout
def activation_code(activation):
    """Integer code of a hidden activation name; ``ValueError`` if unknown."""
    try:
        return ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise ValueError(f"activation={activation!r} is not supported; "
                         f"use one of {sorted(ACTIVATIONS)}") from None


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


# ===================================================================== kernels
# Full-batch loss and gradient, tile by tile.
#
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
def _layer_views(theta, sizes):
    """Views W[l] (fan_out, fan_in) and b[l] (fan_out,) into the flat ``theta``."""
    off = _offsets(sizes)
    L = sizes.shape[0] - 1
    Ws = [theta[off[l]:off[l] + sizes[l + 1] * sizes[l]].reshape(sizes[l + 1], sizes[l])
          for l in range(L)]
    bs = [theta[off[l] + sizes[l + 1] * sizes[l]:off[l + 1]] for l in range(L)]
    return Ws, bs


@njit(cache=True)
def _bias_act(Z, b, code):
    """Z <- g(Z + b) in place (the branch on ``code`` sits outside the loops)."""
    r, m = Z.shape
    if code == RELU:
        for i in range(r):
            for j in range(m):
                z = Z[i, j] + b[j]
                Z[i, j] = z if z > 0 else z * 0
    else:
        for i in range(r):
            for j in range(m):
                Z[i, j] = _act(Z[i, j] + b[j], code)


@njit(cache=True)
def _mul_act_grad(D, A, code):
    """D <- D * g'(z), with g'(z) written from the activation output A = g(z)."""
    r, m = D.shape
    if code == RELU:
        for i in range(r):
            for j in range(m):
                if not A[i, j] > 0:
                    D[i, j] = 0
    elif code == SIGMOID:
        for i in range(r):
            for j in range(m):
                D[i, j] *= A[i, j] * (1 - A[i, j])
    else:
        for i in range(r):
            for j in range(m):
                D[i, j] *= 1 - A[i, j] * A[i, j]


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


@njit(cache=True)
def _block_loss_grad(theta, sizes, code, X, y, scale, start, stop, tile, g):
    """Add d/dtheta of sum_i scale_i * CE_i over rows [start, stop) into ``g``.

    Returns (sum_i scale_i * CE_i in float64, number of correct argmax predictions).
    """
    dt = theta.dtype
    L = sizes.shape[0] - 1
    Ws, bs = _layer_views(theta, sizes)
    gWs, gbs = _layer_views(g, sizes)
    maxw = 0
    maxp = 0
    for l in range(L):
        maxw = max(maxw, sizes[l + 1])
        maxp = max(maxp, sizes[l + 1] * sizes[l])
    # per-block workspaces, allocated once and reused by every tile
    acts = [np.empty((tile, sizes[l + 1]), dtype=dt) for l in range(L)]
    dbuf0 = np.empty(tile * maxw, dtype=dt)
    dbuf1 = np.empty(tile * maxw, dtype=dt)
    gtmp = np.empty(maxp, dtype=dt)
    K = sizes[L]
    ez = np.empty(K)                                           # exp(z - max z), float64
    loss = 0.0
    correct = 0
    for s in range(start, stop, tile):
        e = min(s + tile, stop)
        r = e - s
        Xt = X[s:e]                                            # (r, d)
        Zout = _tile_forward(Ws, bs, code, Xt, acts)           # (r, K) logits
        D = dbuf0[:r * K].reshape(r, K)
        for i in range(r):
            zmax = Zout[i, 0]
            best = 0
            for k in range(1, K):
                if Zout[i, k] > zmax:
                    zmax = Zout[i, k]
                    best = k
            yi = y[s + i]
            if best == yi:
                correct += 1
            ssum = 0.0
            for k in range(K):
                ez[k] = np.exp(np.float64(Zout[i, k]) - zmax)   # <= 1: no overflow
                ssum += ez[k]
            lse = zmax + np.log(ssum)                          # log sum_k exp(z_k)
            loss += scale[s + i] * (lse - Zout[i, yi])
            # softmax + CE fused: dCE/dz_k = p_k - [k == y], the softmax Jacobian
            # contracted with -1/p_y collapses to P - Y.
            c = scale[s + i] / ssum
            for k in range(K):
                D[i, k] = c * ez[k]
            D[i, yi] -= scale[s + i]
        use0 = True
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
                buf = dbuf1 if use0 else dbuf0
                use0 = not use0
                Dn = buf[:r * fi].reshape(r, fi)               # (r, fan_in)
                np.dot(D, Ws[l], Dn)                           # dL/dA[l-1]
                _mul_act_grad(Dn, A, code)                     # dL/dZ[l-1]
                D = Dn
    return loss, correct


@njit(cache=True, parallel=True)
def _loss_and_grad(theta, sizes, code, X, y, scale, l2, tile, n_blocks):
    """L = sum_i scale_i CE_i + l2/2 sum_l ||W_l||^2 and dL/dtheta; also #correct."""
    n = X.shape[0]
    P = theta.shape[0]
    n_tiles = (n + tile - 1) // tile
    G = np.zeros((n_blocks, P), dtype=theta.dtype)             # per-block gradients
    losses = np.zeros(n_blocks)
    corrects = np.zeros(n_blocks, dtype=np.int64)
    for b in nb.prange(n_blocks):
        start = min((b * n_tiles // n_blocks) * tile, n)
        stop = min(((b + 1) * n_tiles // n_blocks) * tile, n)
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
        s = t * tile
        e = min(s + tile, n)
        Z = _tile_forward(Ws, bs, code, X[s:e], acts)
        for i in range(e - s):
            zmax = Z[i, 0]
            for k in range(1, K):
                zmax = max(zmax, Z[i, k])
            ssum = 0.0
            for k in range(K):
                ssum += np.exp(np.float64(Z[i, k]) - zmax)
            lse = zmax + np.log(ssum)
            for k in range(K):
                if log:
                    out[s + i, k] = np.float64(Z[i, k]) - lse
                else:
                    out[s + i, k] = np.exp(np.float64(Z[i, k]) - lse)
    return out


# ============================================================ NumPy reference
def _reference_act(z, activation):
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "sigmoid":
        from scipy.special import expit
        return expit(z)
    if activation == "tanh":
        return np.tanh(z)
    activation_code(activation)         # raises a ValueError naming the options


def _reference_act_grad(a, activation):
    """g'(z) from the activation output a = g(z)."""
    if activation == "relu":
        return (a > 0).astype(a.dtype)
    if activation == "sigmoid":
        return a * (1 - a)
    return 1 - a * a


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
    Z = A @ weights[-1].T + biases[-1]                      # (n, K) logits
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)


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
    A = np.ascontiguousarray(A, dtype=dtype)
    if not np.all(np.isfinite(A)):
        bad = np.argwhere(~np.isfinite(A))[:3]
        where = ", ".join(f"({r}, {c})" for r, c in bad)
        raise ValueError(f"{name} has NaN or infinite values, e.g. at (row, column) {where}; "
                         f"impute or drop them first")
    return A


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
        raise ValueError(f"{name} must be in 0..{n_classes - 1} (the network has "
                         f"{n_classes} outputs); {name}[{bad[0]}] = {y[bad[0]]}")
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
        raise ValueError("weights or biases contain NaN or infinite values; "
                         "the network diverged (try a smaller learning rate)")
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
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402

INITS = ("normal", "glorot", "he")
_HISTORY_KEYS = ("loss", "val_loss", "train_acc", "val_acc", "grad_abs_mean")


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and \
        not isinstance(v, (bool, np.bool_)) and np.isfinite(v)


class MLP(BaseEstimator, ClassifierMixin):
    """Multilayer perceptron trained by vanilla full-batch gradient descent.

    Hidden layers use ``activation``; the output layer is softmax and the loss
    is (class-weighted) cross-entropy plus ``l2/2 * sum ||W||^2``. Each
    iteration computes the loss and gradient over the whole training set with
    the tiled numba kernel and takes one step ``theta -= lr * grad``.

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
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    history_ : dict of ndarray; ``loss``, ``val_loss``, ``train_acc``,
        ``val_acc`` of shape (n_iter_,) and ``grad_abs_mean`` of shape
        (n_iter_, n_layers). Entry t describes the parameters *before* step t;
        ``val_loss`` is the same objective (class weights, l2) on the validation
        set, NaN without one.
    n_iter_ : int, iterations run
    best_iter_ : int or None, iteration whose parameters were restored by early stopping
    """

    def __init__(self, hidden=(64, 64), activation="relu", lr=0.1, n_iter=200,
                 init="normal", init_scale=0.1, seed=42, dtype="float64", l2=0.0,
                 class_weight=None, early_stopping=False, patience=20):
        self.hidden = hidden
        self.activation = activation
        self.lr = lr
        self.n_iter = n_iter
        self.init = init
        self.init_scale = init_scale
        self.seed = seed
        self.dtype = dtype
        self.l2 = l2
        self.class_weight = class_weight
        self.early_stopping = early_stopping
        self.patience = patience

    def __sklearn_tags__(self):
        # BaseEstimator comes first in the bases, so ClassifierMixin's tag hook
        # is not reached through super(); set the classifier tags here.
        from sklearn.utils import ClassifierTags
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        tags.target_tags.required = True
        return tags

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
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"{name} must be 1-D with one label per row; got shape {y.shape} "
                             f"for {n} rows")
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        bad = np.flatnonzero(self.classes_[idx] != y)
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
        X : ndarray of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), any labels (at least two classes)
        X_val : ndarray of shape (n_val, n_features) or None
        y_val : array-like of shape (n_val,) or None
        progress : callable(iteration, loss, val_loss) or None, called every
            iteration (val_loss is NaN without validation data)

        Returns
        -------
        self
        """
        hidden, code, dtype = self._check_hyper()
        X = _check_X(X, dtype)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must be 1-D with one label per row of X ({X.shape[0]}); "
                             f"got shape {y.shape}")
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError("y has NaN labels; drop or fill those rows first")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"y has only one class ({self.classes_.tolist()}); "
                             f"a classifier needs at least two")
        yi = self._encode(y, X.shape[0], "y")
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
            Xv = _check_X(X_val, dtype, n_features=X.shape[1], name="X_val")
            yv = self._encode(y_val, Xv.shape[0], "y_val")
            wv = self._sample_weight(yv) if self.class_weight is not None else np.ones(len(yv))
            if wv.sum() <= 0:
                wv = np.ones(len(yv))
            wv = wv / wv.sum()
        self.n_features_in_ = X.shape[1]
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
            if self.early_stopping:
                if val_loss < best_loss:
                    best_loss, best_theta, best_iter = val_loss, theta.copy(), t
                elif t - best_iter >= self.patience:
                    break
            theta -= lr * grad
            if not np.all(np.isfinite(theta)):
                raise ValueError(
                    f"training diverged at iteration {t}: weights became non-finite with "
                    f"lr={self.lr}; use a smaller learning rate (e.g. --lr {self.lr / 10:g})")
        n_run = t + 1
        self.history_ = {k: v[:n_run].copy() for k, v in hist.items()}
        self.n_iter_ = n_run
        self.best_iter_ = best_iter
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
        X : ndarray of shape (n_samples, n_features)

        Returns
        -------
        P : ndarray of shape (n_samples, n_classes), columns in ``classes_`` order
        """
        check_is_fitted(self, "weights_")
        dtype = self.weights_[0].dtype.type
        theta, sizes = pack(self.weights_, self.biases_, dtype)
        X = _check_X(X, dtype, n_features=self.n_features_in_)
        return _run_forward(theta, sizes, activation_code(self.activation), X)

    def predict(self, X):
        """Most probable class label for each row; shape (n_samples,)."""
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

    def save(self, path):
        """Write parameters, hyper-parameters, classes and history to ``path`` (.npz).

        Everything is stored as plain arrays, so ``MLP.load`` reads it with
        ``allow_pickle=False``.
        """
        import json
        check_is_fitted(self, "weights_")
        params = self.get_params()
        params["hidden"] = list(params["hidden"]) if not _is_int(params["hidden"]) \
            else [int(params["hidden"])]
        cw = params["class_weight"]
        if isinstance(cw, dict):
            params["class_weight"] = {"__pairs__": [[k.item() if isinstance(k, np.generic) else k,
                                                     float(v)] for k, v in cw.items()]}
        params["dtype"] = np.dtype(resolve_dtype(params["dtype"])).name
        params = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}
        classes = self.classes_
        if classes.dtype == object:
            classes = classes.astype(str)
        arrays = {"params_json": np.array(json.dumps(params)), "classes": classes,
                  "n_layers": np.array(len(self.weights_))}
        for l, (W, b) in enumerate(zip(self.weights_, self.biases_)):
            arrays[f"W{l}"], arrays[f"b{l}"] = W, b
        for k, v in getattr(self, "history_", {}).items():
            arrays[f"history_{k}"] = v
        for k in ("n_iter_", "best_iter_"):
            v = getattr(self, k, None)
            arrays[k] = np.array(-1 if v is None else v)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path):
        """An ``MLP`` written by ``save``."""
        import json
        with np.load(path, allow_pickle=False) as f:
            params = json.loads(str(f["params_json"]))
            params["hidden"] = tuple(params["hidden"])
            cw = params["class_weight"]
            if isinstance(cw, dict):
                params["class_weight"] = {k: v for k, v in cw["__pairs__"]}
            model = cls(**params)
            n_layers = int(f["n_layers"])
            model.weights_ = [f[f"W{l}"] for l in range(n_layers)]
            model.biases_ = [f[f"b{l}"] for l in range(n_layers)]
            model.classes_ = f["classes"]
            model.n_features_in_ = int(model.weights_[0].shape[1])
            hist = {k[len("history_"):]: f[k] for k in f.files if k.startswith("history_")}
            if hist:
                model.history_ = hist
            for k in ("n_iter_", "best_iter_"):
                v = int(f[k])
                setattr(model, k, None if v < 0 else v)
        return model
