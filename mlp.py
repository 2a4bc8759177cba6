"""The network: activations, forward, backward, the ``MLP`` estimator, attribution.

This is the module to import: everything that computes with the parameters of
the softmax MLP is reached from here. Kernels are pairs: ``_name`` is a pure
``@njit`` function of arrays and scalars (in ``kernels.py``, with the
activation and attribution-target registries), ``name`` is the public wrapper
here that validates its inputs and checks its result. The vectorised
exp/sigmoid/tanh the kernels use are in ``numerics.py``; the shared-bias
network of Question 2 is ``shared_bias.py``.

Parameter layout (shared by every kernel)
-----------------------------------------
A network with layer widths ``sizes = [d, h1, ..., hL, K]`` has one weight
matrix ``W[l]`` of shape ``(sizes[l+1], sizes[l])`` (fan_out, fan_in) and one
bias ``b[l]`` of shape ``(sizes[l+1],)`` per layer; a layer computes
``a = W x + b``. Kernels see all parameters as one flat contiguous vector
``theta``: for each layer in order, ``W[l]`` row-major, then ``b[l]``.
``pack``/``unpack`` convert between the list form and the flat form;
``unpack`` returns views, so writing into them writes into ``theta``.

Hidden activations are rows of ``ACTIVATION_TABLE`` (name, integer code,
formulas); kernels take the code, never a string, and dispatch through the
table. The output layer is always softmax.

Sections, in file order
-----------------------
(in ``kernels.py``: activations (the registry) and parameter layout; forward
(tiled softmax forward pass); backward (tiled, block-parallel loss +
gradient); dropout (the same with inverted dropout, masks hashed from key,
iteration, row and unit); the attribution targets and kernels.) Here: the
kernels' plain NumPy reference (``reference_*``); the validating wrappers
``loss_and_grads`` / ``forward`` / ``dropout_masks``; the ``MLP`` estimator;
attribution (Part C: ``input_gradients`` with a class selector,
``input_x_gradient``, ``integrated_gradients``, ``feature_attribution``,
``permutation_check``, ``randomization_check``).
"""
import json
import math
import os
import struct
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

from kernels import (  # noqa: F401  (the kernels first: they set numba's cache folder up)
    ACTIVATIONS,
    ACTIVATION_TABLE,
    ATTRIBUTION_TABLE,
    ATTRIBUTION_TARGETS,
    KERNEL_CACHE_COLD,
    MAX_BLOCKS,
    TILE,
    _dropout_masks,
    _forward,
    _forward_one_thread,
    _input_gradients,
    _integrated_gradients,
    _loss_and_grad,
    _loss_and_grad_dropout,
    _loss_and_grad_dropout_one_thread,
    _loss_and_grad_one_thread,
    _loss_and_grad_serial,
    _n_blocks,
    _offsets,
    activation_code,
    pack,
    registry_code,
    resolve_dtype,
    unpack,
)

import numba
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_array, check_is_fitted, validate_data


# ============================================================ NumPy reference
def _reference_act(z, activation):
    """g(z) in NumPy for the activation named ``activation`` (``ValueError`` if unknown)."""
    return ACTIVATION_TABLE[activation_code(activation)].reference_g(z)


def _reference_act_grad(a, activation):
    """g'(z) in NumPy from the activation output a = g(z)."""
    return ACTIVATION_TABLE[activation_code(activation)].reference_dg(a)


def reference_softmax(Z):
    """Row-wise softmax of Z (n, K) in NumPy, shifted by the row max (no overflow)."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def reference_forward(weights, biases, X, activation):
    """Softmax probabilities in plain NumPy (slow, readable; for tests and bench).

    Parameters
    ----------
    weights : list of ndarray, ``weights[l]`` of shape (fan_out, fan_in)
    biases : list of ndarray, ``biases[l]`` of shape (fan_out,)
    X : ndarray of shape (n_samples, n_features)
    activation : {"relu", "sigmoid", "tanh"}

    Returns
    -------
    P : ndarray of shape (n_samples, n_classes)
    """
    A = X
    for W, b in zip(weights[:-1], biases[:-1]):
        A = _reference_act(A @ W.T + b, activation)        # (n, fan_out)
    return reference_softmax(A @ weights[-1].T + biases[-1])   # of the (n, K) logits


def reference_loss_and_grads(weights, biases, X, y, activation, l2=0.0, sample_weight=None,
                             dropout_masks=None):
    """Loss and gradients in plain NumPy, the same math as ``loss_and_grads``.

    ``L = sum_i w_i CE_i / sum_i w_i + l2/2 sum_l ||W_l||^2``.

    ``dropout_masks`` (one (n, h_l) array per hidden layer, e.g. from
    ``dropout_masks``) multiply the hidden activations: inverted dropout with
    those masks.

    Returns
    -------
    loss : float
    dweights : list of ndarray, shapes as ``weights``
    dbiases : list of ndarray, shapes as ``biases``
    """
    n = X.shape[0]
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    w = w / w.sum()
    masks = [1.0] * (len(weights) - 1) if dropout_masks is None else list(dropout_masks)
    acts = [X]                                               # g(z) of each hidden layer
    inputs = [X]                                             # what each layer reads: g(z) * mask
    for W, b, M in zip(weights[:-1], biases[:-1], masks):
        acts.append(_reference_act(inputs[-1] @ W.T + b, activation))
        inputs.append(acts[-1] * M)
    Z = inputs[-1] @ weights[-1].T + biases[-1]             # (n, K)
    zmax = Z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(Z - zmax).sum(axis=1))   # (n,)
    ce = lse - Z[np.arange(n), y]
    loss = float(np.sum(w * ce)) + 0.5 * l2 * sum(float(np.sum(W * W)) for W in weights)
    P = np.exp(Z - lse[:, None])
    Y = np.zeros_like(P)
    Y[np.arange(n), y] = 1
    D = (P - Y) * w[:, None]          # softmax + CE: dCE/dz = p - onehot(y)
    dW, db = [None] * len(weights), [None] * len(weights)
    for l in range(len(weights) - 1, -1, -1):
        dW[l] = D.T @ inputs[l] + l2 * weights[l]
        db[l] = D.sum(axis=0)
        if l > 0:
            D = (D @ weights[l]) * masks[l - 1] * _reference_act_grad(acts[l], activation)
    return loss, dW, db



# ==================================================== validating wrappers
_BLAS_CONTROLLER = None


def _single_threaded_blas():
    """Context limiting BLAS to one thread: the kernels already run blocks in
    parallel, and gemm calls inside ``prange`` must not spawn more threads."""
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        # numba's np.dot calls SciPy's own OpenBLAS (not NumPy's); load it first
        # so the controller sees it. Unlimited, its threads spin against the
        # prange workers: measured 50x slower on a loaded 2-core machine.
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


def _check_X(X, dtype, n_features=None, name="X"):
    """``X`` as a C-contiguous finite 2-D array of ``dtype``."""
    try:
        A = np.asarray(X)
        if A.dtype == object or A.dtype.kind not in "biuf":
            A = A.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric; converting it failed ({e}); "
                         f"encode text columns first") from None
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {A.shape}"
                         + ("; use X.reshape(-1, 1) for one feature" if A.ndim == 1 else ""))
    if A.shape[0] == 0:
        raise ValueError(f"{name} has no rows; need at least one sample")
    if n_features is not None and A.shape[1] != n_features:
        raise ValueError(f"{name} has {A.shape[1]} features but the network expects "
                         f"{n_features}; use the same columns as in training")
    return _require_finite(np.ascontiguousarray(A, dtype=dtype), name)


def _check_y_index(y, n, n_classes, name="y"):
    """Class indices as int64 in 0..n_classes-1, length n."""
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with one label per row of X ({n}); "
                         f"got shape {y.shape}")
    if y.dtype.kind not in "biu":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class indices 0..{n_classes - 1}; "
                             f"got dtype {y.dtype}")
    y = np.ascontiguousarray(y, dtype=np.int64)
    bad = np.flatnonzero((y < 0) | (y >= n_classes))
    if bad.size:
        raise ValueError(f"{name} has labels outside 0..{n_classes - 1}: {name} must be in "
                         f"0..{n_classes - 1} (the network has {n_classes} outputs); "
                         f"{name}[{bad[0]}] = {y[bad[0]]}")
    return y


def _check_sample_weight(sample_weight, n):
    """Per-sample weights as float64 (n,), non-negative, finite, positive sum."""
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), one weight per row of X; "
                         f"got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        i = np.flatnonzero(~np.isfinite(w) | (w < 0))[0]
        raise ValueError(f"sample_weight must be finite and >= 0; "
                         f"sample_weight[{i}] = {w[i]}")
    if w.sum() <= 0:
        raise ValueError("sample_weight sums to 0 (it is zero on every row); give at least "
                         "one sample a positive weight")
    return w


def _check_params(weights, biases, dtype):
    """theta, sizes from per-layer lists, finite; dtype float64 unless given / float32 weights."""
    if dtype is None:
        dtype = np.float32 if (len(weights) and np.asarray(weights[0]).dtype == np.float32) \
            else np.float64
    dtype = resolve_dtype(dtype)
    theta, sizes = pack(weights, biases, dtype)
    if not np.all(np.isfinite(theta)):
        raise ValueError("weights or biases contain NaN or Inf; the network diverged (train "
                         "again with a smaller learning rate) or was loaded incorrectly")
    return theta, sizes, dtype


def _run_loss_and_grad(theta, sizes, code, X, y, w, l2, dropout=0.0, key=0, iteration=0):
    """Kernel call on already validated arrays: (loss, grad theta, n_correct).
    ``dropout`` 0 is the kernel without dropout; else masks from ``key`` and ``iteration``."""
    scale = w / w.sum()
    args = (theta, sizes, np.int64(code), X, y, scale, np.float64(l2), np.int64(TILE),
            np.int64(_n_blocks(X.shape[0], TILE)))
    one = _one_numba_thread()
    with _single_threaded_blas():
        if dropout == 0:
            loss, grad, correct = (_loss_and_grad_one_thread if one else _loss_and_grad)(*args)
        else:
            kernel = _loss_and_grad_dropout_one_thread if one else _loss_and_grad_dropout
            loss, grad, correct = kernel(*args, np.uint64(key), np.int64(iteration),
                                         np.float64(dropout))
    return float(loss), grad, int(correct)


SOLVERS = ("gd", "adam")


def _check_solver(est):
    """``ValueError`` naming the fix for a bad solver, batch_size, shuffle or Adam constant."""
    if est.solver not in SOLVERS:
        raise ValueError(f"solver={est.solver!r} is not supported; use one of {list(SOLVERS)} "
                         f"('gd': full-batch or mini-batch gradient descent, 'adam': Adam)")
    b = est.batch_size
    if b is not None and (not _is_int(b) or b < 1):
        raise ValueError(f"batch_size={b!r} must be None (full batch) or an integer >= 1, "
                         f"e.g. 256")
    if not isinstance(est.shuffle, (bool, np.bool_)):
        raise ValueError(f"shuffle={est.shuffle!r} must be True or False")
    for name in ("beta_1", "beta_2"):
        v = getattr(est, name)
        if not _is_real(v) or not 0 <= v < 1:
            raise ValueError(f"{name}={v!r} must be a number in [0, 1), e.g. 0.9 for beta_1, "
                             f"0.999 for beta_2")
    if not _is_real(est.epsilon) or est.epsilon <= 0:
        raise ValueError(f"epsilon={est.epsilon!r} must be a finite number > 0, e.g. 1e-8")


def _check_dropout(dropout, key, iteration):
    """(rate, key, iteration) checked: rate in [0, 1), key in [0, 2**64), iteration >= 0."""
    if not _is_real(dropout) or not 0 <= dropout < 1:
        raise ValueError(f"dropout={dropout!r} must be a number in [0, 1), e.g. 0.2 (0: none)")
    if not _is_int(key) or not 0 <= key < 2 ** 64:
        raise ValueError(f"dropout_key={key!r} must be an integer in [0, 2**64)")
    if not _is_int(iteration) or iteration < 0:
        raise ValueError(f"iteration={iteration!r} must be an integer >= 0")
    return float(dropout), int(key), int(iteration)


def dropout_masks(hidden, n_samples, dropout, dropout_key, iteration=0):
    """The dropout masks the training kernel uses, for the NumPy reference and tests.

    Parameters
    ----------
    hidden : sequence of int, widths of the hidden layers
    n_samples : int, rows 0..n_samples-1 (a row's mask does not depend on n_samples)
    dropout : float in [0, 1), the rate
    dropout_key : int in [0, 2**64), e.g. ``MLP._dropout_key()``
    iteration : int >= 0, the training step

    Returns
    -------
    masks : list of ndarray, ``masks[l]`` of shape (n_samples, hidden[l]), float64,
        each entry 0 (dropped) or 1 / (1 - dropout) (kept)
    """
    dropout, key, iteration = _check_dropout(dropout, dropout_key, iteration)
    widths = np.asarray([int(h) for h in hidden], dtype=np.int64)
    if not _is_int(n_samples) or n_samples < 0:
        raise ValueError(f"n_samples={n_samples!r} must be an integer >= 0")
    if widths.size == 0:
        return []
    return list(_dropout_masks(widths, np.int64(n_samples), np.uint64(key), np.int64(iteration),
                               np.float64(dropout)))


def _one_numba_thread():
    """numba runs one thread: the wrappers call the ``*_one_thread`` kernels (the same
    blocks in the same order, so the same bits, without a parallel launch)."""
    return numba.get_num_threads() == 1


def _run_forward(theta, sizes, code, X, log=False):
    kernel = _forward_one_thread if _one_numba_thread() else _forward
    with _single_threaded_blas():
        return kernel(theta, sizes, np.int64(code), X, np.int64(TILE), bool(log))


def loss_and_grads(weights, biases, X, y, activation, l2=0.0, sample_weight=None,
                   dtype=None, return_n_correct=False, dropout=0.0, dropout_key=0, iteration=0):
    """Full-batch softmax cross-entropy loss and its gradient (numba kernel).

    ``L = sum_i w_i CE_i / sum_i w_i + l2/2 * sum_l ||W_l||^2`` (biases are not
    penalised); ``w_i = 1`` when ``sample_weight`` is None, so L is the mean CE.

    Parameters
    ----------
    weights : list of ndarray, ``weights[l]`` of shape (sizes[l+1], sizes[l])
    biases : list of ndarray, ``biases[l]`` of shape (sizes[l+1],)
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), int class indices in 0..n_classes-1
    activation : {"relu", "sigmoid", "tanh"}, hidden activation
    l2 : float >= 0
    sample_weight : ndarray of shape (n_samples,) or None
    dtype : "float64", "float32" or None (float32 only if weights[0] is float32)
    return_n_correct : bool, also return the number of correctly classified rows
    dropout : float in [0, 1), inverted dropout on the hidden layers (0: none)
    dropout_key, iteration : the masks' key and training step (``dropout_masks``);
        the masks do not depend on the weights, so for a fixed key and iteration
        this is a smooth function of them (finite differences apply)

    Returns
    -------
    loss : float
    dweights : list of ndarray, same shapes as ``weights``
    dbiases : list of ndarray, same shapes as ``biases``
    n_correct : int, only if ``return_n_correct``
    """
    code = activation_code(activation)
    theta, sizes, dtype = _check_params(weights, biases, dtype)
    X = _check_X(X, dtype, n_features=int(sizes[0]))
    y = _check_y_index(y, X.shape[0], int(sizes[-1]))
    w = _check_sample_weight(sample_weight, X.shape[0])
    l2 = float(l2)
    if not np.isfinite(l2) or l2 < 0:
        raise ValueError(f"l2={l2!r} must be a finite number >= 0")
    dropout, key, iteration = _check_dropout(dropout, dropout_key, iteration)
    loss, grad, correct = _run_loss_and_grad(theta, sizes, code, X, y, w, l2, dropout, key,
                                             iteration)
    if not np.isfinite(loss) or not np.all(np.isfinite(grad)):
        raise ValueError(f"loss or gradient is not finite (loss={loss}); the weights or "
                         f"inputs are too large: scale the inputs or shrink the weights")
    dW, db = unpack(grad, sizes)
    if return_n_correct:
        return loss, dW, db, correct
    return loss, dW, db


def forward(weights, biases, X, activation, dtype=None):
    """Softmax class probabilities of the network (numba kernel).

    Parameters
    ----------
    weights : list of ndarray, ``weights[l]`` of shape (sizes[l+1], sizes[l])
    biases : list of ndarray, ``biases[l]`` of shape (sizes[l+1],)
    X : ndarray of shape (n_samples, n_features)
    activation : {"relu", "sigmoid", "tanh"}
    dtype : "float64", "float32" or None (float32 only if weights[0] is float32)

    Returns
    -------
    P : ndarray of shape (n_samples, n_classes), rows sum to 1
    """
    code = activation_code(activation)
    theta, sizes, dtype = _check_params(weights, biases, dtype)
    X = _check_X(X, dtype, n_features=int(sizes[0]))
    P = _run_forward(theta, sizes, code, X)
    if not np.all(np.isfinite(P)):
        raise ValueError("probabilities are not finite; scale the inputs or shrink the weights")
    return P



# ================================================================ estimator


INITS = ("normal", "glorot", "he")
# Rows ``MLP.predict`` scores at once (its memory: one piece's probabilities).
PREDICT_ROWS = 1 << 16
_HISTORY_KEYS = ("loss", "val_loss", "train_acc", "val_acc", "grad_abs_mean")
# what ``fit`` learns; removed when a fit starts and when it fails
_FITTED = ("weights_", "biases_", "classes_", "n_features_in_", "feature_names_in_", "history_",
           "n_iter_", "best_iter_", "best_val_iter_", "_best_val_theta", "training_mean_")
SAVE_FORMAT, SAVE_VERSION = "mlp.MLP", 1      # written by MLP.save, checked by MLP.load
_ZIP_MAGIC = b"PK\x03\x04"                     # every .npz is a zip archive
_ALIASES = {"seed": "random_state", "n_iter": "max_iter"}   # primary -> scikit-learn's name
# What MLP.load allocates is bounded before it allocates: a plain (stored) entry
# by the file's own size, compressed entries together by LOAD_MAX_INFLATED
# (MLP.save compresses nothing; raise it for a big model re-saved with
# np.savez_compressed), the JSON metadata entry by _LOAD_MAX_META.
LOAD_MAX_INFLATED = 256 << 20
_LOAD_MAX_META = 32 << 20
_READ_CHUNK = 1 << 20
# What a crafted or damaged file can make the reading raise; MLP.load turns each
# into its one ValueError. (RecursionError: deeply nested JSON or .npy header.)
_LOAD_ERRORS = (ValueError, KeyError, IndexError, TypeError, OSError, EOFError, OverflowError,
                RecursionError, MemoryError, NotImplementedError, zipfile.BadZipFile, zlib.error,
                struct.error)


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and \
        not isinstance(v, (bool, np.bool_)) and np.isfinite(v)


def _refuse_1d(X, name):
    """One-line error for 1-D input (scikit-learn's own prints the whole array)."""
    ndim = getattr(X, "ndim", None)
    if ndim is None and isinstance(X, (list, tuple)):
        ndim = 1 if len(X) and not any(isinstance(r, (list, tuple, np.ndarray)) for r in X) else None
    if ndim == 1:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got 1-D input of "
                         f"length {len(X)}. Reshape your data: {name}.reshape(-1, 1) for one "
                         f"feature, {name}.reshape(1, -1) for one sample")


