# ---- shared-bias network (Question 2)
#
# One hidden layer, h1 = g(W x + b1), y_hat = g1(U h1 + b2), L = mean_i l(y_hat_i, y_i).
# The shared-bias network of Question 2 is the special case b1 = b2 = b (so the
# hidden width m equals the output width k), and its bias gradient is the sum
# of the two paths: dL/db = dL/db1 + dL/db2 = delta_hidden + delta_out. One
# kernel serves both models; the wrappers only differ in how they name things.
from mlp import _act, _act_grad, ACTIVATIONS, activation_code, resolve_dtype  # noqa: E402  (deleted when merged into mlp.py)

import os  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

#: output non-linearities g1 of the shared-bias network (codes used by the kernel)
BIAS_NET_OUTPUTS = {"sigmoid": 0, "identity": 1, "softmax": 2}
#: per-sample losses l of the shared-bias network (codes used by the kernel)
BIAS_NET_LOSSES = {"mse": 0, "bce": 1, "ce": 2}
_OUT_SIGMOID, _OUT_IDENTITY, _OUT_SOFTMAX = 0, 1, 2
_LOSS_MSE, _LOSS_BCE, _LOSS_CE = 0, 1, 2
_SIGMOID_CODE = 1            # ACTIVATIONS["sigmoid"], reused for the output sigmoid
# Samples per block. The kernel is serial and works on one block of samples at
# a time with the sample index innermost (X passed transposed), so the loops
# over samples vectorise; parallelism is across training runs (one run per
# thread, see _train_bias_many), which keeps every result thread-independent.
_BIAS_NET_BLOCK = 256
# reassociation lets LLVM vectorise the per-block sums over samples; no
# nnan/ninf, so the isfinite guards keep working (see STYLE.md).
_BIAS_NET_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


