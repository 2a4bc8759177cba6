"""Files beside ``--out`` and the workers' warm-up locks: nothing a run did not
make is written through, moved or removed, and nobody else can make a run wait.

``rundir``: a planted ``<out>.lock`` link (or hard link, or FIFO) is refused
with one line and the file it points to is untouched; planted
``<out>.staging-*``/``<out>.old-*``/``<out>.incomplete-*`` links, files and
folders of another user are left alone and named in one line.

``jobs``: the warm-up locks live in a folder of this user's only (0700, not a
link); a lock held by a process that is not making progress (another program,
or a run paused with Ctrl-Z) delays a worker by seconds, never for ever.
"""
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import jobs
import rundir

REPO = Path(__file__).resolve().parents[1]


def _victim(folder):
    """A folder of someone else's with two files; returns it and a snapshot function."""
    folder.mkdir()
    (folder / "precious.txt").write_text("do not touch")
    (folder / "metrics.json").write_text(json.dumps({"run_id": "someone-else"}))

    def snapshot():
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}
    return folder, snapshot


def _fake_run(folder, run_id):
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "config.json"):
        (folder / name).write_text(json.dumps({"run_id": run_id}))
    return folder


# ----------------------------------------------------------------- the lock
@pytest.mark.parametrize("use_flock", [True, False])
@pytest.mark.parametrize("dangling", [False, True], ids=["to a file", "dangling"])
def test_a_planted_lock_link_is_refused_and_its_target_untouched(tmp_path, use_flock, dangling):
    target = tmp_path / "elsewhere" / "victim.cfg"
    target.parent.mkdir()
    if not dangling:
        target.write_text('{"setting": 1}\n')
    (tmp_path / "out.lock").symlink_to(target)
    run = rundir.RunDir(tmp_path / "out", run_id="r", use_flock=use_flock)
    with pytest.raises(rundir.OutError, match=r"out\.lock' is a symbolic link.*remove it") as info:
        run.open()
    assert "\n" not in str(info.value)
    if dangling:
        assert not target.exists()                   # not created through the link
    else:
        assert target.read_text() == '{"setting": 1}\n'
    assert (tmp_path / "out.lock").is_symlink()      # left where it was
    assert not list(tmp_path.glob("out.staging-*")) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("use_flock", [True, False])
def test_a_lock_hard_linked_to_another_file_is_refused(tmp_path, use_flock):
    victim = tmp_path / "victim.cfg"
    victim.write_text('{"pid": 1, "setting": 1}\n')
    os.link(victim, tmp_path / "out.lock")
    with pytest.raises(rundir.OutError, match="other hard links"):
        rundir.RunDir(tmp_path / "out", use_flock=use_flock).open()
    assert victim.read_text() == '{"pid": 1, "setting": 1}\n'


@pytest.mark.parametrize("use_flock", [True, False])
def test_a_lock_that_is_a_fifo_or_a_folder_is_refused_without_waiting(tmp_path, use_flock):
    os.mkfifo(tmp_path / "out.lock")
    (tmp_path / "b.lock").mkdir()
    for name, what in (("out", "not a regular file"), ("b", "not a regular file")):
        with pytest.raises(rundir.OutError, match=what):
            rundir.RunDir(tmp_path / name, use_flock=use_flock).open()
    assert stat.S_ISFIFO(os.lstat(tmp_path / "out.lock").st_mode)


# ------------------------------------------------------ siblings of --out
@pytest.mark.parametrize("kind", ["staging", "old", "incomplete"])
def test_planted_sibling_links_are_not_recovered_and_are_reported(tmp_path, kind):
    victim, snapshot = _victim(tmp_path / "victim")
    before = snapshot()
    link = tmp_path / f"out.{kind}-20260101T000000Z-1-aaaaaa"
    link.symlink_to(victim, target_is_directory=True)
    run = rundir.RunDir(tmp_path / "out", run_id="next")
    notes = run.open()
    (run.staging / "config.json").write_text("{}")
    run.commit()
    assert snapshot() == before                      # nothing moved out of, into or in it
    assert link.is_symlink() and os.readlink(link) == str(victim)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json"]
    assert not (tmp_path / "out").is_symlink()
    # one line, naming the link and saying what to do
    skipped = [n for n in notes if link.name in n]
    assert len(skipped) == 1 and "\n" not in skipped[0], notes
    assert "symbolic link" in skipped[0] and "left alone" in skipped[0]