def _numeric_hint(err, name):
    """``err`` from scikit-learn's conversion, with the fix when the cause is text or pd.NA;
    other errors (e.g. the TypeError for a dict in X) unchanged."""
    msg = str(err)
    if "could not convert" in msg:
        return ValueError(f"{name} must be numeric: {msg}; encode text columns first "
                          f"(prep.Preprocessor one-hot encodes them)")
    if "NAType" in msg:
        return ValueError(f"{name} has missing values (pd.NA) in an object column; impute or "
                          f"drop them first, or convert with {name}.astype(float)")
    return err


def _require_finite(A, name):
    """``A`` (2-D float) ready for the kernels, or a ValueError naming the rows with NaN/Inf.

    A read-only array (e.g. a memory map) is copied: numba types it apart from a
    writeable one, and each kernel would compile again for it (about 30 s here).
    """
    step = max(1, (1 << 22) // max(1, A.shape[1]))      # rows per piece: a small mask, any size
    if not all(np.isfinite(A[lo:lo + step]).all() for lo in range(0, len(A), step)):
        finite = np.isfinite(A)
        rows = np.flatnonzero(~finite.all(axis=1))
        r = rows[0]
        c = np.flatnonzero(~finite[r])[0]
        raise ValueError(f"{name} has NaN or Inf in {rows.size} rows (e.g. rows {rows[:5].tolist()}); "
                         f"impute or drop them first (first bad cell at (row, column) ({r}, {c}))")
    return A if A.flags.writeable else A.copy()


def _npz_path(path):
    """``path`` with the ``.npz`` suffix ``np.savez`` adds when it is missing."""
    p = Path(os.fspath(path))
    return p if p.suffix == ".npz" else p.with_name(p.name + ".npz")


def _to_json(v):
    """A parameter or label as JSON that ``_from_json`` turns back into the same value and type."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, tuple):
        return {"__tuple__": [_to_json(x) for x in v]}
    if isinstance(v, list):
        return [_to_json(x) for x in v]
    if isinstance(v, dict):
        return {"__pairs__": [[_to_json(k), _to_json(x)] for k, x in v.items()]}
    raise TypeError(f"{v!r} of type {type(v).__name__} cannot be stored without pickle")


def _from_json(v):
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    if isinstance(v, dict):
        if set(v) == {"__tuple__"}:
            return tuple(_from_json(x) for x in v["__tuple__"])
        if set(v) == {"__pairs__"}:
            return {_from_json(k): _from_json(x) for k, x in v["__pairs__"]}
        raise ValueError(f"unexpected JSON object {v!r}")
    return v


def _labels_to_json(classes):
    """``classes_`` as ``{"dtype", "values"}``: exact values, and their type (JSON
    floats round-trip exactly; an object array keeps each element's Python type)."""
    a = np.asarray(classes)
    if a.dtype.kind not in "biufUO":
        raise ValueError(f"classes_ of dtype {a.dtype} cannot be saved; use integer, float, "
                         f"bool or string labels")
    values = [_to_json(v) for v in a.tolist()]
    if not all(isinstance(v, (bool, int, float, str)) for v in values):
        raise ValueError(f"classes_ {a.tolist()!r} cannot be saved; use integer, float, bool "
                         f"or string labels")
    return {"dtype": a.dtype.str, "values": values}


def _labels_from_json(d):
    """``classes_`` from ``_labels_to_json``'s form; ValueError unless it is a list of
    plain labels with a plain dtype, small enough to be what the metadata says."""
    if not (isinstance(d, dict) and isinstance(d.get("dtype"), str) and isinstance(d.get("values"), list)
            and all(isinstance(v, (bool, int, float, str)) for v in d["values"])):
        raise ValueError("its labels ('classes' in 'meta') are not a list of labels with a dtype")
    dtype, values = np.dtype(d["dtype"]), d["values"]
    if dtype.kind not in "biufUO" or dtype.names is not None or dtype.subdtype is not None:
        raise ValueError(f"its labels have dtype {d['dtype']!r}; MLP.save writes integer, float, "
                         f"bool, string or object labels")
    if len(values) * dtype.itemsize > _LOAD_MAX_META:     # e.g. '<U2000000000'
        raise ValueError(f"its labels would take {len(values) * dtype.itemsize} bytes "
                         f"({len(values)} of dtype {d['dtype']!r})")
    if dtype == object:
        a = np.empty(len(values), dtype=object)
        a[:] = values
        return a
    return np.array(values, dtype=dtype).reshape(len(values))


class _NpzReader:
    """The arrays of an open ``.npz`` (``zipfile.ZipFile`` ``zf`` of a file of
    ``file_size`` bytes), read without ``np.load``: nothing is allocated before
    the entry's ``.npy`` header has been checked against the entry's size, and
    the entry's size against the file (a plain entry) or ``LOAD_MAX_INFLATED``
    (compressed entries together). What it finds wrong is a ValueError; the zip
    layer's own errors (``_LOAD_ERRORS``) pass through to ``MLP.load``."""

    def __init__(self, zf, file_size):
        self.zf, self.file_size = zf, file_size
        self.entries = {(i.filename[:-4] if i.filename.endswith(".npy") else i.filename): i
                        for i in zf.infolist()}
        self._inflated, self._counted, self._headers = 0, set(), {}

    def _open(self, key):
        info = self.entries.get(key)
        if info is None:
            raise ValueError(f"it has no entry {key!r} (entries: {sorted(self.entries)[:8]})")
        if info.flag_bits & 0x1:
            raise ValueError(f"its entry {key!r} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size or \
                    info.header_offset + info.compress_size > self.file_size:
                raise ValueError(f"its entry {key!r} declares {info.file_size} bytes, more than the "
                                 f"{self.file_size}-byte file holds: the archive is truncated or damaged")
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if key not in self._counted:
                self._counted.add(key)
                self._inflated += info.file_size
            if self._inflated > LOAD_MAX_INFLATED:
                raise ValueError(f"its compressed entries inflate to more than {LOAD_MAX_INFLATED} bytes "
                                 f"(mlp.LOAD_MAX_INFLATED; entry {key!r} declares {info.file_size}); "
                                 f"MLP.save compresses nothing, so it was written by something else")
        else:
            raise ValueError(f"its entry {key!r} is compressed with zip method {info.compress_type}; "
                             f"MLP.save writes plain entries")
        try:
            return info, self.zf.open(info)
        except NotImplementedError as e:     # e.g. a zip format version zipfile does not read
            raise ValueError(f"its entry {key!r} cannot be read here ({e}); MLP.save writes "
                             f"plain zip entries") from None

    def _read_header(self, key, fh, info):
        """(shape, dtype, fortran) of the ``.npy`` at the start of ``fh``, checked against
        ``info.file_size``; ``fh`` is left at the data."""
        fmt = np.lib.format
        try:
            version = fmt.read_magic(fh)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"it is .npy format version {version}; MLP.save writes 1.0")
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read(fh)
        except (ValueError, TypeError, SyntaxError, tokenize.TokenError, RecursionError,
                MemoryError, OverflowError) as e:  # NumPy parses the header's Python literal
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            raise ValueError(f"its entry {key!r} has no valid .npy header ({reason})") from None
        if dtype.hasobject:
            raise ValueError(f"its entry {key!r} holds Python objects, which would need "
                             f"unpickling (allow_pickle=True); nothing was unpickled")
        if dtype.names is not None or dtype.subdtype is not None or \
                dtype.kind not in "biufU" or dtype.itemsize == 0:
            raise ValueError(f"its entry {key!r} has dtype {dtype}, not one MLP.save writes")
        if any(n < 0 for n in shape):
            raise ValueError(f"its entry {key!r} declares the shape {shape}")
        nbytes = math.prod(shape) * dtype.itemsize          # Python ints: no overflow
        if fh.tell() + nbytes != info.file_size:
            raise ValueError(f"its entry {key!r} declares an array of shape {shape} and dtype "
                             f"{dtype} ({nbytes} bytes) but holds {info.file_size - fh.tell()} "
                             f"bytes: the file is damaged or was altered")
        return tuple(shape), dtype, fortran

    def header(self, key):
        """(shape, dtype) of entry ``key``, without reading its data."""
        if key not in self._headers:
            info, fh = self._open(key)
            with fh:
                self._headers[key] = self._read_header(key, fh, info)
        return self._headers[key][:2]

    def array(self, key):
        """The array in entry ``key`` (its data read in chunks into one new buffer)."""
        info, fh = self._open(key)
        with fh:
            shape, dtype, fortran = self._read_header(key, fh, info)
            if self._headers.setdefault(key, (shape, dtype, fortran)) != (shape, dtype, fortran):
                raise ValueError(f"its entry {key!r} changed while it was read")
            buf = bytearray(math.prod(shape) * dtype.itemsize)
            view, got = memoryview(buf), 0
            while got < len(buf):
                n = fh.readinto(view[got:got + _READ_CHUNK])
                if not n:
                    raise ValueError(f"its entry {key!r} ends early: the archive is truncated")
                got += n
            fh.read(1)          # at the end: zipfile checks the entry's CRC
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _check_meta(meta):
    """``meta`` (the JSON of a file's 'meta' entry) has every field ``MLP.save``
    writes, each of the type it writes; ValueError naming the first that has not."""
    if not isinstance(meta, dict) or meta.get("format") != SAVE_FORMAT:
        raise ValueError(f"its 'meta' entry is not {SAVE_FORMAT} metadata")
    if meta.get("version") != SAVE_VERSION:
        raise ValueError(f"it has format version {meta.get('version')!r}; this code reads "
                         f"version {SAVE_VERSION}")

    def bad(field, what):
        return ValueError(f"its metadata field {field!r} is {str(meta.get(field))[:60]!r}, "
                          f"not {what}")
    if not (isinstance(meta.get("params"), dict) and all(isinstance(k, str) for k in meta["params"])):
        raise bad("params", "a JSON object of parameters")
    for field in ("n_layers", "n_features_in"):
        if not (_is_int(meta.get(field)) and meta[field] >= 1):
            raise bad(field, "a positive integer")
    for field in ("n_iter_", "best_iter_", "best_val_iter_"):
        if meta.get(field) is not None and not (_is_int(meta[field]) and meta[field] >= 0):
            raise bad(field, "null or an integer >= 0")
    names = meta.get("feature_names_in")
    if names is not None and not (isinstance(names, list) and len(names) == meta["n_features_in"]
                                  and all(isinstance(n, str) for n in names)):
        raise bad("feature_names_in", f"null or a list of {meta['n_features_in']} names")
    history = meta.get("history")
    if not (isinstance(history, list) and all(k in _HISTORY_KEYS for k in history)):
        raise bad("history", f"a list of names from {list(_HISTORY_KEYS)}")
    if history and meta.get("n_iter_") is None:
        raise bad("n_iter_", "the length of the history it has")


class _LocalRows:
    """The training rows in this process: what ``MLP._train`` steps on. ``batch`` is None
    (every row) or an array of row indices (a mini-batch)."""

    def __init__(self, X, yi, w):
        self.X, self.yi, self.w = X, yi, w
        self.n, self.n_features = X.shape
        self._total = float(w.sum())

    def weight(self, batch):
        """Total weight of the batch's rows."""
        return self._total if batch is None else float(self.w[batch].sum())

    def loss_and_grad(self, batch, theta, sizes, code, l2, rate, key, step):
        """(weighted mean loss, its gradient, hits) over the batch's rows."""
        if batch is None:
            return _run_loss_and_grad(theta, sizes, code, self.X, self.yi, self.w, l2, rate,
                                      key, step)
        X, y, w = self.X[batch], self.yi[batch], self.w[batch]
        if rate:
            return _run_loss_and_grad(theta, sizes, code, X, y, w, l2, rate, key, step)
        with _single_threaded_blas():          # one block on this thread: no parallel launch
            loss, grad, correct = _loss_and_grad_serial(theta, sizes, np.int64(code), X, y,
                                                        w / w.sum(), np.float64(l2),
                                                        np.int64(TILE))
        return float(loss), grad, int(correct)


class _Update:
    """The solver's step on ``theta`` (updated in place): gradient descent
    ``theta -= lr * g`` or Adam with bias correction; ``steps`` counts the steps
    taken (the dropout masks' iteration index)."""

    def __init__(self, est, theta, lr):
        self.theta, self.lr, self.steps = theta, lr, 0
        self.adam = est.solver == "adam"
        if self.adam:
            dt = theta.dtype.type
            self.b1, self.b2, self.eps = dt(est.beta_1), dt(est.beta_2), dt(est.epsilon)
            self.m, self.v = np.zeros_like(theta), np.zeros_like(theta)

    def step(self, grad):
        self.steps += 1
        if not self.adam:
            self.theta -= self.lr * grad
            return
        k = self.steps
        self.m *= self.b1
        self.m += (1 - self.b1) * grad
        self.v *= self.b2
        self.v += (1 - self.b2) * grad * grad
        m_hat = self.m / (1 - self.b1 ** k)
        v_hat = self.v / (1 - self.b2 ** k)
        self.theta -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class _Batches:
    """The rows of each step of an epoch: ``None`` (every row, one full-batch step)
    when ``batch_size`` is None or >= the number of rows, else consecutive slices of
    a permutation of the rows drawn from the seed per epoch (or of the row order
    without ``shuffle``)."""

    def __init__(self, est, n):
        b = est.batch_size
        self.n = n
        self.full = b is None or b >= n
        self.size = n if self.full else int(b)
        self.shuffle = bool(est.shuffle)
        if not self.full:
            seed = est._resolved("seed")
            child = np.random.SeedSequence(seed).spawn(2)[1]      # apart from dropout's [0]
            self.rng = np.random.default_rng(child)

    def of_epoch(self, t):
        if self.full:
            yield None
            return
        order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        for s in range(0, self.n, self.size):
            yield np.sort(order[s:s + self.size])   # row order within a batch: contiguous reads


class MLP(ClassifierMixin, BaseEstimator):
    """Multilayer perceptron trained by vanilla full-batch gradient descent.

    Hidden layers use ``activation``; the output layer is softmax and the loss
    is (class-weighted) cross-entropy plus ``l2/2 * sum ||W||^2``. Each
    iteration computes the loss and gradient over the whole training set with
    the tiled numba kernel and takes one step ``theta -= lr * grad``.

    A scikit-learn classifier: inputs are checked with scikit-learn's
    ``validate_data`` / ``check_classification_targets`` (so ``clone``,
    ``Pipeline``, ``GridSearchCV`` and ``check_estimator`` work), and the
    constructor arguments are validated in ``fit`` with a ``ValueError`` that
    names the parameter.

    Parameters
    ----------
    hidden : tuple of int, widths of the hidden layers (at least one)
    activation : {"relu", "sigmoid", "tanh"}
    lr : float > 0, learning rate
    n_iter : int >= 1, number of gradient steps
    init : {"normal", "glorot", "he"}; "normal" draws N(0, init_scale^2)
        weights, "glorot" U(-a, a) with a = sqrt(6 / (fan_in + fan_out)),
        "he" N(0, 2 / fan_in); biases start at zero
    init_scale : float > 0, standard deviation for ``init="normal"``
    seed : int >= 0 or None, seed of the initial weights
    dtype : {"float64", "float32"}, precision of parameters and kernels
    l2 : float >= 0, L2 penalty on the weights (not biases)
    class_weight : None, "balanced" or dict {label: weight}
    early_stopping : bool, stop when the validation loss has not improved for
        ``patience`` iterations and restore the best parameters. The validation
        data are ``X_val``/``y_val`` when ``fit`` gets them, else a stratified
        ``validation_fraction`` of the training rows held out (so it works in
        ``GridSearchCV``, which passes no validation data)
    patience : int >= 1
    validation_fraction : float in (0, 1), share of ``X`` held out for early
        stopping when ``fit`` gets no ``X_val``/``y_val``: a stratified split
        drawn from ``seed`` (``train_test_split(..., stratify=y,
        random_state=seed)``); unused without early stopping or with explicit
        validation data
    dropout : float in [0, 1), inverted dropout on the hidden layers while
        training: each hidden unit of each row is zeroed with this probability
        and the kept ones scaled by 1 / (1 - dropout); masks are drawn inside
        the kernel from ``seed``, the iteration, the row and the unit, so a fit
        is the same for any thread count. 0 (default): no dropout, the plain
        kernel. ``history_["loss"]`` and ``train_acc`` are then those of the
        dropped-out network; prediction and validation never drop
    solver : {"gd", "adam"}, the update rule: "gd" (default, the course's
        method) theta <- theta - lr * g; "adam" Adam (Kingma & Ba 2015) with
        ``beta_1``, ``beta_2``, ``epsilon`` and bias correction (``lr`` of about
        0.001-0.01 suits it, as scikit-learn's ``learning_rate_init``)
    batch_size : int >= 1 or None; None (default): full batch, one step per
        iteration. An integer: mini-batches of that many rows, one step per
        batch, and ``n_iter`` counts epochs (passes over the rows); the last
        batch of an epoch holds the remaining rows. A batch_size >= n_samples
        is one full batch per epoch
    shuffle : bool, shuffle the rows before each epoch (mini-batches only),
        from ``seed`` (a stream apart from the initial weights' and dropout's),
        so a fit is the same for any thread count
    beta_1, beta_2 : float in [0, 1), Adam's decay rates of the first and
        second moment estimates
    epsilon : float > 0, Adam's term added to the root of the second moment
    verbose : bool or int >= 0; ``k`` prints the loss every k iterations
        (``True``: every iteration, as scikit-learn's ``MLPClassifier``)
    random_state, max_iter : scikit-learn's names for ``seed`` and ``n_iter``
        (aliases: ``seed`` and ``n_iter`` are the primary names, the ones
        ``get_params`` users and the saved files rely on). None (default)
        defers to the primary; a value given is the one used, whatever the
        primary says (scikit-learn's own checks set ``n_iter`` and
        ``max_iter`` to different values and expect ``max_iter`` to count).

    Attributes
    ----------
    weights_, biases_ : lists of ndarray, ``weights_[l]`` of shape (fan_out, fan_in)
    classes_ : ndarray of shape (n_classes,), the sorted labels of ``y``
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,), only when ``X``
        was a DataFrame with string column names
    history_ : dict of ndarray; ``loss``, ``val_loss``, ``train_acc``,
        ``val_acc`` of shape (n_iter_,) and ``grad_abs_mean`` of shape
        (n_iter_, n_layers). Entry t describes the parameters *before* step t
        (with mini-batches: ``loss``, ``train_acc`` and ``grad_abs_mean`` are
        the weighted means over epoch t's batches, each taken before its step,
        as scikit-learn's ``loss_curve_``; ``val_*`` the parameters before the epoch);
        ``val_loss`` is the same objective (class weights, l2) on the validation
        set, NaN without one.
    n_iter_ : int, iterations run
    best_iter_ : int or None, iteration whose parameters were restored by early stopping
    best_val_iter_ : int or None, iteration with the lowest validation loss (None
        without validation data); its parameters are kept for
        ``replay_early_stopping`` (not written by ``save``)
    training_mean_ : ndarray of shape (n_features_in_,), float64, the mean of
        the rows trained on (without held-out validation rows); the default
        baseline of ``integrated_gradients``
    loss_curve_ : list of float, ``history_["loss"]`` (scikit-learn's name)
    coefs_, intercepts_ : lists of ndarray, scikit-learn's layout: ``coefs_[l]``
        of shape (fan_in, fan_out), the transposed view of ``weights_[l]``;
        ``intercepts_[l]`` is ``biases_[l]``
    """

    def __init__(self, hidden=(64, 64), activation="relu", lr=0.1, n_iter=200,
                 init="normal", init_scale=0.1, seed=42, dtype="float64", l2=0.0,
                 class_weight=None, early_stopping=False, patience=20, validation_fraction=0.1,
                 verbose=False, random_state=None, max_iter=None, dropout=0.0,
                 solver="gd", batch_size=None, shuffle=True, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8):
        # stored as given (scikit-learn's convention); checked in ``fit``
        self.hidden, self.activation, self.lr, self.n_iter = hidden, activation, lr, n_iter
        self.init, self.init_scale, self.seed, self.dtype = init, init_scale, seed, dtype
        self.l2, self.class_weight = l2, class_weight
        self.early_stopping, self.patience = early_stopping, patience
        self.validation_fraction = validation_fraction
        self.verbose, self.random_state, self.max_iter = verbose, random_state, max_iter
        self.dropout = dropout
        self.solver, self.batch_size, self.shuffle = solver, batch_size, shuffle
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def __sklearn_is_fitted__(self):
        return hasattr(self, "weights_")

    def _resolved(self, primary):
        """The value in effect for ``primary`` ("seed" or "n_iter"): its
        scikit-learn alias when that was given, else the primary itself."""
        alias = getattr(self, _ALIASES[primary])
        return getattr(self, primary) if alias is None else alias

    # ------------------------------------------------ scikit-learn's names
    def _fitted(self, name):
        if not hasattr(self, "weights_"):
            raise AttributeError(f"{name} is set by fit; this MLP is not fitted yet")

    @property
    def loss_curve_(self):
        """``history_["loss"]`` as a list: the training loss before each step."""
        self._fitted("loss_curve_")
        return [float(v) for v in self.history_["loss"]] if hasattr(self, "history_") else []

    @property
    def coefs_(self):
        """Weights in scikit-learn's layout: ``coefs_[l]`` of shape (fan_in, fan_out),
        views of ``weights_[l].T``."""
        self._fitted("coefs_")
        return [W.T for W in self.weights_]

    @property
    def intercepts_(self):
        """Biases in scikit-learn's name: ``intercepts_[l]`` is ``biases_[l]``, shape (fan_out,)."""
        self._fitted("intercepts_")
        return list(self.biases_)

    # ------------------------------------------------------------ validation
    def _check_hyper(self):
        """Validate constructor arguments; ``ValueError`` naming the parameter."""
        h = self.hidden
        if _is_int(h):
            h = (h,)
        if not isinstance(h, (tuple, list)) or len(h) == 0 or \
                not all(_is_int(v) and v >= 1 for v in h):
            raise ValueError(f"hidden={self.hidden!r} must be a non-empty tuple of positive "
                             f"layer widths, e.g. (64, 64)")
        code = activation_code(self.activation)
        if not _is_real(self.lr) or self.lr <= 0:
            raise ValueError(f"lr={self.lr!r} must be a finite number > 0, e.g. 0.1")
        for name in ("n_iter", "max_iter"):
            v = getattr(self, name)
            if not (v is None and name == "max_iter") and (not _is_int(v) or v < 1):
                raise ValueError(f"{name}={v!r} must be an integer >= 1")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r} is not supported; use one of {list(INITS)}")
        if not _is_real(self.init_scale) or self.init_scale <= 0:
            raise ValueError(f"init_scale={self.init_scale!r} must be a finite number > 0")
        for name in ("seed", "random_state"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < 0):
                raise ValueError(f"{name}={v!r} must be a non-negative integer or None")
        _check_dropout(self.dropout, 0, 0)
        if not (isinstance(self.verbose, (bool, np.bool_)) or
                (_is_int(self.verbose) and self.verbose >= 0)):
            raise ValueError(f"verbose={self.verbose!r} must be True, False or an integer >= 0")
        dtype = resolve_dtype(self.dtype)
        if not _is_real(self.l2) or self.l2 < 0:
            raise ValueError(f"l2={self.l2!r} must be a finite number >= 0")
        cw = self.class_weight
        if not (cw is None or (isinstance(cw, str) and cw == "balanced") or isinstance(cw, dict)):
            raise ValueError(f"class_weight={cw!r} must be None, 'balanced' or a dict "
                             f"{{label: weight}}")
        if isinstance(cw, dict) and not all(_is_real(v) and v >= 0 for v in cw.values()):
            raise ValueError(f"class_weight={cw!r}: every weight must be a finite number >= 0")
        if not isinstance(self.early_stopping, (bool, np.bool_)):
            raise ValueError(f"early_stopping={self.early_stopping!r} must be True or False")
        if not _is_int(self.patience) or self.patience < 1:
            raise ValueError(f"patience={self.patience!r} must be an integer >= 1")
        vf = self.validation_fraction
        if not _is_real(vf) or not 0 < vf < 1:
            raise ValueError(f"validation_fraction={vf!r} must be a number in (0, 1), e.g. 0.1")
        _check_solver(self)
        return tuple(int(v) for v in h), code, dtype

    def _check_X_y(self, X, y, dtype):
        """Training data via scikit-learn's ``validate_data`` (sets ``n_features_in_``
        and ``feature_names_in_``): X of ``dtype``, C-contiguous and finite; y 1-D
        classification labels. Returns X, y and the class index of each row."""
        _refuse_1d(X, "X")
        try:
            X, y = validate_data(self, X, y, dtype=dtype, order="C", ensure_all_finite=False)
        except (ValueError, TypeError) as e:
            raise _numeric_hint(e, "X") from None
        X = _require_finite(X, "X")
        try:
            check_classification_targets(y)
        except ValueError as e:
            if y.dtype != object:
                raise
            raise ValueError(f"{e} (y is an object array of non-text labels, e.g. "
                             f"{y[0]!r}; convert it, e.g. y.astype(int))") from None
        classes = unique_labels(y)
        if len(classes) < 2:
            raise ValueError(f"y has only one class ({classes.tolist()}); "
                             f"a classifier needs at least two")
        self.classes_ = classes
        return X, y, np.searchsorted(classes, y).astype(np.int64)

    def _check_X(self, X, dtype, name="X"):
        """Prediction inputs via ``validate_data`` (width and column names as in fit)."""
        _refuse_1d(X, name)
        try:
            X = validate_data(self, X, reset=False, dtype=dtype, order="C",
                              ensure_all_finite=False)
        except (ValueError, TypeError) as e:
            raise _numeric_hint(e, name) from None
        return _require_finite(X, name)

    def _check_X_val(self, X_val, dtype, n_features):
        _refuse_1d(X_val, "X_val")
        try:
            Xv = check_array(X_val, dtype=dtype, order="C", ensure_all_finite=False,
                             estimator=self, input_name="X_val")
        except (ValueError, TypeError) as e:
            raise _numeric_hint(e, "X_val") from None
        if Xv.shape[1] != n_features:
            raise ValueError(f"X_val has {Xv.shape[1]} features but X has {n_features}; "
                             f"use the same columns for both")
        return _require_finite(Xv, "X_val")

    def _sample_weight(self, yi):
        """Per-sample weights from ``class_weight`` for class indices ``yi``."""
        w = self._class_weights(np.bincount(yi, minlength=len(self.classes_)))[yi]
        if w.sum() <= 0:
            raise ValueError(f"class_weight={self.class_weight!r} gives every training sample "
                             f"weight 0")
        return w

    def _class_weights(self, counts):
        """Weight of each class (shape (n_classes,)) from ``class_weight`` and the class
        counts of the training rows: ones, "balanced" n / (K * n_k), or the dict's."""
        K = len(self.classes_)
        cw = self.class_weight
        if cw is None:
            return np.ones(K)
        if isinstance(cw, str):                       # "balanced": n / (K * n_k)
            counts = np.asarray(counts, dtype=float)
            return np.where(counts > 0, counts.sum() / (K * np.maximum(counts, 1)), 0.0)
        per_class = np.ones(K)
        known = {c: k for k, c in enumerate(self.classes_.tolist())}
        for label, wt in cw.items():
            key = label.item() if isinstance(label, np.generic) else label
            if key not in known:
                raise ValueError(f"class_weight has label {label!r}, which is not a class "
                                 f"of y (classes: {self.classes_.tolist()})")
            per_class[known[key]] = float(wt)
        return per_class

    def _validation_split(self, yi):
        """(train rows, validation rows) of ``fit``'s data for early stopping: a
        stratified ``validation_fraction`` drawn from ``seed``, each in row order."""
        from sklearn.model_selection import train_test_split
        rows = np.arange(yi.shape[0])
        try:
            train, val = train_test_split(rows, test_size=self.validation_fraction,
                                          random_state=self._resolved("seed"), stratify=yi)
        except ValueError as e:
            raise ValueError(f"validation_fraction={self.validation_fraction!r} cannot hold out "
                             f"a stratified validation set from {yi.shape[0]} rows of "
                             f"{len(self.classes_)} classes ({e}); pass X_val and y_val to fit, "
                             f"or use more rows or another validation_fraction") from None
        return np.sort(train), np.sort(val)

    def _encode(self, y, n, name):
        """Class indices (int64, shape (n,)) of labels ``y`` taken from ``classes_``."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"{name} must be 1-D with one label per row; got shape {y.shape} "
                             f"for {n} rows")
        try:
            idx = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
            bad = np.flatnonzero(self.classes_[idx] != y)
        except TypeError:                          # labels not comparable with classes_
            idx, bad = None, np.arange(n)
        if bad.size:
            raise ValueError(f"{name}[{bad[0]}] = {y[bad[0]]!r} is not one of the training "
                             f"classes {self.classes_.tolist()}")
        return idx.astype(np.int64)

    # ------------------------------------------------------------------ fit
    def _dropout_key(self):
        """Key of the dropout masks, from the seed (a stream apart from the initial
        weights'); random when the seed is None."""
        child = np.random.SeedSequence(self._resolved("seed")).spawn(1)[0]
        return int(child.generate_state(1, dtype=np.uint64)[0])

    def _init_params(self, sizes, dtype):
        rng = np.random.default_rng(self._resolved("seed"))
        weights, biases = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            if self.init == "normal":
                W = rng.normal(0.0, self.init_scale, size=(fan_out, fan_in))
            elif self.init == "glorot":
                a = np.sqrt(6.0 / (fan_in + fan_out))
                W = rng.uniform(-a, a, size=(fan_out, fan_in))
            else:
                W = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_out, fan_in))
            weights.append(W)
            biases.append(np.zeros(fan_out))
        return pack(weights, biases, dtype)

    def fit(self, X, y, X_val=None, y_val=None, progress=None, sample_weight=None):
        """Train by full-batch gradient descent.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), numeric
        y : array-like of shape (n_samples,), classification labels (at least
            two classes; integers, strings or bools; continuous values are refused)
        X_val : array-like of shape (n_val, n_features) or None
        y_val : array-like of shape (n_val,) or None, labels from ``y``'s classes
        progress : callable(iteration, loss, val_loss) or None, called every
            iteration (val_loss is NaN without validation data)
        sample_weight : array-like of shape (n_samples,) or None
            non-negative weight of each training row (multiplied by
            ``class_weight``'s); the loss is the weighted mean cross-entropy.
            None weighs every row 1. Validation rows are not weighted by it.

        Returns
        -------
        self
        """
        hidden, code, dtype = self._check_hyper()
        self._forget()
        try:
            return self._fit(hidden, code, dtype, X, y, X_val, y_val, progress, sample_weight)
        except BaseException:
            self._forget()                   # no mixture of old weights and new metadata
            raise

    def _forget(self):
        """Drop every fitted attribute (the model is unfitted afterwards)."""
        for k in _FITTED:
            self.__dict__.pop(k, None)

    def _fit(self, hidden, code, dtype, X, y, X_val, y_val, progress, sample_weight=None):
        """``fit`` after the hyper-parameter check: validate the data, train, store."""
        X, y, yi = self._check_X_y(X, y, dtype)
        sw = None if sample_weight is None else _check_sample_weight(sample_weight, X.shape[0])
        w = self._sample_weight(yi) * (1.0 if sw is None else sw)
        has_val = X_val is not None
        if has_val != (y_val is not None):
            raise ValueError("pass both X_val and y_val, or neither")
        if self.early_stopping and not has_val:    # hold out validation_fraction of X
            train, val = self._validation_split(yi)
            X_val, y_val, has_val = X[val], y[val], True
            X, yi = X[train], yi[train]
            w = self._sample_weight(yi) * (1.0 if sw is None else sw[train])
            if w.sum() <= 0:
                raise ValueError("sample_weight is 0 on every row left for training after "
                                 "the validation split; give more rows a positive weight")
        if progress is not None and not callable(progress):
            raise ValueError(f"progress={progress!r} must be a callable(iteration, loss, "
                             f"val_loss) or None")
        if has_val:
            Xv = self._check_X_val(X_val, dtype, X.shape[1])
            yv = self._encode(y_val, Xv.shape[0], "y_val")
        else:
            Xv = yv = None
        self.training_mean_ = X.mean(axis=0, dtype=np.float64)
        return self._train(_LocalRows(X, yi, w), hidden, code, dtype, Xv, yv, progress)

    def _train(self, rows, hidden, code, dtype, Xv, yv, progress):
        """The training loop on a source of rows (``_LocalRows``, or ``cluster``'s rows held
        by Dask workers): initial weights from the seed, the solver's steps, validation,
        early stopping; stores the fitted attributes (``classes_`` and ``n_features_in_``
        set by the caller). ``Xv``/``yv``: checked validation data or None."""
        has_val = Xv is not None
        if has_val:
            wv = self._sample_weight(yv) if self.class_weight is not None else np.ones(len(yv))
            if wv.sum() <= 0:
                wv = np.ones(len(yv))
            wv = wv / wv.sum()
        sizes = [rows.n_features, *hidden, len(self.classes_)]
        theta, sizes = self._init_params(sizes, dtype)
        L = len(sizes) - 1
        off = _offsets(sizes)
        w_slices = [slice(off[l], off[l] + sizes[l + 1] * sizes[l]) for l in range(L)]
        lr = dtype(self.lr)
        n_iter = self._resolved("n_iter")
        every = int(self.verbose)               # 0: silent
        rate = float(self.dropout)
        key = self._dropout_key() if rate > 0 else 0
        hist = {k: np.full(n_iter, np.nan) for k in _HISTORY_KEYS[:4]}
        hist["grad_abs_mean"] = np.full((n_iter, L), np.nan)
        best_loss, best_theta, best_iter = np.inf, None, None
        update = _Update(self, theta, lr)
        batches = _Batches(self, rows.n)
        t = -1
        for t in range(n_iter):
            val_loss, start = np.nan, theta      # ``start``: the parameters before iteration t
            if has_val:
                if not batches.full:
                    start = theta.copy()
                logP = _run_forward(theta, sizes, code, Xv, log=True)
                val_loss = float(-np.sum(wv * logP[np.arange(len(yv)), yv]) +
                                 0.5 * self.l2 * sum(float(np.sum(
                                     theta[s_].astype(np.float64) ** 2)) for s_ in w_slices))
                hist["val_loss"][t] = val_loss
                hist["val_acc"][t] = np.mean(np.argmax(logP, axis=1) == yv)
            loss, correct, gmean = 0.0, 0, np.zeros(L)
            for batch in batches.of_epoch(t):
                wsum = rows.weight(batch)
                if wsum <= 0:                       # only zero-weight rows: no step
                    continue
                b_loss, grad, b_correct = rows.loss_and_grad(batch, theta, sizes, code, self.l2,
                                                             rate, key, update.steps)
                if not np.isfinite(b_loss) or not np.all(np.isfinite(grad)):
                    raise ValueError(
                        f"training diverged at iteration {t}: the loss is {b_loss} with "
                        f"lr={self.lr}; use a smaller learning rate (e.g. --lr {self.lr / 10:g})")
                share = 1.0 if batch is None else wsum / rows.weight(None)
                loss += share * b_loss
                correct += b_correct
                gmean += share * np.array([np.mean(np.abs(grad[s_])) for s_ in w_slices])
                if batch is not None:
                    update.step(grad)
            hist["loss"][t] = loss
            hist["train_acc"][t] = correct / rows.n
            hist["grad_abs_mean"][t] = gmean
            if progress is not None:
                progress(t, loss, val_loss)
            if every and (t + 1) % every == 0:
                print(f"Iteration {t + 1}, loss = {loss:.8f}"
                      + (f", validation loss = {val_loss:.8f}" if has_val else ""))
            if has_val:
                if val_loss < best_loss:
                    best_loss, best_theta, best_iter = val_loss, start.copy(), t
                elif self.early_stopping and t - best_iter >= self.patience:
                    break
            if batches.full:
                update.step(grad)
            if not np.all(np.isfinite(theta)):
                raise ValueError(
                    f"training diverged at iteration {t}: weights became non-finite with "
                    f"lr={self.lr}; use a smaller learning rate (e.g. --lr {self.lr / 10:g})")
        n_run = t + 1
        self.history_ = {k: v[:n_run].copy() for k, v in hist.items()}
        self.n_iter_ = n_run
        self.best_iter_ = best_iter if self.early_stopping else None
        self.best_val_iter_ = best_iter
        self._best_val_theta = best_theta
        if self.early_stopping and best_theta is not None:
            theta = best_theta
        self._set_params(theta, sizes)
        return self

    def _set_params(self, theta, sizes):
        Ws, bs = unpack(theta, sizes)
        self.weights_ = [W.copy() for W in Ws]
        self.biases_ = [b.copy() for b in bs]

    # -------------------------------------------------------------- predict
    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        P : ndarray of shape (n_samples, n_classes), columns in ``classes_`` order
        """
        check_is_fitted(self)
        return self._probabilities(self._check_X(X, self.weights_[0].dtype.type))

    def _probabilities(self, X, log=False, rows=None):
        """The kernel's (log) probabilities of checked ``X``; with ``rows``, a generator of
        ``(start, P)`` for pieces of that many rows (one packing of the weights)."""
        dtype = self.weights_[0].dtype.type
        theta, sizes = pack(self.weights_, self.biases_, dtype)
        code = activation_code(self.activation)
        if rows is None:
            return _run_forward(theta, sizes, code, X, log=log)
        return ((lo, _run_forward(theta, sizes, code, X[lo:lo + rows], log=log))
                for lo in range(0, len(X), rows))

    def predict_log_proba(self, X):
        """Log class probabilities, computed as logits minus log-sum-exp (no log of 0).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_P : ndarray of shape (n_samples, n_classes), columns in ``classes_`` order
        """
        check_is_fitted(self)
        return self._probabilities(self._check_X(X, self.weights_[0].dtype.type), log=True)

    def predict(self, X):
        """Most probable class label for each row; shape (n_samples,).

        The rows are scored in pieces of ``PREDICT_ROWS`` (the same probabilities, row by row):
        the (n_samples, n_classes) probabilities of a file of millions of rows are never held."""
        check_is_fitted(self)
        return self._predict_checked(self._check_X(X, self.weights_[0].dtype.type))

    def _predict_checked(self, X):
        """``predict`` of ``X`` that ``_check_X`` gave (C-ordered, the weights' dtype, finite)."""
        out = np.empty(len(X), dtype=self.classes_.dtype)
        for lo, P in self._probabilities(X, rows=PREDICT_ROWS):
            out[lo:lo + len(P)] = self.classes_[np.argmax(P, axis=1)]
        return out

    # ------------------------------------------------------- build, save, load
    @classmethod
    def from_weights(cls, weights, biases, activation, classes=None):
        """A fitted ``MLP`` from given parameters (no training).

        Parameters
        ----------
        weights : list of ndarray, ``weights[l]`` of shape (fan_out, fan_in)
        biases : list of ndarray, ``biases[l]`` of shape (fan_out,)
        activation : {"relu", "sigmoid", "tanh"}
        classes : array-like of shape (n_classes,) or None (0..n_classes-1)
        """
        activation_code(activation)
        if len(weights) < 2:
            raise ValueError(f"need at least one hidden layer (two weight matrices); "
                             f"got {len(weights)}")
        theta, sizes, dtype = _check_params(weights, biases, None)
        K = int(sizes[-1])
        classes = np.arange(K) if classes is None else np.asarray(classes)
        if classes.shape != (K,):
            raise ValueError(f"classes has shape {classes.shape}; the network has {K} outputs")
        model = cls(hidden=tuple(int(s) for s in sizes[1:-1]), activation=activation,
                    dtype=np.dtype(dtype).name)
        model.classes_ = classes
        model.n_features_in_ = int(sizes[0])
        model._set_params(theta, sizes)
        return model

    # ------------------------------------------------------------ attribution
    def _attribution_X(self, X):
        """``X`` checked like ``predict``'s (width, column names as in fit); float32
        stays float32, anything else becomes float64 (the module functions' rule)."""
        return self._check_X(X, [np.float64, np.float32])

    def _attribution_args(self, X, y, target):
        """(X, class indices of y or None, target) for the module-level functions:
        a class label of ``classes_`` (one, or one per row) becomes its index."""
        check_is_fitted(self)
        X = self._attribution_X(X)
        n = X.shape[0]
        yi = None if y is None else self._encode(y, n, "y")
        labels = self.classes_.tolist()
        if isinstance(target, str) and target in ATTRIBUTION_TARGETS:
            if target in labels:
                raise ValueError(f"target={target!r} is both an attribution quantity and a class "
                                 f"label; for the class pass one label per row, e.g. "
                                 f"target=np.full(len(X), {target!r}, dtype=object)")
            return X, yi, target
        if np.ndim(target) == 0:
            key = target.item() if isinstance(target, np.generic) else target
            if key not in labels:
                raise ValueError(f"target={target!r} is neither one of "
                                 f"{sorted(ATTRIBUTION_TARGETS)} nor a class label of "
                                 f"classes_ {labels}")
            return X, yi, labels.index(key)
        return X, yi, self._encode(target, n, "target")

    def input_gradients(self, X, y=None, target="output"):
        """Per-sample input gradients of this network (see ``input_gradients``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) of labels from ``classes_``;
            needed for ``target="loss"``
        target : {"output", "logit", "loss"}, a label of ``classes_``, or an
            array of shape (n_samples,) of labels: the softmax output of that
            class (Captum's ``target``)

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        X, yi, target = self._attribution_args(X, y, target)
        return input_gradients(self.weights_, self.biases_, X, yi, self.activation, target=target)

    def input_x_gradient(self, X, y=None, target="output"):
        """Per-sample input x gradient, ``X * input_gradients(X, y, target)``.

        Parameters
        ----------
        X, y, target : as in ``MLP.input_gradients``

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        X, yi, target = self._attribution_args(X, y, target)
        return input_x_gradient(self.weights_, self.biases_, X, yi, self.activation, target=target)

    def integrated_gradients(self, X, y=None, target="output", baseline=None, n_steps=50,
                             method="gausslegendre"):
        """Integrated gradients of this network (see ``integrated_gradients``).

        Parameters
        ----------
        X, y, target : as in ``MLP.input_gradients``
        baseline : ndarray of shape (n_features,) or (n_samples, n_features), or
            None for ``training_mean_``, the mean of the rows the network was trained on
        n_steps : int, number of quadrature points
        method : str, a key of ``IG_METHODS``

        Returns
        -------
        IntegratedGradients (attributions, delta, value, baseline_value, target_class);
        ``target_class`` holds indices into ``classes_``
        """
        X, yi, target = self._attribution_args(X, y, target)
        if baseline is None:
            if not hasattr(self, "training_mean_"):
                raise ValueError("this model has no training_mean_ (built with from_weights or "
                                 "loaded from an older file); pass baseline=, e.g. the mean of "
                                 "the training rows")
            baseline = self.training_mean_
        return integrated_gradients(self.weights_, self.biases_, X, yi, self.activation,
                                    target=target, baseline=baseline, n_steps=n_steps,
                                    method=method)

    def feature_attribution(self, X, y=None, target="output", samples="correct",
                            feature_names=None, feature_source=None, times_input=False):
        """Rank input features by mean |input gradient| (see ``feature_attribution``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) of labels from ``classes_``
        target : as in ``MLP.input_gradients``
        samples, feature_source, times_input
            As in the module-level ``feature_attribution``.
        feature_names : list of str of length n_features, optional
            Default: ``feature_names_in_`` when the model was fitted on a
            DataFrame, else ``x0, x1, ...``.

        Returns
        -------
        dict, as returned by the module-level ``feature_attribution``
        """
        X, yi, target = self._attribution_args(X, y, target)
        if feature_names is None and hasattr(self, "feature_names_in_"):
            feature_names = [str(c) for c in self.feature_names_in_]
        return feature_attribution(self.weights_, self.biases_, X, yi, self.activation,
                                   target=target, samples=samples, feature_names=feature_names,
                                   feature_source=feature_source, times_input=times_input)

    def save(self, path):
        """Write parameters, hyper-parameters, labels and history to one ``.npz`` file.

        Parameters
        ----------
        path : str or os.PathLike
            ``.npz`` is appended when missing (``MLP.load`` accepts the same path).

        Returns
        -------
        Path, the file written

        Everything is a plain array or JSON text (labels keep their values and
        type: ints, floats, bools, strings), so ``MLP.load`` reads it with
        ``allow_pickle=False``. ``replay_early_stopping``'s record is not saved.
        The file is written as ``<path>.part`` (created afresh: a link of that
        name is removed, never written through) and then renamed to ``path``.
        """
        check_is_fitted(self)
        p = _npz_path(path)
        params = self.get_params()
        params["dtype"] = np.dtype(resolve_dtype(params["dtype"])).name
        try:
            params = {k: _to_json(v) for k, v in params.items()}
        except TypeError as e:
            raise ValueError(f"cannot save the model to {p}: a parameter {e}") from None
        history = getattr(self, "history_", {})
        names = getattr(self, "feature_names_in_", None)
        meta = {"format": SAVE_FORMAT, "version": SAVE_VERSION, "params": params,
                "classes": _labels_to_json(self.classes_), "n_layers": len(self.weights_),
                "n_features_in": int(self.n_features_in_),
                "feature_names_in": None if names is None else [str(c) for c in names],
                "history": list(history)}
        for k in ("n_iter_", "best_iter_", "best_val_iter_"):
            v = getattr(self, k, None)
            meta[k] = None if v is None else int(v)
        arrays = {"meta": np.array(json.dumps(meta))}
        for l, (W, b) in enumerate(zip(self.weights_, self.biases_)):
            arrays[f"W{l}"], arrays[f"b{l}"] = W, b
        if hasattr(self, "training_mean_"):
            arrays["training_mean"] = self.training_mean_
        for k, v in history.items():
            arrays[f"history_{k}"] = v
        tmp = p.with_name(p.name + ".part")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:                # a crashed save's, or a planted link: drop the
            os.unlink(tmp)                     # name (never write through it) and start afresh
            fd = os.open(tmp, flags, 0o666)
        try:
            with open(fd, "wb") as fh:         # a file handle: np.savez adds no suffix
                np.savez(fh, **arrays)
            os.replace(tmp, p)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return p

    @classmethod
    def load(cls, path):
        """An ``MLP`` written by ``save``; the same ``path`` (with or without ``.npz``).

        Raises ``FileNotFoundError`` when there is no such file and one
        ``ValueError`` naming the file and the problem when it is not a model
        written by ``save`` (another archive, a truncated, edited or crafted
        file). Nothing is unpickled, and nothing is allocated before the sizes
        the file declares have been checked against its real size (and its
        compressed entries against ``LOAD_MAX_INFLATED``).
        """
        p = _npz_path(path)
        if not p.is_file() and Path(os.fspath(path)).is_file():
            p = Path(os.fspath(path))                  # saved elsewhere under another name
        if not p.is_file():
            raise FileNotFoundError(f"no model file {p}: write one with MLP.save({str(path)!r})")
        try:
            with open(p, "rb") as fh:
                if fh.read(4) != _ZIP_MAGIC:
                    raise ValueError("it is not an .npz (zip) archive")
                size = os.fstat(fh.fileno()).st_size
                fh.seek(0)
                with zipfile.ZipFile(fh) as zf:
                    return cls._from_archive(_NpzReader(zf, size))
        except _LOAD_ERRORS as e:
            reason = " ".join(str(e).split()).strip("'\"") or type(e).__name__
            if isinstance(e, (zipfile.BadZipFile, EOFError, zlib.error, struct.error,
                              NotImplementedError)):
                reason = f"the archive is truncated or damaged ({reason})"
            elif isinstance(e, (OverflowError, RecursionError, MemoryError)):
                reason = (f"it declares sizes or nesting beyond what MLP.save writes "
                          f"({type(e).__name__}: {reason})")
            raise ValueError(f"cannot load {p}: {reason[:300]}; pass a file written by MLP.save") \
                from None

    @classmethod
    def _from_archive(cls, f):
        """The model stored in the ``_NpzReader`` ``f``; ValueError (or another of
        ``_LOAD_ERRORS``) if it is malformed."""
        if "meta" not in f.entries:
            raise ValueError(f"it has no 'meta' entry (entries: {sorted(f.entries)[:8]}), so it "
                             f"was not written by MLP.save")
        shape, dtype = f.header("meta")
        if shape != () or dtype.kind != "U" or dtype.itemsize > _LOAD_MAX_META:
            raise ValueError(f"its 'meta' entry is an array of shape {shape} and dtype {dtype}, "
                             f"not the JSON text (at most {_LOAD_MAX_META // 4} characters) "
                             f"MLP.save writes")
        try:
            meta = json.loads(str(f.array("meta")[()]))
        except json.JSONDecodeError as e:
            raise ValueError(f"its 'meta' entry is not valid JSON ({e})") from None
        _check_meta(meta)
        model = cls(**{k: _from_json(v) for k, v in meta["params"].items()})
        hidden, _, dtype = model._check_hyper()
        classes = _labels_from_json(meta["classes"])
        L = meta["n_layers"]
        if L != len(hidden) + 1:
            raise ValueError(f"its metadata says n_layers={L}, but hidden={hidden} makes "
                             f"{len(hidden) + 1} layers")
        # shapes and dtypes from the .npy headers first: no array is read that
        # the metadata does not account for
        heads = [(f.header(f"W{l}"), f.header(f"b{l}")) for l in range(L)]
        sizes = [heads[0][0][0][1] if len(heads[0][0][0]) == 2 else -1]
        for l, ((Ws, _), (bs, _)) in enumerate(heads):
            if len(Ws) != 2 or Ws[1] != sizes[-1]:
                raise ValueError(f"its weights W{l} have shape {Ws}; expected (fan_out, {sizes[-1]}) "
                                 f"to follow the previous layer")
            if bs != (Ws[0],):
                raise ValueError(f"its biases b{l} have shape {bs}; expected ({Ws[0]},)")
            sizes.append(Ws[0])
        dtypes = {d for pair in heads for _, d in pair}
        expected = [meta["n_features_in"], *hidden, len(classes)]
        if sizes != expected or dtypes != {np.dtype(dtype)}:
            raise ValueError(f"its weights have layer sizes {sizes} and dtype "
                             f"{heads[0][0][1]}, but its metadata says {expected} and "
                             f"{np.dtype(dtype).name}")
        n = meta["n_iter_"]
        for k in meta["history"]:
            hs, hd = f.header(f"history_{k}")
            want = (n, L) if k == "grad_abs_mean" else (n,)
            if hs != want or hd.kind != "f":
                raise ValueError(f"its history entry {k!r} has shape {hs} and dtype {hd}; "
                                 f"expected {want} floats (n_iter_={n})")
        Ws = [np.ascontiguousarray(f.array(f"W{l}")) for l in range(L)]
        bs = [np.ascontiguousarray(f.array(f"b{l}")) for l in range(L)]
        theta, _ = pack(Ws, bs, dtype)
        if not np.all(np.isfinite(theta)):
            raise ValueError("its weights contain NaN or Inf")
        model.weights_, model.biases_ = Ws, bs
        model.classes_ = classes
        model.n_features_in_ = meta["n_features_in"]
        if meta["feature_names_in"] is not None:
            model.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
        if meta["history"]:
            model.history_ = {k: f.array(f"history_{k}") for k in meta["history"]}
        if "training_mean" in f.entries:             # absent from files of older versions
            ms, md = f.header("training_mean")       # the size is checked before it is read
            if ms != (model.n_features_in_,) or md.kind != "f":
                raise ValueError(f"its training_mean has shape {ms} and dtype {md}; expected "
                                 f"({model.n_features_in_},) floats")
            mean = f.array("training_mean")
            if not np.all(np.isfinite(mean)):
                raise ValueError("its training_mean is not finite")
            model.training_mean_ = mean
        for k in ("n_iter_", "best_iter_", "best_val_iter_"):
            setattr(model, k, meta[k])
        return model


def warm_up(dtype="float64", kernels=("network",)):
    """Compile (or load from numba's cache) kernels by running them once on a tiny problem.

    Parameters
    ----------
    dtype : "float64" or "float32", the dtype of the network kernels to prepare
    kernels : iterable of {"network"}
        "network": what ``MLP.fit`` with validation data and ``MLP.predict`` use.
        The Question 2 network has its own ``shared_bias.warm_up``.
    """
    kernels = set(kernels)
    unknown = kernels - {"network"}
    if unknown:
        raise ValueError(f"kernels={sorted(unknown)} unknown; use 'network' "
                         "(the Question 2 network: shared_bias.warm_up)")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3)), np.arange(8) % 2
    if "network" in kernels:
        # the activation is a run-time argument of the kernels: one fit compiles all
        MLP(hidden=(2,), n_iter=1, dtype=dtype).fit(X, y, X, y).predict(X)


