"""``MLP.load`` on crafted files: one ``ValueError`` naming the file, never a
MemoryError, OverflowError, RecursionError or another exception, and no large
allocation before the sizes a file declares are checked against its real size.

Every file is made here, small: ``.npy`` headers that declare huge arrays,
deflate bombs streamed from one compressed MiB of zeros repeated (after a full
flush a deflate stream starts afresh, so the same bytes decode to the next
MiB), JSON nested too deep, numbers too large, zip entries with odd methods or
flags, and random damage to a good file. Memory is measured with tracemalloc
(NumPy reports its array buffers to it).
"""
import io
import os
import json
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import mlp

MiB = 1 << 20


# ------------------------------------------------------------------ helpers
def _npy_header(shape, descr="<f8", fortran=False):
    """The bytes of a version 1.0 ``.npy`` header declaring ``shape`` and ``descr``."""
    text = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}).encode("latin1")
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def _npy(a):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(a), allow_pickle=False)
    return buf.getvalue()


def _stored(data):
    return {"data": data, "method": 0, "crc": zlib.crc32(data), "size": len(data)}


def _deflated_zeros(prefix, mib, declared=None):
    """An entry of ``prefix`` then ``mib`` MiB of zeros, deflated, built from one
    compressed MiB; its size field says ``declared`` (default: the truth)."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = co.compress(prefix) + co.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(MiB)
    one = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix)
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    data = head + one * mib + co.flush()
    size = len(prefix) + mib * MiB
    return {"data": data, "method": 8, "crc": crc, "size": size if declared is None else declared}


def _write_zip(path, entries, flags=0):
    """A zip archive of ``entries`` (name -> dict from _stored/_deflated_zeros, or bytes),
    written field by field so that sizes, methods and flags can be anything."""
    with open(path, "wb") as fh:
        central = []
        for name, e in entries.items():
            e = _stored(e) if isinstance(e, bytes) else e
            n, off = name.encode(), fh.tell()
            fh.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, e["method"], 0, 0x21,
                                 e["crc"], len(e["data"]), e["size"], len(n), 0) + n + e["data"])
            central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, e["method"], 0,
                                       0x21, e["crc"], len(e["data"]), e["size"], len(n), 0, 0, 0,
                                       0, 0, off) + n)
        cd, start = b"".join(central), fh.tell()
        fh.write(cd + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central),
                                  len(cd), start, 0))
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A small fitted model's entries (name.npy -> .npy bytes) and its metadata."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4))
    y = np.arange(40) % 3
    path = mlp.MLP(hidden=(3,), n_iter=3).fit(X, y, X, y).save(tmp_path_factory.mktemp("good") / "m")
    with zipfile.ZipFile(path) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    meta = json.loads(str(np.load(io.BytesIO(entries["meta.npy"]))))
    return entries, meta


def _with(good, **changed):
    """The good entries with some replaced (``W0=...``); ``meta=dict`` is JSON-encoded."""
    entries, meta = good
    out = dict(entries)
    for key, value in changed.items():
        if key == "meta" and isinstance(value, dict):
            value = _npy(np.array(json.dumps(value)))
        out[f"{key}.npy"] = value
    return out


def _refused(path, *reasons):
    """MLP.load(path) raises one one-line ValueError naming ``path`` and each reason."""
    with pytest.raises(ValueError, match="cannot load") as info:
        mlp.MLP.load(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg and "MLP.save" in msg, msg
    for r in reasons:
        assert r in msg, (r, msg)
    return msg


def _peak_during(fn):
    """(result or exception, peak traced bytes) of ``fn()``."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - the caller looks at it
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -------------------------------------------------- sizes declared, not held
def test_a_header_declaring_ten_trillion_floats_is_refused_before_allocating(tmp_path, good):
    # 4.6 kB on disk; np.load allocated 80 TB for it (MemoryError)
    path = _write_zip(tmp_path / "huge.npz", _with(good, W0=_npy_header((10 ** 13,)) + bytes(64)))
    assert path.stat().st_size < 8000
    err, peak = _peak_during(lambda: mlp.MLP.load(path))
    assert isinstance(err, ValueError) and "(10000000000000,)" in str(err), err
    assert peak < 8 * MiB
    _refused(path, "'W0'", "damaged or was altered")