def test_a_planted_old_link_is_not_restored_as_out(tmp_path):
    # the "killed between the two renames" repair must not turn --out into someone's folder
    victim, snapshot = _victim(tmp_path / "victim")
    before = snapshot()
    (tmp_path / "out.old-20260101T000000Z-1-aaaaaa").symlink_to(victim)
    run = rundir.RunDir(tmp_path / "out", run_id="next")
    notes = run.open()
    assert not os.path.lexists(tmp_path / "out")
    assert not any("restored" in n for n in notes)
    run.abandon(keep=False)
    assert snapshot() == before


def test_sibling_files_and_several_links_are_reported_in_one_line(tmp_path):
    victim, snapshot = _victim(tmp_path / "victim")
    before = snapshot()
    (tmp_path / "out.staging-a").symlink_to(victim)
    (tmp_path / "out.staging-b").write_text("a file, not a run's folder")
    (tmp_path / "out.old-c").symlink_to(tmp_path / "nowhere")
    notes = rundir.RunDir(tmp_path / "out", run_id="next").open()
    assert len(notes) == 1, notes
    for name in ("out.staging-a", "out.staging-b", "out.old-c"):
        assert name in notes[0]
    assert "not a folder" in notes[0] and "symbolic link" in notes[0]
    assert (tmp_path / "out.staging-b").read_text() == "a file, not a run's folder"
    assert snapshot() == before


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="no user ids here")
def test_folders_of_another_user_are_left_alone(tmp_path, monkeypatch):
    # a real other user needs root to set up: make this process look like someone else
    # to rundir instead, so every folder in tmp_path belongs to "another user"
    stage = _fake_run(tmp_path / "out.staging-20260101T000000Z-1-aaaaaa", "20260101T000000Z-1-aaaaaa")
    (stage / "user-file.txt").write_text("theirs")
    old = _fake_run(tmp_path / "out.old-20260101T000000Z-1-bbbbbb", "previous")
    inc = _fake_run(tmp_path / "out.incomplete-x", "x")
    real = os.geteuid()
    monkeypatch.setattr(rundir.os, "geteuid", lambda: real + 1)
    run = rundir.RunDir(tmp_path / "out", run_id="next")
    notes = run.open()
    (run.staging / "config.json").write_text("{}")
    assert run.abandon() == tmp_path / "out.incomplete-next"
    assert (stage / "user-file.txt").read_text() == "theirs"
    assert old.is_dir() and inc.is_dir() and not os.path.lexists(tmp_path / "out")
    (note,) = notes
    assert f"owned by another user (uid {real})" in note
    for p in (stage, old, inc):
        assert p.name in note


def test_own_leftovers_are_still_repaired(tmp_path):
    # the checks keep the repair of a killed run's folders (tests/test_interrupt.py has more)
    _fake_run(tmp_path / "out.old-20260101T000000Z-1-aaaaaa", "previous")
    notes = rundir.RunDir(tmp_path / "out", run_id="next").open()
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["run_id"] == "previous"
    assert any("restored" in n for n in notes) and not any("left alone" in n for n in notes)


# ------------------------------------------------------------ warm-up locks
@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """``tempfile.gettempdir()`` is ``tmp_path`` for this test (and forked workers)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _own_folder(tmp):
    return tmp / f"mlp-toolkit-{os.geteuid()}"


def test_warm_up_locks_live_in_a_private_folder(private_tmp):
    with jobs._TaskLock(0, blocking=True) as got:
        assert got
        folder = _own_folder(private_tmp)
        st = os.lstat(folder)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
        assert st.st_uid == os.geteuid()
        assert [p.name for p in folder.iterdir()] == ["warm-up-0.lock"]
    assert [p.name for p in private_tmp.iterdir()] == [folder.name]   # nothing in the shared folder


@pytest.mark.parametrize("planted", ["link", "open to others", "another user's", "a file"])
def test_an_untrustworthy_warm_up_folder_is_not_used(private_tmp, monkeypatch, planted):
    folder = _own_folder(private_tmp)
    victim = private_tmp / "victim"
    victim.mkdir(mode=0o700)
    if planted == "link":
        folder.symlink_to(victim, target_is_directory=True)
    elif planted == "a file":
        folder.write_text("x")
    else:
        if planted == "another user's":
            # a real other user needs root to set up: "we" become uid + 1, and the
            # folder of that name belongs to the real uid
            real = os.geteuid()
            monkeypatch.setattr(jobs.os, "geteuid", lambda: real + 1)
            folder = _own_folder(private_tmp)
        folder.mkdir(mode=0o700)
        if planted == "open to others":
            folder.chmod(0o777)
    t0 = time.monotonic()
    with jobs._TaskLock(0, blocking=True) as got:
        assert got                                   # warms up, uncoordinated
    assert time.monotonic() - t0 < 5
    assert list(victim.iterdir()) == []
    if planted in ("open to others", "another user's"):
        assert list(folder.iterdir()) == []          # no lock file made in it


_HOLDER = textwrap.dedent("""
    import fcntl, os, sys, tempfile, time
    sys.path.insert(0, {repo!r})
    tempfile.tempdir = {tmp!r}
    import jobs
    jobs.WARM_UP_STALL_SECONDS = {stall!r}
    if {raw!r}:     # another program: holds the file, never beats
        d = os.path.join(tempfile.gettempdir(), f"mlp-toolkit-{{os.geteuid()}}")
        os.makedirs(d, mode=0o700, exist_ok=True)
        # ... and the fixed name in the shared folder that any user could hold
        shared = os.path.join(tempfile.gettempdir(), f"mlp-toolkit-warm-up-{{os.getuid()}}-0.lock")
        for path in (os.path.join(d, "warm-up-0.lock"), shared):
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(120)
    else:           # a worker warming up for {hold!r} s
        with jobs._TaskLock(0, True) as got:
            print("held", got, flush=True)
            time.sleep({hold!r})
        print("released", flush=True)