def replay_early_stopping(model, patience):
    """The network ``early_stopping=True`` would have returned, without training it.

    With the same settings, data and seed, a run with early stopping follows
    the trajectory of ``model`` (trained without it, with validation data)
    iterate for iterate, until it stops. When the recorded validation loss of
    ``model`` never goes ``patience`` iterations without a new minimum, early
    stopping would have run every iteration and then restored the iterate with
    the lowest validation loss, which ``fit`` kept: that network is returned,
    identical to training it. Otherwise (it would have stopped earlier) None:
    train with ``early_stopping=True`` then.

    Parameters
    ----------
    model : MLP
        Fitted with validation data and ``early_stopping=False``.
    patience : int >= 1

    Returns
    -------
    MLP or None
        A fitted copy with ``early_stopping=True``, ``patience``, the best
        iterate's parameters and ``best_iter_`` set; ``model`` is unchanged.
    """
    check_is_fitted(model, "weights_")
    if not (isinstance(patience, (int, np.integer)) and patience >= 1):
        raise ValueError(f"patience must be a positive integer; got {patience!r}")
    if model.early_stopping:
        raise ValueError("model was trained with early_stopping=True already; replay needs "
                         "a model trained without it")
    theta = getattr(model, "_best_val_theta", None)
    if theta is None:
        raise ValueError("model has no validation record (fitted without X_val/y_val, or "
                         "loaded from a file); fit it with validation data")
    best, best_iter = np.inf, None
    for t, v in enumerate(model.history_["val_loss"]):
        if v < best:
            best, best_iter = v, t
        elif t - best_iter >= patience:
            return None                        # it would have stopped at iteration t
    replay = clone(model).set_params(early_stopping=True, patience=int(patience))
    replay._set_params(theta, pack(model.weights_, model.biases_)[1])
    for k in ("classes_", "n_features_in_", "feature_names_in_", "training_mean_"):
        if hasattr(model, k):
            setattr(replay, k, getattr(model, k))
    replay.history_ = {k: v.copy() for k, v in model.history_.items()}
    replay.n_iter_ = model.n_iter_
    replay.best_iter_ = replay.best_val_iter_ = model.best_val_iter_
    replay._best_val_theta = theta
    return replay


