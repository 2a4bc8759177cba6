"""The output folder of one run: a lock, a staging folder, and one swap at the end.

``run_all`` never writes into ``--out`` itself. A run

1. takes a lock beside it (``<out>.lock``: pid, start time, host, run id), so a
   second run into the same folder stops at once and names the first;
2. repairs what a killed run left (see ``RunDir.open``);
3. writes everything into ``<out>.staging-<run_id>`` next to it (same
   filesystem, so the final move is a rename);
4. at the end swaps the staging folder into place (``RunDir.commit``): with
   Linux's ``renameat2(RENAME_EXCHANGE)`` in one atomic step, elsewhere by
   renaming the previous run to ``<out>.old-<run_id>`` and the staging folder
   to ``<out>``. The previous complete run stays in ``<out>`` until then.
5. or, when it fails or is interrupted, moves its partial output to
   ``<out>.incomplete-<run_id>`` (``RunDir.abandon``) and leaves ``<out>`` as it was.

So ``<out>`` always holds one complete run, whose ``run_id`` (``new_run_id``)
is in its ``metrics.json``, ``config.json`` and report.

A killed run (SIGKILL, power loss) can leave: a stale lock (its process is
gone; the next run takes it over), a staging folder (renamed to
``incomplete-`` by the next run), or, killed between the two renames of the
fallback swap, ``<out>.old-<id>`` without ``<out>`` (moved back by the next run).
"""
import datetime
import errno
import json
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

__all__ = ["OutError", "Busy", "RunDir", "new_run_id", "process_start_ticks", "RUN_ENTRIES"]

# What a run writes at the top of its folder. Everything else found in ``--out``
# (e.g. ``bench/`` from bench/time_epochs.py, or a user's own files) is not a
# run's and is carried over into the new folder when it replaces the old one.
RUN_ENTRIES = ("report.md", "report.html", "metrics.json", "config.json", "figures", "tables", "logs")


class OutError(Exception):
    """``--out`` cannot be used (a file, read-only, not creatable, disk full);
    the message is one line naming the path and the cause."""


class Busy(OutError):
    """Another live run holds the lock on ``--out``."""


def new_run_id(now=None):
    """A run id that sorts by time: ``YYYYmmddTHHMMSSZ-<pid>-<6 hex>`` (UTC), e.g.
    ``20261201T215504Z-4242-9f3a1c``; unique across processes and machines."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{os.getpid()}-{secrets.token_hex(3)}"


def process_start_ticks(pid):
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), or
    None where it cannot be read (not Linux, or no such process). A pid that was
    reused by a new process gets a new start time."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    try:        # the command name (field 2) may contain spaces: split after its ')'
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # exists, owned by someone else
        return True
    except (OSError, ValueError, TypeError, OverflowError):
        return False
    return True


def holder_alive(info):
    """Whether the run described by a lock file's ``info`` is still running: its pid
    exists and (where the platform tells) started when the lock says. A lock from
    another host cannot be checked and counts as alive."""
    if info.get("host") != socket.gethostname():
        return True
    pid = info.get("pid")
    if not isinstance(pid, int) or not _pid_alive(pid):
        return False
    recorded, now = info.get("proc_start"), process_start_ticks(pid)
    return recorded is None or now is None or recorded == now


def _describe(info):
    return (f"pid {info.get('pid', '?')}, started {info.get('started', '?')}"
            + (f" on {info['host']}" if info.get("host") not in (None, socket.gethostname()) else ""))


def _why(e):
    return e.strerror or type(e).__name__


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _exchange(a, b):
    """Swap two paths atomically with Linux ``renameat2(RENAME_EXCHANGE)``; False
    where the C library or the filesystem does not offer it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(a))


def _read_run_id(folder):
    try:
        with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as fh:
            return json.load(fh).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


