"""The tile routines the training kernel is built from, each against a plain NumPy
reference of the same math: the softmax pieces over class-major rows, the output
delta, the weight gradient in both orientations and the activation derivative
that also sums the bias gradient; the aligned buffers, and the one-thread kernels
against the parallel ones bit for bit. Small data, float64 and float32.
"""
import numpy as np
import pytest
from numba.typed import List
from numpy.testing import assert_allclose, assert_array_equal

import kernels

DTYPES = [np.float64, np.float32]


def reference_softmax_pieces(Z):
    """zmax, first argmax, exp(z - zmax) and its row sums, in float64."""
    Z = Z.astype(np.float64)
    zmax = Z.max(axis=1)
    E = np.exp(Z - zmax[:, None])
    return zmax, Z.argmax(axis=1), E, E.sum(axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("r, K", [(1, 1), (7, 2), (128, 4), (33, 10)])
def test_softmax_tile_matches_numpy(dtype, r, K):
    rng = np.random.default_rng(r + K)
    Z = (rng.normal(0, 3, size=(r, K))).astype(dtype)
    Z[0, :] = Z[0, 0]                                   # a row of ties: the first argmax wins
    if r > 2:
        Z[1] = 800 * np.sign(Z[1] + 0.5)                # exp(z) alone would overflow
    T, stats, best = kernels._softmax_workspace(r + 3, K)
    kernels._softmax_tile(Z, T, stats[0], stats[1], best)
    zmax, arg, E, ssum = reference_softmax_pieces(Z)
    assert_array_equal(best[:r], arg)
    assert_array_equal(stats[0, :r], zmax)
    assert_allclose(T[:, :r].T, E, rtol=1e-15, atol=0)    # numerics: <= ~2.2 ulp
    assert_allclose(stats[1, :r], ssum, rtol=1e-15)
    assert np.all(np.isfinite(T[:, :r]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_delta_matches_numpy(dtype):
    rng = np.random.default_rng(3)
    r, K, s = 50, 4, 7
    Z = rng.normal(0, 2, size=(r, K)).astype(dtype)
    y = rng.integers(0, K, s + r)
    scale = rng.uniform(0.1, 1.0, s + r)
    D = np.empty((r, K), dtype=dtype)
    loss, correct = kernels._output_delta(Z, y, scale, s, kernels._softmax_workspace(64, K), D,
                                          0.25, 3)
    Z64, w, yy = Z.astype(np.float64), scale[s:], y[s:]
    lse = np.log(np.exp(Z64).sum(axis=1))
    P = np.exp(Z64 - lse[:, None])
    ref_D = w[:, None] * (P - np.eye(K)[yy])
    ref_loss = 0.25 + np.sum(w * (lse - Z64[np.arange(r), yy]))
    assert loss == pytest.approx(ref_loss, rel=1e-14)
    assert correct == 3 + np.sum(Z64.argmax(axis=1) == yy)
    tol = 1e-15 if dtype == np.float64 else 1e-7
    assert_allclose(D, ref_D, rtol=0, atol=tol * np.abs(ref_D).max() * 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fi, fo", [(12, 64), (64, 4), (5, 5), (1, 3)])
def test_add_weight_grad_both_orientations(dtype, fi, fo):
    """gW += D^T A, whether formed as D^T A (fan_in >= fan_out) or as (A^T D)^T."""
    rng = np.random.default_rng(fi * fo)
    r = 37
    D = rng.normal(size=(r, fo)).astype(dtype)
    A = rng.normal(size=(r, fi)).astype(dtype)
    gW0 = rng.normal(size=(fo, fi)).astype(dtype)
    gW = gW0.copy()
    kernels._add_weight_grad(D, A, np.empty(fi * fo + 5, dtype=dtype), gW)
    ref = gW0.astype(np.float64) + D.astype(np.float64).T @ A.astype(np.float64)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert_allclose(gW, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_mul_act_grad_also_sums_the_bias_gradient(dtype, activation):
    row = kernels.ACTIVATION_TABLE[kernels.ACTIVATIONS[activation]]
    rng = np.random.default_rng(5)
    D = rng.normal(size=(9, 6)).astype(dtype)
    A = row.reference_g(rng.normal(size=(9, 6))).astype(dtype)
    gb0 = rng.normal(size=6).astype(dtype)
    D1, D2, gb = D.copy(), D.copy(), gb0.copy()
    kernels._mul_act_grad(D1, A, row.code)
    kernels._mul_act_grad(D2, A, row.code, gb)
    assert_array_equal(D1, D2)                               # the same delta with or without gb
    assert_allclose(D1, D * row.reference_dg(A), rtol=1e-6 if dtype == np.float32 else 1e-15)
    expect = gb0.copy()
    for i in range(D2.shape[0]):                             # rows in order, in the dtype
        expect += D2[i]
    assert_array_equal(gb, expect)


def test_transposed_weights_are_contiguous_copies():
    Ws = [np.arange(6.0).reshape(2, 3), np.arange(8.0).reshape(4, 2)]
    WTs = kernels._transposed(List(Ws))
    for W, WT in zip(Ws, WTs):
        assert_array_equal(WT, W.T)
        assert WT.flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, cols", [(1, 1), (128, 64), (3, 12), (2, 8192)])
def test_aligned_empty_starts_rows_on_the_boundary(dtype, rows, cols):
    A = kernels._aligned_empty(rows, cols, dtype)
    assert A.shape == (rows, cols) and A.dtype == dtype and A.flags.c_contiguous
    assert A.ctypes.data % kernels.ALIGN == 0
    if (cols * np.dtype(dtype).itemsize) % kernels.ALIGN == 0:
        assert all(A[i].ctypes.data % kernels.ALIGN == 0 for i in range(rows))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 129, 3 * 128 * 16 + 77])
def test_one_thread_twins_give_the_parallel_kernels_bits(dtype, n):
    """The ``*_one_thread`` kernels (what the wrappers call with one numba thread) run
    the same blocks in the same order as the parallel ones: the same bits."""
    rng = np.random.default_rng(n)
    sizes = np.array([5, 9, 7, 3], dtype=np.int64)
    theta = rng.normal(0, 0.5, size=kernels.n_params(sizes)).astype(dtype)
    X = rng.normal(size=(n, 5)).astype(dtype)
    y = rng.integers(0, 3, size=n).astype(np.int64)
    w = rng.uniform(0.1, 2.0, size=n)
    tile = np.int64(kernels.TILE)
    for code in range(len(kernels.ACTIVATION_TABLE)):
        args = (theta, sizes, np.int64(code), X, y, w / w.sum(), np.float64(0.01), tile,
                np.int64(kernels._n_blocks(n, kernels.TILE)))
        drop = (np.uint64(5), np.int64(2), np.float64(0.3))
        pairs = [(kernels._loss_and_grad(*args), kernels._loss_and_grad_one_thread(*args)),
                 (kernels._loss_and_grad_dropout(*args, *drop),
                  kernels._loss_and_grad_dropout_one_thread(*args, *drop))]
        for (l1, g1, c1), (l2, g2, c2) in pairs:
            assert l1 == l2 and c1 == c2
            assert_array_equal(g1.view(np.uint8), g2.view(np.uint8))
        for log in (False, True):
            fw = (theta, sizes, np.int64(code), X, tile, log)
            assert_array_equal(kernels._forward(*fw).view(np.uint8),
                               kernels._forward_one_thread(*fw).view(np.uint8))
