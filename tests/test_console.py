"""Tests for the run's console (``console.Console``): part headers in order, each
followed by its jobs' lines, time estimates with a basis, a last line on the parts.
"""
import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jobs as jobs_mod
import console
import run_all

REPO = Path(__file__).resolve().parents[1]
HEADER = re.compile(r"^\[(\d+)/(\d+)\] ")
ESTIMATE = re.compile(r"^    (about \d+ (s|min|\.\d h) left \(\d+ background jobs? done, \d+ running\)|"
                      r"\d+ background jobs? done, \d+ running; no time estimate yet)")


def _sleep_and_print(text, seconds=0.0):
    time.sleep(seconds)
    print(text)
    return text


# ------------------------------------------------------------------ in-process
def test_lines_wait_for_their_part_and_follow_it_live():
    buf = io.StringIO()
    con = console.Console(stream=buf, tty=False)
    con.job_line("D", "k1", "    d early")        # before D starts: kept
    con.job_line("B", "k2", "    b early")
    con.job_line(None, "k3", "warm-up line")      # no group: at once
    con.begin("B", "[1/2] Part B ...")
    con.job_line("B", "k2", "    b live")         # B runs: at once
    con.job_line("D", "k1", "    d while B")      # still kept for D
    con.end("B")
    con.job_line("B", "k2", "    b late")         # B has ended: labelled
    con.begin("D", "[2/2] Part D ...")
    con.end("D")
    con.close()
    assert buf.getvalue().splitlines() == [
        "warm-up line", "[1/2] Part B ...", "    b early", "    b live", "    [B] b late",
        "[2/2] Part D ...", "    d early", "    d while B"]
    assert "\r" not in buf.getvalue()


def test_unshown_lines_are_printed_at_close_and_stdout_is_restored():
    buf = io.StringIO()
    con = console.Console(stream=buf, tty=False)
    before = sys.stdout
    con.install()
    assert sys.stdout is not before
    print("from the main process", flush=True)
    print("half a line", end="")
    con.job_line("Q2", "k", "never shown")
    con.close()
    assert sys.stdout is before
    assert buf.getvalue().splitlines() == ["from the main process", "    [Q2] never shown", "half a line"]


def test_estimate_needs_a_basis():
    pool = jobs_mod.Jobs(0)
    con = console.Console(stream=io.StringIO(), tty=False)
    con.jobs = pool
    assert con.estimate("B") is None                  # no job at all
    first = pool.submit("a", _sleep_and_print, "a", 0.2, group="B")
    pool.submit("b", _sleep_and_print, "b", group="B")
    text = con.estimate("B")
    assert text.startswith("0 background jobs done, 0 running; no time estimate yet")
    first.result()                                    # one finished: the other's basis
    text = con.estimate("B")
    assert re.match(r"about \d+ s left \(1 background job done, 0 running\)", text), text
    assert ESTIMATE.match("    " + text)


def test_estimate_is_smoothed_not_jumping():
    """A raw estimate that drops from 100 s to 10 s (one job finished early) moves the
    shown one by a share of the difference; a steady one counts down with the clock."""
    con = console.Console(stream=io.StringIO(), tty=False)
    assert con.smoothed(100.0, now=0.0) == 100.0
    shown = con.smoothed(10.0, now=1.0)
    assert shown == pytest.approx(99.0 + con.SMOOTHING * (11.0 - 100.0))    # 72.3, not 10
    con = console.Console(stream=io.StringIO(), tty=False)
    assert [round(con.smoothed(60.0 - t, now=t)) for t in (0.0, 10.0, 20.0)] == [60, 50, 40]


