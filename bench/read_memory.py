"""Peak memory and time of loading a generated CSV pair with ``prep.load_data``.

Usage::

    python bench/read_memory.py                 # 1,000,000 training rows (about 78 MB of CSV)
    python bench/read_memory.py --rows 200000   # smaller
    python bench/read_memory.py --repo DIR      # another checkout's prep.py, for a before/after

Writes the pair (six numeric columns of 7-digit values, a four-level text column and
an integer label; the test file a tenth of the rows) to a temporary folder, then, in a
fresh child process, imports ``prep`` and loads it: the printed peak is the child's
maximum resident memory above what the imports took (``ru_maxrss``), as MB and as a
multiple of the CSV size, with the load time. Nothing is written outside the
temporary folder, which is removed.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import os, resource, sys, time
sys.path.insert(0, sys.argv[2])
import prep
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
ds = prep.load_data(sys.argv[1], target="label")
seconds = time.perf_counter() - t
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
size = sum(os.path.getsize(os.path.join(sys.argv[1], f)) for f in ("train.csv", "test.csv")) / 2**20
print(f"{size:.0f} MB of CSV ({len(ds.train):,} + {len(ds.test):,} rows): load {seconds:.1f} s, "
      f"peak {peak:.0f} MB above the imports ({peak / size:.1f}x the CSV)")
"""


def write_pair(folder, n):
    """The generated train/test pair in ``folder``: ``n`` training rows, n/10 test rows."""
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(0)

    def frame(rows):
        df = pd.DataFrame({f"x{j}": rng.normal(size=rows).round(6) * 10 ** j for j in range(6)})
        df["city"] = rng.choice(["Lyon", "Paris", "Nice", "Lille"], rows)
        df["label"] = rng.integers(0, 4, rows)
        return df
    frame(n).to_csv(Path(folder) / "train.csv", index=False)
    frame(max(1000, n // 10)).to_csv(Path(folder) / "test.csv", index=False)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="training rows (default: %(default)s)")
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]),
                   help="the checkout whose prep.py loads the files (default: this one)")
    a = p.parse_args(argv)
    if a.rows < 1000:
        p.error(f"--rows must be at least 1000, got {a.rows}")
    with tempfile.TemporaryDirectory(prefix="read-memory-") as folder:
        write_pair(folder, a.rows)
        res = subprocess.run([sys.executable, "-c", CHILD, folder, os.path.abspath(a.repo)],
                             capture_output=True, text=True)
        print(res.stdout.strip() or res.stderr.strip().splitlines()[-1])
        return res.returncode


if __name__ == "__main__":
    sys.exit(main())
