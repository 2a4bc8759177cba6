"""Part C: input gradients, feature attribution and its cross-checks.

Gradients are checked against central finite differences and against the NumPy
reference; the attribution against a synthetic dataset whose signal sits in
known columns. Kernel signatures used: float64 and float32 X only.
"""
import numba
import numpy as np
import pandas as pd
import pytest

import mlp
from numpy.testing import assert_allclose

from mlp import (compare_rankings, feature_attribution, input_gradients,
                         permutation_check, randomization_check, reference_input_gradients)

ACTS = ["relu", "sigmoid", "tanh"]
TARGETS = ["output", "logit", "loss"]


def random_net(sizes, seed):
    rng = np.random.default_rng(seed)
    W = [rng.normal(0, 1.5 / np.sqrt(i), (o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    b = [rng.normal(0, 0.3, o) for o in sizes[1:]]
    return W, b


def np_forward(W, b, X, activation):
    """Pre-activations of every hidden layer and the softmax output (float64)."""
    act = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
           "tanh": np.tanh}[activation]
    h, pre = np.asarray(X, dtype=np.float64), []
    for l, (Wl, bl) in enumerate(zip(W, b)):
        z = h @ Wl.T + bl
        if l < len(W) - 1:
            pre.append(z)
            h = act(z)
    o = np.exp(z - z.max(axis=1, keepdims=True))
    return pre, z, o / o.sum(axis=1, keepdims=True)


def scalar_target(W, b, x, y, activation, target, m):
    _, z, o = np_forward(W, b, x[None, :], activation)
    if target == "output":
        return o[0, m]
    if target == "logit":
        return z[0, m]
    return -np.log(o[0, y])


# ----------------------------------------------------------- gradient checks
@pytest.mark.parametrize("hidden", [[5], [5, 4], [5, 4, 6]])
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("target", TARGETS)
def test_matches_central_finite_differences(hidden, activation, target):
    sizes = [4] + hidden + [3]
    W, b = random_net(sizes, seed=len(hidden))
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, 4))
    y = rng.integers(0, 3, 6)
    pre, _, o = np_forward(W, b, X, activation)
    # the finite differences must not cross a relu kink: keep pre-activations away from 0
    assert min(np.abs(z).min() for z in pre) > 1e-4
    m = np.argmax(o, axis=1)
    G = input_gradients(W, b, X, y, activation, target)
    eps = 1e-6
    G_fd = np.empty_like(X)
    for s in range(X.shape[0]):
        for i in range(X.shape[1]):
            e = np.zeros(X.shape[1])
            e[i] = eps
            G_fd[s, i] = (scalar_target(W, b, X[s] + e, y[s], activation, target, m[s])
                          - scalar_target(W, b, X[s] - e, y[s], activation, target, m[s])) / (2 * eps)
    assert_allclose(G, G_fd, rtol=1e-5, atol=1e-8)


def test_hand_example_softmax_regression():
    # no hidden layer, W = I, b = 0, x = 0: o = (1/2, 1/2), m = 0 (first of a tie), y = 1
    W, b = [np.eye(2)], [np.zeros(2)]
    X, y = np.zeros((1, 2)), np.array([1])
    # dL/dx = W^T (o - onehot(y)) = (1/2, -1/2)
    assert_allclose(input_gradients(W, b, X, y, "relu", "loss"), [[0.5, -0.5]])
    # d o_0 / dx = W^T o_0 (e_0 - o) = 1/2 (1/2, -1/2)
    assert_allclose(input_gradients(W, b, X, None, "relu", "output"), [[0.25, -0.25]])
    # d a_0 / dx = row 0 of W
    assert_allclose(input_gradients(W, b, X, None, "relu", "logit"), [[1.0, 0.0]])


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("target", TARGETS)
def test_kernel_matches_numpy_reference(activation, target):
    W, b = random_net([7, 9, 8, 4], seed=3)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(600, 7))          # > 2 parallel blocks, ragged last block
    y = rng.integers(0, 4, 600)
    R = reference_input_gradients(W, b, X, y, activation, target)
    assert_allclose(input_gradients(W, b, X, y, activation, target), R, rtol=1e-10, atol=1e-13)
    # float32: single-precision accumulation; documented tolerance 1e-4 of the largest entry
    G32 = input_gradients(W, b, X.astype(np.float32), y, activation, target)
    assert G32.dtype == np.float32
    assert_allclose(G32, R, rtol=0, atol=1e-4 * np.abs(R).max())