@njit(cache=True, nogil=True, fastmath=_BIAS_NET_FASTMATH)
def _bias_net_loss_and_grads(W, U, b1, b2, XT, YT, hcode, ocode, lcode):
    """L = mean_i l(g1(U g(W x_i + b1) + b2), y_i); dL/dW, dL/dU, dL/db1 (hidden path), dL/db2 (output path), #argmax hits."""
    d, n = XT.shape
    m = W.shape[0]
    k = U.shape[0]
    B = _BIAS_NET_BLOCK
    Z1 = np.empty((m, B))
    H = np.empty((m, B))
    D1 = np.empty((m, B))
    Z2 = np.empty((k, B))
    P = np.empty((k, B))
    D2 = np.empty((k, B))
    zmax = np.empty(B)
    esum = np.empty(B)
    aux = np.empty(B)
    li = np.empty(B)
    zbest = np.empty(B)
    ybest = np.empty(B)
    zarg = np.empty(B, dtype=np.int64)
    yarg = np.empty(B, dtype=np.int64)
    gW = np.zeros((m, d))
    gU = np.zeros((k, m))
    gb1 = np.zeros(m)
    gb2 = np.zeros(k)
    loss = 0.0
    hits = 0
    for s0 in range(0, n, B):
        nb = min(B, n - s0)
        # block samples s0 .. s0+nb-1; XT[:, s0 + i] is x_i (explicit offsets keep
        # the inner loops unit-stride so they vectorise)
        # forward, hidden: Z1 = W X + b1, H = g(Z1)                  # (m, nb)
        for j in range(m):
            for i in range(nb):
                Z1[j, i] = b1[j]
            for t in range(d):
                w = W[j, t]
                for i in range(nb):
                    Z1[j, i] += w * XT[t, s0 + i]
            for i in range(nb):
                H[j, i] = _act(Z1[j, i], hcode)
        # forward, output pre-activation: Z2 = U H + b2              # (k, nb)
        for c in range(k):
            for i in range(nb):
                Z2[c, i] = b2[c]
            for j in range(m):
                u = U[c, j]
                for i in range(nb):
                    Z2[c, i] += u * H[j, i]
        # output P = g1(Z2)
        if ocode == _OUT_SOFTMAX:
            for i in range(nb):
                zmax[i] = Z2[0, i]
                esum[i] = 0.0
            for c in range(1, k):
                for i in range(nb):
                    zmax[i] = max(zmax[i], Z2[c, i])
            for c in range(k):
                for i in range(nb):
                    P[c, i] = np.exp(Z2[c, i] - zmax[i])
                    esum[i] += P[c, i]
            for c in range(k):
                for i in range(nb):
                    P[c, i] /= esum[i]
        elif ocode == _OUT_SIGMOID:
            for c in range(k):
                for i in range(nb):
                    P[c, i] = _act(Z2[c, i], _SIGMOID_CODE)
        else:
            for c in range(k):
                for i in range(nb):
                    P[c, i] = Z2[c, i]
        # per-sample loss li and delta_out D2 = dl/dZ2 = dl/dP (.) g1'(Z2)   # (k, nb)
        for i in range(nb):
            li[i] = 0.0
        if lcode == _LOSS_MSE:
            # l = 1/2 ||p - y||^2, dl/dp = r = p - y
            for c in range(k):
                for i in range(nb):
                    r = P[c, i] - YT[c, s0 + i]
                    li[i] += 0.5 * r * r
                    D2[c, i] = r
            if ocode == _OUT_SIGMOID:
                for c in range(k):
                    for i in range(nb):
                        D2[c, i] *= _act_grad(P[c, i], _SIGMOID_CODE)
            elif ocode == _OUT_SOFTMAX:
                # softmax Jacobian diag(p) - p p^T applied to r: p (r - p.r)
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
                    li[i] += max(z, 0.0) + np.log1p(np.exp(-abs(z))) - YT[c, s0 + i] * z
                    D2[c, i] = P[c, i] - YT[c, s0 + i]
        else:
            # l = -sum y log softmax(z) = (sum y) logsumexp(z) - sum y z;
            # fused delta dl/dz = (sum y) p - y  (= p - y for one-hot y)
            for i in range(nb):
                aux[i] = 0.0
            for c in range(k):
                for i in range(nb):
                    aux[i] += YT[c, s0 + i]
                    li[i] -= YT[c, s0 + i] * Z2[c, i]
            for i in range(nb):
                li[i] += aux[i] * (zmax[i] + np.log(esum[i]))
            for c in range(k):
                for i in range(nb):
                    D2[c, i] = aux[i] * P[c, i] - YT[c, s0 + i]
        for i in range(nb):
            loss += li[i]
        # accuracy: argmax Z2 (monotone in P for every output) == argmax y;
        # class loop outermost so the loops over samples vectorise
        for i in range(nb):
            zbest[i] = Z2[0, i]
            ybest[i] = YT[0, s0 + i]
            zarg[i] = 0
            yarg[i] = 0
        for c in range(1, k):
            for i in range(nb):
                if Z2[c, i] > zbest[i]:
                    zbest[i] = Z2[c, i]
                    zarg[i] = c
                if YT[c, s0 + i] > ybest[i]:
                    ybest[i] = YT[c, s0 + i]
                    yarg[i] = c
        for i in range(nb):
            hits += zarg[i] == yarg[i]
        # backward: delta_hidden D1 = (U^T D2) (.) g'(Z1)              # (m, nb)
        for j in range(m):
            for i in range(nb):
                D1[j, i] = 0.0
            for c in range(k):
                u = U[c, j]
                for i in range(nb):
                    D1[j, i] += u * D2[c, i]
            for i in range(nb):
                D1[j, i] *= _act_grad(H[j, i], hcode)
        # gradient sums over the block (fixed order: blocks in sequence)
        for c in range(k):
            acc = 0.0
            for i in range(nb):
                acc += D2[c, i]
            gb2[c] += acc
            for j in range(m):
                acc = 0.0
                for i in range(nb):
                    acc += D2[c, i] * H[j, i]
                gU[c, j] += acc
        for j in range(m):
            acc = 0.0
            for i in range(nb):
                acc += D1[j, i]
            gb1[j] += acc
            for t in range(d):
                acc = 0.0
                for i in range(nb):
                    acc += D1[j, i] * XT[t, s0 + i]
                gW[j, t] += acc
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
    L, gW, gU, gb1, gb2, hits = _bias_net_loss_and_grads(
        W, U, b1, b2, np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T), *codes)
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
    L, gW, gU, gb1, gb2, hits = _bias_net_loss_and_grads(
        W, U, b, b, np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T), *codes)
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


