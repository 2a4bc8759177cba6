"""Tests of the network core in mlp.py: kernels against finite differences and
the NumPy reference, thread-count determinism, and the MLP estimator.

All data is tiny and made here. float32 tolerance: kernels accumulate in
float32 per tile (the loss in float64), so float32 results are compared to the
float64 reference with rtol 1e-4 relative to the largest entry of each array.
"""
import json
import os
import re

import numba
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sklearn.exceptions import NotFittedError

import kernels
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


def make_blobs(n=120, d=4, K=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    centers = rng.normal(0, 2.0, size=(K, d))
    return centers[y] + rng.normal(size=(n, d)), y


# ------------------------------------------------------------ hand example
def test_hand_example():
    # x = 1, one ReLU unit h = relu(2*1 + 0.5) = 2.5, logits z = (2.5, -2.5), y = 0
    Ws = [np.array([[2.0]]), np.array([[1.0], [-1.0]])]
    bs = [np.array([0.5]), np.array([0.0, 0.0])]
    loss, dW, db = mlp.loss_and_grads(Ws, bs, np.array([[1.0]]), np.array([0]), "relu")
    p1 = 0.0066928509242848554               # softmax(z)[1] = 1 / (1 + e^5)
    assert loss == pytest.approx(0.006715348489117967, rel=1e-12)    # log(1 + e^-5)
    assert_allclose(db[1], [-p1, p1], rtol=1e-12)                    # P - Y
    assert_allclose(dW[1], [[-2.5 * p1], [2.5 * p1]], rtol=1e-12)     # (P - Y) h
    assert_allclose(db[0], [-2 * p1], rtol=1e-12)                    # W2^T (P - Y) * relu'
    assert_allclose(dW[0], [[-2 * p1]], rtol=1e-12)                  # ... * x
    P = mlp.forward(Ws, bs, np.array([[1.0]]), "relu")
    assert_allclose(P, [[1 - p1, p1]], rtol=1e-12)


# --------------------------------------------------- finite differences
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("hidden", [(5,), (5, 3), (5, 3, 4)])
@pytest.mark.parametrize("l2, weighted", [(0.0, False), (0.3, True)])
def test_gradient_matches_finite_differences(activation, hidden, l2, weighted):
    sizes = [4, *hidden, 3]
    Ws, bs = make_net(sizes)
    X, y = make_data(7, 4, 3)
    sw = np.random.default_rng(2).uniform(0.2, 2.0, 7) if weighted else None
    loss, dW, db = mlp.loss_and_grads(Ws, bs, X, y, activation, l2=l2, sample_weight=sw)
    theta, sz = mlp.pack(Ws, bs)
    code = mlp.activation_code(activation)
    w = np.ones(7) if sw is None else sw
    eps = 1e-6
    fd = np.empty_like(theta)
    for p in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        tp[p] += eps
        tm[p] -= eps
        lp = mlp._run_loss_and_grad(tp, sz, code, X, y, w, l2)[0]
        lm = mlp._run_loss_and_grad(tm, sz, code, X, y, w, l2)[0]
        fd[p] = (lp - lm) / (2 * eps)
    grad, _ = mlp.pack(dW, db)
    assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)
    assert loss == pytest.approx(mlp._run_loss_and_grad(theta, sz, code, X, y, w, l2)[0])


# ------------------------------------------------------ kernel vs reference
# n = 1 (less than a tile), 7, exactly one tile, not a multiple of the tile,
# and enough rows for MAX_BLOCKS blocks of several tiles each.
NS = [1, 7, mlp.TILE, mlp.TILE + 45, mlp.TILE * mlp.MAX_BLOCKS * 2 + 37]


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("activation", ACTS)
def test_kernels_match_reference_float64(n, activation):
    sizes = [5, 6, 4, 3]
    Ws, bs = make_net(sizes, seed=n)
    X, y = make_data(n, 5, 3, seed=n)
    sw = np.random.default_rng(n).uniform(0, 2, n) + 0.01
    loss, dW, db, correct = mlp.loss_and_grads(Ws, bs, X, y, activation, l2=0.05,
                                               sample_weight=sw, return_n_correct=True)
    rloss, rdW, rdb = mlp.reference_loss_and_grads(Ws, bs, X, y, activation, l2=0.05,
                                                   sample_weight=sw)
    assert loss == pytest.approx(rloss, rel=1e-10)
    for a, b in zip(dW + db, rdW + rdb):
        assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.abs(b).max())
    P = mlp.forward(Ws, bs, X, activation)
    assert_allclose(P, mlp.reference_forward(Ws, bs, X, activation), rtol=1e-10, atol=1e-15)
    assert correct == np.sum(np.argmax(P, axis=1) == y)


