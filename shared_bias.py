"""The shared-bias network of Question 2: kernel, validating wrappers, training, experiment.

One hidden layer, h1 = g(W x + b1), y_hat = g1(U h1 + b2), L = mean_i l(y_hat_i, y_i).
The shared-bias network is the special case b1 = b2 = b (so the hidden width m
equals the output width k), and its bias gradient is the sum of the two paths:
dL/db = dL/db1 + dL/db2 = delta_hidden + delta_out. One kernel serves both
models; the wrappers only differ in how they name things.

The hidden activation g comes from ``mlp.ACTIVATION_TABLE``; the output
functions g1 and the losses l are the registries ``OUTPUT_TABLE`` and
``LOSS_TABLE`` below. The derivation is in docs/q2_derivation.md. Public API:
``shared_bias_loss_and_grads``, ``independent_bias_loss_and_grads``,
``reference_bias_loss_and_grads``, ``train_bias_model``, ``bias_experiment``,
``warm_up``. Writes no files.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple, Optional

import numpy as np
from numba import literal_unroll, njit

from kernels import ACTIVATION_TABLE, ACTIVATIONS, _KERNEL_ACTIVATIONS, activation_code, registry_code
from mlp import reference_softmax
from numerics import exp_nonpositive, log_normal

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
# helpers are compiled without reassoc (their rounding tricks need it off).
_BIAS_NET_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
_SIGMOID = ACTIVATIONS["sigmoid"]           # the hidden sigmoid's formulas serve the output one
_SIGMOID_GRAD = ACTIVATION_TABLE[_SIGMOID].dg


def _with_kernel_flags(f):
    """The registry formula ``f`` (@njit) compiled again with the kernel's flags.
    Reached through mlp's registry tuple, g' did not get the kernel's
    reassociation (the hidden sigmoid/tanh gradients changed in the last bits);
    this copy, compiled with the kernel's fastmath flags, gives the kernel's
    arithmetic back bitwise. The formula itself stays in mlp.ACTIVATION_TABLE."""
    return njit(nogil=True, inline="always", error_model="numpy",
                fastmath=_BIAS_NET_FASTMATH)(f.py_func)


# hidden g' for the kernel's backward pass: (code, dg)
_KERNEL_ACT_GRADS = tuple((a.code, _with_kernel_flags(a.dg)) for a in ACTIVATION_TABLE)


# ------------------------------------------------------------ block helpers
# Arrays of a block are (rows, B) with the sample index innermost; only the
# first nb <= B columns are used.
@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _bias_net_act(Z, A, code, rows, nb):
    """A[j, i] = g(Z[j, i]) for j < rows, i < nb; g the hidden activation ``code``."""
    known = False
    for act in literal_unroll(_KERNEL_ACTIVATIONS):
        if act[0] == code:
            known = True
            for j in range(rows):
                for i in range(nb):
                    A[j, i] = act[1](Z[j, i])
    if not known:
        raise ValueError("unknown activation code; use a code from mlp.ACTIVATIONS")


@njit(cache=True, nogil=True, inline="always")
def _copy_block(src, s0, rows, nb, dst):
    """dst[:, i] = src[:, s0 + i] for i < nb (a block into its fixed-stride buffer)."""
    for t in range(rows):
        for i in range(nb):
            dst[t, i] = src[t, s0 + i]


@njit(cache=True, nogil=True, inline="always")
def _block_argmax(Z, rows, nb, best, arg):
    """arg[i] = argmax_c Z[c, i] (first on ties, as a float), best[i] its value.
    The class loop is outermost so the sample loops vectorise."""
    for i in range(nb):
        best[i] = Z[0, i]
        arg[i] = 0.0
    for c in range(1, rows):
        for i in range(nb):
            zc = Z[c, i]
            arg[i] = c if zc > best[i] else arg[i]
            best[i] = zc if zc > best[i] else best[i]


@njit(cache=True, nogil=True, inline="always")
def _block_affine(W, b, A, rows, cols, nb, Z):
    """Z[j, i] = b[j] + sum_t W[j, t] A[t, i] for j < rows, i < nb (W (rows, cols))."""
    for j in range(rows):
        for i in range(nb):
            Z[j, i] = b[j]
        for t in range(cols):
            w = W[j, t]
            for i in range(nb):
                Z[j, i] += w * A[t, i]


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


# ----------------------------------------------------------- output functions
# forward(Z, P, lse, rows, nb): P = g1(Z) on a block (softmax also sets lse =
# log-sum-exp per sample); backward(P, D, aux, rows, nb): D <- J^T D with J =
# dg1/dz, for the losses that are not fused with their output.
@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath={"contract"})
def _sigmoid_forward(Z, P, lse, rows, nb):
    """P = sigmoid(Z), elementwise."""
    _bias_net_act(Z, P, _SIGMOID, rows, nb)


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=_BIAS_NET_FASTMATH)
def _sigmoid_backward(P, D, aux, rows, nb):
    """D *= p (1 - p), the hidden sigmoid's g' written from p."""
    for c in range(rows):
        for i in range(nb):
            D[c, i] *= _SIGMOID_GRAD(P[c, i])


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=_BIAS_NET_FASTMATH)
def _identity_forward(Z, P, lse, rows, nb):
    """P = Z."""
    for c in range(rows):
        for i in range(nb):
            P[c, i] = Z[c, i]


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=_BIAS_NET_FASTMATH)
def _identity_backward(P, D, aux, rows, nb):
    """J = I: D is unchanged."""
    return


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _softmax_forward(Z, P, lse, rows, nb):
    """P[:, i] = softmax(Z[:, i]), lse[i] = log sum_c exp(Z[c, i]) for i < nb (Z has ``rows`` classes)."""
    for i in range(nb):
        lse[i] = Z[0, i]                       # running max
    for c in range(1, rows):
        for i in range(nb):
            lse[i] = max(lse[i], Z[c, i])
    for c in range(rows):
        for i in range(nb):
            P[c, i] = exp_nonpositive(Z[c, i] - lse[i])    # exp(z - zmax) in (0, 1]
    esum = np.zeros(nb)
    for c in range(rows):
        for i in range(nb):
            esum[i] += P[c, i]
    for c in range(rows):
        for i in range(nb):
            P[c, i] /= esum[i]
    for i in range(nb):
        lse[i] += log_normal(esum[i])         # esum in [1, rows]


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=_BIAS_NET_FASTMATH)
def _softmax_backward(P, D, aux, rows, nb):
    """Softmax Jacobian diag(p) - p p^T applied to e = D: D = p (e - p.e)."""
    for i in range(nb):
        aux[i] = 0.0
    for c in range(rows):
        for i in range(nb):
            aux[i] += P[c, i] * D[c, i]
    for c in range(rows):
        for i in range(nb):
            D[c, i] = P[c, i] * (D[c, i] - aux[i])


class BiasNetOutput(NamedTuple):
    """One output function g1 of the bias network."""
    name: str
    code: int
    forward: Callable              # @njit block forward, see above
    backward: Callable             # @njit block J^T product
    reference: Callable            # NumPy g1(Z), Z (n, k)
    reference_backward: Callable   # NumPy (P, E) -> J^T E per sample, (n, k)


#: The registry of output functions (codes are the row positions).
OUTPUT_TABLE = (
    BiasNetOutput("sigmoid", 0, _sigmoid_forward, _sigmoid_backward,
                  ACTIVATION_TABLE[_SIGMOID].reference_g, lambda P, E: E * P * (1 - P)),
    BiasNetOutput("identity", 1, _identity_forward, _identity_backward,
                  lambda Z: Z, lambda P, E: E),
    BiasNetOutput("softmax", 2, _softmax_forward, _softmax_backward, reference_softmax,
                  lambda P, E: P * (E - np.sum(P * E, axis=1, keepdims=True))),
)


# --------------------------------------------------------------------- losses
# kernel(Z, P, Y, lse, D, li, aux, rows, nb): li[i] += l(p_i, y_i) and D = dl/dp
# (unfused) or dl/dz (fused with the output it needs) on a block.
@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=_BIAS_NET_FASTMATH)
def _mse_kernel(Z, P, Y, lse, D, li, aux, rows, nb):
    """l = 1/2 ||p - y||^2, dl/dp = e = p - y."""
    for c in range(rows):
        for i in range(nb):
            e = P[c, i] - Y[c, i]
            li[i] += 0.5 * e * e
            D[c, i] = e


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=_BIAS_NET_FASTMATH)
def _bce_kernel(Z, P, Y, lse, D, li, aux, rows, nb):
    """l = sum softplus(z) - y z  (= -[y log s + (1-y) log(1-s)] without log(0));
    fused with the sigmoid: dl/dz = sigmoid(z) - y."""
    for c in range(rows):
        for i in range(nb):
            z = Z[c, i]
            li[i] += max(z, 0.0) + np.log1p(np.exp(-abs(z))) - Y[c, i] * z
            D[c, i] = P[c, i] - Y[c, i]


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=_BIAS_NET_FASTMATH)
def _ce_kernel(Z, P, Y, lse, D, li, aux, rows, nb):
    """l = -sum y log softmax(z) = (sum y) logsumexp(z) - sum y z; fused with the
    softmax: dl/dz = (sum y) p - y  (= p - y for one-hot y)."""
    for i in range(nb):
        aux[i] = 0.0
    for c in range(rows):
        for i in range(nb):
            aux[i] += Y[c, i]
            li[i] -= Y[c, i] * Z[c, i]
    for i in range(nb):
        li[i] += aux[i] * lse[i]
    for c in range(rows):
        for i in range(nb):
            D[c, i] = aux[i] * P[c, i] - Y[c, i]


def _softplus(z):
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


class BiasNetLoss(NamedTuple):
    """One per-sample loss l of the bias network."""
    name: str
    code: int
    kernel: Callable                 # @njit block loss and delta, see above
    fused_with: Optional[str]        # output its delta is fused with (required), or None
    reference: Callable              # NumPy (P, Z, Y) -> per-sample l, (n,)
    reference_delta: Callable        # NumPy (P, Z, Y) -> dl/dp (unfused) or dl/dz (fused)


#: The registry of losses (codes are the row positions).
LOSS_TABLE = (
    BiasNetLoss("mse", 0, _mse_kernel, None,
                lambda P, Z, Y: 0.5 * np.sum((P - Y) ** 2, axis=1), lambda P, Z, Y: P - Y),
    BiasNetLoss("bce", 1, _bce_kernel, "sigmoid",
                lambda P, Z, Y: np.sum(_softplus(Z) - Y * Z, axis=1), lambda P, Z, Y: P - Y),
    BiasNetLoss("ce", 2, _ce_kernel, "softmax",
                lambda P, Z, Y: -np.sum(Y * np.log(P), axis=1),
                lambda P, Z, Y: Y.sum(axis=1, keepdims=True) * P - Y),
)
assert all(o.code == i for i, o in enumerate(OUTPUT_TABLE)), "codes must be row positions"
assert all(l.code == i for i, l in enumerate(LOSS_TABLE)), "codes must be row positions"
#: output functions g1 and losses l by name -> kernel code
BIAS_NET_OUTPUTS = {o.name: o.code for o in OUTPUT_TABLE}
BIAS_NET_LOSSES = {l.name: l.code for l in LOSS_TABLE}


# A head is an (output, loss) pair the loss allows, built here from the two
# tables. The kernel unrolls over the heads: one copy of the output and loss
# code per head; the functions carry the kernel's fastmath flags themselves.
@njit(cache=True, nogil=True, inline="always")
def _fused_backward(P, D, aux, rows, nb):
    """The loss already gave dl/dz: nothing to apply."""
    return


_KERNEL_HEADS = tuple((o.code, l.code, o.forward, l.kernel,
                       o.backward if l.fused_with is None else _fused_backward)
                      for l in LOSS_TABLE for o in OUTPUT_TABLE
                      if l.fused_with in (None, o.name))


# ===================================================================== kernel
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
        _copy_block(XT, s0, d, nb, Xb)
        _copy_block(YT, s0, k, nb, Yb)
        _block_argmax(Yb, k, nb, ybest, yarg)              # argmax y, the same for every run
        for r in range(R):
            # forward: Z1 = W X + b1, H = g(Z1) (m, nb); Z2 = U H + b2 (k, nb); P = g1(Z2)
            _block_affine(W[r], b1[r], Xb, m, d, nb, Z1)
            _bias_net_act(Z1, H, hcode, m, nb)
            _block_affine(U[r], b2[r], H, k, m, nb, Z2)
            head = False
            for hd in literal_unroll(_KERNEL_HEADS):
                if hd[0] == ocode and hd[1] == lcode:
                    head = True
                    hd[2](Z2, P, lse, k, nb)               # P = g1(Z2); softmax also sets lse
                    # per-sample loss li and delta_out D2 = dl/dZ2 (k, nb)
                    for i in range(nb):
                        li[i] = 0.0
                    hd[3](Z2, P, Yb, lse, D2, li, aux, k, nb)
                    hd[4](P, D2, aux, k, nb)               # unfused: D2 = J^T dl/dp
            if not head:
                raise ValueError("unknown (output, loss) codes; use codes from "
                                 "shared_bias.BIAS_NET_OUTPUTS / BIAS_NET_LOSSES that go together")
            acc = 0.0
            for i in range(nb):
                acc += li[i]
            loss[r] += acc
            # accuracy: argmax Z2 (monotone in P for every output) == argmax y
            _block_argmax(Z2, k, nb, zbest, zarg)
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
            known = False
            for act in literal_unroll(_KERNEL_ACT_GRADS):
                if act[0] == hcode:
                    known = True
                    for j in range(m):
                        for i in range(nb):
                            D1[j, i] *= act[1](H[j, i])
            if not known:
                raise ValueError("unknown activation code; use a code from mlp.ACTIVATIONS")
            # gradient sums over the block (fixed order: blocks in sequence)
            _add_block_sums(D2, H, k, m, nb, gb2[r], gU[r])      # output layer: b2 path, U
            _add_block_sums(D1, Xb, m, d, nb, gb1[r], gW[r])     # hidden layer: b1 path, W
    inv = 1.0 / n
    return loss * inv, gW * inv, gU * inv, gb1 * inv, gb2 * inv, hits


# ================================================================== wrappers
def _bias_net_codes(hidden, output, loss):
    """Validate the (hidden, output, loss) names and return their kernel codes."""
    hcode = activation_code(hidden)
    ocode = registry_code(BIAS_NET_OUTPUTS, "output", output)
    lcode = registry_code(BIAS_NET_LOSSES, "loss", loss)
    need = LOSS_TABLE[lcode].fused_with
    if need is not None and output != need:
        others = [f"loss={l.name!r} with output={l.fused_with!r}" for l in LOSS_TABLE
                  if l.fused_with not in (None, need)]
        raise ValueError(f"loss={loss!r} needs output={need!r} (got output={output!r}); "
                         f"use output={need!r}" + "".join(f", or {o}" for o in others))
    return hcode, ocode, lcode


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
    L, gW, gU, gb1, gb2, hits = _one_run(W, U, b1, b2, X, Y, codes)
    return float(L), {"W": gW, "U": gU, "b1": gb1, "b2": gb2,
                      "accuracy": hits / X.shape[0]}


def _check_shared_width(W, Y, b, w_name, b_name, alternative):
    """A bias shared by both layers needs hidden width m (rows of W) == output
    width k (columns of Y) and b of shape (m,); ``alternative`` ends the message."""
    m, k = W.shape[0], Y.shape[1]
    if m != k:
        raise ValueError(f"a shared bias needs hidden width == output width, but {w_name} has "
                         f"{m} rows and Y has {k} columns; use {w_name} of shape "
                         f"({k}, {W.shape[1]}){alternative}")
    if b.shape != (m,):
        raise ValueError(f"{b_name} has shape {b.shape}; expected ({m},) = {w_name} rows = "
                         f"Y columns")


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
    _check_shared_width(W, Y, b, "W", "b",
                        ", or independent_bias_loss_and_grads for separate biases")
    L, gW, gU, gb1, gb2, hits = _one_run(W, U, b, b, X, Y, codes)
    return float(L), {"W": gW, "U": gU, "b": gb1 + gb2, "b_output_path": gb2,
                      "b_hidden_path": gb1, "accuracy": hits / X.shape[0]}


def reference_bias_loss_and_grads(W, U, b1, b2, X, Y, hidden="relu", output="sigmoid",
                                  loss="mse"):
    """Slow, readable NumPy version of ``independent_bias_loss_and_grads`` built
    from the registries' reference formulas (for tests; same arguments).

    Returns
    -------
    loss : float
    grads : dict with ``"W"`` (m, d), ``"U"`` (k, m), ``"b1"`` (m,), ``"b2"`` (k,)
    """
    _bias_net_codes(hidden, output, loss)
    act = ACTIVATION_TABLE[activation_code(hidden)]
    out, ls = OUTPUT_TABLE[BIAS_NET_OUTPUTS[output]], LOSS_TABLE[BIAS_NET_LOSSES[loss]]
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    H = act.reference_g(X @ np.asarray(W).T + b1)          # (n, m)
    Z = H @ np.asarray(U).T + b2                           # (n, k)
    P = out.reference(Z)
    D2 = ls.reference_delta(P, Z, Y)                       # dl/dz (fused) or dl/dp
    if ls.fused_with is None:
        D2 = out.reference_backward(P, D2)                 # J^T dl/dp
    D1 = (D2 @ U) * act.reference_dg(H)                    # (n, m)
    n = X.shape[0]
    return float(np.mean(ls.reference(P, Z, Y))), {
        "W": D1.T @ X / n, "U": D2.T @ H / n, "b1": D1.mean(axis=0), "b2": D2.mean(axis=0)}


def _one_run(W, U, b1, b2, X, Y, codes):
    """The kernel for one run on validated inputs: (L, gW, gU, gb1, gb2, hits); L finite."""
    L, gW, gU, gb1, gb2, hits = (a[0] for a in _bias_net_loss_and_grads(
        W[None], U[None], b1[None], b2[None], np.ascontiguousarray(X.T),
        np.ascontiguousarray(Y.T), *codes))
    _check_bias_result(L)
    return L, gW, gU, gb1, gb2, hits


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
    _check_shared_width(W, Y, b, "W0", "b0",
                        " (train_bias_model compares the shared and independent biases)")
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



def warm_up():
    """Compile (or load from numba's cache) what ``bias_experiment`` uses, on a tiny problem."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3)), np.arange(8) % 2
    bias_experiment(X, np.eye(2)[y], lrs=(0.1,), seeds=(0,), n_iter=1, n_jobs=1)