""")


def _holder(tmp, raw, hold=0.0, stall=0.5):
    p = subprocess.Popen([sys.executable, "-c", _HOLDER.format(repo=str(REPO), tmp=str(tmp), stall=stall,
                                                               raw=raw, hold=hold)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().startswith("held")
    return p


def _enter_in_thread(timeout):
    """Whether a blocking _TaskLock(0) gave a result within ``timeout`` s, the result and
    how long it took (the thread is a daemon: a hang does not stop the tests)."""
    box = {}

    def enter():
        t0 = time.monotonic()
        with jobs._TaskLock(0, blocking=True) as got:
            box["got"], box["seconds"] = got, time.monotonic() - t0
    t = threading.Thread(target=enter, daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive(), box.get("got"), box.get("seconds")


def test_a_lock_held_by_another_program_delays_a_worker_by_seconds_only(private_tmp, monkeypatch):
    monkeypatch.setattr(jobs, "WARM_UP_STALL_SECONDS", 0.5, raising=False)
    holder = _holder(private_tmp, raw=True)
    try:
        with jobs._TaskLock(0, blocking=False) as got:
            assert got is False                      # busy: the first pass skips it
        done, got, seconds = _enter_in_thread(timeout=20)
        assert done, "a worker waited for ever for a lock nobody is using"
        assert got is True and 0.4 < seconds < 10
    finally:
        holder.kill()
        holder.wait()


def test_a_run_paused_with_ctrl_z_delays_the_next_by_seconds_only(private_tmp, monkeypatch):
    monkeypatch.setattr(jobs, "WARM_UP_STALL_SECONDS", 0.5, raising=False)
    holder = _holder(private_tmp, raw=False, hold=120)
    try:
        os.kill(holder.pid, signal.SIGSTOP)          # what Ctrl-Z sends (SIGTSTP) does
        done, got, seconds = _enter_in_thread(timeout=20)
        assert done and got is True and seconds < 10
    finally:
        holder.kill()
        holder.wait()


def test_a_worker_warming_up_is_waited_for(private_tmp, monkeypatch):
    # it beats while it works: the waiter waits well past the stall time, then takes the lock
    monkeypatch.setattr(jobs, "WARM_UP_STALL_SECONDS", 0.5, raising=False)
    holder = _holder(private_tmp, raw=False, hold=2.5, stall=0.5)
    try:
        done, got, seconds = _enter_in_thread(timeout=30)
        assert done and got is True
        assert holder.stdout.readline().strip() == "released"
        assert seconds > 1.5                          # waited for it, did not go alone
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="forked workers see the test's settings")
def test_jobs_start_while_another_program_holds_a_warm_up_lock(private_tmp, monkeypatch):
    monkeypatch.setattr(jobs, "WARM_UP_STALL_SECONDS", 0.5, raising=False)
    holder = _holder(private_tmp, raw=True)
    try:
        with jobs.Jobs(1, start_method="fork", warm_up=[(os.getpid, ())]) as pool:
            assert isinstance(pool.submit("k", os.getpid).result(timeout=60), int)
    finally:
        holder.kill()
        holder.wait()


def test_the_command_line_refuses_a_planted_lock_in_one_line(tmp_path, capsys):
    import run_all
    victim = tmp_path / "victim.cfg"
    victim.write_text("keep")
    (tmp_path / "out.lock").symlink_to(victim)
    # in-process: the check comes before anything heavy is imported
    code = run_all.main(["--out", str(tmp_path / "out"), "--parts", "A"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --out: the lock file"), err
    assert "symbolic link" in err[0] and victim.read_text() == "keep"