# ------------------------------------------------------------------ validation
def _attr_target_code(target):
    """Integer code of an attribution target name; ``ValueError`` if unknown."""
    return registry_code(ATTRIBUTION_TARGETS, "target", target)


def _attr_target(target, n, n_classes):
    """(target code, per-row class indices) of an attribution target: a name of
    ``ATTRIBUTION_TABLE`` (classes empty: the argmax), or the class index (one, or
    one per row) whose softmax output o_c is differentiated."""
    if isinstance(target, str):
        try:
            return _attr_target_code(target), np.zeros(0, dtype=np.int64)
        except ValueError as e:
            raise ValueError(f"{e}, or a class index 0..{n_classes - 1}") from None
    c = np.asarray(target)
    if c.dtype.kind not in "iu" or c.ndim > 1 or (c.ndim == 1 and c.shape[0] != n):
        raise ValueError(f"target={target!r} is not supported; use one of "
                         f"{sorted(ATTRIBUTION_TARGETS)} or a class index 0..{n_classes - 1} "
                         f"(one int, or one per row of X: {n})")
    c = np.ascontiguousarray(np.broadcast_to(c, (n,)), dtype=np.int64)
    bad = np.flatnonzero((c < 0) | (c >= n_classes))
    if bad.size:
        raise ValueError(f"target class {c[bad[0]]} (row {bad[0]}) is outside 0..{n_classes - 1}; "
                         f"the network has {n_classes} outputs")
    return ATTRIBUTION_TARGETS["output"], c