def test_result_does_not_depend_on_thread_count():
    W, b = random_net([5, 8, 3], seed=4)
    X = np.random.default_rng(5).normal(size=(700, 5))
    G_all = input_gradients(W, b, X, None, "tanh", "output")
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        G_one = input_gradients(W, b, X, None, "tanh", "output")
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(G_all, G_one)


# ------------------------------------------------------------- attribution
@pytest.fixture(scope="module")
def trained():
    """Small sklearn MLP on data whose class depends on columns 0 and 2 only."""
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    y = np.digitize(X[:, 0] + 0.7 * X[:, 2], [-0.8, 0.8])       # 3 classes
    clf = MLPClassifier(hidden_layer_sizes=(16, 16), activation="relu", solver="lbfgs",
                        max_iter=300, random_state=0).fit(X, y)
    W = [c.T for c in clf.coefs_]                                # sklearn stores (fan_in, fan_out)
    return clf, W, list(clf.intercepts_), X, y


def test_sklearn_net_matches_our_convention(trained):
    clf, W, b, X, _ = trained
    assert_allclose(np_forward(W, b, X, "relu")[2], clf.predict_proba(X), rtol=1e-8, atol=1e-12)
    assert clf.score(X, y=trained[4]) > 0.9


@pytest.mark.parametrize("target", TARGETS)
def test_signal_columns_rank_first(trained, target):
    _, W, b, X, y = trained
    res = feature_attribution(W, b, X, y, "relu", target=target)
    assert set(res["table"]["feature"][:2]) == {"x0", "x2"}
    assert res["table"]["rank"].tolist() == list(range(1, 7))
    assert res["table"]["score"].is_monotonic_decreasing
    assert_allclose(res["table"]["share"].sum(), 1.0)
    pred = np.argmax(np_forward(W, b, X, "relu")[2], axis=1)
    assert np.array_equal(res["mask"], pred == y)
    assert res["n_samples"] == int((pred == y).sum()) and res["n_total"] == 600


def test_scores_are_mean_abs_gradient_and_gradient_times_input(trained):
    _, W, b, X, y = trained
    G = input_gradients(W, b, X, y, "relu", "output")
    res = feature_attribution(W, b, X, y, "relu", samples="all")
    assert_allclose(res["scores"], np.abs(G).mean(axis=0))
    res = feature_attribution(W, b, X, y, "relu", samples="correct", times_input=True)
    mask = res["mask"]
    assert_allclose(res["scores"], np.abs(G[mask] * X[mask]).mean(axis=0))


@pytest.mark.parametrize("target", ["output", "logit", "loss", 1])
@pytest.mark.parametrize("times_input", [False, True])
def test_row_chunks_change_nothing_but_the_order_of_the_sum(trained, monkeypatch, target, times_input):
    """feature_attribution works in ATTRIBUTION_CHUNK-row pieces (memory bounded whatever
    the rows): 7-row chunks (600 rows: 86 of them, the last short) give the one-call result."""
    _, W, b, X, y = trained
    one = feature_attribution(W, b, X, y, "relu", target=target, times_input=times_input)
    monkeypatch.setattr(mlp, "ATTRIBUTION_CHUNK", 7)
    chunked = feature_attribution(W, b, X, y, "relu", target=target, times_input=times_input)
    assert np.array_equal(chunked["mask"], one["mask"])
    assert chunked["n_samples"] == one["n_samples"]
    assert_allclose(chunked["scores"], one["scores"], rtol=1e-12)
    assert chunked["table"]["feature"].tolist() == one["table"]["feature"].tolist()
    G = input_gradients(W, b, X, y, "relu", target)
    used = np.abs(G[one["mask"]] * (X[one["mask"]] if times_input else 1)).mean(axis=0)
    assert_allclose(chunked["scores"], used, rtol=1e-12)


def test_by_source_sums_one_hot_groups(trained):
    _, W, b, X, y = trained
    names = ["num", "cat=a", "cat=b", "cat=c", "other", "last"]
    source = ["num", "cat", "cat", "cat", "other", "last"]
    res = feature_attribution(W, b, X, y, "relu", feature_names=names, feature_source=source)
    by = res["by_source"].set_index("feature")
    assert_allclose(by.loc["cat", "score"], res["scores"][1:4].sum())
    assert by.loc["cat", "n_columns"] == 3
    assert_allclose(by.loc["num", "score"], res["scores"][0])
    assert sorted(by.index) == ["cat", "last", "num", "other"]
    assert res["by_source"]["rank"].tolist() == [1, 2, 3, 4]
    assert_allclose(res["by_source"]["share"].sum(), 1.0)


