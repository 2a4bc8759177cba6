"""The network: numba kernels, the ``MLP`` estimator, attribution, shared bias.

Everything that computes with the network's parameters lives here. Kernels are
pairs: ``_name`` is a pure ``@njit`` function of arrays and scalars, ``name`` is
the public wrapper that validates its inputs and checks its result.

Parameter layout (shared by every kernel)
-----------------------------------------
A network with layer widths ``sizes = [d, h1, ..., hL, K]`` has one weight
matrix ``W[l]`` of shape ``(sizes[l+1], sizes[l])`` (fan_out, fan_in) and one
bias ``b[l]`` of shape ``(sizes[l+1],)`` per layer; a layer computes
``a = W x + b``. Kernels see all parameters as one flat contiguous vector
``theta``: for each layer in order, ``W[l]`` row-major, then ``b[l]``.
``pack``/``unpack`` convert between the list form and the flat form;
``unpack`` returns views, so writing into them writes into ``theta``.

Hidden activations are coded as small integers (``ACTIVATIONS``) so kernels
take no strings; the output layer is always softmax.
"""
import os
import tempfile

# numba writes its on-disk cache next to this file; fall back to a temporary
# directory when that is not writable (read-only install, shared checkout).
if "NUMBA_CACHE_DIR" not in os.environ and not os.access(
        os.path.dirname(os.path.abspath(__file__)), os.W_OK):
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), "mlp-numba-cache")

import numpy as np
import numba as nb
from numba import njit

ACTIVATIONS = {"relu": 0, "sigmoid": 1, "tanh": 2}
RELU, SIGMOID, TANH = 0, 1, 2
DTYPES = {"float64": np.float64, "float32": np.float32}


# ---------------------------------------------------------------- activations
@njit(cache=True, inline="always")
def _act(z, code):
    """g(z) for the hidden activation ``code`` (relu, sigmoid, tanh)."""
    if code == RELU:
        return z if z > 0 else z * 0
    elif code == SIGMOID:
        # two branches so exp never overflows
        if z >= 0:
            return 1 / (1 + np.exp(-z))
        e = np.exp(z)
        return e / (1 + e)
    else:
        return np.tanh(z)


@njit(cache=True, inline="always")
def _act_grad(a, code):
    """g'(z) written in terms of the output a = g(z)."""
    if code == RELU:
        return a * 0 + 1 if a > 0 else a * 0
    elif code == SIGMOID:
        return a * (1 - a)
    else:
        return 1 - a * a


# ------------------------------------------------------------ parameter layout
def activation_code(activation):
    """Integer code of a hidden activation name; ``ValueError`` if unknown."""
    try:
        return ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise ValueError(f"activation={activation!r} is not supported; "
                         f"use one of {sorted(ACTIVATIONS)}") from None


def resolve_dtype(dtype):
    """``np.float64`` or ``np.float32`` from a name or dtype; ``ValueError`` otherwise."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use 'float64' or 'float32'")
    return DTYPES[name]


def n_params(sizes):
    """Number of scalars in the flat parameter vector for layer widths ``sizes``."""
    sizes = [int(s) for s in sizes]
    return sum(o * i + o for i, o in zip(sizes[:-1], sizes[1:]))


def pack(weights, biases, dtype=np.float64):
    """Flatten per-layer weights and biases into one contiguous vector.

    Parameters
    ----------
    weights : list of ndarray, ``weights[l]`` of shape (sizes[l+1], sizes[l])
    biases : list of ndarray, ``biases[l]`` of shape (sizes[l+1],)
    dtype : float64 or float32

    Returns
    -------
    theta : ndarray of shape (n_params(sizes),)
    sizes : ndarray of int64, shape (n_layers + 1,)
    """
    if len(weights) == 0 or len(weights) != len(biases):
        raise ValueError(f"need one bias per weight matrix and at least one layer; "
                         f"got {len(weights)} weights and {len(biases)} biases")
    sizes = [np.shape(weights[0])[1]]
    for l, (W, b) in enumerate(zip(weights, biases)):
        W, b = np.asarray(W), np.asarray(b)
        if W.ndim != 2 or W.shape[1] != sizes[-1]:
            raise ValueError(f"weights[{l}] has shape {W.shape}; expected "
                             f"(fan_out, {sizes[-1]}) to follow the previous layer")
        if b.shape != (W.shape[0],):
            raise ValueError(f"biases[{l}] has shape {b.shape}; expected ({W.shape[0]},)")
        sizes.append(W.shape[0])
    theta = np.concatenate([np.concatenate([np.ravel(W), np.ravel(b)])
                            for W, b in zip(weights, biases)]).astype(dtype)
    return np.ascontiguousarray(theta), np.asarray(sizes, dtype=np.int64)


def unpack(theta, sizes):
    """Views of ``theta`` as per-layer ``(weights, biases)`` lists (see ``pack``)."""
    weights, biases, off = [], [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        fan_in, fan_out = int(fan_in), int(fan_out)
        weights.append(theta[off:off + fan_out * fan_in].reshape(fan_out, fan_in))
        off += fan_out * fan_in
        biases.append(theta[off:off + fan_out])
        off += fan_out
    return weights, biases


@njit(cache=True)
def _offsets(sizes):
    """Start of W[l] in theta for each layer, and the total length (last entry)."""
    L = sizes.shape[0] - 1
    off = np.empty(L + 1, dtype=np.int64)
    off[0] = 0
    for l in range(L):
        off[l + 1] = off[l] + sizes[l + 1] * sizes[l] + sizes[l + 1]
    return off
