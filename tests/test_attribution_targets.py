"""Captum-style attributions over the numba gradient kernel: a class selector
(``target=<class>``: the gradient of that class's softmax output for every
row), per-sample input x gradient, and integrated gradients with a baseline,
``n_steps`` and the completeness delta. Checked against central finite
differences and the NumPy reference; one linear example by hand."""
import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import mlp
from mlp import (input_gradients, input_x_gradient, integrated_gradients,
                 reference_input_gradients, reference_integrated_gradients)

ACTS = ["relu", "sigmoid", "tanh"]


def random_net(sizes, seed):
    rng = np.random.default_rng(seed)
    W = [rng.normal(0, 1.5 / np.sqrt(i), (o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    b = [rng.normal(0, 0.3, o) for o in sizes[1:]]
    return W, b


def np_softmax_and_logits(W, b, X, activation):
    act = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
           "tanh": np.tanh}[activation]
    h, pre = np.asarray(X, dtype=np.float64), []
    for l, (Wl, bl) in enumerate(zip(W, b)):
        z = h @ Wl.T + bl
        if l < len(W) - 1:
            pre.append(z)
            h = act(z)
    o = np.exp(z - z.max(axis=1, keepdims=True))
    return o / o.sum(axis=1, keepdims=True), z, pre


def scalar(W, b, X, activation, kind, cls, y=None):
    """The target of every row of X (n,): o_c, a_c or -log o_y, classes cls (n,)."""
    o, z, _ = np_softmax_and_logits(W, b, X, activation)
    rows = np.arange(X.shape[0])
    if kind == "output":
        return o[rows, cls]
    if kind == "logit":
        return z[rows, cls]
    return -np.log(o[rows, y])


def fd_gradient(W, b, X, activation, kind, cls, y=None, eps=1e-6):
    """Central finite differences of ``scalar`` with respect to each input, (n, d)."""
    G = np.empty_like(X, dtype=np.float64)
    for i in range(X.shape[1]):
        e = np.zeros(X.shape[1])
        e[i] = eps
        G[:, i] = (scalar(W, b, X + e, activation, kind, cls, y)
                   - scalar(W, b, X - e, activation, kind, cls, y)) / (2 * eps)
    return G


# ----------------------------------------------------------- class selector
@pytest.mark.parametrize("hidden", [[5], [5, 4]])
@pytest.mark.parametrize("activation", ACTS)
def test_class_target_matches_finite_differences(hidden, activation):
    W, b = random_net([4] + hidden + [3], seed=len(hidden))
    X = np.random.default_rng(1).normal(size=(7, 4))
    _, _, pre = np_softmax_and_logits(W, b, X, activation)
    assert min(np.abs(z).min() for z in pre) > 1e-4          # no relu kink inside +-eps
    for c in (0, 2):
        G = input_gradients(W, b, X, None, activation, target=c)
        assert_allclose(G, fd_gradient(W, b, X, activation, "output", np.full(7, c)),
                        rtol=1e-5, atol=1e-8)
    per_row = np.array([2, 0, 1, 1, 0, 2, 2])                 # one class per row
    G = input_gradients(W, b, X, None, activation, target=per_row)
    assert_allclose(G, fd_gradient(W, b, X, activation, "output", per_row), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("activation", ACTS)
def test_class_target_matches_numpy_reference(activation):
    W, b = random_net([6, 8, 5, 4], seed=3)
    X = np.random.default_rng(2).normal(size=(600, 6))         # several tiles and blocks
    for target in (3, np.int64(1), np.arange(600) % 4):
        assert_allclose(input_gradients(W, b, X, None, activation, target=target),
                        reference_input_gradients(W, b, X, None, activation, target=target),
                        rtol=1e-10, atol=1e-13)
    G32 = input_gradients(W, b, X.astype(np.float32), None, activation, target=3)
    ref = reference_input_gradients(W, b, X, None, activation, target=3)
    assert G32.dtype == np.float32
    assert_allclose(G32, ref, atol=1e-4 * np.abs(ref).max())
    # the predicted class as a target is target="output"
    m = np.argmax(mlp.forward(W, b, X, activation), axis=1)
    assert_array_equal(input_gradients(W, b, X, None, activation, target=m),
                       input_gradients(W, b, X, None, activation, target="output"))


def test_input_x_gradient_is_the_product():
    W, b = random_net([4, 5, 3], seed=0)
    X = np.random.default_rng(3).normal(size=(20, 4))
    y = np.arange(20) % 3
    for target in ("output", "logit", "loss", 1):
        assert_array_equal(input_x_gradient(W, b, X, y, "tanh", target=target),
                           X * input_gradients(W, b, X, y, "tanh", target=target))


# ---------------------------------------------------- integrated gradients
def test_hand_example_linear_logit():
    # no hidden layer: the logit a_m = W[m] x + b[m] is linear, its gradient W[m]
    # everywhere, so IG = (x - baseline) * W[m] exactly, for every rule, and delta = 0
    W, b = [np.array([[1.0, -2.0], [0.5, 3.0]])], [np.array([0.1, -0.2])]
    X = np.array([[2.0, 1.0], [-1.0, 1.0]])                   # logits (0.1, 3.8), (-2.9, 2.3): m = 1
    base = np.array([1.0, -1.0])
    for method in mlp.IG_METHODS:
        res = integrated_gradients(W, b, X, None, "relu", target="logit", baseline=base,
                                   n_steps=3, method=method)
        assert_allclose(res.attributions, [[0.5, 6.0], [-1.0, 6.0]], rtol=1e-14)
        assert_allclose(res.value, [3.8, 2.3], rtol=1e-14)
        assert_allclose(res.baseline_value, [-2.7, -2.7], rtol=1e-14)     # a_1 at the baseline
        assert_allclose(res.delta, 0.0, atol=1e-14)
        assert_array_equal(res.target_class, [1, 1])


@pytest.mark.parametrize("method", sorted(mlp.IG_METHODS))
@pytest.mark.parametrize("target", ["output", "logit", "loss", 2])
def test_integrated_gradients_match_numpy_reference(method, target):
    W, b = random_net([5, 7, 6, 3], seed=4)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 5))
    y = rng.integers(0, 3, 300)
    base = rng.normal(size=5)
    got = integrated_gradients(W, b, X, y, "sigmoid", target=target, baseline=base,
                               n_steps=7, method=method)
    want = reference_integrated_gradients(W, b, X, y, "sigmoid", target=target, baseline=base,
                                          n_steps=7, method=method)
    for g, w in zip(got, want):
        assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    # one baseline per row
    per_row = rng.normal(size=(300, 5))
    got = integrated_gradients(W, b, X, y, "sigmoid", target=target, baseline=per_row,
                               n_steps=4, method=method)
    want = reference_integrated_gradients(W, b, X, y, "sigmoid", target=target,
                                          baseline=per_row, n_steps=4, method=method)
    assert_allclose(got.attributions, want.attributions, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("target", ["output", "logit", "loss", 1])
def test_integrated_gradients_match_finite_differences(activation, target):
    # the same quadrature with every path gradient taken by central differences
    W, b = random_net([4, 6, 5, 3], seed=6)
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(9, 4)), rng.integers(0, 3, 9)
    base = np.full(4, 0.2)
    kind = target if isinstance(target, str) else "output"

    def fd(points, m):
        return fd_gradient(W, b, points, activation, kind, m, y)

    got = integrated_gradients(W, b, X, y, activation, target=target, baseline=base, n_steps=9)
    want = reference_integrated_gradients(W, b, X, y, activation, target=target, baseline=base,
                                          n_steps=9, gradient=fd)
    assert_allclose(got.attributions, want.attributions, rtol=1e-6, atol=1e-9)


def test_completeness_delta():
    W, b = random_net([4, 8, 3], seed=8)
    rng = np.random.default_rng(9)
    X = rng.normal(size=(50, 4))
    base = X.mean(axis=0)
    m = np.argmax(mlp.forward(W, b, X, "tanh"), axis=1)
    res = integrated_gradients(W, b, X, None, "tanh", baseline=base, n_steps=64)
    # the delta is what the sum misses of t(x) - t(b), t = o_m with m the class at x
    t_x = scalar(W, b, X, "tanh", "output", m)
    t_b = scalar(W, b, np.broadcast_to(base, X.shape), "tanh", "output", m)
    assert_allclose(res.value, t_x, rtol=1e-13)
    assert_allclose(res.baseline_value, t_b, rtol=1e-13)
    assert_allclose(res.delta, res.attributions.sum(axis=1) - (t_x - t_b), rtol=1e-12, atol=1e-15)
    assert_array_equal(res.target_class, m)
    assert np.abs(res.delta).max() < 1e-9                     # Gauss-Legendre, smooth path
    # a coarse rule misses more; more steps miss less
    coarse = integrated_gradients(W, b, X, None, "tanh", baseline=base, n_steps=4,
                                  method="riemann_middle")
    fine = integrated_gradients(W, b, X, None, "tanh", baseline=base, n_steps=64,
                                method="riemann_middle")
    assert np.abs(fine.delta).max() < np.abs(coarse.delta).max() / 20


@pytest.fixture
def restore_threads():
    n = numba.get_num_threads()
    yield
    numba.set_num_threads(n)


def test_integrated_gradients_do_not_depend_on_thread_count(restore_threads):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba was started with fewer than 2 threads")
    W, b = random_net([5, 6, 3], seed=10)
    X = np.random.default_rng(11).normal(size=(mlp.TILE * 3 + 17, 5))
    out = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        out.append(integrated_gradients(W, b, X, None, "relu", target=0, baseline=np.zeros(5),
                                        n_steps=5))
    for a, c in zip(*out):
        assert_array_equal(a, c)


# ----------------------------------------------------------------- estimator
def test_estimator_takes_labels_and_defaults_to_the_training_mean(tmp_path):
    rng = np.random.default_rng(12)
    labels = np.array(["high", "low", "mid"])
    X = rng.normal(size=(120, 4))
    y = labels[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    model = mlp.MLP(hidden=(6,), n_iter=40, lr=0.5).fit(X, y)
    assert_allclose(model.training_mean_, X.mean(axis=0), rtol=1e-15)
    W, b = model.weights_, model.biases_
    k = list(model.classes_).index("mid")
    assert_array_equal(model.input_gradients(X, target="mid"),
                       input_gradients(W, b, X, None, "relu", target=k))
    per_row = labels[np.arange(120) % 3]
    assert_array_equal(model.input_x_gradient(X, target=per_row),
                       input_x_gradient(W, b, X, None, "relu",
                                        target=np.searchsorted(model.classes_, per_row)))
    res = model.integrated_gradients(X, target="low", n_steps=8)
    want = integrated_gradients(W, b, X, None, "relu", target=int(np.flatnonzero(
        model.classes_ == "low")[0]), baseline=X.mean(axis=0), n_steps=8)
    for g, w in zip(res, want):
        assert_array_equal(g, w)
    fa = model.feature_attribution(X, y, target="mid", samples="all")
    assert_allclose(fa["scores"], np.abs(model.input_gradients(X, target="mid")).mean(axis=0))
    # the training mean is saved; a held-out validation fraction is not in it
    loaded = mlp.MLP.load(model.save(tmp_path / "m"))
    assert_array_equal(loaded.training_mean_, model.training_mean_)
    es = mlp.MLP(hidden=(6,), n_iter=5, early_stopping=True, validation_fraction=0.25).fit(X, y)
    train_rows, _ = es._validation_split(np.searchsorted(es.classes_, y))
    assert_allclose(es.training_mean_, X[train_rows].mean(axis=0), rtol=1e-15)


def test_bad_targets_and_settings_raise_with_a_hint():
    W, b = random_net([3, 4, 2], seed=0)
    X = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match=r"target class 2 \(row 0\) is outside 0..1"):
        input_gradients(W, b, X, None, "relu", target=2)
    with pytest.raises(ValueError, match=r"one int, or one per row of X: 5"):
        input_gradients(W, b, X, None, "relu", target=np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="target=True is not supported"):
        input_gradients(W, b, X, None, "relu", target=True)
    with pytest.raises(ValueError, match=r"target='bogus' is not supported.*or a class index 0..1"):
        input_gradients(W, b, X, None, "relu", target="bogus")
    with pytest.raises(ValueError, match="baseline is needed: pass the training mean"):
        integrated_gradients(W, b, X, None, "relu")
    with pytest.raises(ValueError, match=r"baseline has shape \(2,\); expected \(3,\)"):
        integrated_gradients(W, b, X, None, "relu", baseline=np.zeros(2))
    with pytest.raises(ValueError, match="baseline has NaN"):
        integrated_gradients(W, b, X, None, "relu", baseline=np.array([0, np.nan, 0]))
    with pytest.raises(ValueError, match="method='simpson' is not supported"):
        integrated_gradients(W, b, X, None, "relu", baseline=np.zeros(3), method="simpson")
    with pytest.raises(ValueError, match="n_steps=1 must be an integer >= 2 for "
                                         "method='riemann_trapezoid'"):
        integrated_gradients(W, b, X, None, "relu", baseline=np.zeros(3), n_steps=1,
                             method="riemann_trapezoid")
    with pytest.raises(ValueError, match="n_steps=0 must be an integer >= 1"):
        integrated_gradients(W, b, X, None, "relu", baseline=np.zeros(3), n_steps=0)
    model = mlp.MLP.from_weights(W, b, "relu", classes=["loss", "win"])
    with pytest.raises(ValueError, match="no training_mean_"):
        model.integrated_gradients(X)
    with pytest.raises(ValueError, match="'loss' is both an attribution quantity and a class label"):
        model.input_gradients(X, target="loss")
    with pytest.raises(ValueError, match=r"target='draw' is neither one of \['logit', 'loss', "
                                         r"'output'\] nor a class label"):
        model.input_gradients(X, target="draw")
    assert_array_equal(model.input_gradients(X, target=np.full(5, "loss", dtype=object)),
                       input_gradients(W, b, X, None, "relu", target=0))