def _attr_inputs(weights, biases, X, y, activation, target, dtype):
    """Validated (theta, sizes, code, X, y, target_code, classes) for ``_input_gradients``."""
    code = activation_code(activation)
    if isinstance(target, str):
        _attr_target(target, 0, len(biases[-1]))              # an unknown name before the data
    X_arr = np.asarray(X)
    if dtype is None:
        dtype = np.float32 if X_arr.dtype == np.float32 else np.float64
    theta, sizes, dtype = _check_params(weights, biases, dtype)
    if X_arr.ndim == 2 and X_arr.shape[1] != sizes[0]:
        raise ValueError(f"X has {X_arr.shape[1]} columns but the network expects {sizes[0]} "
                         f"inputs (weights[0] has shape {np.shape(weights[0])}); encode X "
                         f"the same way as the training data")
    X_arr = _check_X(X_arr, dtype)
    tcode, cls = _attr_target(target, X_arr.shape[0], int(sizes[-1]))
    if y is None:
        if ATTRIBUTION_TABLE[tcode].needs_y:
            others = [t.name for t in ATTRIBUTION_TABLE if not t.needs_y]
            raise ValueError(f"target={target!r} needs the true labels y; pass y "
                             f"or use target={' / '.join(map(repr, others))}")
        y_arr = np.zeros(0, dtype=np.int64)
    else:
        y_arr = _check_y_index(y, X_arr.shape[0], int(sizes[-1]))
    return theta, sizes, code, X_arr, y_arr, tcode, cls