# ------------------------------------------------------------ cross-checks
def test_permutation_check_agrees_with_attribution(trained):
    clf, W, b, X, y = trained
    names = [f"x{i}" for i in range(6)]
    source = ["x0", "g", "x2", "g", "x4", "x5"]
    attr = feature_attribution(W, b, X, y, "relu", feature_names=names, feature_source=source)
    res = permutation_check(clf, X, y, attr, names, feature_source=source, n_repeats=3)
    assert list(res["encoded"].columns[:5]) == ["feature", "source", "attribution",
                                                "perm_mean", "perm_std"]
    assert len(res["encoded"]) == 6 and len(res["original"]) == 5
    top = res["encoded"].sort_values("perm_mean", ascending=False)["feature"][:2]
    assert set(top) == {"x0", "x2"}
    assert res["spearman_encoded"] > 0.3
    assert -1 <= res["spearman_original"] <= 1
    assert res["baseline_score"] == pytest.approx(clf.score(X, y))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_permutation_check_of_our_network_is_its_score_to_the_bit(monkeypatch, dtype):
    """For an MLP, permutation_check checks X once and scores the shuffled copies without
    scikit-learn's per-call checks (a wide file made thousands of calls, 2.6x slower); every
    number is the one of the estimator's own score, which a stand-in that is no MLP uses."""
    import mlp

    class Scored:                  # not an MLP: permutation_check calls its score
        def __init__(self, model):
            self.model = model

        def fit(self, X, y):
            return self

        def predict(self, X):
            return self.model.predict(X)

        def score(self, X, y):
            return self.model.score(X, y)

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 5))
    y = np.array(["lo", "mid", "hi"])[np.digitize(X[:, 0] + 0.5 * X[:, 3], [-0.6, 0.6])]
    model = mlp.MLP(hidden=(8,), n_iter=40, lr=0.5, seed=2, dtype=dtype).fit(X, y)
    names, source = [f"x{i}" for i in range(5)], ["x0", "g", "x2", "g", "x4"]
    attr = rng.random(5)
    checks = []
    check = mlp.MLP._check_X
    monkeypatch.setattr(mlp.MLP, "_check_X", lambda self, *a, **k: checks.append(1) or check(self, *a, **k))
    fast = permutation_check(model, X, y, attr, names, source, n_repeats=3, seed=4)
    assert len(checks) == 1
    slow = permutation_check(Scored(model), X, y, attr, names, source, n_repeats=3, seed=4)
    assert len(checks) > 20
    for key in ("encoded", "original"):
        pd.testing.assert_frame_equal(fast[key], slow[key], check_exact=True)
    for key in ("spearman_encoded", "spearman_original", "baseline_score"):
        assert fast[key] == slow[key]
    assert fast["baseline_score"] == model.score(X, y)


def test_compare_rankings_flags_identical_models():
    s = np.array([0.5, 0.1, 0.3, 0.2])
    same = compare_rankings(s, s.copy())
    assert same["spearman"] == pytest.approx(1.0) and not same["passed"]
    assert compare_rankings(s, -s)["passed"]


def test_randomization_check(trained):
    _, W, b, X, y = trained
    res = randomization_check(W, b, X, y, "relu", seed=0)
    assert res["trained_scores"].shape == res["random_scores"].shape == (6,)
    assert res["passed"] == (res["spearman"] < 0.5)
    # feeding the trained network twice is the failure the check exists to catch
    assert not compare_rankings(res["trained_scores"], res["trained_scores"])["passed"]