class _Lock:
    """An exclusive lock file: ``flock`` where ``fcntl`` exists (released by the
    kernel when the holder dies, so a dead run's lock is free), else a file created
    with ``O_EXCL`` whose holder is checked with ``holder_alive``. The file holds
    JSON ``{pid, started, proc_start, host, run_id}`` for the message a second run
    prints."""

    def __init__(self, path, run_id, use_flock=None):
        self.path = os.fspath(path)
        self.run_id = run_id
        if use_flock is None:
            try:
                import fcntl  # noqa: F401
                use_flock = True
            except ImportError:
                use_flock = False
        self.use_flock = use_flock
        self._fd = None
        self.taken_over = None      # info of a dead run whose lock was taken over

    def info(self):
        return {"pid": os.getpid(), "proc_start": process_start_ticks(os.getpid()),
                "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                "host": socket.gethostname(), "run_id": self.run_id}

    def _read(self, fd=None, path=None):
        """The JSON info of the lock file (via ``fd``, else ``path``, else this
        lock's path), or {} when it is unreadable or not a JSON object."""
        try:
            if fd is None:
                with open(path or self.path, "rb") as fh:
                    raw = fh.read()
            else:
                raw = os.pread(fd, 65536, 0)
            info = json.loads(raw.decode("utf-8"))
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, fd):
        data = (json.dumps(self.info()) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    def _busy(self, info):
        """The ``Busy`` error naming the live run (``info``) that holds the lock."""
        return Busy(f"another run is writing {self.path[:-len('.lock')]!r} "
                    f"({_describe(info)}); wait for it or pass another --out")

    def acquire(self):
        """Take the lock or raise ``Busy`` (another live run) / ``OSError``."""
        return self._acquire_flock() if self.use_flock else self._acquire_excl()

    def _acquire_flock(self):
        import fcntl
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = self._read(fd)
                os.close(fd)
                raise self._busy(info) from None
            except OSError:
                os.close(fd)
                raise
            try:                # the holder may have removed the file before we locked it
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            old = self._read(fd)
            if old.get("pid") is not None:
                self.taken_over = old
            self._write(fd)
            self._fd = fd
            return self
        raise Busy(f"cannot take the lock {self.path!r}: other runs keep replacing it; try again")

    def _acquire_excl(self):
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                info = self._read()
                if not info:                # being written this instant, or garbage
                    import time
                    time.sleep(0.05)
                    info = self._read()
                if info and holder_alive(info):
                    raise self._busy(info) from None
                # stale: move it aside (only one taker wins the rename), then retry
                aside = f"{self.path}.stale-{self.run_id}"
                try:
                    os.replace(self.path, aside)
                except FileNotFoundError:
                    continue
                self.taken_over = self._read(path=aside) or info
                try:
                    os.unlink(aside)
                except OSError:
                    pass
                continue
            self._write(fd)
            self._fd = fd
            return self
        raise Busy(f"cannot take the lock {self.path!r}: other runs keep replacing it; try again")

    def release(self):
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.unlink(self.path)        # unlink while still holding it (see the inode check)
        except OSError:
            pass
        os.close(fd)

    @property
    def held(self):
        return self._fd is not None


class RunDir:
    """The output folder of one run (see the module docstring).

    Parameters
    ----------
    out : str or os.PathLike
        The ``--out`` folder. A symlink is followed: the folder it points to is
        the one replaced.
    run_id : str, optional
        Default ``new_run_id()``.
    use_flock : bool, optional
        Lock with ``flock`` (default where ``fcntl`` exists) or with an
        ``O_EXCL`` file and a pid check.
    owned : iterable of str
        Top-level names a run writes (default ``RUN_ENTRIES``): these are
        replaced; anything else in ``out`` is carried over to the new folder.

    Attributes
    ----------
    out : pathlib.Path
        Where the finished run lands (absolute).
    staging : pathlib.Path
        Where the run writes: ``<out>.staging-<run_id>``.
    run_id : str
    """

    def __init__(self, out, run_id=None, use_flock=None, owned=RUN_ENTRIES):
        self.owned = frozenset(owned)
        self.given = os.fspath(out)
        self.run_id = run_id or new_run_id()
        self.out = Path(os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(out)))))
        self.parent = self.out.parent
        self.name = self.out.name
        self.staging = self.parent / f"{self.name}.staging-{self.run_id}"
        self.incomplete = self.parent / f"{self.name}.incomplete-{self.run_id}"
        self._lock = _Lock(self.parent / f"{self.name}.lock", self.run_id, use_flock)
        self.state = "new"      # new -> open -> committed | abandoned

    # -------------------------------------------------------------- open
    def open(self):
        """Check ``out``, take the lock, repair what a killed run left, create the
        staging folder. Returns one-line messages about any repair.

        Raises
        ------
        Busy
            Another live run holds the lock.
        OutError
            ``out`` is a file, read-only or cannot be created beside.
        """
        out = self.out
        shown = repr(self.given) + ("" if self.given == str(out) else f" (= {str(out)!r})")
        if out.exists() and not out.is_dir():
            raise OutError(f"--out {shown} is a file, not a folder; pass a folder")
        if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
            raise OutError(f"--out {shown} is read-only; make it writable or pass another --out")
        for above in out.parents:       # the first folder up the path that exists
            if os.path.lexists(above):
                if not above.is_dir():
                    raise OutError(f"--out: cannot create {str(out)!r}: {str(above)!r} is a file, "
                                   "not a folder; pass another --out")
                break
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutError(f"--out: cannot create {str(out)!r} ({_why(e)}: {e.filename or self.parent}); "
                           f"pass another --out") from None
        try:
            self._lock.acquire()
        except Busy:
            raise
        except OSError as e:
            raise OutError(f"--out: cannot write beside {str(out)!r} (lock file "
                           f"{str(self._lock.path)!r}: {_why(e)}); pass a folder you can write") from None
        messages = []
        try:
            if self._lock.taken_over:
                info = self._lock.taken_over
                messages.append(f"took over the lock of a run that is no longer running ({_describe(info)})")
            messages += self._recover()
            self.staging.mkdir()
        except OSError as e:
            self._lock.release()
            raise OutError(f"--out: cannot write beside {str(out)!r} ({_why(e)}: "
                           f"{e.filename or self.staging}); pass a folder you can write") from None
        except BaseException:
            self._lock.release()
            raise
        self.state = "open"
        return messages

    def _siblings(self, kind):
        prefix = f"{self.name}.{kind}-"
        try:
            names = os.listdir(self.parent)
        except OSError:
            return []
        return sorted((self.parent / n for n in names if n.startswith(prefix)), key=lambda p: p.name)

    def _recover(self):
        """Repair what killed runs left (the caller holds the lock, so every other
        staging/old folder belongs to a dead run)."""
        messages = []
        olds = self._siblings("old")
        if olds and not os.path.lexists(self.out):  # killed between the two renames of a swap
            os.rename(olds[-1], self.out)
            messages.append(f"restored {str(self.out)!r} from {olds[-1].name!r} "
                            "(a run was stopped while replacing it)")
            olds = olds[:-1]
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)
        for st in self._siblings("staging"):
            rid = st.name[len(self.name) + len(".staging-"):]
            inside = _read_run_id(st)
            if inside is not None and inside != rid:    # the previous run, swapped out: done with
                shutil.rmtree(st, ignore_errors=True)
                continue
            self._carry_over(st, self.out)     # killed while carrying the user's files over
            dest = self.parent / f"{self.name}.incomplete-{rid}"
            os.rename(st, dest)
            self._prune_incomplete(keep=dest)
            messages.append(f"run {rid} was stopped before it finished; its partial output "
                            f"is in {str(dest)!r}")
        return messages

    def _carry_over(self, src, dst):
        """Move the entries of ``src`` that are not a run's (``self.owned``) into
        ``dst`` unless ``dst`` has them already."""
        if not (os.path.isdir(src) and os.path.isdir(dst)):
            return
        for name in sorted(os.listdir(src)):
            if name not in self.owned and not os.path.lexists(os.path.join(dst, name)):
                os.rename(os.path.join(src, name), os.path.join(dst, name))

    def _prune_incomplete(self, keep):
        for p in self._siblings("incomplete"):
            if p != keep:
                shutil.rmtree(p, ignore_errors=True)

    # ----------------------------------------------------------- finish
    def previous_run_id(self):
        """The ``run_id`` of the complete run now in ``out`` (None: none, or unknown)."""
        return _read_run_id(self.out)

    def commit(self):
        """Put the staging folder in place of ``out`` and release the lock. The
        previous run is replaced in one atomic exchange where the OS offers it,
        else by two renames (a kill between them is repaired by the next run)."""
        if self.state != "open":
            raise RuntimeError(f"commit: the run folder is {self.state}, not open")
        out, staging = os.fspath(self.out), os.fspath(self.staging)
        if os.path.lexists(out):
            self._carry_over(out, staging)      # the user's files stay in --out
            if _exchange(staging, out):         # staging now holds the previous run
                old = self.parent / f"{self.name}.old-{self.run_id}"
                os.rename(staging, old)
            else:
                old = self.parent / f"{self.name}.old-{self.run_id}"
                os.rename(out, old)
                os.rename(staging, out)
            _fsync_dir(self.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, out)
            _fsync_dir(self.parent)
        self.state = "committed"
        self._lock.release()

    def abandon(self, keep=True):
        """Leave ``out`` as it is: move this run's partial output to
        ``<out>.incomplete-<run_id>`` (``keep``; older incomplete folders are removed)
        or delete it; release the lock. Returns the folder kept, or None."""
        kept = None
        if self.state == "open" and self.staging.exists():
            try:
                if keep and any(self.staging.iterdir()):
                    os.rename(self.staging, self.incomplete)
                    kept = self.incomplete
                    self._prune_incomplete(keep=kept)
                else:
                    shutil.rmtree(self.staging, ignore_errors=True)
            except OSError:
                kept = self.staging if self.staging.exists() else None
        if self.state == "open":
            self.state = "abandoned"
        self._lock.release()
        return kept

    def release(self):
        """Release the lock only (``commit``/``abandon`` do it themselves)."""
        self._lock.release()
