"""Peak memory of a command and every process it starts, sampled from Linux's /proc.

    python bench/peak_memory.py -- python run_all.py --train big.csv --test test.csv --target label

runs the command (its output goes to this terminal) and prints, when it ends:

- the largest process's peak resident set (what ``/usr/bin/time -v`` calls its
  maximum resident set size; the kernel's own high-water mark, ``VmHWM``);
- the peak of the sum of the processes' proportional set sizes (``Pss``: pages
  shared between processes, such as ``shared_arrays``' matrices and a forked
  worker's untouched pages, counted once in all): the memory the whole run
  takes from the machine;
- the same sum of resident sets (shared pages counted in each process).

The sums are samples (every ``--interval`` seconds), so a peak shorter than that
can be missed; the per-process peak is exact. Linux only (``/proc/<pid>/smaps_rollup``).
"""
import argparse
import json
import os
import subprocess
import sys
import time


def _children(pid):
    """Every descendant of ``pid`` (from /proc/<pid>/task/<tid>/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _fields(pid, path, names):
    """The kB values of ``names`` in /proc/<pid>/<path> (absent: 0)."""
    got = dict.fromkeys(names, 0)
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in got:
                    got[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return got


def measure(command, interval=0.1):
    """Run ``command`` (list of str); return a dict of its exit code, wall seconds and peaks
    in kB: ``largest_process_peak_rss_kb``, ``peak_total_pss_kb``, ``peak_total_rss_kb``."""
    if not os.path.exists("/proc/self/smaps_rollup"):
        raise SystemExit("error: this measures from /proc/<pid>/smaps_rollup (Linux 4.14 and later)")
    t0 = time.monotonic()
    proc = subprocess.Popen(command)
    hwm, peak_pss, peak_rss, at = {}, 0, 0, 0.0
    while True:
        done = proc.poll() is not None
        pids = [proc.pid] + _children(proc.pid)
        pss = rss = 0
        for pid in pids:
            roll = _fields(pid, "smaps_rollup", ("Pss", "Rss"))
            pss, rss = pss + roll["Pss"], rss + roll["Rss"]
            hwm[pid] = max(hwm.get(pid, 0), _fields(pid, "status", ("VmHWM",))["VmHWM"])
        if pss > peak_pss:
            peak_pss, at = pss, time.monotonic() - t0
        peak_rss = max(peak_rss, rss)
        if done:
            break
        time.sleep(interval)
    return {"command": command, "exit_code": proc.returncode,
            "wall_seconds": round(time.monotonic() - t0, 1),
            "largest_process_peak_rss_kb": max(hwm.values(), default=0),
            "peak_total_pss_kb": peak_pss, "peak_total_pss_at_seconds": round(at, 1),
            "peak_total_rss_kb": peak_rss, "interval_seconds": interval}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.1,
                        help="seconds between samples of the sums (default 0.1)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --, e.g. -- python run_all.py")
    if not args.interval > 0:
        parser.error(f"--interval must be > 0 seconds, got {args.interval}")
    r = measure(command, args.interval)
    print(f"exit {r['exit_code']} after {r['wall_seconds']} s; largest process's peak resident set "
          f"{r['largest_process_peak_rss_kb']:,} kB; all processes' peak (sum of proportional set "
          f"sizes, every {args.interval:g} s) {r['peak_total_pss_kb']:,} kB at "
          f"{r['peak_total_pss_at_seconds']} s; sum of resident sets {r['peak_total_rss_kb']:,} kB",
          file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return r["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