@pytest.mark.parametrize("n", [7, mlp.TILE + 45, mlp.TILE * mlp.MAX_BLOCKS * 2 + 37])
def test_kernels_match_reference_float32(n):
    sizes = [5, 6, 4, 3]
    Ws, bs = make_net(sizes, seed=n)
    X, y = make_data(n, 5, 3, seed=n)
    W32 = [W.astype(np.float32) for W in Ws]
    b32 = [b.astype(np.float32) for b in bs]
    loss, dW, db = mlp.loss_and_grads(W32, b32, X, y, "tanh", l2=0.05)
    assert all(g.dtype == np.float32 for g in dW + db)
    # reference evaluated at the float32-rounded parameters and inputs
    X32 = X.astype(np.float32).astype(np.float64)
    rloss, rdW, rdb = mlp.reference_loss_and_grads(
        [W.astype(np.float64) for W in W32], [b.astype(np.float64) for b in b32],
        X32, y, "tanh", l2=0.05)
    assert loss == pytest.approx(rloss, rel=1e-5)
    for a, b in zip(dW + db, rdW + rdb):
        assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    P = mlp.forward(W32, b32, X, "tanh")
    assert P.dtype == np.float32
    assert_allclose(P, mlp.reference_forward(Ws, bs, X32, "tanh"), atol=1e-5)


def test_extreme_logits_are_stable():
    Ws, bs = make_net([3, 4, 2])
    Ws[-1] = Ws[-1] * 1e4                  # logits of order 1e4: naive exp overflows
    X, y = make_data(20, 3, 2)
    loss, dW, db = mlp.loss_and_grads(Ws, bs, X, y, "sigmoid")
    rloss, rdW, _ = mlp.reference_loss_and_grads(Ws, bs, X, y, "sigmoid")
    assert np.isfinite(loss) and loss == pytest.approx(rloss, rel=1e-10)
    assert_allclose(dW[0], rdW[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_vectorised_activations_are_accurate_to_a_few_ulp(activation):
    # _bias_act uses polynomial exp (not libm): check it against SciPy / NumPy
    # from tiny arguments (tanh cancellation) to saturation, plus inf and NaN
    from scipy.special import expit
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(size=2000) * s for s in [1e-12, 1e-4, 0.1, 1, 5, 30, 300, 1e4]]
                       + [[0.0, -0.0, 708.0, -708.0, -745.0, -746.0, 1e308, -1e308]])
    ref = expit(z) if activation == "sigmoid" else np.tanh(z)
    Z = z.reshape(-1, 8).copy()
    kernels._bias_act(Z, np.zeros(8), mlp.ACTIVATIONS[activation])
    got = Z.ravel()
    assert_allclose(got, ref, rtol=5e-16, atol=1e-300)
    assert np.all(np.abs(got) <= 1)
    inf = np.array([[np.inf, -np.inf, np.nan]])
    kernels._bias_act(inf, np.zeros(3), mlp.ACTIVATIONS[activation])
    assert_array_equal(inf[0, :2], [1.0, 0.0] if activation == "sigmoid" else [1.0, -1.0])
    assert np.isnan(inf[0, 2])
    # float32 tiles: evaluated in float64, rounded once
    Z32 = z[np.abs(z) < 1e30].astype(np.float32).reshape(-1, 1)
    ref32 = (expit if activation == "sigmoid" else np.tanh)(Z32.astype(np.float64))
    kernels._bias_act(Z32, np.zeros(1, np.float32), mlp.ACTIVATIONS[activation])
    assert_allclose(Z32, ref32, rtol=6e-8, atol=1e-37)


