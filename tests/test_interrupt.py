"""A run that cannot lie (issue 15): interrupted, killed or concurrent runs leave
``--out`` holding one complete run, leave no process behind, and say what
happened in one line without a traceback.

The first half checks ``rundir`` directly (lock, swap, repair after a kill);
the second runs ``run_all.py`` for real in subprocesses on a small synthetic
CSV pair with ``--quick`` and interrupts (SIGINT to its process group, as a
terminal's Ctrl-C does) or kills (SIGKILL to the main process, as the
out-of-memory killer does) it at several points.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rundir
import console
import run_all
from test_cli import stub_parts, write_pair  # noqa: F401  (stub_parts: a fixture)

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------- rundir
def _fake_run(folder, run_id, extra=()):
    """A complete-looking run folder whose four files carry ``run_id``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "config.json"):
        (folder / name).write_text(json.dumps({"run_id": run_id}))
    (folder / "report.md").write_text(f"Run `{run_id}`\n")
    (folder / "report.html").write_text(f'<meta name="run-id" content="{run_id}">\n')
    for name in extra:
        (folder / name).mkdir()
    return folder


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_commit_replaces_the_previous_run_and_keeps_other_files(tmp_path):
    out = _fake_run(tmp_path / "out", "old", extra=("figures", "bench"))
    (out / "figures" / "stale.png").write_text("from the old run")
    (out / "bench" / "timings.csv").write_text("not a run's file")
    run = rundir.RunDir(out, run_id="new")
    assert run.open() == []
    assert (tmp_path / "out.lock").exists()
    _fake_run(run.staging, "new", extra=("figures",))
    assert run_ids(out) == {"old"}                      # the old run stays until the end
    run.commit()
    assert run_ids(out) == {"new"}
    assert not (out / "figures" / "stale.png").exists()   # no file of the old run survives
    assert (out / "bench" / "timings.csv").read_text() == "not a run's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]   # no lock, staging, backup


def test_second_open_is_refused_naming_the_holder(tmp_path):
    first = rundir.RunDir(tmp_path / "out", run_id="a")
    first.open()
    with pytest.raises(rundir.Busy, match=rf"another run is writing .*pid {os.getpid()}, started 20"):
        rundir.RunDir(tmp_path / "out", run_id="b").open()
    first.abandon()
    rundir.RunDir(tmp_path / "out", run_id="c").open()  # free again once released


@pytest.mark.parametrize("use_flock", [True, False])
def test_lock_of_a_dead_run_is_taken_over(tmp_path, use_flock):
    lock = tmp_path / "out.lock"
    lock.write_text(json.dumps({"pid": _dead_pid(), "started": "2026-01-01 00:00:00 UTC",
                                "host": __import__("socket").gethostname(), "proc_start": 1}))
    notes = rundir.RunDir(tmp_path / "out", run_id="x", use_flock=use_flock).open()
    assert len(notes) == 1 and "no longer running" in notes[0] and "2026-01-01" in notes[0]
    assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_lock_whose_pid_was_reused_is_taken_over_but_a_live_one_is_not(tmp_path):
    # O_EXCL mode: the holder is judged by pid and process start time
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        info = {"pid": sleeper.pid, "started": "x", "host": __import__("socket").gethostname()}
        lock = tmp_path / "out.lock"
        lock.write_text(json.dumps({**info, "proc_start": rundir.process_start_ticks(sleeper.pid)}))
        with pytest.raises(rundir.Busy, match=f"pid {sleeper.pid}"):
            rundir.RunDir(tmp_path / "out", use_flock=False).open()
        lock.write_text(json.dumps({**info, "proc_start": rundir.process_start_ticks(sleeper.pid) - 1}))
        assert "no longer running" in rundir.RunDir(tmp_path / "out", use_flock=False).open()[0]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_kill_between_the_renames_of_a_swap_is_repaired(tmp_path):
    # the fallback swap renamed out -> out.old-<id>, then died before staging -> out
    _fake_run(tmp_path / "out.old-20260101T000000Z-1-aaaaaa", "previous")
    _fake_run(tmp_path / "out.staging-20260101T000000Z-1-aaaaaa", "20260101T000000Z-1-aaaaaa")
    notes = rundir.RunDir(tmp_path / "out", run_id="next").open()
    assert run_ids(tmp_path / "out") == {"previous"}
    assert any("restored" in n for n in notes)
    assert any("stopped before it finished" in n for n in notes)
    assert run_ids(tmp_path / "out.incomplete-20260101T000000Z-1-aaaaaa") == {"20260101T000000Z-1-aaaaaa"}
    assert not list(tmp_path.glob("out.old-*"))


