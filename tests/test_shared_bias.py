"""Shared-bias network (Question 2): gradients, paths, reference, errors, experiment."""
import numpy as np
import pytest

from shared_bias import (bias_experiment, independent_bias_loss_and_grads,
                         shared_bias_loss_and_grads, train_bias_model)

HIDDEN = ("relu", "sigmoid", "tanh")
HEADS = (("sigmoid", "mse"), ("identity", "mse"), ("sigmoid", "bce"),
         ("softmax", "ce"), ("softmax", "mse"))
EPS = 1e-6


def _problem(seed=0, n=7, d=3, k=3, soft_targets=False, check_kink=True):
    """Small problem whose hidden pre-activations stay away from the relu kink."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((k, d))
    U = rng.standard_normal((k, k))
    b = rng.standard_normal(k)
    b2 = rng.standard_normal(k)
    if soft_targets:
        Y = rng.uniform(0.05, 0.95, size=(n, k))
    else:
        Y = np.eye(k)[rng.integers(0, k, n)]
    # finite differences with eps 1e-6 need |z1| >> eps for relu
    for bias in (b, b2) if check_kink else ():
        z1 = X @ W.T + bias
        assert np.abs(z1).min() > 1e-3, "choose another seed: a relu pre-activation is near 0"
    return X, Y, W, U, b, b2


def _fd(f, x, eps=EPS):
    """Central finite-difference gradient of scalar f at array x (perturbed in place)."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        fp = f()
        x[idx] = old - eps
        fm = f()
        x[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


def reference_bias_net(W, U, b1, b2, X, Y, hidden, output, loss):
    """Slow per-sample NumPy loss and gradients of g1(U g(W x + b1) + b2)."""
    acts = {"relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
            "sigmoid": (lambda z: 1 / (1 + np.exp(-z)),
                        lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2),
            "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2)}
    g, dg = acts[hidden]
    Ltot, gW, gU = 0.0, np.zeros_like(W), np.zeros_like(U)
    gb1, gb2 = np.zeros_like(b1), np.zeros_like(b2)
    for x, y in zip(X, Y):
        z1 = W @ x + b1
        h = g(z1)
        z2 = U @ h + b2
        if output == "sigmoid":
            p = 1 / (1 + np.exp(-z2))
            J = np.diag(p * (1 - p))
        elif output == "identity":
            p = z2
            J = np.eye(len(z2))
        else:
            p = np.exp(z2 - z2.max()) / np.exp(z2 - z2.max()).sum()
            J = np.diag(p) - np.outer(p, p)
        if loss == "mse":
            Ltot += 0.5 * np.sum((p - y) ** 2)
            dp = p - y
        elif loss == "bce":
            Ltot += -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))
            dp = -(y / p) + (1 - y) / (1 - p)
        else:
            Ltot += -np.sum(y * np.log(p))
            dp = -y / p
        d2 = J.T @ dp                       # delta_out
        d1 = (U.T @ d2) * dg(z1)            # delta_hidden
        gW += np.outer(d1, x)
        gU += np.outer(d2, h)
        gb1 += d1
        gb2 += d2
    n = len(X)
    return Ltot / n, gW / n, gU / n, gb1 / n, gb2 / n


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output,loss", HEADS)
def test_shared_gradients_match_finite_differences(hidden, output, loss):
    X, Y, W, U, b, _ = _problem(soft_targets=(loss in ("mse", "bce")))

    def f():
        return shared_bias_loss_and_grads(W, U, b, X, Y, hidden, output, loss)[0]

    L, g = shared_bias_loss_and_grads(W, U, b, X, Y, hidden, output, loss)
    np.testing.assert_allclose(g["W"], _fd(f, W), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g["U"], _fd(f, U), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g["b"], _fd(f, b), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g["b_output_path"] + g["b_hidden_path"], g["b"],
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output,loss", HEADS)
def test_each_bias_path_is_the_derivative_through_one_layer(hidden, output, loss):
    """Perturbing b only in the hidden (b1) or only in the output layer (b2) at
    b1 = b2 = b gives the hidden and output path of the shared gradient."""
    X, Y, W, U, b, _ = _problem(seed=0, soft_targets=(loss in ("mse", "bce")))
    b1, b2 = b.copy(), b.copy()

    def f():
        return independent_bias_loss_and_grads(W, U, b1, b2, X, Y, hidden, output, loss)[0]

    Ls, gs = shared_bias_loss_and_grads(W, U, b, X, Y, hidden, output, loss)
    Li, gi = independent_bias_loss_and_grads(W, U, b1, b2, X, Y, hidden, output, loss)
    assert Li == Ls                       # same kernel, same arithmetic
    np.testing.assert_allclose(gs["b_hidden_path"], _fd(f, b1), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gs["b_output_path"], _fd(f, b2), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gi["b1"] + gi["b2"], gs["b"], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(gi["W"], gs["W"])
    np.testing.assert_array_equal(gi["U"], gs["U"])


@pytest.mark.parametrize("output,loss", HEADS)
def test_independent_gradients_match_finite_differences(output, loss):
    X, Y, W, U, b1, b2 = _problem(seed=0, soft_targets=(loss in ("mse", "bce")))

    def f():
        return independent_bias_loss_and_grads(W, U, b1, b2, X, Y, "tanh", output, loss)[0]

    _, g = independent_bias_loss_and_grads(W, U, b1, b2, X, Y, "tanh", output, loss)
    for name, p in (("W", W), ("U", U), ("b1", b1), ("b2", b2)):
        np.testing.assert_allclose(g[name], _fd(f, p), rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("output,loss", HEADS)
def test_kernel_matches_numpy_reference(hidden, output, loss):
    # n > one kernel block (256) so the block loop and the partial last block run
    X, Y, W, U, b1, b2 = _problem(seed=0, n=300, d=4, k=3, check_kink=False,
                                  soft_targets=(loss in ("mse", "bce")))
    L, g = independent_bias_loss_and_grads(W, U, b1, b2, X, Y, hidden, output, loss)
    Lr, gWr, gUr, gb1r, gb2r = reference_bias_net(W, U, b1, b2, X, Y, hidden, output, loss)
    np.testing.assert_allclose(L, Lr, rtol=1e-10)
    for got, want in ((g["W"], gWr), (g["U"], gUr), (g["b1"], gb1r), (g["b2"], gb2r)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_hand_checkable_example():
    """x = 1, W = U = 1, b = 0, identity output, mse, y = 0, relu hidden:
    h = 1, y_hat = 1, L = 1/2, delta_out = 1, delta_hidden = 1, dL/db = 2."""
    L, g = shared_bias_loss_and_grads([[1.0]], [[1.0]], [0.0], [[1.0]], [[0.0]],
                                      hidden="relu", output="identity", loss="mse")
    assert L == 0.5
    assert g["b_output_path"][0] == 1.0 and g["b_hidden_path"][0] == 1.0
    assert g["b"][0] == 2.0 and g["W"][0, 0] == 1.0 and g["U"][0, 0] == 1.0


def test_bce_and_ce_are_finite_for_saturated_logits():
    # logits of +-800 would give log(0) in the naive formulas
    X = np.array([[1.0], [-1.0]])
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    W = np.array([[800.0], [-800.0]])
    U = np.eye(2)
    b = np.zeros(2)
    Lb, _ = shared_bias_loss_and_grads(W, U, b, X, Y, "tanh", "sigmoid", "bce")
    Lc, _ = shared_bias_loss_and_grads(W, U, b, X, Y, "tanh", "softmax", "ce")
    assert np.isfinite(Lb) and np.isfinite(Lc)
    # wrong-way saturated sample: loss ~ |logit|, not inf
    # z2 = (80000, 0) for target (0, 1): l = softplus(80000) + softplus(0) - 1 * 0
    Lw, _ = shared_bias_loss_and_grads(W, 100 * U, b, X[:1], Y[1:], "relu", "sigmoid", "bce")
    np.testing.assert_allclose(Lw, 80000 + np.log(2), rtol=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(output="softmax", loss="bce"), "loss='bce' needs output='sigmoid'"),
    (dict(output="identity", loss="ce"), "loss='ce' needs output='softmax'"),
    (dict(output="linear"), "output='linear' is not supported"),
    (dict(loss="hinge"), "loss='hinge' is not supported"),
    (dict(hidden="gelu"), "activation='gelu' is not supported"),
])
def test_invalid_names_raise(kwargs, match):
    X, Y, W, U, b, _ = _problem()
    with pytest.raises(ValueError, match=match):
        shared_bias_loss_and_grads(W, U, b, X, Y, **kwargs)


def test_invalid_shapes_and_values_raise():
    X, Y, W, U, b, b2 = _problem(k=3)
    with pytest.raises(ValueError, match="hidden width == output width"):
        shared_bias_loss_and_grads(W[:2], U[:, :2], b[:2], X, Y)
    with pytest.raises(ValueError, match="W has shape"):
        shared_bias_loss_and_grads(W[:, :2], U, b, X, Y)
    with pytest.raises(ValueError, match="U has shape"):
        shared_bias_loss_and_grads(W, U[:2], b, X, Y)
    with pytest.raises(ValueError, match="b has shape"):
        shared_bias_loss_and_grads(W, U, b[:2], X, Y)
    with pytest.raises(ValueError, match="b2 has shape"):
        independent_bias_loss_and_grads(W, U, b, b2[:2], X, Y)
    with pytest.raises(ValueError, match="Y has 6 rows but X has 7"):
        shared_bias_loss_and_grads(W, U, b, X, Y[:6])
    Xn = X.copy()
    Xn[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"X has non-finite values .* at \[\[2, 1\]\]"):
        shared_bias_loss_and_grads(W, U, b, Xn, Y)
    with pytest.raises(ValueError, match="lr=-1"):
        train_bias_model(X, Y, W, U, b, lr=-1)
    with pytest.raises(ValueError, match="W0 has 2 rows"):
        train_bias_model(X, Y, W[:2], U[:, :2], b[:2])


def test_training_decreases_loss_and_flags_divergence():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 3))
    Y = np.eye(3)[np.argmax(X, axis=1)]                      # learnable labels
    W0 = 0.1 * rng.standard_normal((3, 3))
    U0 = 0.1 * rng.standard_normal((3, 3))
    b0 = 0.1 * rng.standard_normal(3)
    for shared in (True, False):
        r = train_bias_model(X, Y, W0, U0, b0, shared=shared, lr=0.5, n_iter=60,
                             hidden="tanh")
        assert r["loss"].shape == (61,) and not r["diverged"]
        assert r["loss"][-1] < 0.8 * r["loss"][0]
        assert r["accuracy"][-1] > 0.6
        assert np.all(np.abs(r["cos_paths"][np.isfinite(r["cos_paths"])]) <= 1 + 1e-12)
    # the shared run's first step uses db = hidden path + output path
    r = train_bias_model(X, Y, W0, U0, b0, shared=True, lr=0.5, n_iter=1, hidden="tanh")
    _, g = shared_bias_loss_and_grads(W0, U0, b0, X, Y, "tanh", "softmax", "ce")
    np.testing.assert_allclose(r["params"]["b"], b0 - 0.5 * g["b"], rtol=1e-12)
    np.testing.assert_allclose(r["norm_output_path"][0], np.linalg.norm(g["b_output_path"]))
    # a huge step with an unbounded output diverges: flagged, no exception
    r = train_bias_model(X, Y, W0, U0, b0, shared=True, lr=50.0, n_iter=50,
                         hidden="tanh", output="identity", loss="mse")
    assert r["diverged"] and r["diverged_at"] is not None
    assert np.all(np.isnan(r["loss"][r["diverged_at"]:]))
    assert np.all(np.isfinite(r["loss"][:r["diverged_at"]]))