def test_float32_sigmoid_is_correctly_rounded():
    # float32 tiles use a shorter polynomial (_sigmoid_for_float32); it must still
    # give the float32 rounding of the exact value, not merely be close to it
    from scipy.special import expit
    rng = np.random.default_rng(7)
    z = np.concatenate([rng.normal(size=40000) * s for s in [1e-6, 0.01, 0.3, 1, 3, 10, 30, 90]]
                       ).astype(np.float32)
    Z = z.reshape(-1, 8).copy()
    kernels._bias_act(Z, np.zeros(8, np.float32), mlp.ACTIVATIONS["sigmoid"])
    assert_array_equal(Z.ravel(), expit(z.astype(np.float64)).astype(np.float32))


# --------------------------------------------------------- determinism
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
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        loss, dW, db = mlp.loss_and_grads(Ws, bs, X, y, "relu", l2=0.1)
        Xb, yb = make_blobs(n=700, d=4, K=3)
        m = mlp.MLP(hidden=(6, 5), n_iter=15, lr=0.3).fit(Xb[:500], yb[:500], Xb[500:], yb[500:])
        results.append((loss, dW + db, m))
    (l1, g1, m1), (l2, g2, m2) = results
    assert l1 == l2
    for a, b in zip(g1, g2):
        assert_array_equal(a, b)
    for k in m1.history_:
        assert_array_equal(m1.history_[k], m2.history_[k])
    for a, b in zip(m1.weights_ + m1.biases_, m2.weights_ + m2.biases_):
        assert_array_equal(a, b)


# -------------------------------------------------------------- estimator
def test_fit_learns_and_records_history():
    X, y = make_blobs()
    calls = []
    m = mlp.MLP(hidden=(8, 6), n_iter=60, lr=0.5).fit(
        X[:90], y[:90], X[90:], y[90:], progress=lambda t, l, v: calls.append((t, l, v)))
    h = m.history_
    assert [len(h[k]) for k in ("loss", "val_loss", "train_acc", "val_acc")] == [60] * 4
    assert h["grad_abs_mean"].shape == (60, 3)
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    assert m.score(X[90:], y[90:]) > 0.8
    assert [c[0] for c in calls] == list(range(60))
    assert calls[5][1] == h["loss"][5] and calls[5][2] == h["val_loss"][5]
    # entry t is at the parameters before step t: history[0] is the initial network
    m0 = mlp.MLP(hidden=(8, 6), n_iter=1, lr=0.5).fit(X[:90], y[:90])
    W0 = mlp.MLP(hidden=(8, 6))._init_params([4, 8, 6, 3], np.float64)
    loss0, dW, _ = mlp.loss_and_grads(*mlp.unpack(*W0), X[:90], y[:90], "relu")
    assert h["loss"][0] == loss0 == m0.history_["loss"][0]
    assert_allclose(h["grad_abs_mean"][0], [np.mean(np.abs(g)) for g in dW])
    assert m.n_iter_ == 60 and m.best_iter_ is None


def test_arbitrary_labels_and_float32():
    X, y = make_blobs(K=2)
    labels = np.array(["no", "yes"])[y]
    m = mlp.MLP(hidden=(5,), n_iter=40, lr=0.5, dtype="float32").fit(X, labels)
    assert m.weights_[0].dtype == np.float32
    assert_array_equal(m.classes_, ["no", "yes"])
    assert set(m.predict(X)) <= {"no", "yes"}
    assert m.score(X, labels) > 0.8
    assert m.predict_proba(X).shape == (len(X), 2)


def test_from_weights_matches_forward():
    Ws, bs = make_net([4, 5, 3])
    X, _ = make_data(9, 4, 3)
    m = mlp.MLP.from_weights(Ws, bs, "tanh", classes=["a", "b", "c"])
    assert_allclose(m.predict_proba(X), mlp.reference_forward(Ws, bs, X, "tanh"), rtol=1e-12)
    assert m.n_features_in_ == 4 and m.hidden == (5,)