def test_tty_status_line_is_rewritten_and_cleared():
    buf = io.StringIO()
    pool = jobs_mod.Jobs(0)
    pool.submit("a", _sleep_and_print, "a", group="B")
    con = console.Console(stream=buf, tty=True, interval=0.05)
    con.jobs = pool
    con.begin("B", "[1/1] Part B ...")
    con._status = "    ... status"                   # as the ticker leaves it
    con("a line")
    con.end("B")
    out = buf.getvalue()
    assert out.startswith("[1/1] Part B ...\n")
    assert "\r\033[K" + "a line\n" + "    ... status" in out      # the line goes under the status
    assert out.endswith("\r\033[K") and con._status == ""


def test_run_outcome_names_only_existing_logs(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "partB.log").write_text("Traceback ...")
    text = run_all._run_outcome(("A", "B", "C", "D", "Q2"), ["B", "C", "D"], tmp_path, 12.0)
    first, second = text.splitlines()
    assert first == "run finished in 12 s: part A, Q2 done"
    assert second == (f"part B failed (traceback: {tmp_path / 'logs' / 'partB.log'}); "
                      "part C, D skipped (needs part B)")
    (tmp_path / "logs" / "partB.log").unlink()      # no log: none is named
    assert run_all._run_outcome(("B", "C"), ["B", "C"], tmp_path, 3.0).splitlines() == [
        "run finished in 3.0 s: no part finished", "part B failed; part C skipped (needs part B)"]


# ----------------------------------------------------------------- subprocess
@pytest.mark.slow
def test_quick_run_prints_each_jobs_lines_under_its_part(tmp_path):
    import prep
    train, test = prep.make_synthetic(n_train=240, n_test=80, seed=1)
    data = tmp_path / "data"
    data.mkdir()
    train.to_csv(data / "train.csv", index=False)
    test.to_csv(data / "test.csv", index=False)
    res = subprocess.run([sys.executable, "run_all.py", "--quick", "--data-dir", str(data),
                          "--out", str(tmp_path / "out"), "--threads", "2", "--parts", "B,D,Q2",
                          "--activations", "relu"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    headers = [i for i, line in enumerate(lines) if HEADER.match(line)]
    titles = [lines[i] for i in headers]
    assert [t.split("] ")[1].split(":")[0] for t in titles] == ["Part B", "Part D", "Question 2"]
    assert "\r" not in res.stdout                    # not a terminal: plain lines

    def section(i):
        """The header index a line falls under (-1 before the first)."""
        return max((n for n, h in enumerate(headers) if h < i), default=-1)

    b_lines = [i for i, line in enumerate(lines) if re.match(r"^    relu: iteration", line)]
    d_lines = [i for i, line in enumerate(lines) if re.match(r"^    relu [^:]+: iteration", line)]
    assert b_lines and d_lines
    assert {section(i) for i in b_lines} == {0}       # all of B's trainings under B's header
    assert {section(i) for i in d_lines} == {1}       # all of D's mitigations under D's header
    assert not any(line.lstrip().startswith("[") and "iteration" in line for line in lines)  # none late
    estimates = [line for line in lines if ESTIMATE.match(line)]
    assert estimates, res.stdout
    end = next(i for i, line in enumerate(lines) if line.startswith("run finished in"))
    assert re.fullmatch(r"run finished in [^:]+: part B, D, Q2 done", lines[end]), lines[end]
    # then the answer: test vs validation accuracy with the majority baseline, the verdict,
    # the mitigation; then where the predictions and the report are
    answer = lines[end + 1:]
    assert re.match(r"  test accuracy \d\.\d{3} with relu, the network chosen on validation \(validation "
                    r"\d\.\d{3}; always predicting the majority class scores \d\.\d{3} on test\)", answer[0])
    verdict = [ln for ln in answer if ln.startswith("  verdict: ")]
    assert len(verdict) == 1 and "; suspects: " in verdict[0]
    assert answer[-2].startswith("predictions: ") and answer[-1].startswith("report: ")
    done = [int(m.group(1)) for m in map(re.compile(r".*\((\d+) background jobs? done").match, lines) if m]
    assert done == sorted(done)                       # the count of finished jobs never goes back
