"""How often the diagnosis says ``none`` when nothing shifted (issue #25's control rate).

Controls: the independent generator's ``none`` case (``bench/shift_cases.py``: random
schemas, 2-5 classes, numeric and categorical columns, a softmax or tree label model)
split at random into train and test — nothing planted. For each test size the
diagnosis runs on ``--seeds`` cases (held-out seeds by default: 1000 onwards, never
looked at while developing) and the share whose verdict is ``none`` is reported with a
Wilson 95% interval, next to the kinds it gave otherwise.

    python bench/shift_controls.py                          # 40 seeds x test sizes 200, 1000, 5000
    python bench/shift_controls.py --shift-from /path/to/other  # another checkout's shift.py
"""
import argparse
import collections
import json
import os
import sys
import time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = ((600, 200), (2000, 1000), (10000, 5000))   # (train rows, test rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--sizes", default=",".join(f"{a}x{b}" for a, b in SIZES),
                    help="train x test rows, comma-separated (default %(default)s)")
    ap.add_argument("--shift-from", default=ROOT, help="checkout whose shift.py is measured")
    ap.add_argument("--out", default=None, help="write the per-case results as JSON here")
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import shift_cases as gen                       # the generator of this checkout
    from shift_sweep import shift, wilson           # shift.py from --shift-from, as the sweep
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    rows = []
    for size in sizes:
        kinds = collections.Counter()
        t0 = time.perf_counter()
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            case = gen.make("none", seed, size=size)
            d = shift.diagnose(case.train, case.test, case.target, case.numeric,
                               case.categorical, seed=0)
            got = tuple(d.verdict.kinds)
            kinds["|".join(got)] += 1
            rows.append({"seed": seed, "n_train": size[0], "n_test": size[1],
                         "kinds": list(got), "suspects": list(d.suspect_features)})
        k = kinds.get("none", 0)
        lo, hi = wilson(k, a.seeds)
        others = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common() if kind != "none")
        print(f"test {size[1]:>5} rows: none in {k}/{a.seeds} = {k / a.seeds:.0%} "
              f"(Wilson 95% {lo:.0%}-{hi:.0%}); otherwise: {others or '-'}; "
              f"{(time.perf_counter() - t0) / a.seeds:.1f} s a case", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