def test_sklearn_clone_cross_val_pipeline():
    from sklearn.base import clone, is_classifier
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = make_blobs(n=90)
    m = mlp.MLP(hidden=(6,), n_iter=30, lr=0.5, class_weight={0: 2.0})
    c = clone(m)
    assert c.get_params() == m.get_params() and not hasattr(c, "weights_")
    assert is_classifier(m)
    scores = cross_val_score(m, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.6
    pipe = make_pipeline(StandardScaler(), mlp.MLP(hidden=(6,), n_iter=30, lr=0.5))
    assert pipe.fit(X, y).score(X, y) > 0.6


def test_save_load_round_trip(tmp_path):
    X, y = make_blobs()
    labels = np.array(["lo", "mid", "hi"])[y]
    m = mlp.MLP(hidden=(6, 4), n_iter=20, lr=0.3, activation="sigmoid",
                class_weight={"hi": 2.0}, l2=0.01).fit(X[:90], labels[:90], X[90:], labels[90:])
    path = tmp_path / "model.npz"
    assert m.save(path) == path
    r = mlp.MLP.load(path)
    assert r.get_params() == m.get_params()
    assert_array_equal(r.classes_, m.classes_)
    assert_array_equal(r.predict_proba(X), m.predict_proba(X))
    for k in m.history_:
        assert_array_equal(r.history_[k], m.history_[k])
    assert r.n_iter_ == 20 and r.best_iter_ is None and r.best_val_iter_ == m.best_val_iter_


def test_save_load_accept_the_same_path_with_or_without_suffix(tmp_path):
    X, y = make_blobs(n=40)
    m = mlp.MLP(hidden=(3,), n_iter=3)
    m.fit(X, y)
    written = m.save(tmp_path / "m")
    assert written == tmp_path / "m.npz" and written.is_file()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.npz"]     # no temporary left
    for given in (tmp_path / "m", str(tmp_path / "m"), tmp_path / "m.npz"):
        assert_array_equal(mlp.MLP.load(given).weights_[0], m.weights_[0])
    with pytest.raises(FileNotFoundError, match=r"no model file .*other\.npz"):
        mlp.MLP.load(tmp_path / "other")


@pytest.mark.parametrize("labels", [
    np.array([3, 7, 9]), np.array([-2, 0, 5], dtype=np.int32), np.array([1.0, 2.0, 4.0]),
    np.array(["lo", "mid", "hi"]), np.array(["lo", "mid", "hi"], dtype=object),
    np.array([False, True, True])], ids=["int64", "int32", "float", "str", "object-str", "bool"])
def test_save_load_keeps_label_values_and_type(tmp_path, labels):
    X, y = make_blobs(n=60)
    y_lab = labels[y]
    key = y_lab[0].item() if isinstance(y_lab[0], np.generic) else y_lab[0]   # a Python label
    m = mlp.MLP(hidden=(4,), n_iter=5, class_weight={key: 2.0}).fit(X, y_lab)
    r = mlp.MLP.load(m.save(tmp_path / "m"))
    assert r.classes_.dtype == m.classes_.dtype
    assert_array_equal(r.classes_, m.classes_)
    assert [type(v) for v in r.classes_] == [type(v) for v in m.classes_]
    assert_array_equal(r.predict(X), m.predict(X))
    assert r.predict(X).dtype == m.predict(X).dtype
    assert r.get_params() == m.get_params()
    assert [type(k) for k in r.class_weight] == [type(k) for k in m.class_weight]


def test_save_load_object_labels_keep_python_types(tmp_path):
    # object arrays (e.g. from from_weights or a pandas column) come back as objects
    # of the same Python types: 1 stays int 1, not the string '1'
    Ws, bs = make_net([4, 3, 3])
    classes = np.array([1, "two", True], dtype=object)
    m = mlp.MLP.from_weights(Ws, bs, "tanh", classes=classes)
    r = mlp.MLP.load(m.save(tmp_path / "m"))
    assert r.classes_.dtype == object
    assert [(type(v), v) for v in r.classes_] == [(int, 1), (str, "two"), (bool, True)]
    assert not hasattr(r, "history_") and r.n_features_in_ == 4


def test_save_load_keeps_feature_names(tmp_path):
    X, y = make_blobs(n=40)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    m = mlp.MLP(hidden=(3,), n_iter=3).fit(frame, y)
    r = mlp.MLP.load(m.save(tmp_path / "m"))
    assert_array_equal(r.feature_names_in_, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="feature names"):
        r.predict(frame.rename(columns={"a": "z"}))


class _Trap:
    """Records it was unpickled: loading must never get that far."""
    hits = []

    def __reduce__(self):
        return (_Trap.hits.append, ("unpickled",))


def _corrupt_files(tmp_path):
    X, y = make_blobs(n=40)
    good = mlp.MLP(hidden=(3,), n_iter=3).fit(X, y).save(tmp_path / "good")
    raw = good.read_bytes()
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))

    def npz(name, **a):
        np.savez(tmp_path / name, **a)
        return tmp_path / f"{name}.npz", name

    files = [(tmp_path / "text.npz", "not an .npz"), (tmp_path / "half.npz", "truncated or damaged")]
    files[0][0].write_text("a,b\n1,2\n")
    files[1][0].write_bytes(raw[: len(raw) // 2])
    files.append((npz("foreign", x=np.arange(3))[0], "no 'meta' entry"))
    files.append((npz("pickled", meta=np.array([_Trap()], dtype=object))[0], "allow_pickle"))
    files.append((npz("not_json", **{**arrays, "meta": np.array("{oops")})[0], "not valid JSON"))
    files.append((npz("other_format", **{**arrays, "meta": np.array(json.dumps(
        {**meta, "format": "sklearn"}))})[0], "not mlp.MLP metadata"))
    files.append((npz("newer", **{**arrays, "meta": np.array(json.dumps(
        {**meta, "version": 99}))})[0], "version 99"))
    files.append((npz("no_W1", **{k: v for k, v in arrays.items() if k != "W1"})[0], "W1"))
    files.append((npz("shapes", **{**arrays, "W0": arrays["W0"][:, :2]})[0], "weights"))
    files.append((npz("width", **{**arrays, "meta": np.array(json.dumps(
        {**meta, "n_features_in": 7}))})[0], r"layer sizes \[4, 3, 3\].*\[7, 3, 3\]"))
    files.append((npz("nan", **{**arrays, "b0": np.full_like(arrays["b0"], np.nan)})[0],
                  "NaN or Inf"))
    files.append((npz("bad_param", **{**arrays, "meta": np.array(json.dumps(
        {**meta, "params": {**meta["params"], "lr": -1}}))})[0], "lr=-1"))
    return files


def test_load_refuses_foreign_or_corrupt_files_with_one_error(tmp_path):
    _Trap.hits.clear()
    files = _corrupt_files(tmp_path)
    for path, reason in files:
        with pytest.raises(ValueError, match="cannot load") as info:
            mlp.MLP.load(path)
        msg = str(info.value)
        assert str(path) in msg and "\n" not in msg and "MLP.save" in msg, msg
        if reason:
            assert re.search(reason, msg), (reason, msg)
    assert _Trap.hits == []                   # nothing was unpickled


@pytest.mark.parametrize("param, value, match", [
    ("hidden", (), "hidden=()"),
    ("hidden", (4, 0), r"hidden=\(4, 0\)"),
    ("activation", "softplus", "activation='softplus'"),
    ("lr", 0.0, "lr=0.0"),
    ("lr", float("nan"), "lr=nan"),
    ("n_iter", 0, "n_iter=0"),
    ("n_iter", 2.5, "n_iter=2.5"),
    ("init", "xavier", "init='xavier'"),
    ("init_scale", -1.0, "init_scale=-1.0"),
    ("seed", -3, "seed=-3"),
    ("dtype", "float16", "dtype='float16'"),
    ("l2", -0.1, "l2=-0.1"),
    ("class_weight", "auto", "class_weight='auto'"),
    ("class_weight", {0: -1.0}, "class_weight="),
    ("class_weight", {7: 1.0}, "label 7"),
    ("early_stopping", "yes", "early_stopping='yes'"),
    ("patience", 0, "patience=0"),
])
def test_bad_constructor_arguments(param, value, match):
    X, y = make_blobs(n=30)
    with pytest.raises(ValueError, match=match):
        mlp.MLP(**{"n_iter": 2, param: value}).fit(X, y)


def test_bad_data_rejected():
    X, y = make_blobs(n=30)
    m = mlp.MLP(hidden=(3,), n_iter=2)
    Xnan = X.copy()
    Xnan[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"X has NaN.*\(3, 1\)"):
        m.fit(Xnan, y)
    with pytest.raises(ValueError, match=r"X must be 2-D.*Reshape your data: X.reshape\(-1, 1\)"):
        m.fit(X[:, 0], y)
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[30, 29\]"):
        m.fit(X, y[:-1])
    with pytest.raises(ValueError, match="only one class"):
        m.fit(X, np.zeros(30))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        m.fit(X, X[:, 0])
    with pytest.raises(ValueError, match="requires y to be passed"):
        m.fit(X, None)
    with pytest.raises(ValueError, match="Input y contains NaN"):
        m.fit(X, np.where(np.arange(30) == 4, np.nan, y))
    with pytest.raises(ValueError, match=r"X must be numeric: could not convert.*'abc'.*encode text"):
        m.fit(np.c_[X, np.full(30, "abc", dtype=object)], y)
    with pytest.raises(ValueError, match=r"X has missing values \(pd.NA\).*astype\(float\)"):
        m.fit(np.where(np.arange(30)[:, None] == 2, pd.NA, X).astype(object), y)
    with pytest.raises(TypeError, match="not 'dict'"):      # scikit-learn's own, unchanged
        m.fit(np.where(np.arange(30)[:, None] == 2, {"a": 1}, X).astype(object), y)
    with pytest.raises(ValueError, match=r"Unknown label type.*object array.*astype\(int\)"):
        m.fit(X, y.astype(object))
    with pytest.raises(ValueError, match="Complex data not supported"):
        m.fit(X + 1j, y)
    with pytest.raises(ValueError, match="0 feature"):
        m.fit(X[:, :0], y)
    with pytest.raises(TypeError, match="Sparse data was passed"):
        from scipy import sparse
        m.fit(sparse.csr_matrix(X), y)
    with pytest.raises(ValueError, match="validation_fraction=0.01 cannot hold out"):
        mlp.MLP(early_stopping=True, validation_fraction=0.01).fit(X, y)
    with pytest.raises(ValueError, match="y_val"):
        m.fit(X, y, X, np.full(30, 9))
    with pytest.raises(ValueError, match="X_val has 3 features but X has 4"):
        m.fit(X, y, X[:, :3], y)
    with pytest.raises(ValueError, match=r"X_val has NaN.*\(3, 1\)"):
        m.fit(X, y, Xnan, y)
    with pytest.raises(NotFittedError):
        mlp.MLP().predict(X)
    m.fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but MLP is expecting 4"):
        m.predict(X[:, :3])
    with pytest.raises(ValueError, match=r"X has NaN.*\(3, 1\)"):
        m.predict_proba(Xnan)
    Ws, bs = make_net([4, 3, 3])
    with pytest.raises(ValueError, match=r"y must be in 0..2"):
        mlp.loss_and_grads(Ws, bs, X, np.full(30, 3), "relu")
    with pytest.raises(ValueError, match=r"sample_weight\[2\]"):
        mlp.loss_and_grads(Ws, bs, X, y, "relu", sample_weight=np.r_[1, 1, -1, np.ones(27)])
    with pytest.raises(ValueError, match="sample_weight sums to 0"):
        mlp.loss_and_grads(Ws, bs, X, y, "relu", sample_weight=np.zeros(30))
    with pytest.raises(ValueError, match="activation='elu'"):
        mlp.forward(Ws, bs, X, "elu")
    with pytest.raises(ValueError, match=r"weights\[1\] has shape"):
        mlp.forward([Ws[0], Ws[1][:, :2]], bs, X, "relu")


def test_scikit_learn_input_conventions():
    from sklearn.exceptions import DataConversionWarning
    X, y = make_blobs(n=60)
    kw = dict(hidden=(4,), n_iter=5)
    ref = mlp.MLP(**kw).fit(X, y)
    with pytest.warns(DataConversionWarning):
        col = mlp.MLP(**kw).fit(X, y.reshape(-1, 1))        # a column vector y is raveled
    assert_array_equal(col.weights_[0], ref.weights_[0])
    frame = mlp.MLP(**kw).fit(pd.DataFrame(X, columns=list("abcd")), pd.Series(y))
    assert_array_equal(frame.weights_[0], ref.weights_[0])
    assert_array_equal(frame.feature_names_in_, list("abcd"))
    # float32 X into a float64 network: converted, identical to converting first
    X32 = X.astype(np.float32)
    assert_array_equal(mlp.MLP(**kw).fit(X32, y).weights_[1],
                       mlp.MLP(**kw).fit(X32.astype(np.float64), y).weights_[1])
    # read-only input (a memory map) is copied once, so the kernels do not compile again
    X_ro = X.copy()
    X_ro.flags.writeable = False
    assert ref._check_X(X_ro, np.float64).flags.writeable
    assert_array_equal(ref.predict_proba(X_ro), ref.predict_proba(X))
    # a failed refit leaves an unfitted model, not old weights with new metadata
    with pytest.raises(ValueError, match="Unknown label type"):
        ref.fit(X[:, :3], X[:, 0])
    assert not hasattr(ref, "weights_") and not hasattr(ref, "n_features_in_")
    with pytest.raises(NotFittedError):
        ref.predict(X)


def test_divergence_names_lr_and_iteration():
    X, y = make_blobs(n=40)
    with pytest.raises(ValueError, match=r"diverged at iteration \d+.*lr=1e\+200.*smaller"):
        mlp.MLP(hidden=(5,), n_iter=50, lr=1e200).fit(X, y)


def test_early_stopping_restores_best_weights():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 4))
    y = rng.integers(0, 2, 80)              # pure noise: validation loss soon rises
    m = mlp.MLP(hidden=(16, 16), n_iter=300, lr=1.0, early_stopping=True, patience=5)
    m.fit(X[:40], y[:40], X[40:], y[40:])
    h = m.history_
    assert m.n_iter_ < 300, "noise labels should trigger early stopping"
    assert m.best_iter_ == int(np.argmin(h["val_loss"]))
    assert m.n_iter_ == m.best_iter_ + m.patience + 1
    P = m.predict_proba(X[40:])
    val_loss = -np.mean(np.log(P[np.arange(40), y[40:]]))
    assert val_loss == pytest.approx(h["val_loss"][m.best_iter_], rel=1e-10)