def _train_bias_run(XT, YT, W0, U0, b0, shared, lr, n_iter, codes):
    """Full-batch GD of one run, theta <- theta - lr dL/dtheta, on validated inputs.

    XT (d, n), YT (k, n) are X and Y transposed (the kernel's layout). Records
    loss, accuracy, ||db output path||, ||db hidden path|| and their cosine
    before each step; stops at the first non-finite loss or loss > 10x the
    initial one. The kernel releases the GIL, so runs can share a thread pool.
    """
    n = XT.shape[1]
    W, U, b1, b2 = W0.copy(), U0.copy(), b0.copy(), b0.copy()
    rec = {key: np.full(n_iter + 1, np.nan) for key in _REC_KEYS}
    prev = (W, U, b1, b2)
    diverged_at, L0 = None, None
    for t in range(n_iter + 1):
        # shared run: b1 == b2 == b, and db1, db2 are the hidden and output paths of dL/db
        L, gW, gU, gb1, gb2, hits = _bias_net_loss_and_grads(W, U, b1, b2, XT, YT, *codes)
        L0 = L if L0 is None else L0
        if not (np.isfinite(L) and L <= 10 * L0 and np.all(np.isfinite(gW))
                and np.all(np.isfinite(gU))):
            diverged_at = t
            W, U, b1, b2 = prev                     # last parameters with a finite loss
            break
        n_out, n_hid = np.sqrt(gb2 @ gb2), np.sqrt(gb1 @ gb1)
        rec["loss"][t] = L
        rec["accuracy"][t] = hits / n
        rec["norm_output_path"][t] = n_out
        rec["norm_hidden_path"][t] = n_hid
        if n_out > 0 and n_hid > 0:
            rec["cos_paths"][t] = (gb1 @ gb2) / (n_out * n_hid)
        if t == n_iter:
            break
        prev = (W, U, b1, b2)
        W, U = W - lr * gW, U - lr * gU                         # new arrays: prev stays intact
        if shared:
            b1 = b2 = b1 - lr * (gb1 + gb2)                     # dL/db = both paths
        else:
            b1, b2 = b1 - lr * gb1, b2 - lr * gb2
    params = {"W": W, "U": U, "b": b1} if shared else {"W": W, "U": U, "b1": b1, "b2": b2}
    rec.update(diverged=diverged_at is not None, diverged_at=diverged_at, params=params)
    return rec


def _train_bias_many(X, Y, inits, shared, lrs, n_iter, codes, n_jobs=None):
    """``_train_bias_run`` for each (init, shared, lr); one result dict per run, in order.

    Runs are independent and write only their own arrays, so running them on
    a thread pool gives the same results for any ``n_jobs`` (default: all CPUs).
    """
    XT, YT = np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T)   # (d, n), (k, n)

    def one(r):
        W0, U0, b0 = inits[r]
        return _train_bias_run(XT, YT, W0, U0, b0, bool(shared[r]), float(lrs[r]), n_iter,
                               codes)

    n_jobs = n_jobs or os.cpu_count() or 1
    if n_jobs == 1 or len(inits) == 1:
        return [one(r) for r in range(len(inits))]
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        return list(pool.map(one, range(len(inits))))


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
