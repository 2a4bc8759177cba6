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

Sections, in file order
-----------------------
activations and parameter layout; the training kernels (tiled, block-parallel
loss + gradient, forward); their plain NumPy reference (``reference_*``); the
validating wrappers ``loss_and_grads`` / ``forward``; the ``MLP`` estimator;
attribution (Part C: ``input_gradients``, ``feature_attribution``,
``permutation_check``, ``randomization_check``); the shared-bias network
(Question 2: ``shared_bias_loss_and_grads``, ``independent_bias_loss_and_grads``,
``train_bias_model``, ``bias_experiment``).
"""
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor

# numba writes its on-disk cache next to this file; fall back to a temporary
# directory when that is not writable (read-only install, shared checkout).
if "NUMBA_CACHE_DIR" not in os.environ and not os.access(
        os.path.dirname(os.path.abspath(__file__)), os.W_OK):
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), "mlp-numba-cache")

import numpy as np
import numba as nb
from numba import njit, prange

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


# Vectorisable sigmoid and tanh for the elementwise loops over a tile.
# np.exp / np.tanh are scalar libm calls that LLVM cannot vectorise (no SVML),
# which made sigmoid/tanh training steps 2-4x slower than relu. These use only
# +, *, /, compares and integer bit operations, so a loop over a tile row
# compiles to packed AVX code. Accuracy (float64): <= ~2.2 ulp relative against
# mpmath over |z| up to 800, incl. z -> 0 for tanh; saturate to 0/1 (sigmoid),
# +-1 (tanh) without overflow; NaN stays NaN. Callers compile them with
# error_model="numpy" (no ZeroDivisionError branch, which blocks vectorisation)
# and may add fastmath={"contract"} (FMA); never "reassoc", which would fold the
# round-to-integer trick (y + _SHIFTER) - _SHIFTER away.
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01   # ln 2 rounded to 32 bits: k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10   # ln 2 - _LN2_HI
_SHIFTER = 6755399441055744.0          # 1.5 * 2**52: t + _SHIFTER rounds t to an integer
_SHIFTER_BITS = int(np.float64(_SHIFTER).view(np.int64))   # ... held in the low bits
_EXPONENT_ONE = 1023 << 52             # bit pattern of 1.0 (2**k is (k + 1023) << 52)


@njit(cache=True, inline="always")
def _reduce_ln2(y):
    """(k, r) with y = k ln2 + r, k = round(y / ln 2) an integer, |r| <= ln2/2 (Cody-Waite)."""
    t = y * _LOG2E + _SHIFTER
    kf = t - _SHIFTER                          # k as a float
    k = np.float64(t).view(np.int64) - _SHIFTER_BITS   # ... and as an integer
    return k, (y - kf * _LN2_HI) - kf * _LN2_LO


@njit(cache=True, inline="always")
def _sigmoid_from_exp(z, e):
    """sigmoid(z) from e = exp(-|z|) in (0, 1]: no overflow for any z."""
    u = 1.0 / (1.0 + e)
    return u if z >= 0 else e * u


@njit(cache=True, inline="always")
def _exp_split(y):
    """(s, q) with exp(y) = s * (1 + q) for float64 y <= 0; s = 2**k, q = expm1(r), |r| <= ln2/2."""
    y = -745.5 if y < -745.5 else y            # exp(-745.5) rounds to 0; NaN passes through
    k, r = _reduce_ln2(y)
    # expm1(r) = r + r^2 (1/2! + r/3! + ... + r^11/13!), Horner; truncation < 1e-17
    p = 1.6059043836821613e-10
    p = p * r + 2.08767569878681e-09
    p = p * r + 2.505210838544172e-08
    p = p * r + 2.755731922398589e-07
    p = p * r + 2.7557319223985893e-06
    p = p * r + 2.48015873015873e-05
    p = p * r + 0.0001984126984126984
    p = p * r + 0.001388888888888889
    p = p * r + 0.008333333333333333
    p = p * r + 0.041666666666666664
    p = p * r + 0.16666666666666666
    p = p * r + 0.5
    q = r + (r * r) * p
    # 2**k as two normal powers of two, so k down to -1076 underflows gracefully
    ka = k >> 1
    s = (np.int64((ka << 52) + _EXPONENT_ONE).view(np.float64)
         * np.int64(((k - ka) << 52) + _EXPONENT_ONE).view(np.float64))
    return s, q


@njit(cache=True, inline="always")
def _sigmoid_for_float32(z):
    """sigmoid(z) in float64 accurate enough to round correctly to float32: a
    shorter expm1 polynomial (truncation < 1e-15 relative, against float32's
    half ulp of 6e-8) and one power-of-two factor, since exp(-104) already
    rounds to 0 in float32. About a third cheaper than ``_fast_sigmoid``."""
    y = -abs(z)
    y = -104.0 if y < -104.0 else y           # NaN passes through
    k, r = _reduce_ln2(y)
    # p = sum_{i=0..9} r^i / (i+2)!, as even and odd halves in r^2: two
    # independent Horner chains of 5 (the loop is bound by the chain's latency)
    r2 = r * r
    pe = 2.755731922398589e-07                 # 1/10!, 1/8!, ..., 1/2!
    pe = pe * r2 + 2.48015873015873e-05
    pe = pe * r2 + 0.001388888888888889
    pe = pe * r2 + 0.041666666666666664
    pe = pe * r2 + 0.5
    po = 2.505210838544172e-08                 # 1/11!, 1/9!, ..., 1/3!
    po = po * r2 + 2.7557319223985893e-06
    po = po * r2 + 0.0001984126984126984
    po = po * r2 + 0.008333333333333333
    po = po * r2 + 0.16666666666666666
    q = r + r2 * (pe + r * po)                 # expm1(r)
    s = np.int64((k << 52) + _EXPONENT_ONE).view(np.float64)   # 2**k, k >= -151
    return _sigmoid_from_exp(z, s + s * q)


@njit(cache=True, inline="always")
def _fast_sigmoid(z):
    """1 / (1 + exp(-z)) in float64 from e = exp(-|z|) in (0, 1]: no overflow."""
    s, q = _exp_split(-abs(z))
    return _sigmoid_from_exp(z, s + s * q)


@njit(cache=True, inline="always")
def _fast_tanh(z):
    """tanh(z) = -m / (2 + m) * sign(z), m = expm1(-2|z|): no cancellation near 0."""
    s, q = _exp_split(-2.0 * abs(z))
    m = (s - 1.0) + s * q                      # expm1(-2|z|) in [-1, 0]
    t = -m / (2.0 + m)
    return t if z >= 0 else -t


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


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _bias_act(Z, b, code):
    """Z <- g(Z + b) in place (the branch on ``code`` sits outside the loops).

    Sigmoid and tanh use the vectorisable ``_fast_*`` forms, evaluated in
    float64 also for float32 tiles (rounded once on the store); sigmoid on a
    float32 tile uses the cheaper ``_sigmoid_for_float32``.
    """
    r, m = Z.shape
    if code == RELU:
        for i in range(r):
            for j in range(m):
                z = Z[i, j] + b[j]
                Z[i, j] = z if z > 0 else z * 0
    elif code == SIGMOID and Z.itemsize == 4:
        for i in range(r):
            for j in range(m):
                Z[i, j] = _sigmoid_for_float32(np.float64(Z[i, j] + b[j]))
    elif code == SIGMOID:
        for i in range(r):
            for j in range(m):
                Z[i, j] = _fast_sigmoid(np.float64(Z[i, j] + b[j]))
    else:
        for i in range(r):
            for j in range(m):
                Z[i, j] = _fast_tanh(np.float64(Z[i, j] + b[j]))


@njit(cache=True)
def _mul_act_grad(D, A, code):
    """D <- D * g'(z), with g'(z) written from the activation output A = g(z)."""
    r, m = D.shape
    if code == RELU:
        # a select, not a conditional store: the loop vectorises (measured 6x faster)
        for i in range(r):
            for j in range(m):
                D[i, j] = D[i, j] if A[i, j] > 0 else 0.0
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
        rows = np.flatnonzero(~np.all(np.isfinite(A), axis=1))
        r = rows[0]
        c = np.flatnonzero(~np.isfinite(A[r]))[0]
        raise ValueError(f"{name} has NaN or Inf in {rows.size} rows (e.g. rows {rows[:5].tolist()}); "
                         f"impute or drop them first (first bad cell at (row, column) ({r}, {c}))")
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
import zipfile  # noqa: E402
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
    dtype, values = np.dtype(d["dtype"]), d["values"]
    if dtype == object:
        a = np.empty(len(values), dtype=object)
        a[:] = values
        return a
    return np.array(values, dtype=dtype).reshape(len(values))


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
        with open(tmp, "wb") as fh:           # a file handle: np.savez adds no suffix
            np.savez(fh, **arrays)
        os.replace(tmp, p)
        return p

    @classmethod
    def load(cls, path):
        """An ``MLP`` written by ``save``; the same ``path`` (with or without ``.npz``).

        Raises ``FileNotFoundError`` when there is no such file and one
        ``ValueError`` naming the file and the problem when it is not a model
        written by ``save`` (another archive, a truncated or edited file).
        Nothing is unpickled.
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
            with np.load(p, allow_pickle=False) as f:
                return cls._from_archive(f)
        except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as e:
            reason = " ".join(str(e).split()).strip("'\"") or type(e).__name__
            if isinstance(e, (zipfile.BadZipFile, EOFError)):
                reason = f"the archive is truncated or damaged ({reason})"
            raise ValueError(f"cannot load {p}: {reason}; pass a file written by MLP.save") \
                from None

    @classmethod
    def _from_archive(cls, f):
        """The model stored in the open ``NpzFile`` ``f``; ValueError/KeyError if malformed."""
        if "meta" not in f.files:
            raise ValueError(f"it has no 'meta' entry (entries: {sorted(f.files)[:8]}), so it "
                             f"was not written by MLP.save")
        try:
            meta = json.loads(str(f["meta"]))
        except json.JSONDecodeError as e:
            raise ValueError(f"its 'meta' entry is not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != SAVE_FORMAT:
            raise ValueError(f"its 'meta' entry is not {SAVE_FORMAT} metadata")
        if meta.get("version") != SAVE_VERSION:
            raise ValueError(f"it has format version {meta.get('version')!r}; this code reads "
                             f"version {SAVE_VERSION}")
        model = cls(**{k: _from_json(v) for k, v in meta["params"].items()})
        hidden, _, dtype = model._check_hyper()
        L = int(meta["n_layers"])
        Ws = [f[f"W{l}"] for l in range(L)]
        bs = [f[f"b{l}"] for l in range(L)]
        theta, sizes = pack(Ws, bs, dtype)
        classes = _labels_from_json(meta["classes"])
        expected = (int(meta["n_features_in"]), *hidden, len(classes))
        if tuple(int(s) for s in sizes) != expected or any(W.dtype != dtype for W in Ws + bs):
            raise ValueError(f"its weights have layer sizes {[int(s) for s in sizes]} and dtype "
                             f"{Ws[0].dtype}, but its metadata says {list(expected)} and "
                             f"{np.dtype(dtype).name}")
        if not np.all(np.isfinite(theta)):
            raise ValueError("its weights contain NaN or Inf")
        model.weights_, model.biases_ = Ws, bs
        model.classes_ = classes
        model.n_features_in_ = int(meta["n_features_in"])
        if meta["feature_names_in"] is not None:
            model.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
        if meta["history"]:
            model.history_ = {k: f[f"history_{k}"] for k in meta["history"]}
        for k in ("n_iter_", "best_iter_", "best_val_iter_"):
            setattr(model, k, meta[k])
        return model


def warm_up(dtype="float64", kernels=("network", "shared_bias")):
    """Compile (or load from numba's cache) kernels by running them once on a tiny problem.

    Parameters
    ----------
    dtype : "float64" or "float32", the dtype of the network kernels to prepare
    kernels : iterable of {"network", "shared_bias"}
        "network": what ``MLP.fit`` with validation data and ``MLP.predict`` use;
        "shared_bias": what ``bias_experiment`` uses (float64 only).
    """
    kernels = set(kernels)
    unknown = kernels - {"network", "shared_bias"}
    if unknown:
        raise ValueError(f"kernels={sorted(unknown)} unknown; use 'network' and/or 'shared_bias'")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3)), np.arange(8) % 2
    if "network" in kernels:
        # the activation is a run-time argument of the kernels: one fit compiles all
        MLP(hidden=(2,), n_iter=1, dtype=dtype).fit(X, y, X, y).predict(X)
    if "shared_bias" in kernels:
        bias_experiment(X, np.eye(2)[y], lrs=(0.1,), seeds=(0,), n_iter=1, n_jobs=1)


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