def test_replay_early_stopping_equals_training_with_it():
    # a learnable task: the validation loss keeps reaching new minima, so early
    # stopping never stops and only restores the best iterate
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 5))
    y = (X[:, 0] + 0.5 * rng.standard_normal(300) > 0).astype(int)
    Xv = rng.standard_normal((100, 5))
    yv = (Xv[:, 0] > 0).astype(int)
    kw = dict(hidden=(8,), n_iter=60, lr=0.5, seed=1)
    base = mlp.MLP(**kw).fit(X, y, Xv, yv)
    trained = mlp.MLP(**kw, early_stopping=True, patience=5).fit(X, y, Xv, yv)
    replay = mlp.replay_early_stopping(base, 5)
    assert trained.n_iter_ == 60 and trained.best_iter_ < 59   # restored an earlier iterate
    for a, b in zip(replay.weights_ + replay.biases_, trained.weights_ + trained.biases_):
        np.testing.assert_array_equal(a, b)
    assert replay.best_iter_ == trained.best_iter_ and replay.n_iter_ == trained.n_iter_
    assert replay.get_params() == trained.get_params()
    np.testing.assert_array_equal(replay.predict_proba(Xv), trained.predict_proba(Xv))
    # the baseline itself is untouched: its parameters are the last iterate
    assert not np.array_equal(base.weights_[0], replay.weights_[0])
    assert base.best_iter_ is None and base.best_val_iter_ == trained.best_iter_