def test_bias_experiment_keys_and_shapes():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 3))
    Y = np.eye(2)[(X[:, 0] > 0).astype(int)]
    lrs, seeds, n_iter = (0.3, 100.0), (0, 1), 20
    res = bias_experiment(X, Y, lrs=lrs, seeds=seeds, n_iter=n_iter, hidden="tanh",
                          output="identity", loss="mse", n_jobs=2)
    assert set(res) == {"config", "summary", "curves"}
    assert len(res["summary"]) == 2 * len(lrs)
    expect = {"model", "lr", "threshold", "iters_to_threshold", "iters_to_threshold_median",
              "final_loss_mean", "final_acc_mean", "final_acc_std", "diverged_frac",
              "mean_norm_output_path", "mean_norm_hidden_path", "mean_cos_paths"}
    for s in res["summary"]:
        assert set(s) == expect
        assert len(s["iters_to_threshold"]) == len(seeds)
    for model in ("shared", "independent"):
        for lr in lrs:
            c = res["curves"][(model, lr)]
            for key in ("loss", "accuracy", "norm_output_path", "norm_hidden_path",
                        "cos_paths"):
                assert c[key].shape == (len(seeds), n_iter + 1)
            for key in ("loss_mean", "loss_min", "loss_max"):
                assert c[key].shape == (n_iter + 1,)
    small = {(s["model"], s["lr"]): s for s in res["summary"]}
    assert small[("shared", 0.3)]["diverged_frac"] == 0.0
    assert small[("shared", 100.0)]["diverged_frac"] == 1.0
    # same start for both models: identical initial loss per seed
    np.testing.assert_array_equal(res["curves"][("shared", 0.3)]["loss"][:, 0],
                                  res["curves"][("independent", 0.3)]["loss"][:, 0])
    import json
    json.dumps({"config": res["config"], "summary": res["summary"]})
    # runs are independent of each other: the batched run equals a single run
    rng0 = np.random.default_rng(0)
    W0, U0, b0 = (0.1 * rng0.standard_normal((2, 3)), 0.1 * rng0.standard_normal((2, 2)),
                  0.1 * rng0.standard_normal(2))
    single = train_bias_model(X, Y, W0, U0, b0, shared=False, lr=0.3, n_iter=n_iter,
                              hidden="tanh", output="identity", loss="mse")
    np.testing.assert_array_equal(single["loss"],
                                  res["curves"][("independent", 0.3)]["loss"][0])


def test_experiment_does_not_depend_on_thread_count():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((600, 3))                # > 2 kernel blocks
    Y = np.eye(3)[np.argmax(X, axis=1)]
    kw = dict(lrs=(0.5, 2.0), seeds=(0, 1), n_iter=15, hidden="relu")
    one, two = bias_experiment(X, Y, n_jobs=1, **kw), bias_experiment(X, Y, n_jobs=2, **kw)
    assert one["summary"] == two["summary"]
    for key, c in one["curves"].items():
        np.testing.assert_array_equal(c["loss"], two["curves"][key]["loss"])