def _run_input_gradients(theta, sizes, code, X, y, tcode, cls):
    """Kernel call on validated arrays: (G, pred, value), G checked finite."""
    with _single_threaded_blas():
        G, pred, value = _input_gradients(theta, sizes, np.int64(code), X, y, np.int64(tcode), cls)
    if not np.all(np.isfinite(G)):
        raise ValueError("input gradients are not finite; check the weights for huge values "
                         "(retrain with a lower learning rate) or use dtype='float64'")
    return G, pred, value


def _gradients_and_predictions(weights, biases, X, y, activation, target, dtype):
    theta, sizes, code, X_arr, y_arr, tcode, cls = _attr_inputs(weights, biases, X, y,
                                                                activation, target, dtype)
    G, pred, _ = _run_input_gradients(theta, sizes, code, X_arr, y_arr, tcode, cls)
    return G, pred, X_arr


# ------------------------------------------------------------------ public API
def input_gradients(weights, biases, X, y, activation, target="output", dtype=None):
    """Gradient of one scalar per sample with respect to that sample's input.

    Parameters
    ----------
    weights : list of ndarray, ``weights[l]`` of shape (sizes[l+1], sizes[l])
    biases : list of ndarray, ``biases[l]`` of shape (sizes[l+1],)
    X : ndarray of shape (n_samples, n_features)
        Inputs, encoded and scaled like the training data; finite.
    y : ndarray of shape (n_samples,) of int in [0, n_classes), or None
        True labels; required for ``target="loss"`` only.
    activation : {"relu", "sigmoid", "tanh"}
        Hidden activation; the output layer is softmax.
    target : {"output", "logit", "loss"}, int or ndarray of int of shape (n_samples,)
        ``"output"``: d o_m / dx, o_m the softmax output of the predicted class m
        (Aggarwal sec. 2.8). ``"logit"``: d a_m / dx, the predicted class's
        pre-softmax logit (does not saturate). ``"loss"``: dL/dx of the
        cross-entropy with the true label, dL/dx = W1^T delta1. A class index
        c (Captum's ``target``): d o_c / dx, the softmax output of class c for
        every row, whatever the prediction; an array gives each row its class.
    dtype : {None, "float64", "float32"}
        Computation dtype; None uses float32 if X is float32, else float64.

    Returns
    -------
    G : ndarray of shape (n_samples, n_features), dtype ``dtype``
        ``G[s, i]`` is the derivative of sample s's target with respect to ``X[s, i]``.
    """
    G, _, _ = _gradients_and_predictions(weights, biases, X, y, activation, target, dtype)
    return G