def test_replay_early_stopping_declines_when_it_would_stop():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 2, 40)     # noise: val loss stalls
    Xv, yv = rng.standard_normal((40, 5)), rng.integers(0, 2, 40)
    kw = dict(hidden=(16,), n_iter=200, lr=0.5, seed=1)
    base = mlp.MLP(**kw).fit(X, y, Xv, yv)
    trained = mlp.MLP(**kw, early_stopping=True, patience=5).fit(X, y, Xv, yv)
    assert trained.n_iter_ < 200
    assert mlp.replay_early_stopping(base, 5) is None


def test_replay_early_stopping_bad_input():
    X, y = make_blobs(n=60)
    no_val = mlp.MLP(hidden=(4,), n_iter=3).fit(X, y)
    with pytest.raises(ValueError, match="no validation record"):
        mlp.replay_early_stopping(no_val, 5)
    es = mlp.MLP(hidden=(4,), n_iter=3, early_stopping=True, patience=2).fit(X, y, X, y)
    with pytest.raises(ValueError, match="early_stopping=True already"):
        mlp.replay_early_stopping(es, 5)
    with_val = mlp.MLP(hidden=(4,), n_iter=3).fit(X, y, X, y)
    with pytest.raises(ValueError, match="patience must be a positive integer"):
        mlp.replay_early_stopping(with_val, 0)


