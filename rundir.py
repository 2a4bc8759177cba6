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

Only what a run makes is touched. The lock is opened without following a link
(``O_NOFOLLOW``) and must be a regular file with no other name (a planted link,
hard link, FIFO or folder is refused with one line, its target untouched).
A ``<out>.staging-*``, ``.old-*`` or ``.incomplete-*`` entry that is a link,
not a folder, or owned by another user is left alone, and ``RunDir.open``
names it in one line.
"""
import datetime
import errno
import json
import os
import secrets
import shutil
import socket
import stat
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


# Open flags that make ``os.open`` refuse a symbolic link as the last component,
# not inherit the descriptor into children, and not wait on a planted FIFO.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def _euid():
    """This process's effective user id, or None where there are none (not Unix)."""
    return os.geteuid() if hasattr(os, "geteuid") else None


def _not_ours(st):
    """Why an entry beside ``--out`` whose ``os.lstat`` is ``st`` was not made by a run of
    this user ("a symbolic link", "not a folder", "owned by another user (uid N)"),
    or None when it is a folder of this user."""
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "not a folder"
    uid = _euid()
    if uid is not None and st.st_uid != uid:
        return f"owned by another user (uid {st.st_uid})"
    return None


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
                fd = os.open(path or self.path, os.O_RDONLY | _NOFOLLOW)
                try:
                    raw = os.pread(fd, 65536, 0) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
                finally:
                    os.close(fd)
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

    def _planted(self, what):
        """The ``OutError`` for a lock path that holds something no run makes."""
        return OutError(f"--out: the lock file {self.path!r} {what}, which no run makes; "
                        f"remove it (after checking who put it there) or pass another --out")

    def _refuse_odd(self, st):
        """Raise ``_planted`` unless ``st`` (an ``lstat``/``fstat``) is a plain file
        with one name: never write through a link, a hard link to another file, a
        FIFO or a device."""
        if stat.S_ISLNK(st.st_mode):
            raise self._planted("is a symbolic link")
        if not stat.S_ISREG(st.st_mode):
            raise self._planted("is not a regular file")
        if st.st_nlink != 1:
            raise self._planted(f"has other hard links ({st.st_nlink} names for one file)")

    def _open(self, flags):
        """``os.open`` of the lock path without following a link; the descriptor of a
        plain file with one name, else ``_planted`` (nothing written)."""
        try:
            fd = os.open(self.path, flags | _NOFOLLOW, 0o644)
        except FileExistsError:         # O_EXCL: the caller looks at it
            raise
        except OSError as e:            # a link (ELOOP) or a folder (EISDIR): say which
            try:
                st = os.lstat(self.path)
            except OSError:
                raise e from None
            self._refuse_odd(st)
            raise
        try:
            self._refuse_odd(os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return fd

    def acquire(self):
        """Take the lock or raise ``Busy`` (another live run), ``OutError`` (the lock
        path holds a link, folder or hard link no run made) or ``OSError``."""
        return self._acquire_flock() if self.use_flock else self._acquire_excl()

    def _acquire_flock(self):
        import fcntl
        for _ in range(10):
            fd = self._open(os.O_RDWR | os.O_CREAT)
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
                same = os.lstat(self.path).st_ino == os.fstat(fd).st_ino
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
                fd = self._open(os.O_RDWR | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                try:
                    self._refuse_odd(os.lstat(self.path))
                except FileNotFoundError:
                    continue
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
        try:                            # unlink while still holding it (see the inode check)
            if os.lstat(self.path).st_ino == os.fstat(fd).st_ino:
                os.unlink(self.path)
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
    left_alone : dict of str to str
        Entries beside ``out`` with a run's name that no run of this user made
        (a link, a file, another user's folder) and why; never touched, and
        named in one line by ``open``.
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
        self.left_alone = {}    # name beside out -> why no run of this user made it

    # -------------------------------------------------------------- open
    def open(self):
        """Check ``out``, take the lock, repair what a killed run left, create the
        staging folder. Returns one-line messages about any repair, and one naming
        the entries it left alone (``left_alone``) if any.

        Raises
        ------
        Busy
            Another live run holds the lock.
        OutError
            ``out`` is a file, read-only or cannot be created beside, or the lock
            path holds a link, folder or hard link no run made.
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
            if self.left_alone:
                messages.append(self._left_alone_note())
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
        """The ``<out>.<kind>-*`` folders of this user beside ``out``, sorted by name.
        Entries of that name that a run did not make (a link, a file, another user's
        folder) are not returned but recorded in ``self.left_alone`` (name -> why)."""
        prefix = f"{self.name}.{kind}-"
        try:
            names = os.listdir(self.parent)
        except OSError:
            return []
        found = []
        for n in sorted(n for n in names if n.startswith(prefix)):
            try:
                why = _not_ours(os.lstat(self.parent / n))
            except OSError:             # gone meanwhile
                continue
            if why is None:
                found.append(self.parent / n)
            else:
                self.left_alone[n] = why
        return found

    def _left_alone_note(self, most=5):
        """One line naming the entries ``_siblings`` left alone (at most ``most`` of them)."""
        items = sorted(self.left_alone.items())
        named = ", ".join(f"{n!r} ({why})" for n, why in items[:most])
        more = f" and {len(items) - most} more" if len(items) > most else ""
        return (f"left alone beside {str(self.out)!r}, as no run of yours made them: {named}{more}; "
                f"remove them if they are not wanted")

    def _recover(self):
        """Repair what killed runs left (the caller holds the lock, so every other
        staging/old folder of this user belongs to a dead run)."""
        messages = []
        olds = self._siblings("old")
        if olds and not os.path.lexists(self.out):  # killed between the two renames of a swap
            src = olds[-1]
            ino = os.lstat(src).st_ino
            os.rename(src, self.out)
            moved = os.lstat(self.out)
            if moved.st_ino != ino or _not_ours(moved) is not None:     # swapped meanwhile
                os.rename(self.out, src)
                self.left_alone[src.name] = "replaced while it was being restored"
            else:
                messages.append(f"restored {str(self.out)!r} from {src.name!r} "
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
        self._siblings("incomplete")        # note the ones no run made (pruning skips them)
        return messages

    def _carry_over(self, src, dst):
        """Move the entries of ``src`` that are not a run's (``self.owned``) into
        ``dst`` unless ``dst`` has them already. Both must be folders, not links."""
        try:
            if not (stat.S_ISDIR(os.lstat(src).st_mode) and stat.S_ISDIR(os.lstat(dst).st_mode)):
                return
        except OSError:
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