ATTRIBUTION_TARGETS = {"output": 0, "logit": 1, "loss": 2}


@njit(cache=True)
def _block_input_gradients(theta, sizes, code, X, y, target, start, stop, tile, G, pred):
    """Rows [start, stop) of G = dt/dx and pred = argmax o, tile by tile (see ``_input_gradients``)."""
    dt = theta.dtype
    L = sizes.shape[0] - 1
    K = sizes[L]
    Ws, bs = _layer_views(theta, sizes)
    maxw = 0
    for l in range(L + 1):
        maxw = max(maxw, sizes[l])
    # per-block workspaces, allocated once and reused by every tile
    acts = [np.empty((tile, sizes[l + 1]), dtype=dt) for l in range(L)]
    dbuf0 = np.empty(tile * maxw, dtype=dt)
    dbuf1 = np.empty(tile * maxw, dtype=dt)
    o = np.empty(K)                                            # softmax of one sample, float64
    for s in range(start, stop, tile):
        e = min(s + tile, stop)
        r = e - s
        Xt = X[s:e]                                            # (r, d)
        Z = _tile_forward(Ws, bs, code, Xt, acts)              # (r, K) logits
        # ---- delta at the logits a, dt/da, one row per sample
        D = dbuf0[:r * K].reshape(r, K)
        for i in range(r):
            m = 0
            for k in range(1, K):
                if Z[i, k] > Z[i, m]:
                    m = k
            pred[s + i] = m
            tot = 0.0
            for k in range(K):
                o[k] = np.exp(np.float64(Z[i, k]) - np.float64(Z[i, m]))
                tot += o[k]
            for k in range(K):
                o[k] /= tot
            if target == 0:
                # d o_m / d a_k = o_m (1[k = m] - o_k)
                for k in range(K):
                    D[i, k] = o[m] * ((1.0 if k == m else 0.0) - o[k])
            elif target == 1:
                for k in range(K):
                    D[i, k] = 1.0 if k == m else 0.0
            else:
                # softmax + cross-entropy fused: dL/da = o - onehot(y), valid
                # because L = -log o_y and d log o_y / d a_k = 1[k = y] - o_k
                for k in range(K):
                    D[i, k] = o[k] - (1.0 if k == y[s + i] else 0.0)
        # ---- backward: delta_l = g'(h_l) * (delta_{l+1} W_l); at l = 0 it is dt/dx
        use0 = True
        for l in range(L - 1, -1, -1):
            fi = sizes[l]
            if l == 0:
                Dn = G[s:e]                                    # (r, d): each row its own sample
            else:
                buf = dbuf1 if use0 else dbuf0
                use0 = not use0
                Dn = buf[:r * fi].reshape(r, fi)               # (r, fan_in)
            np.dot(D, Ws[l], Dn)
            if l > 0:
                _mul_act_grad(Dn, acts[l - 1][:r], code)       # times g'(z) of layer l's input
            D = Dn


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
    n_tiles = (n + tile - 1) // tile
    n_blocks = min(n_tiles, MAX_BLOCKS)
    for b in prange(n_blocks):
        start = min((b * n_tiles // n_blocks) * tile, n)
        stop = min(((b + 1) * n_tiles // n_blocks) * tile, n)
        _block_input_gradients(theta, sizes, code, X, y, target, start, stop, tile, G, pred)
    return G, pred


# ------------------------------------------------------------------ validation
def _attr_target_code(target):
    try:
        return ATTRIBUTION_TARGETS[target]
    except (KeyError, TypeError):
        raise ValueError(f"target={target!r} is not supported; use one of "
                         f"{sorted(ATTRIBUTION_TARGETS)}") from None


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
        if tcode == ATTRIBUTION_TARGETS["loss"]:
            raise ValueError("target='loss' needs the true labels y; pass y "
                             "or use target='output' / 'logit'")
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
    _attr_target_code(target)
    Ws = [np.asarray(W, dtype=np.float64) for W in weights]
    bs = [np.asarray(b, dtype=np.float64) for b in biases]
    h = [np.asarray(X, dtype=np.float64)]               # h[0] = x, h[l] = layer l output
    for l, (W, b) in enumerate(zip(Ws, bs)):
        a = h[-1] @ W.T + b                              # (n, sizes[l+1])
        h.append(_reference_act(a, activation) if l < len(Ws) - 1 else a)
    z = h[-1]
    o = np.exp(z - z.max(axis=1, keepdims=True))
    o /= o.sum(axis=1, keepdims=True)                   # (n, K) softmax
    n, K = o.shape
    m = np.argmax(z, axis=1)
    e_m = np.eye(K)[m]                                  # (n, K) one-hot of the winner
    if target == "output":
        delta = o[np.arange(n), m][:, None] * (e_m - o)  # d o_m / d a
    elif target == "logit":
        delta = e_m
    else:
        if y is None:
            raise ValueError("target='loss' needs the true labels y")
        delta = o - np.eye(K)[np.asarray(y, dtype=np.int64)]   # dL/da = o - onehot(y)
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


# ======================================================= shared-bias network (Question 2)
#
# One hidden layer, h1 = g(W x + b1), y_hat = g1(U h1 + b2), L = mean_i l(y_hat_i, y_i).
# The shared-bias network of Question 2 is the special case b1 = b2 = b (so the
# hidden width m equals the output width k), and its bias gradient is the sum
# of the two paths: dL/db = dL/db1 + dL/db2 = delta_hidden + delta_out. One
# kernel serves both models; the wrappers only differ in how they name things.



#: output non-linearities g1 of the shared-bias network (codes used by the kernel)
BIAS_NET_OUTPUTS = {"sigmoid": 0, "identity": 1, "softmax": 2}
#: per-sample losses l of the shared-bias network (codes used by the kernel)
BIAS_NET_LOSSES = {"mse": 0, "bce": 1, "ce": 2}
_OUT_SIGMOID, _OUT_IDENTITY, _OUT_SOFTMAX = 0, 1, 2
_LOSS_MSE, _LOSS_BCE, _LOSS_CE = 0, 1, 2
_SIGMOID_CODE = 1            # ACTIVATIONS["sigmoid"], reused for the output sigmoid
# Samples per block. The kernel is serial and works on one block of samples at
# a time with the sample index innermost (the block of X copied transposed into
# a fixed-stride buffer), so the loops over samples vectorise. One call
# evaluates several runs (parameter sets) on each block while it sits in L1,
# so X streams from memory once per call, not once per run; parallelism is
# across groups of runs (one group per thread, see _train_bias_many), and a
# run's arithmetic does not depend on which other runs share its call.
_BIAS_NET_BLOCK = 256
# reassociation lets LLVM vectorise the per-block sums over samples; no
# nnan/ninf, so the isfinite guards keep working (see STYLE.md). The exp/log
# helpers below are compiled without reassoc (their rounding tricks need it off).
_BIAS_NET_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_SQRT2 = 1.4142135623730951
_MANTISSA_BITS = (1 << 52) - 1
_TWO52_BITS = int(np.float64(2.0 ** 52).view(np.int64))     # 2**52 + e has bits _TWO52_BITS | e


@njit(cache=True, inline="always")
def _log_normal(x):
    """log(x) for normal x > 0 (NaN, +inf pass through): x = 2^e m, log m = 2 atanh((m-1)/(m+1))."""
    bits = np.float64(x).view(np.int64)
    m = np.int64((bits & _MANTISSA_BITS) | _EXPONENT_ONE).view(np.float64)      # [1, 2)
    e = np.int64((bits >> 52) | _TWO52_BITS).view(np.float64) - (2.0 ** 52 + 1023)
    big = m > _SQRT2
    m = 0.5 * m if big else m                  # m in [sqrt(1/2), sqrt(2))
    e = e + 1.0 if big else e
    s = (m - 1.0) / (m + 1.0)                  # |s| < 0.172
    z = s * s
    # atanh(s) / s - 1 = z/3 + z^2/5 + ... + z^11/23, Horner; truncation < 1e-18
    p = 1.0 / 23.0
    p = p * z + 1.0 / 21.0
    p = p * z + 1.0 / 19.0
    p = p * z + 1.0 / 17.0
    p = p * z + 1.0 / 15.0
    p = p * z + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    v = e * _LN2_HI + (2.0 * s + (2.0 * s * (z * p) + e * _LN2_LO))
    return v if x <= 1.7976931348623157e308 else x


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _bias_net_act(Z, A, code, rows, nb):
    """A[j, i] = g(Z[j, i]) for j < rows, i < nb; g = relu, sigmoid or tanh by ``code``."""
    if code == RELU:
        for j in range(rows):
            for i in range(nb):
                A[j, i] = _act(Z[j, i], RELU)
    elif code == SIGMOID:
        for j in range(rows):
            for i in range(nb):
                A[j, i] = _fast_sigmoid(Z[j, i])
    else:
        for j in range(rows):
            for i in range(nb):
                A[j, i] = _fast_tanh(Z[j, i])


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _bias_net_softmax(Z, P, lse, rows, nb):
    """P[:, i] = softmax(Z[:, i]), lse[i] = log sum_c exp(Z[c, i]) for i < nb (Z has ``rows`` classes)."""
    for i in range(nb):
        lse[i] = Z[0, i]                       # running max
    for c in range(1, rows):
        for i in range(nb):
            lse[i] = max(lse[i], Z[c, i])
    for c in range(rows):
        for i in range(nb):
            s, q = _exp_split(Z[c, i] - lse[i])
            P[c, i] = s + s * q                # exp(z - zmax) in (0, 1]
    esum = np.zeros(nb)
    for c in range(rows):
        for i in range(nb):
            esum[i] += P[c, i]
    for c in range(rows):
        for i in range(nb):
            P[c, i] /= esum[i]
    for i in range(nb):
        lse[i] += _log_normal(esum[i])        # esum in [1, rows]


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=_BIAS_NET_FASTMATH)
def _add_block_sums(D, A, rows, cols, nb, gb, gw):
    """gb[a] += sum_i D[a, i] and gw[a, c] += sum_i D[a, i] A[c, i] over a block's nb samples."""
    for a in range(rows):
        acc = 0.0
        for i in range(nb):
            acc += D[a, i]
        gb[a] += acc
        for c in range(cols):
            acc = 0.0
            for i in range(nb):
                acc += D[a, i] * A[c, i]
            gw[a, c] += acc


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_BIAS_NET_FASTMATH)
def _bias_net_loss_and_grads(W, U, b1, b2, XT, YT, hcode, ocode, lcode):
    """Per run r: L = mean_i l(g1(U_r g(W_r x_i + b1_r) + b2_r), y_i); dL/dW, dL/dU, dL/db1 (hidden path), dL/db2 (output path), #argmax hits."""
    d, n = XT.shape
    R, m = W.shape[0], W.shape[1]
    k = U.shape[1]
    B = _BIAS_NET_BLOCK
    Xb = np.empty((d, B))
    Yb = np.empty((k, B))
    Z1 = np.empty((m, B))
    H = np.empty((m, B))
    D1 = np.empty((m, B))
    Z2 = np.empty((k, B))
    P = np.empty((k, B))
    D2 = np.empty((k, B))
    lse = np.empty(B)
    aux = np.empty(B)
    li = np.empty(B)
    zbest = np.empty(B)
    ybest = np.empty(B)
    zarg = np.empty(B)
    yarg = np.empty(B)
    gW = np.zeros((R, m, d))
    gU = np.zeros((R, k, m))
    gb1 = np.zeros((R, m))
    gb2 = np.zeros((R, k))
    loss = np.zeros(R)
    hits = np.zeros(R, dtype=np.int64)
    for s0 in range(0, n, B):
        nb = min(B, n - s0)
        # block samples s0 .. s0+nb-1, copied to fixed-stride buffers: Xb[:, i] = x_{s0+i}
        for t in range(d):
            for i in range(nb):
                Xb[t, i] = XT[t, s0 + i]
        for c in range(k):
            for i in range(nb):
                Yb[c, i] = YT[c, s0 + i]
        # argmax y (the same for every run); class loop outermost so the sample loops vectorise
        for i in range(nb):
            ybest[i] = Yb[0, i]
            yarg[i] = 0.0
        for c in range(1, k):
            for i in range(nb):
                yc = Yb[c, i]
                yarg[i] = c if yc > ybest[i] else yarg[i]
                ybest[i] = yc if yc > ybest[i] else ybest[i]
        for r in range(R):
            # forward, hidden: Z1 = W X + b1, H = g(Z1)              # (m, nb)
            for j in range(m):
                for i in range(nb):
                    Z1[j, i] = b1[r, j]
                for t in range(d):
                    w = W[r, j, t]
                    for i in range(nb):
                        Z1[j, i] += w * Xb[t, i]
            _bias_net_act(Z1, H, hcode, m, nb)
            # forward, output pre-activation: Z2 = U H + b2          # (k, nb)
            for c in range(k):
                for i in range(nb):
                    Z2[c, i] = b2[r, c]
                for j in range(m):
                    u = U[r, c, j]
                    for i in range(nb):
                        Z2[c, i] += u * H[j, i]
            # output P = g1(Z2)
            if ocode == _OUT_SOFTMAX:
                _bias_net_softmax(Z2, P, lse, k, nb)           # lse = logsumexp(Z2)
            elif ocode == _OUT_SIGMOID:
                _bias_net_act(Z2, P, _SIGMOID_CODE, k, nb)
            else:
                for c in range(k):
                    for i in range(nb):
                        P[c, i] = Z2[c, i]
            # per-sample loss li and delta_out D2 = dl/dZ2 = dl/dP (.) g1'(Z2)   # (k, nb)
            for i in range(nb):
                li[i] = 0.0
            if lcode == _LOSS_MSE:
                # l = 1/2 ||p - y||^2, dl/dp = e = p - y
                for c in range(k):
                    for i in range(nb):
                        e = P[c, i] - Yb[c, i]
                        li[i] += 0.5 * e * e
                        D2[c, i] = e
                if ocode == _OUT_SIGMOID:
                    for c in range(k):
                        for i in range(nb):
                            D2[c, i] *= _act_grad(P[c, i], _SIGMOID_CODE)
                elif ocode == _OUT_SOFTMAX:
                    # softmax Jacobian diag(p) - p p^T applied to e: p (e - p.e)
                    for i in range(nb):
                        aux[i] = 0.0
                    for c in range(k):
                        for i in range(nb):
                            aux[i] += P[c, i] * D2[c, i]
                    for c in range(k):
                        for i in range(nb):
                            D2[c, i] = P[c, i] * (D2[c, i] - aux[i])
            elif lcode == _LOSS_BCE:
                # l = sum softplus(z) - y z  (= -[y log s + (1-y) log(1-s)] without log(0));
                # fused delta dl/dz = sigmoid(z) - y
                for c in range(k):
                    for i in range(nb):
                        z = Z2[c, i]
                        li[i] += max(z, 0.0) + np.log1p(np.exp(-abs(z))) - Yb[c, i] * z
                        D2[c, i] = P[c, i] - Yb[c, i]
            else:
                # l = -sum y log softmax(z) = (sum y) logsumexp(z) - sum y z;
                # fused delta dl/dz = (sum y) p - y  (= p - y for one-hot y)
                for i in range(nb):
                    aux[i] = 0.0
                for c in range(k):
                    for i in range(nb):
                        aux[i] += Yb[c, i]
                        li[i] -= Yb[c, i] * Z2[c, i]
                for i in range(nb):
                    li[i] += aux[i] * lse[i]
                for c in range(k):
                    for i in range(nb):
                        D2[c, i] = aux[i] * P[c, i] - Yb[c, i]
            acc = 0.0
            for i in range(nb):
                acc += li[i]
            loss[r] += acc
            # accuracy: argmax Z2 (monotone in P for every output) == argmax y
            for i in range(nb):
                zbest[i] = Z2[0, i]
                zarg[i] = 0.0
            for c in range(1, k):
                for i in range(nb):
                    zc = Z2[c, i]
                    zarg[i] = c if zc > zbest[i] else zarg[i]
                    zbest[i] = zc if zc > zbest[i] else zbest[i]
            cnt = 0
            for i in range(nb):
                cnt += 1 if zarg[i] == yarg[i] else 0
            hits[r] += cnt
            # backward: delta_hidden D1 = (U^T D2) (.) g'(Z1)          # (m, nb)
            for j in range(m):
                for i in range(nb):
                    D1[j, i] = 0.0
                for c in range(k):
                    u = U[r, c, j]
                    for i in range(nb):
                        D1[j, i] += u * D2[c, i]
            if hcode == RELU:
                for j in range(m):
                    for i in range(nb):
                        D1[j, i] *= _act_grad(H[j, i], RELU)
            elif hcode == SIGMOID:
                for j in range(m):
                    for i in range(nb):
                        D1[j, i] *= _act_grad(H[j, i], SIGMOID)
            else:
                for j in range(m):
                    for i in range(nb):
                        D1[j, i] *= _act_grad(H[j, i], TANH)
            # gradient sums over the block (fixed order: blocks in sequence)
            _add_block_sums(D2, H, k, m, nb, gb2[r], gU[r])      # output layer: b2 path, U
            _add_block_sums(D1, Xb, m, d, nb, gb1[r], gW[r])     # hidden layer: b1 path, W
    inv = 1.0 / n
    return loss * inv, gW * inv, gU * inv, gb1 * inv, gb2 * inv, hits


def _bias_net_codes(hidden, output, loss):
    """Validate the (hidden, output, loss) names and return their kernel codes."""
    hcode = activation_code(hidden)
    if output not in BIAS_NET_OUTPUTS:
        raise ValueError(f"output={output!r} is not supported; use one of "
                         f"{sorted(BIAS_NET_OUTPUTS)}")
    if loss not in BIAS_NET_LOSSES:
        raise ValueError(f"loss={loss!r} is not supported; use one of "
                         f"{sorted(BIAS_NET_LOSSES)}")
    if loss == "bce" and output != "sigmoid":
        raise ValueError(f"loss='bce' needs output='sigmoid' (got output={output!r}); "
                         f"use output='sigmoid', or loss='ce' with output='softmax'")
    if loss == "ce" and output != "softmax":
        raise ValueError(f"loss='ce' needs output='softmax' (got output={output!r}); "
                         f"use output='softmax', or loss='bce' with output='sigmoid'")
    return hcode, BIAS_NET_OUTPUTS[output], BIAS_NET_LOSSES[loss]


def _as_finite_float64(name, a, ndim):
    """``a`` as a contiguous float64 array of ``ndim`` dims with finite values, else ValueError."""
    try:
        a = np.ascontiguousarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array; got {type(a).__name__}") from None
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[:3].tolist()
        raise ValueError(f"{name} has non-finite values (NaN/inf) at {bad}; impute or drop "
                         f"them first, or lower the learning rate if they come from training")
    return a


def _check_bias_net(W, U, biases, X, Y, hidden, output, loss):
    """Validate and convert the inputs of the bias network; ``biases`` is a dict name -> array."""
    codes = _bias_net_codes(hidden, output, loss)
    X = _as_finite_float64("X", X, 2)
    Y = _as_finite_float64("Y", Y, 2)
    W = _as_finite_float64("W", W, 2)
    U = _as_finite_float64("U", U, 2)
    biases = [_as_finite_float64(name, b, 1) for name, b in biases.items()]
    n, d = X.shape
    if n == 0:
        raise ValueError("X has no rows; pass at least one sample")
    if Y.shape[0] != n:
        raise ValueError(f"Y has {Y.shape[0]} rows but X has {n}; pass one target row per sample")
    m, k = W.shape[0], Y.shape[1]
    if W.shape[1] != d:
        raise ValueError(f"W has shape {W.shape}; expected (m, {d}) to match X's {d} columns")
    if U.shape != (k, m):
        raise ValueError(f"U has shape {U.shape}; expected ({k}, {m}) = (Y columns, W rows)")
    return W, U, biases, X, Y, codes


def independent_bias_loss_and_grads(W, U, b1, b2, X, Y, hidden="relu", output="sigmoid",
                                    loss="mse"):
    """Loss and gradients of h1 = g(W x + b1), y_hat = g1(U h1 + b2) with separate biases.

    Parameters
    ----------
    W : ndarray of shape (m, n_features)
        Hidden-layer weights.
    U : ndarray of shape (k, m)
        Output-layer weights; ``k`` is the number of target columns.
    b1 : ndarray of shape (m,)
        Hidden-layer bias.
    b2 : ndarray of shape (k,)
        Output-layer bias.
    X : ndarray of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, k)
        Targets (one-hot rows for classification).
    hidden : {"relu", "sigmoid", "tanh"}
        Hidden activation g.
    output : {"sigmoid", "identity", "softmax"}
        Output function g1.
    loss : {"mse", "bce", "ce"}
        Per-sample loss l: ``"mse"`` = 1/2 ||y_hat - y||^2, ``"bce"`` (needs
        ``output="sigmoid"``) = -sum[y log y_hat + (1 - y) log(1 - y_hat)],
        ``"ce"`` (needs ``output="softmax"``) = -sum y log y_hat.

    Returns
    -------
    loss : float
        Mean of l over the samples.
    grads : dict
        ``"W"`` (m, n_features), ``"U"`` (k, m), ``"b1"`` (m,), ``"b2"`` (k,),
        and ``"accuracy"``: fraction of rows where argmax y_hat == argmax y.
    """
    W, U, (b1, b2), X, Y, codes = _check_bias_net(W, U, {"b1": b1, "b2": b2}, X, Y,
                                                  hidden, output, loss)
    if b1.shape != (W.shape[0],):
        raise ValueError(f"b1 has shape {b1.shape}; expected ({W.shape[0]},) = W rows")
    if b2.shape != (U.shape[0],):
        raise ValueError(f"b2 has shape {b2.shape}; expected ({U.shape[0]},) = Y columns")
    L, gW, gU, gb1, gb2, hits = (a[0] for a in _bias_net_loss_and_grads(
        W[None], U[None], b1[None], b2[None], np.ascontiguousarray(X.T),
        np.ascontiguousarray(Y.T), *codes))                  # one run
    _check_bias_result(L)
    return float(L), {"W": gW, "U": gU, "b1": gb1, "b2": gb2,
                      "accuracy": hits / X.shape[0]}


def shared_bias_loss_and_grads(W, U, b, X, Y, hidden="relu", output="sigmoid", loss="mse"):
    """Loss and gradients of h1 = g(W x + b), y_hat = g1(U h1 + b) with one shared bias b.

    The bias reaches the loss along two paths, and its gradient is their sum:
    dL/db = mean_i [delta_out_i + delta_hidden_i], with
    delta_out = dl/dz2 = dl/dy_hat (.) g1'(z2) and
    delta_hidden = (U^T delta_out) (.) g'(z1).

    Parameters
    ----------
    W : ndarray of shape (m, n_features)
    U : ndarray of shape (m, m)
        Output weights; sharing b requires hidden width m == output width k.
    b : ndarray of shape (m,)
        The shared bias.
    X : ndarray of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, m)
        Targets (one-hot rows for classification).
    hidden, output, loss : str
        As in ``independent_bias_loss_and_grads``.

    Returns
    -------
    loss : float
        Mean of l over the samples.
    grads : dict
        ``"W"`` (m, n_features), ``"U"`` (m, m), ``"b"`` (m,) the total bias
        gradient, ``"b_output_path"`` (m,) = mean delta_out,
        ``"b_hidden_path"`` (m,) = mean delta_hidden (the two sum to ``"b"``),
        and ``"accuracy"``.
    """
    W, U, (b,), X, Y, codes = _check_bias_net(W, U, {"b": b}, X, Y, hidden, output, loss)
    m, k = W.shape[0], Y.shape[1]
    if m != k:
        raise ValueError(f"a shared bias needs hidden width == output width, but W has "
                         f"{m} rows and Y has {k} columns; use W with {k} rows, or "
                         f"independent_bias_loss_and_grads for separate biases")
    if b.shape != (m,):
        raise ValueError(f"b has shape {b.shape}; expected ({m},) = W rows = Y columns")
    L, gW, gU, gb1, gb2, hits = (a[0] for a in _bias_net_loss_and_grads(
        W[None], U[None], b[None], b[None], np.ascontiguousarray(X.T),
        np.ascontiguousarray(Y.T), *codes))                  # one run
    _check_bias_result(L)
    return float(L), {"W": gW, "U": gU, "b": gb1 + gb2, "b_output_path": gb2,
                      "b_hidden_path": gb1, "accuracy": hits / X.shape[0]}


def _check_bias_result(L):
    if not np.isfinite(L):
        raise ValueError(f"the loss is {L}: the parameters are too large for this "
                         f"output/loss (overflow); rescale them or lower the learning rate")


def train_bias_model(X, Y, W0, U0, b0, shared=True, lr=0.5, n_iter=300, hidden="relu",
                     output="softmax", loss="ce"):
    """Full-batch gradient descent on the shared- or independent-bias network.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, k)
    W0 : ndarray of shape (k, n_features)
        Initial hidden weights (hidden width m == k so both models apply).
    U0 : ndarray of shape (k, k)
    b0 : ndarray of shape (k,)
        Initial bias; the independent model starts with b1 = b2 = b0.
    shared : bool
        True: one bias b in both layers; False: independent b1, b2.
    lr : float
        Step size (> 0).
    n_iter : int
        Number of gradient steps; the loss is evaluated n_iter + 1 times.
    hidden, output, loss : str
        As in ``independent_bias_loss_and_grads``.

    Returns
    -------
    dict
        ``"loss"``, ``"accuracy"`` : ndarray of shape (n_iter + 1,), value
        before step t (entry n_iter: after the last step); NaN after divergence.
        ``"norm_output_path"``, ``"norm_hidden_path"``, ``"cos_paths"`` :
        ndarray of shape (n_iter + 1,): ||mean delta_out||, ||mean delta_hidden||
        (for the independent model ||dL/db2|| and ||dL/db1||) and the cosine
        between the two vectors (NaN when either is zero).
        ``"diverged"`` : bool, the loss became non-finite or exceeded 10x its
        initial value; ``"diverged_at"`` : int or None, the first such
        evaluation; training stops there.
        ``"params"`` : dict of the last finite parameters (``W``, ``U`` and
        ``b`` or ``b1``, ``b2``).
    """
    W, U, (b,), X, Y, codes = _check_bias_net(W0, U0, {"b0": b0}, X, Y, hidden, output, loss)
    m, k = W.shape[0], Y.shape[1]
    if m != k:
        raise ValueError(f"train_bias_model compares shared and independent biases, so the "
                         f"hidden width must equal the output width; W0 has {m} rows and Y "
                         f"has {k} columns: use W0 of shape ({k}, {X.shape[1]})")
    if b.shape != (m,):
        raise ValueError(f"b0 has shape {b.shape}; expected ({m},)")
    if not (isinstance(lr, (int, float, np.floating, np.integer)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} must be a finite positive number, e.g. 0.5")
    if not (isinstance(n_iter, (int, np.integer)) and n_iter >= 0):
        raise ValueError(f"n_iter={n_iter!r} must be a non-negative integer, e.g. 300")
    return _train_bias_many(X, Y, [(W, U, b)], [bool(shared)], [float(lr)], int(n_iter),
                            codes)[0]


_REC_KEYS = ("loss", "accuracy", "norm_output_path", "norm_hidden_path", "cos_paths")


def _train_bias_runs(XT, YT, inits, shared, lrs, n_iter, codes):
    """Full-batch GD of several runs, theta <- theta - lr dL/dtheta, on validated inputs.

    XT (d, n), YT (k, n) are X and Y transposed (the kernel's layout). Each
    iteration evaluates every run still going in one kernel call. Per run,
    records loss, accuracy, ||db output path||, ||db hidden path|| and their
    cosine before each step; a run stops at its first non-finite loss or loss
    > 10x its initial one. A run's results do not depend on the other runs.
    """
    n, R = XT.shape[1], len(inits)
    W = np.stack([w for w, _, _ in inits])                  # (R, m, d)
    U = np.stack([u for _, u, _ in inits])                  # (R, k, m)
    b1 = np.stack([b for _, _, b in inits])                 # (R, m)
    b2 = b1.copy()                                          # (R, k); shared: b1 == b2 == b
    recs = [{key: np.full(n_iter + 1, np.nan) for key in _REC_KEYS} for _ in range(R)]
    prev = [(W[r].copy(), U[r].copy(), b1[r].copy(), b2[r].copy()) for r in range(R)]
    final, diverged_at, L0 = [None] * R, [None] * R, [None] * R
    live = list(range(R))
    for t in range(n_iter + 1):
        if not live:
            break
        Ls, gWs, gUs, gb1s, gb2s, hits = _bias_net_loss_and_grads(
            W[live], U[live], b1[live], b2[live], XT, YT, *codes)
        still = []
        for q, r in enumerate(live):
            # shared run: db1, db2 are the hidden and output paths of dL/db
            L, gW, gU, gb1, gb2 = Ls[q], gWs[q], gUs[q], gb1s[q], gb2s[q]
            L0[r] = L if L0[r] is None else L0[r]
            if not (np.isfinite(L) and L <= 10 * L0[r] and np.all(np.isfinite(gW))
                    and np.all(np.isfinite(gU))):
                diverged_at[r] = t
                final[r] = prev[r]                  # last parameters with a finite loss
                continue
            rec = recs[r]
            n_out, n_hid = np.sqrt(gb2 @ gb2), np.sqrt(gb1 @ gb1)
            rec["loss"][t] = L
            rec["accuracy"][t] = hits[q] / n
            rec["norm_output_path"][t] = n_out
            rec["norm_hidden_path"][t] = n_hid
            if n_out > 0 and n_hid > 0:
                rec["cos_paths"][t] = (gb1 @ gb2) / (n_out * n_hid)
            if t == n_iter:
                final[r] = (W[r], U[r], b1[r], b2[r])
                continue
            prev[r] = (W[r].copy(), U[r].copy(), b1[r].copy(), b2[r].copy())
            lr = lrs[r]
            W[r] = W[r] - lr * gW
            U[r] = U[r] - lr * gU
            if shared[r]:
                b1[r] = b2[r] = b1[r] - lr * (gb1 + gb2)        # dL/db = both paths
            else:
                b1[r], b2[r] = b1[r] - lr * gb1, b2[r] - lr * gb2
            still.append(r)
        live = still
    for r in range(R):
        Wf, Uf, b1f, b2f = (x.copy() for x in final[r])
        params = {"W": Wf, "U": Uf, "b": b1f} if shared[r] else {"W": Wf, "U": Uf, "b1": b1f,
                                                                  "b2": b2f}
        recs[r].update(diverged=diverged_at[r] is not None, diverged_at=diverged_at[r],
                       params=params)
    return recs


def _train_bias_many(X, Y, inits, shared, lrs, n_iter, codes, n_jobs=None):
    """``_train_bias_runs`` for each (init, shared, lr); one result dict per run, in order.

    Runs are dealt round-robin into ``n_jobs`` groups (default: all CPUs), one
    thread and one batched kernel call per iteration per group. Runs are
    independent and write only their own arrays, so the results are the same
    for any ``n_jobs``.
    """
    XT, YT = np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T)   # (d, n), (k, n)
    R = len(inits)
    n_jobs = max(1, min(n_jobs or os.cpu_count() or 1, R))
    groups = [list(range(g, R, n_jobs)) for g in range(n_jobs)]

    def one(group):
        return _train_bias_runs(XT, YT, [inits[r] for r in group],
                                [bool(shared[r]) for r in group],
                                [float(lrs[r]) for r in group], n_iter, codes)

    if n_jobs == 1:
        results = [one(groups[0])]
    else:
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            results = list(pool.map(one, groups))
    runs = [None] * R
    for group, recs in zip(groups, results):
        for r, rec in zip(group, recs):
            runs[r] = rec
    return runs


def bias_experiment(X, Y, lrs=(0.05, 0.1, 0.3, 1.0, 3.0), seeds=(0, 1, 2, 3, 4), n_iter=300,
                    hidden="relu", output="softmax", loss="ce", init_scale=0.1,
                    threshold=None, n_jobs=None):
    """Shared vs independent biases: full-batch GD for each lr x seed from the same start.

    For every seed one initial (W0, U0, b0) is drawn, entries
    ``init_scale * N(0, 1)``, and both models are trained from it (the
    independent one with b1 = b2 = b0), so any difference comes from sharing.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, k)
        Targets; the hidden width is k.
    lrs : sequence of float
        Learning rates.
    seeds : sequence of int
        One initialisation per seed (``np.random.default_rng(seed)``).
    n_iter : int
        Gradient steps per run.
    hidden, output, loss : str
        As in ``independent_bias_loss_and_grads``.
    init_scale : float
        Standard deviation of the initial parameters.
    threshold : float or None
        Loss level for "iterations to threshold". None: per lr,
        ``best + 0.05 * (initial - best)`` where ``best`` is the lowest final
        loss of any run (either model, any seed) at that lr and ``initial`` the
        mean initial loss: the iteration at which a run has made 95 % of the
        best achieved decrease.
    n_jobs : int or None
        Threads running the (independent) runs; None: all CPUs. Results do
        not depend on it.

    Returns
    -------
    dict
        ``"config"``: the arguments (JSON-friendly). ``"summary"``: list of
        JSON-friendly dicts, one per (model, lr), with ``model``, ``lr``,
        ``threshold``, ``iters_to_threshold`` (per seed, None if never
        reached), ``iters_to_threshold_median`` (None unless more than half
        of the seeds reach it), ``final_loss_mean``, ``final_acc_mean``,
        ``final_acc_std`` (over non-diverged seeds; None if none),
        ``diverged_frac``, ``mean_norm_output_path``, ``mean_norm_hidden_path``,
        ``mean_cos_paths`` (averaged over iterations and seeds).
        ``"curves"``: dict keyed by ``(model, lr)`` with ``"loss"`` and
        ``"accuracy"`` arrays of shape (n_seeds, n_iter + 1) (NaN after
        divergence), ``"loss_mean"``, ``"loss_min"``, ``"loss_max"`` of shape
        (n_iter + 1,) (NaN-aware over seeds), and the path arrays
        ``"norm_output_path"``, ``"norm_hidden_path"``, ``"cos_paths"`` of
        shape (n_seeds, n_iter + 1).
    """
    lrs = [float(lr) for lr in lrs]
    seeds = [int(s) for s in seeds]
    if not lrs or not seeds:
        raise ValueError("lrs and seeds must each hold at least one value")
    if not all(np.isfinite(lr) and lr > 0 for lr in lrs):
        raise ValueError(f"lrs={lrs} must all be finite positive numbers, e.g. (0.1, 1.0)")
    if not (isinstance(n_iter, (int, np.integer)) and n_iter >= 0):
        raise ValueError(f"n_iter={n_iter!r} must be a non-negative integer, e.g. 300")
    if not (np.isfinite(init_scale) and init_scale > 0):
        raise ValueError(f"init_scale={init_scale!r} must be a finite positive number, e.g. 0.1")
    if threshold is not None and not np.isfinite(threshold):
        raise ValueError(f"threshold={threshold!r} must be a finite loss value or None")
    d, k = np.shape(X)[-1], np.shape(Y)[-1]
    # validates X, Y and the names once (the initial parameters are well-formed by construction)
    _, _, _, X, Y, codes = _check_bias_net(np.zeros((k, d)), np.zeros((k, k)), {"b0": np.zeros(k)},
                                           X, Y, hidden, output, loss)
    inits = []
    for s in seeds:
        rng = np.random.default_rng(s)
        inits.append((init_scale * rng.standard_normal((k, d)),
                      init_scale * rng.standard_normal((k, k)),
                      init_scale * rng.standard_normal(k)))
    # one parallel call for all runs; lr varies fastest so that runs which
    # diverge early (large lr) are spread evenly over the threads
    models = ("shared", "independent")
    grid = [(si, model, lr) for si in range(len(seeds)) for model in models for lr in lrs]
    runs = _train_bias_many(X, Y, [inits[si] for si, _, _ in grid],
                            [model == "shared" for _, model, _ in grid],
                            [lr for _, _, lr in grid], int(n_iter), codes, n_jobs)
    curves = {}
    for model in models:
        for lr in lrs:
            sel = [runs[g] for g, (_, mdl, l) in enumerate(grid) if mdl == model and l == lr]
            c = {key: np.stack([r[key] for r in sel]) for key in _REC_KEYS}
            c["diverged"] = np.array([r["diverged"] for r in sel])
            curves[(model, lr)] = c
    summary = []
    for lr in lrs:
        finals = np.concatenate([curves[(mdl, lr)]["loss"][:, -1]
                                 for mdl in ("shared", "independent")])
        finals = finals[np.isfinite(finals)]
        # default: 95 % of the largest decrease any run achieved at this lr
        # (a ratio such as 1.05 x best final loss is met at iteration 0 when
        # the loss barely moves, e.g. on data with little signal)
        start = float(np.nanmean(curves[("shared", lr)]["loss"][:, 0]))
        if threshold is not None:
            thr = float(threshold)
        elif finals.size and finals.min() < start:
            thr = float(finals.min()) + 0.05 * (start - float(finals.min()))
        else:
            thr = None          # no run decreased the loss at this lr: nothing to reach
        for model in ("shared", "independent"):
            c = curves[(model, lr)]
            c["loss_mean"], c["loss_min"], c["loss_max"] = _nan_band(c["loss"])
            summary.append(_summarise_runs(model, lr, thr, c))
    config = dict(lrs=lrs, seeds=seeds, n_iter=int(n_iter), hidden=hidden, output=output,
                  loss=loss, init_scale=float(init_scale),
                  threshold=None if threshold is None else float(threshold),
                  threshold_rule="given" if threshold is not None else
                  "best final + 0.05 * (initial - best final), per lr",
                  n_samples=int(X.shape[0]), n_features=int(d), k=int(k))
    return {"config": config, "summary": summary, "curves": curves}


def _summarise_runs(model, lr, thr, c):
    """JSON-friendly summary of the runs of one (model, lr)."""
    def f(x):
        return None if x is None or not np.isfinite(x) else float(x)

    loss, ok = c["loss"], ~c["diverged"]
    iters = []
    for row in loss:
        hit = np.flatnonzero(row <= thr) if thr is not None else np.array([], dtype=int)
        iters.append(int(hit[0]) if hit.size else None)
    reached = sorted(i for i in iters if i is not None)
    # median over all seeds with "never" as +inf; defined when most seeds reach thr
    never_inf = [np.inf if i is None else i for i in iters]
    median = float(np.median(never_inf)) if 2 * len(reached) > len(iters) else None
    final_loss, final_acc = loss[ok, -1], c["accuracy"][ok, -1]

    def nanmean(a):
        a = a[np.isfinite(a)]
        return f(a.mean()) if a.size else None

    return {
        "model": model, "lr": float(lr), "threshold": f(thr),
        "iters_to_threshold": iters, "iters_to_threshold_median": median,
        "final_loss_mean": f(final_loss.mean()) if final_loss.size else None,
        "final_acc_mean": f(final_acc.mean()) if final_acc.size else None,
        "final_acc_std": f(final_acc.std()) if final_acc.size else None,
        "diverged_frac": float(c["diverged"].mean()),
        "mean_norm_output_path": nanmean(c["norm_output_path"]),
        "mean_norm_hidden_path": nanmean(c["norm_hidden_path"]),
        "mean_cos_paths": nanmean(c["cos_paths"]),
    }


def _nan_band(curves):
    """NaN-aware mean, min and max over axis 0 (NaN where every row is NaN)."""
    has = np.any(np.isfinite(curves), axis=0)
    filled = np.where(np.isfinite(curves), curves, 0.0)
    cnt = np.maximum(np.isfinite(curves).sum(axis=0), 1)
    mean = np.where(has, filled.sum(axis=0) / cnt, np.nan)
    lo = np.where(has, np.where(np.isfinite(curves), curves, np.inf).min(axis=0), np.nan)
    hi = np.where(has, np.where(np.isfinite(curves), curves, -np.inf).max(axis=0), np.nan)
    return mean, lo, hi