def test_kill_after_an_exchange_removes_the_swapped_out_run(tmp_path):
    # renameat2 swapped: the staging name now holds the previous run (another run id)
    _fake_run(tmp_path / "out", "20260101T000000Z-1-aaaaaa")
    _fake_run(tmp_path / "out.staging-20260101T000000Z-1-aaaaaa", "older")
    assert rundir.RunDir(tmp_path / "out", run_id="next").open() == []
    assert run_ids(tmp_path / "out") == {"20260101T000000Z-1-aaaaaa"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.lock", "out.staging-next"]


def test_abandon_keeps_only_the_latest_partial_output(tmp_path):
    _fake_run(tmp_path / "out", "old")
    for rid in ("r1", "r2"):
        run = rundir.RunDir(tmp_path / "out", run_id=rid)
        run.open()
        (run.staging / "config.json").write_text("{}")
        assert run.abandon() == tmp_path / f"out.incomplete-{rid}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.incomplete-r2"]
    assert run_ids(tmp_path / "out") == {"old"}


@pytest.mark.parametrize("case", ["file", "under a file", "proc", "sysfs", "read-only"])
def test_unusable_out_is_one_line_exit_2(tmp_path, case, capsys):
    (tmp_path / "f").write_text("x")
    if case == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root may write into a read-only folder")
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
    out = {"file": tmp_path / "f", "under a file": tmp_path / "f" / "out", "proc": "/proc/self",
           "sysfs": "/sys/kernel/mlp-out", "read-only": tmp_path / "ro"}[case]
    # in-process: the same code path as the CLI (the check comes before any import of numba)
    code = run_all.main(["--out", str(out), "--parts", "A"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out") and "Traceback" not in err
    cause = {"file": "not a folder", "under a file": "is a file, not a folder", "proc": "read-only",
             "sysfs": "Permission denied", "read-only": "read-only"}[case]
    assert str(out) in lines[0]
    assert cause in lines[0], lines[0]


def test_unusable_out_from_the_command_line_prints_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, "run_all.py", "--out", "/proc/self", "--parts", "A"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert "'/proc/self'" in res.stderr and "read-only" in res.stderr


def test_disk_full_while_writing_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    data = write_pair(tmp_path / "data")
    out = _fake_run(tmp_path / "out", "old")

    def full(path, obj):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(run_all, "write_json", full)
    # Ctrl-C as in a terminal, even when the tests run in a background job (SIGINT ignored)
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = run_all.main(["--data-dir", str(data), "--target", "label", "--parts", "A", "--quick",
                             "--threads", "1", "--out", str(out)])
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, saved)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: --out: cannot write") and "config.json" in err[0]
    assert "No space left on device" in err[0]
    assert run_ids(out) == {"old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]
    assert after is signal.default_int_handler   # main() restored it


def test_final_summary_names_failed_and_skipped_parts_and_only_existing_logs(tmp_path, stub_parts,
                                                                               capsys):
    data, out = write_pair(tmp_path / "data"), tmp_path / "out"
    assert run_all.main(["--data-dir", str(data), "--target", "label", "--out", str(out),
                         "--seed", "13", "--threads", "1"]) == 1       # the stub B fails
    printed = capsys.readouterr().out.strip().splitlines()
    log = out / "logs" / "partB.log"
    assert log.exists() and sorted(p.name for p in (out / "logs").iterdir()) == ["partB.log"]
    assert printed[-2] == f"part B failed (traceback: {log}); part C, D skipped (needs part B)"
    assert printed[-1].startswith(f"report: {out / 'report.html'}")
    assert len(run_ids(out)) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]


# ------------------------------------------------------------- real runs
def run_ids(out):
    """The run ids that metrics.json, config.json, report.md and report.html of ``out`` name."""
    import re
    ids = set()
    for name in ("metrics.json", "config.json"):
        ids.add(json.loads((out / name).read_text())["run_id"])
    ids.update(re.findall(r"Run `([^`]+)`", (out / "report.md").read_text()))
    ids.update(re.findall(r'<meta name="run-id" content="([^"]+)">', (out / "report.html").read_text()))
    return ids


def _alive_in_group(pgid):
    """Pids of live (not zombie) processes in process group ``pgid``."""
    alive = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            alive.append(int(d))
    return alive


def _gone(pgid, within=5.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive_in_group(pgid):
            return True
        time.sleep(0.1)
    return not _alive_in_group(pgid)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_pair(tmp_path_factory.mktemp("data"), n_train=400, n_test=100)


@pytest.fixture(scope="module")
def previous(tmp_path_factory, data):
    """A complete run (Part A only: seconds) that later runs must either keep or replace."""
    out = tmp_path_factory.mktemp("previous") / "out"
    res = subprocess.run([sys.executable, "run_all.py", *_args(data, out, "A")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (rid,) = run_ids(out)
    return out, rid


def _args(data, out, parts, iterations=30):
    return ["--data-dir", str(data), "--target", "label", "--quick", "--parts", parts,
            "--iterations", str(iterations), "--out", str(out)]


def _default_sigint():
    """In the child: Ctrl-C as in a terminal, even when these tests run in a
    background job (whose children inherit SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """``run_all.py`` in its own process group, its stdout read line by line."""

    def __init__(self, data, out, parts, iterations=30):
        self.p = subprocess.Popen([sys.executable, "-u", "run_all.py", *_args(data, out, parts, iterations)],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True, preexec_fn=_default_sigint)
        self.lines = []

    def wait_for(self, text, timeout=120):
        deadline = time.monotonic() + timeout
        for line in self.p.stdout:
            self.lines.append(line)
            if text in line:
                return
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s: {self.lines}"
        raise AssertionError(f"the run ended before {text!r}: {self.lines} {self.p.stderr.read()}")

    def finish(self, timeout=30):
        out, err = self.p.communicate(timeout=timeout)
        return self.p.returncode, "".join(self.lines) + out, err


def _copy(previous, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(previous[0], out)
    return out


def _only_one_run(out, previous_id, new_allowed):
    ids = run_ids(out)
    assert len(ids) == 1, f"out/ mixes runs: {ids}"
    assert ids == {previous_id} or new_allowed, ids
    leftovers = [p.name for p in out.parent.iterdir() if ".staging-" in p.name or ".old-" in p.name]
    assert not leftovers and not (out.parent / "out.lock").exists(), leftovers


def _one_interrupt_line(code, err):
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), err
    return lines[0]


def _sigint_keeps_the_previous_run(run, out, previous):
    """Ctrl-C the run's process group; check one interrupt line, no process left and the
    previous run intact; return (the interrupt line, seconds from Ctrl-C to exit)."""
    t0 = time.monotonic()
    os.killpg(run.p.pid, signal.SIGINT)
    code, _, err = run.finish()
    elapsed = time.monotonic() - t0
    line = _one_interrupt_line(code, err)
    assert _gone(run.p.pid)
    _only_one_run(out, previous[1], new_allowed=False)
    return line, elapsed


@pytest.mark.slow
def test_sigint_during_startup_keeps_the_previous_run(tmp_path, data, previous):
    out = _copy(previous, tmp_path)
    run = Run(data, out, "B,Q2")
    time.sleep(0.4)                                     # importing, starting the workers
    _, elapsed = _sigint_keeps_the_previous_run(run, out, previous)
    assert elapsed < 5


@pytest.mark.slow
def test_concurrent_run_is_refused_then_sigint_in_b(tmp_path, data, previous):
    out = _copy(previous, tmp_path)
    run = Run(data, out, "B,Q2", iterations=10**6)   # far longer than the test: it is stopped
    run.wait_for("Part B")
    second = subprocess.run([sys.executable, "run_all.py", *_args(data, out, "A")], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {run.p.pid}, started 20" in lines[0], second.stderr
    line, elapsed = _sigint_keeps_the_previous_run(run, out, previous)
    assert elapsed < 5
    assert "partial output is in" in line and f"still holds the previous run ({previous[1]})" in line
    partial = list(tmp_path.glob("out.incomplete-*"))
    assert len(partial) == 1 and (partial[0] / "config.json").exists()


@pytest.mark.slow
def test_sigint_during_q2_keeps_the_previous_run(tmp_path, data, previous):
    out = _copy(previous, tmp_path)
    run = Run(data, out, "Q2")
    run.wait_for("Question 2")
    _sigint_keeps_the_previous_run(run, out, previous)


@pytest.mark.slow
def test_sigint_while_the_report_is_written_gives_one_complete_run(tmp_path, data, previous):
    out = _copy(previous, tmp_path)
    run = Run(data, out, "A")
    run.wait_for("writing the report")
    os.killpg(run.p.pid, signal.SIGINT)
    code, stdout, err = run.finish()
    assert "Traceback" not in err, err
    if code == 130:             # stopped before the swap: the previous run is intact
        _one_interrupt_line(code, err)
        _only_one_run(out, previous[1], new_allowed=False)
    else:                       # the swap had begun: it finished, the new run is complete
        assert code == 0, err
        _only_one_run(out, previous[1], new_allowed=True)
        assert run_ids(out) != {previous[1]}
    assert _gone(run.p.pid)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["start-up", "Part B"])
def test_sigkill_leaves_no_process_and_the_next_run_repairs(tmp_path, data, previous, point, capsys):
    out = _copy(previous, tmp_path)
    run = Run(data, out, "B", iterations=10**6)      # far longer than the test: it is killed
    if point == "start-up":
        time.sleep(1.0)             # imports done or nearly: the lock may be taken, workers starting
    else:
        run.wait_for(point)
    os.kill(run.p.pid, signal.SIGKILL)                  # the main process only, like the OOM killer
    run.finish()
    assert _gone(run.p.pid, within=5.0), "worker processes outlived the killed run"
    assert run_ids(out) == {previous[1]}                # untouched
    lock_left = (tmp_path / "out.lock").exists()
    staging_left = bool(list(tmp_path.glob("out.staging-*")))
    # the next run takes the dead run's lock and sets its partial output aside, in one line each
    # (in-process, --parts A: no workers; it stops at the missing data, after the repair)
    assert run_all.main(["--data-dir", str(tmp_path / "nowhere"), "--parts", "A", "--out", str(out)]) == 2
    said = capsys.readouterr().out
    if lock_left:
        assert f"pid {run.p.pid}" in said and "no longer running" in said, said
    if staging_left:
        assert "stopped before it finished" in said, said
    assert point == "start-up" or (lock_left and staging_left)
    _only_one_run(out, previous[1], new_allowed=False)


SWALLOWED = r"""
import os, signal, sys, time
sys.path.insert(0, {repo!r})
import console
interrupt = console.Interrupt()
interrupt.install()

class Dropper:
    def __del__(self):          # a KeyboardInterrupt raised here is printed and dropped
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)

t0 = time.monotonic()
try:
    Dropper()
    while time.monotonic() - t0 < 3:
        time.sleep(0.01)
    print("not interrupted")
except KeyboardInterrupt:
    interrupt.take()
    print(f"interrupted after {{time.monotonic() - t0:.2f}} s")
"""


def test_a_ctrl_c_that_python_drops_in_a_finalizer_is_raised_again():
    res = subprocess.run([sys.executable, "-c", SWALLOWED.format(repo=str(REPO))],
                         capture_output=True, text=True, timeout=60)
    out = res.stdout.strip()
    assert out.startswith("interrupted after"), (out, res.stderr)   # dropped in __del__, raised again
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr, res.stderr
    assert float(out.split()[2]) < 1.5


WRAPPED = """
import os, signal, sys, time
sys.path.insert(0, {repo!r})
import run_all

def importing_numba():
    # what Python does to a Ctrl-C that lands in a class's __set_name__ while a module
    # is imported: the KeyboardInterrupt comes back as the cause of a RuntimeError
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt as e:
        raise RuntimeError("Error calling __set_name__ on 'cached_property'") from e

run_all._known_activations = importing_numba
sys.exit(run_all.main(["--quick", "--out", {out!r}]))
"""


def test_a_ctrl_c_that_python_wraps_in_another_exception_is_an_interruption(tmp_path):
    res = subprocess.run([sys.executable, "-c", WRAPPED.format(repo=str(REPO), out=str(tmp_path / "out"))],
                         capture_output=True, text=True, timeout=60, preexec_fn=_default_sigint)
    assert _one_interrupt_line(res.returncode, res.stderr) == \
        "interrupted: stopped while starting; nothing was written"
    assert not (tmp_path / "out").exists()


BLOCKED_FIRST = """
import runpy, signal, sys
seen = []

class Spy:
    def find_spec(self, name, path=None, target=None):
        frame = sys._getframe(1)
        while frame is not None and not frame.f_code.co_filename.endswith("run_all.py"):
            frame = frame.f_back
        if frame is not None and frame.f_code.co_name == "<module>" and name != "_signal":
            seen.append((name, signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])))
        return None

sys.meta_path.insert(0, Spy())
sys.argv = ["run_all.py", "--help"]
try:
    runpy.run_path({path!r}, run_name="__main__")
except SystemExit:
    pass
print(seen[:3], all(blocked for _, blocked in seen))
"""


def test_sigint_is_blocked_before_run_all_imports_anything():
    """A Ctrl-C while ``run_all.py``'s own imports run waits for main() (one line,
    exit 130) instead of a traceback from inside the standard library; only the
    interpreter's start-up, before the file's first line, is left to Python."""
    res = subprocess.run([sys.executable, "-c", BLOCKED_FIRST.format(path=str(REPO / "run_all.py"))],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("] True") and "('" in res.stdout, res.stdout