def input_x_gradient(weights, biases, X, y, activation, target="output", dtype=None):
    """Per-sample input x gradient, ``X * input_gradients(...)`` (Captum's InputXGradient).

    Parameters
    ----------
    weights, biases, X, y, activation, target, dtype
        As in ``input_gradients``.

    Returns
    -------
    A : ndarray of shape (n_samples, n_features), dtype ``dtype``
        ``A[s, i] = X[s, i] * dt_s / dX[s, i]``.
    """
    G, _, X_arr = _gradients_and_predictions(weights, biases, X, y, activation, target, dtype)
    return X_arr * G


# Quadrature rules of the path integral over alpha in [0, 1]: n_steps -> (alphas,
# weights), weights summing to 1. Names as in Captum.
def _rule_gausslegendre(n):
    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1) / 2, w / 2


def _rule_trapezoid(n):
    w = np.full(n, 1.0 / (n - 1))
    w[[0, -1]] /= 2
    return np.linspace(0.0, 1.0, n), w


IG_METHODS = {
    "gausslegendre": (_rule_gausslegendre, 1),       # name: (rule, smallest n_steps)
    "riemann_left": (lambda n: (np.arange(n) / n, np.full(n, 1.0 / n)), 1),
    "riemann_right": (lambda n: (np.arange(1, n + 1) / n, np.full(n, 1.0 / n)), 1),
    "riemann_middle": (lambda n: ((np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)), 1),
    "riemann_trapezoid": (_rule_trapezoid, 2),
}


def ig_rule(method, n_steps):
    """Points and weights of an integrated-gradients quadrature rule on [0, 1].

    Parameters
    ----------
    method : str, a key of ``IG_METHODS``
    n_steps : int, number of points (>= 2 for "riemann_trapezoid", else >= 1)

    Returns
    -------
    alphas : ndarray of shape (n_steps,), float64 in [0, 1]
    weights : ndarray of shape (n_steps,), float64, summing to 1
    """
    rule, least = IG_METHODS[registry_code({k: k for k in IG_METHODS}, "method", method)]
    if not _is_int(n_steps) or n_steps < least:
        raise ValueError(f"n_steps={n_steps!r} must be an integer >= {least} for "
                         f"method={method!r}")
    alphas, weights = rule(int(n_steps))
    return np.ascontiguousarray(alphas, dtype=np.float64), np.ascontiguousarray(weights,
                                                                                dtype=np.float64)


class IntegratedGradients(NamedTuple):
    """What ``integrated_gradients`` returns (unpacks as ``attributions, delta, ...``)."""
    attributions: np.ndarray    # (n_samples, n_features) float64
    delta: np.ndarray           # (n_samples,) sum of the row's attributions - (value - baseline_value)
    value: np.ndarray           # (n_samples,) the target t at the input
    baseline_value: np.ndarray  # (n_samples,) t at the baseline, the same class
    target_class: np.ndarray    # (n_samples,) int64, the class m of t (for "loss": y)


def _check_baseline(baseline, X_arr):
    """``baseline`` as a C-contiguous (1, d) or (n, d) array of X's dtype, finite."""
    n, d = X_arr.shape
    if baseline is None:
        raise ValueError("baseline is needed: pass the training mean, e.g. "
                         "baseline=X_train.mean(axis=0) (MLP.integrated_gradients uses it by default)")
    B = np.asarray(baseline, dtype=np.float64)
    if B.ndim == 1:
        B = B[None, :]
    if B.ndim != 2 or B.shape[1] != d or B.shape[0] not in (1, n):
        raise ValueError(f"baseline has shape {np.shape(baseline)}; expected ({d},) for one "
                         f"baseline or ({n}, {d}), one per row of X")
    return _require_finite(np.ascontiguousarray(B, dtype=X_arr.dtype), "baseline")


def integrated_gradients(weights, biases, X, y, activation, target="output", baseline=None,
                         n_steps=50, method="gausslegendre", dtype=None):
    """Integrated gradients (Sundararajan et al. 2017) with the completeness delta.

    ``A[s, i] = (x_i - b_i) * integral_0^1 dt/dx_i (b + alpha (x - b)) d alpha``
    for x = X[s], b its baseline, by the quadrature ``method`` with ``n_steps``
    points, over the numba gradient kernel. The class m of t is fixed along the
    path: the given one, else the prediction at x (for "loss", the label y).
    Completeness says ``sum_i A[s, i] = t(x) - t(b)``; ``delta`` is what the
    quadrature misses (shrinks as ``n_steps`` grows).

    Parameters
    ----------
    weights, biases, X, y, activation, target, dtype
        As in ``input_gradients``.
    baseline : ndarray of shape (n_features,) or (n_samples, n_features)
        The reference input(s), e.g. the training mean (required here;
        ``MLP.integrated_gradients`` defaults to its ``training_mean_``).
    n_steps : int >= 1 (>= 2 for "riemann_trapezoid")
    method : {"gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
        "riemann_trapezoid"}, the rule (``IG_METHODS``)

    Returns
    -------
    IntegratedGradients
        ``attributions`` (n_samples, n_features) float64, ``delta`` (n_samples,),
        ``value`` and ``baseline_value`` (n_samples,) the target at x and at b,
        ``target_class`` (n_samples,).
    """
    theta, sizes, code, X_arr, y_arr, tcode, cls = _attr_inputs(weights, biases, X, y,
                                                                activation, target, dtype)
    alphas, wts = ig_rule(method, n_steps)
    B = _check_baseline(baseline, X_arr)
    n = X_arr.shape[0]
    _, pred, value = _run_input_gradients(theta, sizes, code, X_arr, y_arr, tcode, cls)
    if cls.size == 0:
        cls = pred                                   # the class at the input, for the whole path
    B_rows = np.ascontiguousarray(np.broadcast_to(B, (n, B.shape[1])))
    _, _, base_value = _run_input_gradients(theta, sizes, code, B_rows, y_arr, tcode, cls)
    with _single_threaded_blas():
        A = _integrated_gradients(theta, sizes, np.int64(code), X_arr, B, y_arr, cls,
                                  np.int64(tcode), alphas, wts)
    if not np.all(np.isfinite(A)):
        raise ValueError("integrated gradients are not finite; check the weights for huge values "
                         "(retrain with a lower learning rate) or use dtype='float64'")
    target_class = y_arr.copy() if ATTRIBUTION_TABLE[tcode].needs_y else cls.copy()
    return IntegratedGradients(A, A.sum(axis=1) - (value - base_value), value, base_value,
                               target_class)


def _reference_target_and_gradient(weights, biases, X, y, activation, target, classes=None):
    """float64 NumPy (t, dt/dx, m) of every row; ``classes`` fixes m (else the target's rule)."""
    activation_code(activation)
    X = np.asarray(X, dtype=np.float64)
    tcode, cls = _attr_target(target, X.shape[0], len(biases[-1]))
    tgt = ATTRIBUTION_TABLE[tcode]
    if tgt.needs_y and y is None:
        raise ValueError(f"target={target!r} needs the true labels y")
    Ws = [np.asarray(W, dtype=np.float64) for W in weights]
    bs = [np.asarray(b, dtype=np.float64) for b in biases]
    h = [X]                                             # h[0] = x, h[l] = layer l output
    for l, (W, b) in enumerate(zip(Ws, bs)):
        a = h[-1] @ W.T + b                              # (n, sizes[l+1])
        h.append(_reference_act(a, activation) if l < len(Ws) - 1 else a)
    z = h[-1]
    o = reference_softmax(z)                            # (n, K)
    m = np.argmax(z, axis=1) if cls.size == 0 else cls
    if classes is not None:
        m = np.asarray(classes)
    delta = tgt.reference_delta(o, m, y)                # (n, K) dt/da at the logits
    for l in range(len(Ws) - 1, -1, -1):
        delta = delta @ Ws[l]                            # (n, sizes[l]) = W_l^T delta
        if l > 0:
            delta = delta * _reference_act_grad(h[l], activation)
    return tgt.reference_value(o, z, m, y), delta, m


def reference_input_gradients(weights, biases, X, y, activation, target="output"):
    """Slow, readable float64 NumPy version of ``input_gradients`` (same arguments).

    Returns
    -------
    G : ndarray of shape (n_samples, n_features), float64
    """
    return _reference_target_and_gradient(weights, biases, X, y, activation, target)[1]


def reference_integrated_gradients(weights, biases, X, y, activation, target="output",
                                   baseline=None, n_steps=50, method="gausslegendre",
                                   gradient=None):
    """Slow, readable NumPy version of ``integrated_gradients`` (same arguments).

    ``gradient(points, m)`` -> (n, d), if given, replaces the analytic gradient of
    the target of class m at the path points (e.g. by finite differences).

    Returns
    -------
    IntegratedGradients, float64
    """
    X = np.asarray(X, dtype=np.float64)
    B = np.broadcast_to(np.asarray(baseline, dtype=np.float64), X.shape)
    alphas, weights_ = ig_rule(method, n_steps)
    value, _, m = _reference_target_and_gradient(weights, biases, X, y, activation, target)
    base_value = _reference_target_and_gradient(weights, biases, B, y, activation, target, m)[0]
    total = np.zeros_like(X)
    for a, w in zip(alphas, weights_):
        points = B + a * (X - B)
        g = (_reference_target_and_gradient(weights, biases, points, y, activation, target, m)[1]
             if gradient is None else gradient(points, m))
        total += w * g
    A = (X - B) * total
    needs_y = ATTRIBUTION_TABLE[_attr_target(target, X.shape[0], len(biases[-1]))[0]].needs_y
    return IntegratedGradients(A, A.sum(axis=1) - (value - base_value), value, base_value,
                               np.asarray(y if needs_y else m))


# Rows per kernel call of ``feature_attribution``: its gradients take ATTRIBUTION_CHUNK x d
# numbers at a time, not n x d (a 5-million-row file would need gigabytes).
ATTRIBUTION_CHUNK = 1 << 16


def _labels_and_sources(d, feature_names, feature_source):
    names = [f"x{i}" for i in range(d)] if feature_names is None else [str(f) for f in feature_names]
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} entries but X has {d} columns; "
                         f"pass one name per encoded column")
    source = names if feature_source is None else [str(f) for f in feature_source]
    if len(source) != d:
        raise ValueError(f"feature_source has {len(source)} entries but X has {d} columns; "
                         f"pass the original column of every encoded column")
    return names, source


