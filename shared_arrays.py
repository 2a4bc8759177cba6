"""Large arrays handed to worker processes by reference: one copy in memory, not one per process.

A job's arguments reach a worker process pickled: a training on a 5-million-row
file sent each worker its own copy of the encoded matrices, held twice while it
was unpickled (about 1 GB per worker). Here a large array is made once in an
anonymous in-memory file of this process (Linux ``memfd_create``); what is
pickled for a worker is its address (this process's id, the file's descriptor,
offset, shape, dtype), and the worker maps the same pages copy-on-write
(``/proc/<pid>/fd/<fd>``): they are shared until a worker writes, and what a
worker writes stays its own, as with a pickled copy. Nothing is written to disk or outside this process's
memory, and the memory is freed when this process and its workers end.

- :func:`empty` allocates such an array (a plain ``np.empty`` below
  ``MIN_BYTES`` or where the system cannot share: the array is then pickled as
  before);
- :func:`for_workers` gives a view of it that pickles as its address
  (:class:`SharedArray`); the worker receives a plain ``ndarray``. Any other
  array passes through unchanged.

Jobs that run in this process (``run_all.py --threads 1``) get the view itself:
no pickling, no copy.
"""
import mmap
import os
import threading
import weakref

import numpy as np

# Arrays smaller than this are pickled as usual: sharing pays for itself only on large data
# (a 5-million-row file's labels, 32 MB in int64, and test matrix, 20 MB, are shared).
MIN_BYTES = 4 * 2 ** 20

_LOCK = threading.Lock()
_OWNED = []          # this process's live shared buffers: (start address, length, fd, inode, mmap)
_MAPPED = weakref.WeakValueDictionary()   # in a worker: (pid, fd, inode) -> the parent's buffer,
                                          # mapped while an array of this worker uses it
_SUPPORTED = None    # whether memfd_create and /proc/<pid>/fd work here (checked once)


def supported():
    """True when arrays can be shared on this system (Linux: ``os.memfd_create`` and a
    readable ``/proc/<pid>/fd``); checked once per process."""
    global _SUPPORTED
    if _SUPPORTED is None:
        ok = False
        if hasattr(os, "memfd_create"):
            try:
                fd = os.memfd_create("mlp-toolkit-probe", os.MFD_CLOEXEC)
            except OSError:
                fd = None
            if fd is not None:
                try:
                    os.ftruncate(fd, 8)
                    with open(f"/proc/{os.getpid()}/fd/{fd}", "rb") as f:
                        ok = len(f.read(8)) == 8
                except OSError:
                    ok = False
                finally:
                    os.close(fd)
        _SUPPORTED = ok
    return _SUPPORTED


def empty(shape, dtype):
    """An uninitialised C-ordered array of ``shape`` and ``dtype``; in shared memory when it
    has at least ``MIN_BYTES`` and ``supported()``, else ``np.empty``.

    Parameters
    ----------
    shape : tuple of int
    dtype : numpy dtype

    Returns
    -------
    ndarray of shape ``shape``, writable
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if n_bytes < MIN_BYTES or not supported():
        return np.empty(shape, dtype=dtype)
    fd = os.memfd_create("mlp-toolkit-array", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, n_bytes)
        buf = mmap.mmap(fd, n_bytes)            # shared, read-write
    except OSError:
        os.close(fd)
        return np.empty(shape, dtype=dtype)
    flat = np.frombuffer(buf, dtype=dtype)
    with _LOCK:
        _OWNED.append((flat.__array_interface__["data"][0], n_bytes, fd, os.fstat(fd).st_ino, buf))
    # when no array of this buffer is left (views keep ``flat`` alive), forget it and close its
    # descriptor; the pages go with the last mapping (this process's and any worker's)
    weakref.finalize(flat, _release, fd)
    return flat.reshape(shape)


def _release(fd):
    with _LOCK:
        _OWNED[:] = [entry for entry in _OWNED if entry[2] != fd]
    os.close(fd)


def _owner(a):
    """(fd, inode, offset, length) of the shared buffer holding C-contiguous ``a``, or None
    (the inode tells this buffer from a later one given the same descriptor number)."""
    if not isinstance(a, np.ndarray) or not a.flags.c_contiguous or a.dtype.hasobject:
        return None
    start = a.__array_interface__["data"][0]
    with _LOCK:
        for base, length, fd, ino, _ in _OWNED:
            if base <= start and start + a.nbytes <= base + length:
                return fd, ino, start - base, length
    return None


def for_workers(a):
    """``a`` as a job argument: a :class:`SharedArray` view (pickled as its address) when it
    lies in a buffer made by :func:`empty`, else ``a`` itself (None passes through)."""
    if _owner(a) is None:
        return a
    return a.view(SharedArray)


class SharedArray(np.ndarray):
    """A view of an array made by :func:`empty` that pickles as its address: a worker
    unpickles it as an ``ndarray`` on the same memory (copy-on-write). A view that no longer
    lies in a shared buffer (a copy numpy made, e.g. by fancy indexing) pickles as a
    plain array."""

    def __reduce_ex__(self, protocol):
        place = _owner(self)
        if place is None:
            return np.asarray(self).__reduce_ex__(protocol)
        fd, ino, offset, length = place
        return _attach, (os.getpid(), fd, ino, length, offset, self.shape, self.dtype.str)


def _attach(pid, fd, ino, length, offset, shape, dtype):
    """The worker's side of ``SharedArray``'s pickle: the array at ``offset`` of process
    ``pid``'s buffer ``fd`` (inode ``ino``), mapped copy-on-write (once per buffer while this
    process uses it)."""
    key = (pid, fd, ino)
    with _LOCK:
        whole = _MAPPED.get(key)
        if whole is None and pid == os.getpid():        # unpickled where it was made
            buf = next((b for _, _, f, i, b in _OWNED if (f, i) == (fd, ino)), None)
            if buf is None:
                raise RuntimeError(f"shared array buffer {fd} of this process is gone")
            whole = _MAPPED[key] = np.frombuffer(buf, dtype=np.uint8)
    if whole is None:
        try:
            with open(f"/proc/{pid}/fd/{fd}", "rb") as f:
                if os.fstat(f.fileno()).st_ino != ino:
                    raise OSError(0, "the descriptor now names another file")
                buf = mmap.mmap(f.fileno(), length, access=mmap.ACCESS_COPY)
        except OSError as e:
            raise RuntimeError(f"cannot map the main process's shared data "
                               f"(/proc/{pid}/fd/{fd}: {e.strerror}); run with --threads 1 "
                               f"to train in one process") from None
        with _LOCK:
            whole = _MAPPED.setdefault(key, np.frombuffer(buf, dtype=np.uint8))
    dtype = np.dtype(dtype)
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return whole[offset:offset + n_bytes].view(dtype).reshape(shape)