@pytest.mark.parametrize("shape", [(10 ** 30, 10 ** 30), (2 ** 63 - 1, 2), (-1, 4)],
                         ids=["overflows int64", "overflows bytes", "negative"])
def test_a_header_with_impossible_sizes_is_refused(tmp_path, good, shape):
    _refused(_write_zip(tmp_path / "m.npz", _with(good, W0=_npy_header(shape) + bytes(96))), "'W0'")


def test_a_meta_header_declaring_a_2_gb_string_is_refused(tmp_path, good):
    path = _write_zip(tmp_path / "m.npz", _with(good, meta=_npy_header((), "<U500000000")))
    err, peak = _peak_during(lambda: mlp.MLP.load(path))
    assert isinstance(err, ValueError) and "'meta'" in str(err), err
    assert peak < 8 * MiB


# ------------------------------------------------------------- deflate bombs
def test_a_deflate_bomb_beyond_the_limit_is_refused_unread(tmp_path, good, monkeypatch):
    # the bomb was 3 MB inflating to 3 GB; the same thing scaled to the limit
    mib = mlp.LOAD_MAX_INFLATED // MiB + 1
    prefix = _npy_header((mib * MiB // 8,))
    bomb = _deflated_zeros(prefix, mib)
    path = _write_zip(tmp_path / "bomb.npz", _with(good, W0=bomb))
    assert path.stat().st_size < 2 * mib * 1100
    err, peak = _peak_during(lambda: mlp.MLP.load(path))
    assert isinstance(err, ValueError) and "LOAD_MAX_INFLATED" in str(err), err
    assert peak < 8 * MiB


def test_a_deflate_bomb_under_the_limit_that_the_metadata_does_not_describe_is_not_inflated(
        tmp_path, good):
    # 64 MiB of zeros as a history the metadata says is 3 long: refused from its header
    bomb = _deflated_zeros(_npy_header((64 * MiB // 8,)), 64)
    path = _write_zip(tmp_path / "bomb.npz", _with(good, history_loss=bomb))
    err, peak = _peak_during(lambda: mlp.MLP.load(path))
    assert isinstance(err, ValueError) and "history entry 'loss'" in str(err), err
    assert peak < 8 * MiB


def test_a_deflate_bomb_that_lies_about_its_size_is_read_no_further(tmp_path, good):
    # says 1 kB, holds 64 MiB: zipfile stops at the size the entry declares
    prefix = _npy_header((64 * MiB // 8,))
    path = _write_zip(tmp_path / "liar.npz",
                      _with(good, history_loss=_deflated_zeros(prefix, 64, declared=1024)))
    err, peak = _peak_during(lambda: mlp.MLP.load(path))
    assert isinstance(err, ValueError), err
    assert peak < 8 * MiB


def test_compressed_entries_within_the_limit_still_load(tmp_path, good):
    entries, _ = good
    path = tmp_path / "compressed.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    m = mlp.MLP.load(path)
    with zipfile.ZipFile(path) as zf:
        assert np.array_equal(m.weights_[0], np.load(io.BytesIO(zf.read("W0.npy"))))


# ------------------------------------------------------- metadata, crafted
def _deep(n):
    return "[" * n + "]" * n


@pytest.mark.parametrize("case", [
    "nested JSON", "nested in params", "n_layers 1e400", "n_features_in 1e400", "n_iter_ 1e400",
    "params a list", "classes a string", "labels 2 GB each", "labels structured", "history a string",
    "history unknown key", "feature names a number", "n_layers 10**9", "hidden 10**12"])
def test_crafted_metadata_is_refused(tmp_path, good, case):
    _, meta = good
    text = None
    if case == "nested JSON":
        text = _deep(100_000)
    elif case == "nested in params":
        text = json.dumps({**meta, "params": {**meta["params"], "hidden": "X"}}).replace(
            '"X"', '{"__tuple__": ' * 50_000 + "[]" + "}" * 50_000)
    elif case.endswith("1e400"):
        text = json.dumps({**meta, case.split()[0]: 1}).replace(
            f'"{case.split()[0]}": 1', f'"{case.split()[0]}": 1e400')
    else:
        changed = {
            "params a list": {"params": [1, 2]},
            "classes a string": {"classes": "abc"},
            "labels 2 GB each": {"classes": {"dtype": "<U500000000", "values": ["a", "b", "c"]}},
            "labels structured": {"classes": {"dtype": "(3,)f8", "values": [1, 2, 3]}},
            "history a string": {"history": "loss"},
            "history unknown key": {"history": ["../../etc/passwd"]},
            "feature names a number": {"feature_names_in": 5},
            "n_layers 10**9": {"n_layers": 10 ** 9},
            "hidden 10**12": {"params": {**meta["params"], "hidden": {"__tuple__": [10 ** 12]}}},
        }[case]
        text = json.dumps({**meta, **changed})
    path = _write_zip(tmp_path / "m.npz", _with(good, meta=_npy(np.array(text))))
    err, peak = _peak_during(lambda: mlp.MLP.load(path))
    assert isinstance(err, ValueError), repr(err)
    assert peak < 32 * MiB
    _refused(path)


# -------------------------------------------------------------- zip, crafted
@pytest.mark.parametrize("case", ["method 99", "bzip2", "encrypted", "size beyond the file"])
def test_odd_zip_entries_are_refused(tmp_path, good, case):
    entries, _ = good
    w0 = _stored(entries["W0.npy"])
    flags = 0
    if case == "method 99":
        w0["method"] = 99
    elif case == "bzip2":
        w0["method"] = 12
    elif case == "encrypted":
        flags = 1
    else:
        w0["size"] = 10 ** 9          # stored: says a GB, the file holds a few kB
    path = _write_zip(tmp_path / "m.npz", {**entries, "W0.npy": w0}, flags=flags)
    _refused(path)


def test_random_damage_gives_a_model_or_one_value_error(tmp_path, good):
    """Bytes of a good file changed at random (with the CRCs recomputed, as a crafted
    file would have them, or not): each load ends in a model or a ValueError."""
    entries, _ = good
    rng = np.random.default_rng(1)
    base = _write_zip(tmp_path / "base.npz", entries).read_bytes()
    outcomes = {"loaded": 0, "ValueError": 0}
    for trial in range(300):
        path = tmp_path / f"t{trial}.npz"
        if trial % 2:       # damage the archive itself
            raw = bytearray(base)
            for pos in rng.integers(0, len(raw), size=rng.integers(1, 4)):
                raw[pos] = rng.integers(0, 256)
            path.write_bytes(bytes(raw))
        else:               # damage an entry's .npy header or JSON, and write a valid zip
            name = list(entries)[rng.integers(len(entries))]
            data = bytearray(entries[name])
            for pos in rng.integers(0, min(len(data), 200), size=rng.integers(1, 4)):
                data[pos] = rng.choice(list(b"0123456789(),:[]{}'\"e-9 \x00\xff"))
            _write_zip(path, {**entries, name: bytes(data)})
        try:
            mlp.MLP.load(path)
            outcomes["loaded"] += 1
        except ValueError as e:
            assert "\n" not in str(e) and str(path) in str(e)
            outcomes["ValueError"] += 1
    assert outcomes["ValueError"] > 100, outcomes


# ------------------------------------------------------------------- saving
@pytest.mark.parametrize("planted", ["link", "dangling link", "leftover file"])
def test_save_never_writes_through_its_temporary_name(tmp_path, planted):
    victim = tmp_path / "victim.txt"
    part = tmp_path / "m.npz.part"
    if planted == "link":
        victim.write_text("precious")
        part.symlink_to(victim)
    elif planted == "dangling link":
        part.symlink_to(victim)
    else:
        part.write_text("a crashed save's half")
    m = mlp.MLP.from_weights([np.eye(2), np.eye(2)], [np.zeros(2), np.zeros(2)], "tanh")
    written = m.save(tmp_path / "m")
    assert not written.is_symlink() and np.array_equal(mlp.MLP.load(written).weights_[0], np.eye(2))
    assert not os.path.lexists(part)
    if planted == "link":
        assert victim.read_text() == "precious"
    elif planted == "dangling link":
        assert not victim.exists()