# -------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_with_a_hint():
    W, b = random_net([3, 4, 2], seed=0)
    X, y = np.zeros((5, 3)), np.zeros(5, dtype=int)
    with pytest.raises(ValueError, match="target='bogus' is not supported"):
        input_gradients(W, b, X, y, "relu", "bogus")
    with pytest.raises(ValueError, match="target='loss' needs the true labels"):
        input_gradients(W, b, X, None, "relu", "loss")
    with pytest.raises(ValueError, match="activation='gelu' is not supported"):
        input_gradients(W, b, X, y, "gelu")
    with pytest.raises(ValueError, match="X has 4 columns but the network expects 3"):
        input_gradients(W, b, np.zeros((5, 4)), y, "relu")
    with pytest.raises(ValueError, match="must be 2-D"):
        input_gradients(W, b, np.zeros(3), None, "relu")
    X_nan = X.copy()
    X_nan[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or Inf in 1 rows \(e.g. rows \[2\]\); impute"):
        input_gradients(W, b, X_nan, y, "relu")
    with pytest.raises(ValueError, match="labels outside 0..1"):
        input_gradients(W, b, X, np.full(5, 2), "relu", "loss")
    with pytest.raises(ValueError, match="one label per row"):
        input_gradients(W, b, X, np.zeros(4, dtype=int), "relu", "loss")
    with pytest.raises(ValueError, match="not supported; use 'float64' or 'float32'"):
        input_gradients(W, b, X, y, "relu", dtype="float16")
    W_bad = [W[0].copy(), W[1]]
    W_bad[0][0, 0] = np.inf
    with pytest.raises(ValueError, match="weights or biases contain NaN or Inf"):
        input_gradients(W_bad, b, X, y, "relu")
    with pytest.raises(ValueError, match="samples='correct' needs the true labels"):
        feature_attribution(W, b, X, None, "relu")
    with pytest.raises(ValueError, match="samples='some' is not supported"):
        feature_attribution(W, b, X, y, "relu", samples="some")
    with pytest.raises(ValueError, match="feature_names has 2 entries but X has 3 columns"):
        feature_attribution(W, b, X, y, "relu", samples="all", feature_names=["a", "b"])
    with pytest.raises(ValueError, match="feature_source has 1 entries"):
        feature_attribution(W, b, X, y, "relu", samples="all", feature_source=["a"])
    with pytest.raises(ValueError, match="equal length"):
        compare_rankings([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"attribution_scores has shape \(2,\); expected \(3,\)"):
        permutation_check(None, X, y, [1.0, 2.0], ["a", "b", "c"])


def test_estimator_methods_delegate_to_module_functions():
    rng = np.random.default_rng(7)
    W = [rng.normal(size=(5, 4)), rng.normal(size=(3, 5))]
    b = [rng.normal(size=5), rng.normal(size=3)]
    X = rng.normal(size=(40, 4))
    labels = np.array(["a", "b", "c"])
    model = mlp.MLP.from_weights(W, b, "tanh", classes=labels)
    y_idx = rng.integers(0, 3, size=40)
    np.testing.assert_array_equal(model.input_gradients(X, labels[y_idx], target="loss"),
                                  input_gradients(W, b, X, y_idx, "tanh", target="loss"))
    got = model.feature_attribution(X, labels[y_idx], samples="all")
    want = feature_attribution(W, b, X, y_idx, "tanh", samples="all")
    np.testing.assert_array_equal(got["scores"], want["scores"])
    with pytest.raises(ValueError, match="not one of the training classes"):
        model.input_gradients(X, np.full(40, "z"), target="loss")


@pytest.mark.parametrize("samples", ["all", "correct"])
def test_where_averages_over_the_chosen_rows_without_a_copy(trained, monkeypatch, samples):
    """feature_attribution(where=m) gives the scores of X[m] (the randomisation check
    uses it instead of copying the correctly classified rows), in pieces too."""
    _, W, b, X, y = trained
    m = np.random.default_rng(1).random(len(y)) < 0.4
    ref = feature_attribution(W, b, X[m], y[m], "relu", samples=samples)
    got = feature_attribution(W, b, X, y, "relu", samples=samples, where=m)
    assert_allclose(got["scores"], ref["scores"], rtol=1e-12)
    assert np.array_equal(got["mask"][m], ref["mask"]) and not got["mask"][~m].any()
    monkeypatch.setattr(mlp, "ATTRIBUTION_CHUNK", 11)
    assert_allclose(feature_attribution(W, b, X, y, "relu", samples=samples, where=m)["scores"],
                    ref["scores"], rtol=1e-12)
    with pytest.raises(ValueError, match="one entry per row"):
        feature_attribution(W, b, X, y, "relu", where=m[:-1])
    with pytest.raises(ValueError, match="selects no row"):
        feature_attribution(W, b, X, y, "relu", samples="all", where=np.zeros(len(y), bool))
