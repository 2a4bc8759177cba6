"""Inverted dropout on the hidden layers (``MLP(dropout=...)``): the masks drawn
inside the kernel from (key, iteration, row, layer, unit), the kernel against
the NumPy reference with the same masks and against central finite differences
with the masks fixed, thread-count determinism, and the estimator."""
import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import mlp

ACTS = ["relu", "sigmoid", "tanh"]


def make_net(sizes, seed=0, scale=0.7):
    rng = np.random.default_rng(seed)
    Ws = [rng.normal(0, scale, size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(0, scale, size=o) for o in sizes[1:]]
    return Ws, bs


def make_data(n, d, K, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, K, n)


def make_blobs(n=160, d=4, K=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    return rng.normal(0, 2.0, size=(K, d))[y] + rng.normal(size=(n, d)), y


# ------------------------------------------------------------------- masks
def test_masks_are_scaled_bernoulli_and_counter_based():
    masks = mlp.dropout_masks((64, 32), 2000, 0.3, dropout_key=12345, iteration=7)
    assert [M.shape for M in masks] == [(2000, 64), (2000, 32)]
    for M in masks:
        assert set(np.unique(M)) == {0.0, 1 / 0.7}
        assert abs(np.mean(M == 0) - 0.3) < 0.01             # 64 000 / 128 000 draws
        assert abs(M.mean() - 1.0) < 0.03                     # inverted: the mean is kept
    # a row's mask depends on its index only, not on how many rows there are
    few = mlp.dropout_masks((64, 32), 10, 0.3, dropout_key=12345, iteration=7)
    for a, b in zip(few, masks):
        assert_array_equal(a, b[:10])
    # other iterations, keys and layers draw other masks (nearly independent ones)
    again = mlp.dropout_masks((64, 32), 2000, 0.3, dropout_key=12345, iteration=8)[0]
    other = mlp.dropout_masks((64, 32), 2000, 0.3, dropout_key=54321, iteration=7)[0]
    for M in (again, other, masks[1]):
        agree = np.mean((M[:, :32] == 0) == (masks[0][:, :32] == 0))
        assert abs(agree - (0.3 ** 2 + 0.7 ** 2)) < 0.01
    # units of a row and rows of a unit are not correlated
    c = np.corrcoef((masks[0] == 0).astype(float), rowvar=False)
    assert np.abs(c[np.triu_indices(64, 1)]).max() < 0.1
    assert_array_equal(mlp.dropout_masks((5,), 3, 0.0, dropout_key=1)[0], 1.0)


# ----------------------------------------------------- kernel vs reference
@pytest.mark.parametrize("n", [1, 7, mlp.TILE + 45, mlp.TILE * mlp.MAX_BLOCKS * 2 + 37])
@pytest.mark.parametrize("activation", ACTS)
def test_kernel_matches_reference_with_the_same_masks(n, activation):
    sizes = [5, 6, 4, 3]
    Ws, bs = make_net(sizes, seed=n)
    X, y = make_data(n, 5, 3, seed=n)
    sw = np.random.default_rng(n).uniform(0, 2, n) + 0.01
    masks = mlp.dropout_masks(sizes[1:-1], n, 0.4, dropout_key=99, iteration=3)
    loss, dW, db, correct = mlp.loss_and_grads(Ws, bs, X, y, activation, l2=0.05, sample_weight=sw,
                                               return_n_correct=True, dropout=0.4, dropout_key=99,
                                               iteration=3)
    rloss, rdW, rdb = mlp.reference_loss_and_grads(Ws, bs, X, y, activation, l2=0.05,
                                                   sample_weight=sw, dropout_masks=masks)
    assert loss == pytest.approx(rloss, rel=1e-10)
    for a, b in zip(dW + db, rdW + rdb):
        assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.abs(b).max())
    # the count of correct rows is the dropped-out network's
    assert 0 <= correct <= n
    # and dropout changes the result (the masks really apply)
    plain, pdW, _ = mlp.loss_and_grads(Ws, bs, X, y, activation, l2=0.05, sample_weight=sw)
    assert plain != loss


def test_float32_kernel_matches_reference():
    sizes = [5, 6, 4, 3]
    Ws, bs = make_net(sizes, seed=2)
    X, y = make_data(300, 5, 3, seed=2)
    W32, b32 = [W.astype(np.float32) for W in Ws], [b.astype(np.float32) for b in bs]
    masks = mlp.dropout_masks(sizes[1:-1], 300, 0.25, dropout_key=5, iteration=1)
    loss, dW, db = mlp.loss_and_grads(W32, b32, X, y, "tanh", dropout=0.25, dropout_key=5,
                                      iteration=1)
    assert all(g.dtype == np.float32 for g in dW + db)
    rloss, rdW, rdb = mlp.reference_loss_and_grads(
        [W.astype(np.float64) for W in W32], [b.astype(np.float64) for b in b32],
        X.astype(np.float32).astype(np.float64), y, "tanh", dropout_masks=masks)
    assert loss == pytest.approx(rloss, rel=1e-5)
    for a, b in zip(dW + db, rdW + rdb):
        assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


# --------------------------------------------------- finite differences
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("hidden", [(5,), (5, 4)])
def test_gradient_matches_finite_differences_with_masks_fixed(activation, hidden):
    sizes = [4, *hidden, 3]
    Ws, bs = make_net(sizes)
    X, y = make_data(9, 4, 3)
    kw = dict(l2=0.1, dropout=0.5, dropout_key=2024, iteration=11)
    loss, dW, db = mlp.loss_and_grads(Ws, bs, X, y, activation, **kw)
    theta, sz = mlp.pack(Ws, bs)
    eps = 1e-6
    fd = np.empty_like(theta)
    for p in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        tp[p] += eps
        tm[p] -= eps
        lp = mlp.loss_and_grads(*mlp.unpack(tp, sz), X, y, activation, **kw)[0]
        lm = mlp.loss_and_grads(*mlp.unpack(tm, sz), X, y, activation, **kw)[0]
        fd[p] = (lp - lm) / (2 * eps)
    assert_allclose(mlp.pack(dW, db)[0], fd, rtol=1e-5, atol=1e-8)
    # the masks drop something here: some hidden gradients vanish for whole rows
    masks = mlp.dropout_masks(hidden, 9, 0.5, dropout_key=2024, iteration=11)
    assert all((M == 0).any() and (M > 0).any() for M in masks)


# ------------------------------------------------------------- determinism
@pytest.fixture
def restore_threads():
    n = numba.get_num_threads()
    yield
    numba.set_num_threads(n)


def test_one_and_two_threads_identical(restore_threads):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba was started with fewer than 2 threads")
    Ws, bs = make_net([5, 6, 4, 3])
    X, y = make_data(mlp.TILE * mlp.MAX_BLOCKS + 99, 5, 3)
    Xb, yb = make_blobs(n=700)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        res = mlp.loss_and_grads(Ws, bs, X, y, "relu", dropout=0.3, dropout_key=7, iteration=2)
        m = mlp.MLP(hidden=(6, 5), n_iter=15, lr=0.3, dropout=0.3).fit(Xb, yb)
        results.append((res, m))
    (r1, m1), (r2, m2) = results
    assert r1[0] == r2[0]
    for a, b in zip(r1[1] + r1[2], r2[1] + r2[2]):
        assert_array_equal(a, b)
    for a, b in zip(m1.weights_ + m1.biases_, m2.weights_ + m2.biases_):
        assert_array_equal(a, b)
    assert_array_equal(m1.history_["loss"], m2.history_["loss"])


# --------------------------------------------------------------- estimator
def test_estimator_with_dropout():
    X, y = make_blobs()
    kw = dict(hidden=(16, 8), n_iter=80, lr=0.5)
    plain = mlp.MLP(**kw).fit(X, y)
    zero = mlp.MLP(**kw, dropout=0.0).fit(X, y)             # 0 is today's path, bitwise
    for a, b in zip(plain.weights_ + plain.biases_, zero.weights_ + zero.biases_):
        assert_array_equal(a, b)
    a = mlp.MLP(**kw, dropout=0.3).fit(X, y)
    b = mlp.MLP(**kw, dropout=0.3).fit(X, y)
    for u, v in zip(a.weights_ + a.biases_, b.weights_ + b.biases_):
        assert_array_equal(u, v)                            # masks from the seed
    c = mlp.MLP(**kw, dropout=0.3, seed=43).fit(X, y)
    assert not np.array_equal(c.history_["loss"], a.history_["loss"])
    assert not np.array_equal(a.weights_[0], plain.weights_[0])
    assert a.score(X, y) > 0.8
    # the first recorded loss is the dropped-out network's at the initial weights, iteration 0
    theta, sizes = a._init_params([4, 16, 8, 3], np.float64)
    W0, b0 = mlp.unpack(theta, sizes)
    first = mlp.loss_and_grads(W0, b0, X, y, "relu", dropout=0.3, dropout_key=a._dropout_key(),
                               iteration=0)[0]
    assert a.history_["loss"][0] == first
    # prediction never drops: it is the plain forward pass of the trained weights
    assert_array_equal(a.predict_proba(X), mlp.forward(a.weights_, a.biases_, X, "relu"))
    # early stopping's validation loss is without dropout too
    es = mlp.MLP(**kw, dropout=0.3, early_stopping=True).fit(X[:120], y[:120], X[120:], y[120:])
    P = mlp.forward(es.weights_, es.biases_, X[120:], "relu")
    assert es.history_["val_loss"][es.best_iter_] == pytest.approx(
        -np.mean(np.log(P[np.arange(40), y[120:]])), rel=1e-10)


def test_dropout_saved_and_checked(tmp_path):
    X, y = make_blobs(n=60)
    m = mlp.MLP(hidden=(4,), n_iter=5, dropout=0.2).fit(X, y)
    assert mlp.MLP.load(m.save(tmp_path / "m")).get_params()["dropout"] == 0.2
    for bad in (1, 1.0, -0.1, "0.2", np.nan, None):
        with pytest.raises(ValueError, match=f"dropout={bad!r} must be a number in \\[0, 1\\)"):
            mlp.MLP(hidden=(4,), n_iter=2, dropout=bad).fit(X, y)
    with pytest.raises(ValueError, match="dropout_key=-1 must be an integer in"):
        mlp.loss_and_grads(*make_net([4, 3, 3]), X, y, "relu", dropout=0.1, dropout_key=-1)
    with pytest.raises(ValueError, match="iteration=-2 must be an integer >= 0"):
        mlp.dropout_masks((3,), 5, 0.1, dropout_key=0, iteration=-2)
