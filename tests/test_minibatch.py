"""Mini-batch training and the Adam solver of ``MLP``: full batch unchanged, Adam
against a NumPy Adam, seeded shuffles independent of the thread count, errors."""
import numba
import numpy as np
import pytest

import mlp
from mlp import MLP


def _data(seed=0, n=300, d=5, k=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.5, 0.5])[:n] % k
    return X, y


def _net(**kw):
    base = dict(hidden=(8, 6), n_iter=5, lr=0.1, seed=7, dtype="float64")
    base.update(kw)
    return MLP(**base)


def test_a_batch_as_large_as_the_data_is_the_full_batch():
    X, y = _data()
    full = _net().fit(X, y)
    big = _net(batch_size=len(y)).fit(X, y)
    bigger = _net(batch_size=10 * len(y)).fit(X, y)
    for a, b, c in zip(full.weights_, big.weights_, bigger.weights_):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    assert np.array_equal(full.history_["loss"], big.history_["loss"])


def _numpy_adam(X, y, net, n_steps, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Full-batch Adam written out with the NumPy reference gradient."""
    sizes = [X.shape[1], *net.hidden, len(np.unique(y))]
    theta, sizes = net._init_params(sizes, np.float64)
    Ws, bs = mlp.unpack(theta, sizes)
    params = [p.copy() for p in Ws] + [p.copy() for p in bs]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    L = len(Ws)
    for k in range(1, n_steps + 1):
        _, gW, gb = mlp.reference_loss_and_grads(params[:L], params[L:], X, y, "relu")
        for i, g in enumerate(list(gW) + list(gb)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            params[i] = params[i] - lr * (m[i] / (1 - b1 ** k)) / (np.sqrt(v[i] / (1 - b2 ** k)) + eps)
    return params[:L]


def test_adam_matches_a_numpy_adam():
    X, y = _data(1)
    net = _net(solver="adam", lr=0.01, n_iter=6).fit(X, y)
    ref = _numpy_adam(X, np.searchsorted(net.classes_, y), net, 6, 0.01)
    for W, R in zip(net.weights_, ref):
        np.testing.assert_allclose(W, R, rtol=1e-10, atol=1e-12)


def test_minibatches_are_seeded_and_independent_of_threads():
    X, y = _data(2)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _net(batch_size=32, solver="adam", lr=0.01).fit(X, y)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = _net(batch_size=32, solver="adam", lr=0.01).fit(X, y)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one.weights_, two.weights_):
        assert np.array_equal(a, b)
    other = _net(batch_size=32, solver="adam", lr=0.01, seed=8).fit(X, y)
    same_init = _net(batch_size=32, solver="adam", lr=0.01, shuffle=False).fit(X, y)
    assert not np.array_equal(one.weights_[0], same_init.weights_[0])   # the shuffle matters
    assert not np.array_equal(one.weights_[0], other.weights_[0])


def test_one_epoch_of_minibatches_takes_one_step_per_batch():
    """Without shuffling, an epoch of batch_size=b equals consecutive full-batch steps
    on the slices, done by hand with the kernel."""
    X, y = _data(3, n=100)
    net = _net(batch_size=40, shuffle=False, n_iter=1).fit(X, y)
    sizes = [X.shape[1], *net.hidden, len(net.classes_)]
    theta, sizes = net._init_params(sizes, np.float64)
    yi = np.searchsorted(net.classes_, y)
    for s in (slice(0, 40), slice(40, 80), slice(80, 100)):
        _, g, _ = mlp._run_loss_and_grad(theta, sizes, mlp.activation_code("relu"),
                                         np.ascontiguousarray(X[s]), yi[s], np.ones(s.stop - s.start), 0.0)
        theta -= 0.1 * g
    Ws, _ = mlp.unpack(theta, sizes)
    for W, R in zip(net.weights_, Ws):
        np.testing.assert_allclose(W, R, rtol=1e-12, atol=1e-14)
    assert net.history_["loss"].shape == (1,)


def test_minibatch_adam_learns_a_separable_problem_in_few_epochs():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(2000, 4))
    y = (X[:, 0] - X[:, 2] > 0).astype(int)
    full = _net(n_iter=5, lr=0.01, solver="adam").fit(X, y)
    mini = _net(n_iter=5, lr=0.01, solver="adam", batch_size=64).fit(X, y)
    assert mini.score(X, y) > 0.95
    assert mini.score(X, y) > full.score(X, y) + 0.05      # 5 epochs = 160 steps vs 5


@pytest.mark.parametrize("kw, words", [({"batch_size": 0}, "batch_size"),
                                       ({"batch_size": 2.5}, "batch_size"),
                                       ({"solver": "sgdx"}, "solver"),
                                       ({"beta_1": 1.0}, "beta_1"),
                                       ({"epsilon": 0}, "epsilon"),
                                       ({"shuffle": "yes"}, "shuffle")])
def test_bad_solver_settings_are_refused(kw, words):
    X, y = _data()
    with pytest.raises(ValueError, match=words):
        _net(**kw).fit(X, y)


def test_save_and_load_keep_the_solver(tmp_path):
    X, y = _data(5)
    net = _net(batch_size=50, solver="adam", lr=0.01).fit(X, y)
    net.save(tmp_path / "m.npz")
    back = MLP.load(tmp_path / "m.npz")
    assert back.batch_size == 50 and back.solver == "adam"
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))


def _csvs(tmp_path, n_train=400, n_test=120):
    import pandas as pd
    rng = np.random.default_rng(0)
    paths = []
    for name, n in (("train.csv", n_train), ("test.csv", n_test)):
        X = rng.normal(size=(n, 3))
        df = pd.DataFrame(X, columns=["u", "v", "w"])
        df["label"] = np.where(X[:, 0] - X[:, 1] > 0, "up", "down")
        df.to_csv(tmp_path / name, index=False)
        paths.append(tmp_path / name)
    return paths


def test_the_command_line_trains_every_network_on_minibatches(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path
    train, test = _csvs(tmp_path)
    out = tmp_path / "out"
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(repo / "run_all.py"), "--train", str(train),
                           "--test", str(test), "--target", "label", "--quick", "--parts", "B",
                           "--batch-size", "64", "--solver", "adam", "--lr", "0.01",
                           "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["batch_size"] == 64 and config["solver"] == "adam"
    report = (out / "report.md").read_text()
    assert "Adam on mini-batches of 64 rows" in report and "full-batch iterations" not in report


def test_a_bad_batch_size_is_a_usage_error():
    import run_all
    with pytest.raises(run_all.UsageError, match="--batch-size"):
        run_all.validate(run_all.build_parser().parse_args(["--batch-size", "0"]))


def test_full_batch_on_a_huge_file_names_the_option():
    import dataclasses
    import run_all
    cfg = run_all.validate(run_all.build_parser().parse_args([]))

    def note(c, n_fit):
        return run_all.full_batch_note(c, run_all.iteration_flops(c.hidden, 8, 4, n_fit), n_fit)
    big = note(cfg, 10_000_000)
    assert big and "--batch-size" in big and "10,000,000 rows" in big
    assert note(cfg, 33_000) is None       # the course's size
    mini = dataclasses.replace(cfg, batch_size=512)
    assert note(mini, 10_000_000) is None