def _aggregate_by_source(scores, source):
    """Sum ``scores`` over encoded columns sharing a source, in first-appearance order."""
    order = list(dict.fromkeys(source))
    idx = {s: k for k, s in enumerate(order)}
    total = np.zeros(len(order))
    counts = np.zeros(len(order), dtype=np.int64)
    for sc, s in zip(scores, source):
        total[idx[s]] += sc
        counts[idx[s]] += 1
    return order, total, counts


def _ranking_table(names, scores, **extra):
    """DataFrame (feature, score, rank, share, *extra) sorted by score, rank 1 = largest."""
    import pandas as pd   # here, not at the top: a training worker never needs it
    scores = np.asarray(scores, dtype=np.float64)
    tot = scores.sum()
    df = pd.DataFrame({"feature": list(names), "score": scores,
                       "share": scores / tot if tot > 0 else np.zeros_like(scores), **extra})
    df = df.sort_values("score", ascending=False, kind="mergesort").reset_index(drop=True)
    df.insert(2, "rank", np.arange(1, len(df) + 1))
    return df


def feature_attribution(weights, biases, X, y, activation, target="output", samples="correct",
                        feature_names=None, feature_source=None, times_input=False, dtype=None,
                        where=None):
    """Rank input features by mean absolute input gradient (sensitivity analysis).

    Parameters
    ----------
    weights, biases, activation, target, dtype
        As in ``input_gradients``.
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) or None
        True labels; required for ``samples="correct"`` and ``target="loss"``.
    samples : {"correct", "all"}
        Average over the correctly classified samples (Aggarwal sec. 2.8) or all.
    feature_names : list of str of length n_features, optional
        Names of the encoded columns; default ``x0, x1, ...``.
    feature_source : list of str of length n_features, optional
        Original column of each encoded column (e.g. the categorical a one-hot
        column came from); default ``feature_names`` (one to one).
    times_input : bool
        Score mean |g * x| (gradient x input) instead of mean |g|.
    where : ndarray of bool of shape (n_samples,), optional
        Average only over these rows (and, with ``samples="correct"``, only the correctly
        classified among them): the same scores as passing ``X[where]``, without the copy.

    Returns
    -------
    result : dict
        ``scores`` ndarray of shape (n_features,) in column order;
        ``table`` DataFrame (feature, score, rank, share, source) sorted by
        score, rank 1 = most important, share = score / sum of scores;
        ``by_source`` DataFrame (feature, score, rank, share, n_columns) per
        original column, the scores of its encoded columns summed;
        ``n_samples`` rows averaged over; ``n_total`` rows in X; ``mask`` bool
        ndarray of shape (n_samples,) of the rows used; ``target``,
        ``samples``, ``times_input`` echo the arguments.
    """
    if samples not in ("correct", "all"):
        raise ValueError(f"samples={samples!r} is not supported; use 'correct' or 'all'")
    if samples == "correct" and y is None:
        raise ValueError("samples='correct' needs the true labels y; pass y or use samples='all'")
    if not isinstance(times_input, (bool, np.bool_)):
        raise ValueError(f"times_input must be True or False; got {times_input!r}")
    theta, sizes, code, X_arr, y_arr, tcode, cls = _attr_inputs(weights, biases, X, y,
                                                                activation, target, dtype)
    names, source = _labels_and_sources(X_arr.shape[1], feature_names, feature_source)
    n = X_arr.shape[0]
    if where is None:
        mask = np.ones(n, dtype=bool)
    else:
        mask = np.array(where, dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"where must be a boolean array with one entry per row of X ({n}); "
                             f"got shape {np.shape(where)}")
    abs_sum = np.zeros(X_arr.shape[1])
    # Row chunks keep the gradients' memory at ATTRIBUTION_CHUNK rows whatever n is; each
    # row's gradient is computed alone, so only the order of the final sum depends on it
    # (one chunk up to ATTRIBUTION_CHUNK rows: the sum of one np.sum).
    for lo in range(0, max(n, 1), ATTRIBUTION_CHUNK):
        hi = min(n, lo + ATTRIBUTION_CHUNK)
        yc = y_arr[lo:hi] if len(y_arr) else y_arr
        G, pred, _ = _run_input_gradients(theta, sizes, code, X_arr[lo:hi], yc, tcode,
                                          cls[lo:hi] if len(cls) else cls)
        if samples == "correct":
            mask[lo:hi] &= pred == y_arr[lo:hi]
        A = G[mask[lo:hi]].astype(np.float64)            # (rows used, d)
        if times_input:
            A = A * X_arr[lo:hi][mask[lo:hi]]
        abs_sum += np.abs(A).sum(axis=0)
    if not mask.any():
        if samples == "all":
            raise ValueError("where selects no row, so there is nothing to average; select at least one")
        raise ValueError("no sample is classified correctly, so there is nothing to average; "
                         "check that X and y match the network or use samples='all'")
    scores = abs_sum / mask.sum()                        # (d,)
    order, total, counts = _aggregate_by_source(scores, source)
    return {
        "scores": scores,
        "table": _ranking_table(names, scores, source=source),
        "by_source": _ranking_table(order, total, n_columns=counts),
        "n_samples": int(mask.sum()),
        "n_total": int(X_arr.shape[0]),
        "mask": mask,
        "target": target,
        "samples": samples,
        "times_input": bool(times_input),
    }


# ---------------------------------------------------------------- cross-checks
def _spearman(a, b):
    """Spearman rank correlation; NaN when undefined (fewer than 2 items, constant input)."""
    from scipy.stats import spearmanr   # here: scipy.stats takes ~1 s to import
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)


def permutation_check(estimator, X, y, attribution_scores, feature_names, feature_source=None,
                      n_repeats=5, seed=0):
    """Compare attribution scores with permutation importance of a fitted classifier.

    Per encoded column, ``sklearn.inspection.permutation_importance`` (drop of
    ``estimator.score`` when the column is shuffled). Per original column, all
    of its encoded columns are shuffled jointly with one row permutation
    (scikit-learn has no feature groups), so a one-hot group moves as a whole.

    Parameters
    ----------
    estimator : fitted classifier with ``predict`` and ``score(X, y)``
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    attribution_scores : ndarray of shape (n_features,) or dict from ``feature_attribution``
    feature_names : list of str of length n_features
    feature_source : list of str of length n_features, optional
        Original column of each encoded column; default ``feature_names``.
    n_repeats : int >= 1
        Shuffles per column (or group).
    seed : int
        Seed of both permutation loops.

    Returns
    -------
    result : dict
        ``encoded`` and ``original`` DataFrames (feature, attribution,
        perm_mean, perm_std, attribution_rank, perm_rank; ``original`` also
        n_columns), ``spearman_encoded`` and ``spearman_original`` (Spearman
        rank correlation of attribution and permutation importance; NaN if
        undefined), ``baseline_score`` (estimator.score on the unshuffled X).
    """
    import pandas as pd
    from sklearn.inspection import permutation_importance

    if isinstance(attribution_scores, dict):
        attribution_scores = attribution_scores["scores"]
    X_arr = np.asarray(X, dtype=np.float64)
    if X_arr.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X_arr.shape}")
    n, d = X_arr.shape
    y_arr = np.asarray(y)
    if y_arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X; got {y_arr.shape}")
    attr = np.asarray(attribution_scores, dtype=np.float64)
    if attr.shape != (d,):
        raise ValueError(f"attribution_scores has shape {attr.shape}; expected ({d},), "
                         f"one score per column of X")
    if not (isinstance(n_repeats, (int, np.integer)) and n_repeats >= 1):
        raise ValueError(f"n_repeats must be a positive integer; got {n_repeats!r}")
    names, source = _labels_and_sources(d, feature_names, feature_source)

    X_arr, score = _permutation_scoring(estimator, X_arr)
    pi = permutation_importance(estimator, X_arr, y_arr, scoring=score, n_repeats=n_repeats,
                                random_state=seed)
    enc = pd.DataFrame({"feature": names, "source": source, "attribution": attr,
                        "perm_mean": pi.importances_mean, "perm_std": pi.importances_std})

    score = score or (lambda est, X, y: float(est.score(X, y)))
    order, attr_src, counts = _aggregate_by_source(attr, source)
    baseline = score(estimator, X_arr, y_arr)
    rng = np.random.default_rng(seed)
    drops = np.zeros((len(order), n_repeats))
    Xp = X_arr.copy()
    for g, src in enumerate(order):
        cols = [i for i, s in enumerate(source) if s == src]
        for r in range(n_repeats):
            perm = rng.permutation(n)
            Xp[:, cols] = X_arr[np.ix_(perm, cols)]     # one row permutation for the group
            drops[g, r] = baseline - score(estimator, Xp, y_arr)
        Xp[:, cols] = X_arr[:, cols]
    orig = pd.DataFrame({"feature": order, "n_columns": counts, "attribution": attr_src,
                         "perm_mean": drops.mean(axis=1), "perm_std": drops.std(axis=1)})
    for df in (enc, orig):
        df["attribution_rank"] = df["attribution"].rank(ascending=False, method="min").astype(int)
        df["perm_rank"] = df["perm_mean"].rank(ascending=False, method="min").astype(int)
    return {
        "encoded": enc.sort_values("attribution", ascending=False, kind="mergesort").reset_index(drop=True),
        "original": orig.sort_values("attribution", ascending=False, kind="mergesort").reset_index(drop=True),
        "spearman_encoded": _spearman(enc["attribution"], enc["perm_mean"]),
        "spearman_original": _spearman(orig["attribution"], orig["perm_mean"]),
        "baseline_score": baseline,
    }


def _permutation_scoring(estimator, X):
    """(X, scorer) for ``permutation_check``: for an ``MLP``, ``X`` checked and cast to the
    network's dtype once and a scorer that predicts it without checking it again, giving
    ``MLP.score``'s accuracy to the bit (the count of correct rows over the rows: the cast
    of a permuted column is the permuted cast column); for another estimator ``X`` as it
    is and None (its own ``score``). A wide file's checks make thousands of scoring calls,
    and scikit-learn's checks of X and of the labels took more time than the network."""
    if not isinstance(estimator, MLP):
        return X, None
    check_is_fitted(estimator)
    X = estimator._check_X(X, estimator.weights_[0].dtype.type)

    def accuracy(model, X, y):
        return np.count_nonzero(model._predict_checked(X) == y) / len(y)
    return X, accuracy


def compare_rankings(scores_a, scores_b, threshold=0.5):
    """Sanity check: do two attribution score vectors rank features differently?

    Parameters
    ----------
    scores_a, scores_b : ndarray of shape (n_features,)
    threshold : float in (-1, 1]
        The check passes when the Spearman correlation is below ``threshold``.
        With 13 features two unrelated rankings exceed 0.5 about 4% of the time.

    Returns
    -------
    result : dict
        ``spearman`` (NaN if undefined, e.g. constant scores), ``threshold``,
        ``passed`` (bool; False when the correlation is NaN or >= threshold).
    """
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"scores_a and scores_b must be 1-D of equal length; "
                         f"got shapes {a.shape} and {b.shape}")
    if not (-1.0 < float(threshold) <= 1.0):
        raise ValueError(f"threshold must be in (-1, 1]; got {threshold!r}")
    rho = _spearman(a, b)
    return {"spearman": rho, "threshold": float(threshold),
            "passed": bool(np.isfinite(rho) and rho < threshold)}


def randomization_check(weights, biases, X, y, activation, seed=0, threshold=0.5,
                        target="output", samples="correct"):
    """Model-randomisation sanity check for the attribution (Adebayo et al. 2018).

    Every layer's weights and biases are redrawn from N(0, s^2) with s the
    standard deviation of that trained layer's weights (biases: of its biases),
    the architecture kept. A faithful attribution must change: the Spearman
    correlation of the trained and randomised rankings should fall below
    ``threshold``. Both are averaged over the same rows (those selected by
    ``samples`` for the trained network); each network differentiates its own
    winning class.

    Parameters
    ----------
    weights, biases, X, y, activation, target, samples
        As in ``feature_attribution``.
    seed : int
        Seed of the re-randomisation.
    threshold : float
        As in ``compare_rankings``.

    Returns
    -------
    result : dict
        ``spearman``, ``threshold``, ``passed`` (see ``compare_rankings``),
        ``trained_scores`` and ``random_scores`` ndarrays of shape (n_features,).
    """
    trained = feature_attribution(weights, biases, X, y, activation, target=target,
                                  samples=samples)
    rng = np.random.default_rng(seed)
    rand_w = [rng.normal(0.0, np.std(W), size=np.shape(W)) for W in weights]
    rand_b = [rng.normal(0.0, np.std(b), size=np.shape(b)) for b in biases]
    random = feature_attribution(rand_w, rand_b, X, y, activation, target=target, samples="all",
                                 where=trained["mask"])
    result = compare_rankings(trained["scores"], random["scores"], threshold)
    result["trained_scores"] = trained["scores"]
    result["random_scores"] = random["scores"]
    return result
