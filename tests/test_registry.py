"""The registries: every kernel over every registered choice, and unknown codes.

Each test is parametrized over the rows of a registry (``mlp.ACTIVATION_TABLE``,
``mlp.ATTRIBUTION_TABLE``, ``shared_bias.OUTPUT_TABLE`` x ``LOSS_TABLE``), so
a row added to a table is run through every kernel, its NumPy reference and
central finite differences without touching this file. Sizes are tiny; the
float64 kernels are compared to the references with rtol 1e-9 and to finite
differences (eps 1e-6) with rtol 1e-6.
"""
import numpy as np
import pytest
from numpy.testing import assert_allclose

import kernels
import mlp
import shared_bias as sb
from test_shared_bias import _fd     # central differences, eps 1e-6

ACTS = [a.name for a in mlp.ACTIVATION_TABLE]
TARGETS = [t.name for t in mlp.ATTRIBUTION_TABLE]
HEADS = [(o.name, l.name) for l in sb.LOSS_TABLE for o in sb.OUTPUT_TABLE
         if l.fused_with in (None, o.name)]
EPS = 1e-6                                  # also _fd's step
BAD_CODE = 99


def _net(sizes, seed):
    """Weights and data whose hidden pre-activations stay away from 0 (the relu
    kink), so central differences with eps 1e-6 see a smooth function."""
    rng = np.random.default_rng(seed)
    Ws = [rng.normal(0, 0.8, size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(0, 0.5, size=o) for o in sizes[1:]]
    X = rng.normal(size=(9, sizes[0]))
    y = rng.integers(0, sizes[-1], 9)
    A = X
    for W, b in zip(Ws[:-1], bs[:-1]):
        Z = A @ W.T + b
        assert np.abs(Z).min() > 1e-3, "pick another seed: a pre-activation is near 0"
        A = np.maximum(Z, 0)
    return Ws, bs, X, y


# ------------------------------------------------------- the tables themselves
def test_codes_are_row_positions_and_names_unique():
    for table, names in [(mlp.ACTIVATION_TABLE, mlp.ACTIVATIONS),
                         (mlp.ATTRIBUTION_TABLE, mlp.ATTRIBUTION_TARGETS),
                         (sb.OUTPUT_TABLE, sb.BIAS_NET_OUTPUTS),
                         (sb.LOSS_TABLE, sb.BIAS_NET_LOSSES)]:
        assert [row.code for row in table] == list(range(len(table)))
        assert names == {row.name: row.code for row in table}
    for loss in sb.LOSS_TABLE:
        assert loss.fused_with in (None, *sb.BIAS_NET_OUTPUTS)


@pytest.mark.parametrize("activation", ACTS)
def test_activation_formulas_agree(activation):
    """Kernel g, g_float32, dg and mul_dg against the NumPy reference g, dg, and
    dg against the derivative of the reference g."""
    a = mlp.ACTIVATION_TABLE[mlp.ACTIVATIONS[activation]]
    z = np.concatenate([np.linspace(-6, -0.01, 40), np.linspace(0.01, 6, 40)])
    ref = a.reference_g(z)
    assert_allclose([a.g(v) for v in z], ref, rtol=1e-15, atol=1e-300)
    g32 = np.array([a.g_float32(np.float32(v)) for v in z.astype(np.float32)])
    assert_allclose(g32, a.reference_g(z.astype(np.float32).astype(np.float64)), rtol=2e-8)
    assert_allclose([a.dg(v) for v in ref], a.reference_dg(ref), rtol=1e-15, atol=1e-300)
    d = np.linspace(-2, 2, z.size)
    assert_allclose([a.mul_dg(u, v) for u, v in zip(d, ref)], d * a.reference_dg(ref),
                    rtol=1e-15, atol=1e-300)
    numeric = (a.reference_g(z + EPS) - a.reference_g(z - EPS)) / (2 * EPS)
    assert_allclose(a.reference_dg(ref), numeric, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------- the network
@pytest.mark.parametrize("activation", ACTS)
def test_network_kernels_match_reference_and_finite_differences(activation):
    sizes = [3, 5, 4, 3]
    Ws, bs, X, y = _net(sizes, seed=4)
    w = np.linspace(0.5, 2.0, X.shape[0])
    loss, dW, db = mlp.loss_and_grads(Ws, bs, X, y, activation, l2=0.1, sample_weight=w)
    rloss, rdW, rdb = mlp.reference_loss_and_grads(Ws, bs, X, y, activation, l2=0.1,
                                                   sample_weight=w)
    assert loss == pytest.approx(rloss, rel=1e-12)
    for got, want in zip(dW + db, rdW + rdb):
        assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert_allclose(mlp.forward(Ws, bs, X, activation),
                    mlp.reference_forward(Ws, bs, X, activation), rtol=1e-12, atol=1e-15)

    theta, sz = mlp.pack(Ws, bs)
    code = mlp.activation_code(activation)

    def f():
        return mlp._run_loss_and_grad(theta, sz, code, X, y, w, 0.1)[0]

    grad = np.concatenate([np.concatenate([g.ravel(), b.ravel()]) for g, b in zip(dW, db)])
    assert_allclose(grad, _fd(f, theta), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("target", TARGETS)
def test_input_gradients_match_reference_and_finite_differences(activation, target):
    Ws, bs, X, y = _net([3, 5, 4, 3], seed=4)
    G = mlp.input_gradients(Ws, bs, X, y, activation, target=target)
    assert_allclose(G, mlp.reference_input_gradients(Ws, bs, X, y, activation, target=target),
                    rtol=1e-9, atol=1e-12)

    def logits(x):
        A = x
        for W, b in zip(Ws[:-1], bs[:-1]):
            A = mlp._reference_act(A @ W.T + b, activation)
        return (A @ Ws[-1].T + bs[-1])[0]                     # (K,)

    for s in range(3):                          # a few samples: t depends on its own row only
        x = X[s:s + 1].copy()
        m = int(np.argmax(logits(x)))

        def t():
            a = logits(x)
            log_p = a - a.max() - np.log(np.exp(a - a.max()).sum())
            return {"output": np.exp(log_p[m]), "logit": a[m], "loss": -log_p[y[s]]}[target]

        assert_allclose(G[s], _fd(t, x)[0], rtol=1e-6, atol=1e-9)


# --------------------------------------------------- the shared-bias network
def _bias_problem(k=3, d=4, n=8, seed=0, soft=True):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W, U = rng.normal(size=(k, d)), rng.normal(size=(k, k))
    b1, b2 = rng.normal(size=k), rng.normal(size=k)
    Y = rng.uniform(0.05, 0.95, size=(n, k)) if soft else np.eye(k)[rng.integers(0, k, n)]
    assert np.abs(X @ W.T + b1).min() > 1e-3, "pick another seed: a pre-activation is near 0"
    return X, Y, W, U, b1, b2


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("output,loss", HEADS)
def test_bias_net_kernels_match_reference_and_finite_differences(activation, output, loss):
    X, Y, W, U, b1, b2 = _bias_problem()
    L, g = sb.independent_bias_loss_and_grads(W, U, b1, b2, X, Y, activation, output, loss)
    RL, rg = sb.reference_bias_loss_and_grads(W, U, b1, b2, X, Y, activation, output, loss)
    assert L == pytest.approx(RL, rel=1e-12)
    for name, p in [("W", W), ("U", U), ("b1", b1), ("b2", b2)]:
        assert_allclose(g[name], rg[name], rtol=1e-9, atol=1e-12)

        def f():
            return sb.independent_bias_loss_and_grads(W, U, b1, b2, X, Y, activation,
                                                      output, loss)[0]

        assert_allclose(g[name], _fd(f, p), rtol=1e-6, atol=1e-9)
    # the shared model is the same kernel at b1 = b2 = b: its gradient is both paths
    Ls, gs = sb.shared_bias_loss_and_grads(W, U, b1, X, Y, activation, output, loss)
    RLs, rgs = sb.reference_bias_loss_and_grads(W, U, b1, b1, X, Y, activation, output, loss)
    assert Ls == pytest.approx(RLs, rel=1e-12)
    assert_allclose(gs["b"], rgs["b1"] + rgs["b2"], rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------- unknown codes
def test_unknown_activation_code_raises_in_every_dispatch():
    Z = np.ones((2, 3))
    with pytest.raises(ValueError, match="unknown activation code"):
        kernels._bias_act(Z, np.zeros(3), BAD_CODE)
    with pytest.raises(ValueError, match="unknown activation code"):
        kernels._mul_act_grad(Z, Z.copy(), BAD_CODE)
    with pytest.raises(ValueError, match="unknown activation code"):
        sb._bias_net_act(Z, Z.copy(), BAD_CODE, 2, 3)
    X, Y, W, U, b1, b2 = _bias_problem()
    codes = sb._bias_net_codes("relu", "softmax", "ce")
    with pytest.raises(ValueError, match="unknown activation code"):
        sb._bias_net_loss_and_grads(W[None], U[None], b1[None], b2[None],
                                    np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T),
                                    BAD_CODE, codes[1], codes[2])


def test_unknown_output_or_loss_code_raises():
    X, Y, W, U, b1, b2 = _bias_problem()
    hcode, ocode, lcode = sb._bias_net_codes("relu", "softmax", "ce")
    args = (W[None], U[None], b1[None], b2[None], np.ascontiguousarray(X.T),
            np.ascontiguousarray(Y.T), hcode)
    for o, l in [(BAD_CODE, lcode), (ocode, BAD_CODE),
                 (sb.BIAS_NET_OUTPUTS["identity"], sb.BIAS_NET_LOSSES["ce"])]:
        with pytest.raises(ValueError, match="unknown \\(output, loss\\) codes"):
            sb._bias_net_loss_and_grads(*args, o, l)


def test_unknown_attribution_target_code_raises():
    o, D = np.full(3, 1 / 3), np.zeros((1, 3))
    with pytest.raises(ValueError, match="unknown attribution target code"):
        kernels._target_delta(o, 0, np.zeros(0, dtype=np.int64), 0, BAD_CODE, D)


def test_unknown_names_raise_with_the_options():
    with pytest.raises(ValueError, match=r"activation='gelu' is not supported; use one of"):
        mlp.activation_code("gelu")
    with pytest.raises(ValueError, match=r"target='saliency' is not supported"):
        mlp._attr_target_code("saliency")
    with pytest.raises(ValueError, match=r"output='linear' is not supported"):
        sb._bias_net_codes("relu", "linear", "mse")
    with pytest.raises(ValueError, match=r"loss='hinge' is not supported"):
        sb._bias_net_codes("relu", "sigmoid", "hinge")
