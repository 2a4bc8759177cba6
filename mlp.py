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
# bitwise identical for any number of numba threads.
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
            for i in range(r):
                for j in range(m):
                    Z[i, j] = _act(Z[i, j] + b[j], code)
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
                ssum += np.exp(np.float64(Zout[i, k]) - zmax)
            lse = zmax + np.log(ssum)                          # log sum_k exp(z_k)
            loss += scale[s + i] * (lse - Zout[i, yi])
            # softmax + CE fused: dCE/dz_k = p_k - [k == y], the softmax Jacobian
            # contracted with -1/p_y collapses to P - Y.
            for k in range(K):
                D[i, k] = scale[s + i] * np.exp(np.float64(Zout[i, k]) - lse)
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
                np.dot(D, Ws[l], Dn)
                for i in range(r):
                    for c in range(fi):
                        Dn[i, c] *= _act_grad(A[i, c], code)
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