def test_balanced_class_weight_changes_gradient():
    X, y = make_blobs(n=60)
    y = np.where(np.arange(60) < 45, 0, y)        # class 0 dominant
    counts = np.bincount(y)
    sw = len(y) / (3 * counts[y])                  # n / (K n_k)
    m = mlp.MLP(hidden=(5,), n_iter=1, lr=1.0, class_weight="balanced").fit(X, y)
    theta0, sizes = mlp.MLP(hidden=(5,))._init_params([4, 5, 3], np.float64)
    W0, b0 = mlp.unpack(theta0, sizes)
    loss, dW, db = mlp.reference_loss_and_grads(W0, b0, X, y, "relu", sample_weight=sw)
    _, dW_plain, _ = mlp.reference_loss_and_grads(W0, b0, X, y, "relu")
    assert m.history_["loss"][0] == pytest.approx(loss, rel=1e-12)
    for Wn, W, g in zip(m.weights_, W0, dW):
        assert_allclose(Wn, W - g, rtol=1e-12, atol=1e-15)
    assert not np.allclose(dW[-1], dW_plain[-1])
    # balanced weights make every class contribute the same total weight
    assert_allclose(np.bincount(y, weights=sw), [20, 20, 20])


def test_old_kernel_caches_are_pruned_to_the_newest_few(tmp_path):
    import mlp
    for i, name in enumerate(["numba-a", "numba-b", "numba-c", "numba-d", "other"]):
        (tmp_path / name).mkdir()
        (tmp_path / name / "k.nbi").write_text("x")
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    removed = kernels._prune_kernel_caches(str(tmp_path / "numba-new"), keep=2)
    assert sorted(os.path.basename(p) for p in removed) == ["numba-a", "numba-b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["numba-c", "numba-d", "other"]
    assert kernels._prune_kernel_caches(str(tmp_path / "missing" / "numba-x")) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_fit_names_the_row_of_a_non_finite_cell_in_any_piece_of_a_large_matrix(bad):
    """The finite check runs in row pieces (a small mask whatever the size): a bad cell in a
    later piece is still found, and the error names its row and column."""
    d = 1 << 21                                   # 2 rows per piece of the check
    X = np.zeros((5, d), dtype=np.float32)
    X[4, 7] = bad
    with pytest.raises(ValueError, match=r"NaN or Inf in 1 rows .*\(row, column\) \(4, 7\)"):
        mlp._require_finite(X, "X")
    X[4, 7] = 0.0
    assert mlp._require_finite(X, "X") is X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_scores_in_pieces_with_the_whole_files_probabilities(monkeypatch, dtype):
    """``MLP.predict`` scores ``PREDICT_ROWS`` rows at a time (a multiple of the kernel's tile)
    and gives ``classes_[argmax(predict_proba)]`` of the whole file, string classes too."""
    assert mlp.PREDICT_ROWS % kernels.TILE == 0
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1000, 5))
    y = np.array(["low", "mid", "high"], dtype=object)[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    net = mlp.MLP(hidden=(16,), n_iter=40, seed=1, dtype=dtype).fit(X, y)
    whole = net.classes_[np.argmax(net.predict_proba(X), axis=1)]
    pieces = []
    forward = mlp._run_forward
    monkeypatch.setattr(mlp, "_run_forward", lambda *a, **k: pieces.append(len(a[3])) or forward(*a, **k))
    monkeypatch.setattr(mlp, "PREDICT_ROWS", 2 * kernels.TILE)
    got = net.predict(X)
    assert pieces == [256, 256, 256, 232] and got.dtype == net.classes_.dtype
    assert_array_equal(got, whole)
