"""Independent train/test generator with one planted shift mechanism.

Construction (deliberately unlike shift.make_shift_dataset):

* a latent Gaussian vector with a random low-rank-plus-diagonal correlation matrix;
  numeric columns are monotone transforms of latent coordinates (affine, log-normal,
  rounded counts, bounded uniform-like), categorical columns are latent coordinates cut
  at random quantiles into 2-10 string levels (so they are correlated with numerics),
  some categoricals are independent multinomials;
* the label is drawn from a discriminative model P(y | x): either a random softmax
  (linear in latent numerics + per-level categorical effects) or a small random
  decision tree with random leaf logits; 2-5 classes; label values are ints, strings
  or bools;
* a subset of the columns is irrelevant (never enters P(y | x));
* the mechanism acts on a randomly chosen culprit column (a pair for interaction);
* the appended mechanisms (values missing only in test, levels unseen in train or renamed,
  a prior shift with an unlabelled test file, a weak-signal no-shift split) add
  real-data-like columns drawn from their own stream: a heavy-tailed numeric (Student t,
  2-4 degrees of freedom, correlated with a numeric), a skewed one (log-normal, sigma
  1-2), a categorical of 30-150 Zipf-distributed levels (rare levels appear in test
  only by chance) and natural missing values (MCAR, 1-15% of rows, same rate in both
  files) in one or two numerics.

``make(mechanism, seed, size=None)`` returns a :class:`Case`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special, stats

MECHANISMS = ("none", "covariate_shift", "prior_shift", "relationship_broken",
              "concept_shift", "missingness", "interaction",
              # appended (issue 25), so the cases of the ones above keep their seeds; each
              # of these also carries real-data-like columns (``_realistic``)
              "missing_in_test", "unseen_levels", "prior_shift_unlabelled", "none_natural")
_BASE = {"missing_in_test": "none", "unseen_levels": "none", "none_natural": "none",
         "prior_shift_unlabelled": "prior_shift"}   # the base draw of an appended mechanism
SIZES = ((1500, 700), (4000, 2000), (10000, 5000))

_C = "bdfgklmnprstvz"
_V = "aeiou"


def _word(rng, used, lo=2, hi=4):
    while True:
        w = "".join(rng.choice(list(_C)) + rng.choice(list(_V))
                    for _ in range(rng.integers(lo, hi + 1)))
        r = rng.random()
        if r < 0.25:
            w = w + "_" + str(rng.integers(0, 99))
        elif r < 0.4:
            w = w.capitalize()
        elif r < 0.5:
            w = w + rng.choice(list(_C))
        if w not in used:
            used.add(w)
            return w


@dataclass
class Case:
    mechanism: str
    seed: int
    train: pd.DataFrame
    test: pd.DataFrame
    target: str
    numeric: list
    categorical: list
    culprits: tuple            # raw column names; () for none / covariate / prior
    meta: dict = field(default_factory=dict)


class _World:
    """Feature distribution + label model (codes 0..K-1)."""

    def __init__(self, rng, n_feat, K, n_cat):
        self.rng = rng
        self.K = K
        self.n_num = n_feat - n_cat
        self.n_cat = n_cat
        # latent correlation: low rank + diagonal, random strength
        d = n_feat
        r = int(rng.integers(1, 4))
        A = rng.normal(size=(d, r)) * rng.uniform(0.1, 1.0)
        S = A @ A.T + np.diag(rng.uniform(0.4, 1.5, size=d))
        sd = np.sqrt(np.diag(S))
        self.corr = S / np.outer(sd, sd)
        self.chol = np.linalg.cholesky(self.corr)
        # numeric transforms
        self.num_tf = []
        for _ in range(self.n_num):
            t = rng.choice(["affine", "lognormal", "count", "bounded"], p=[0.45, 0.2, 0.2, 0.15])
            self.num_tf.append((t, rng.uniform(-50, 50), 10 ** rng.uniform(-1, 2),
                                rng.uniform(0.3, 0.9)))
        # categorical: latent-cut or independent
        self.cat_spec = []
        for _ in range(n_cat):
            L = int(rng.integers(2, 11))
            latent = rng.random() < 0.7
            if latent:
                cuts = np.sort(rng.normal(scale=0.9, size=L - 1))
                spec = ("cut", L, cuts, None)
            else:
                spec = ("multi", L, None, rng.dirichlet(np.full(L, 1.5)))
            used = set()
            names = [_word(rng, used, 1, 3) for _ in range(L)]
            perm = rng.permutation(L)        # level code order not monotone in the latent
            self.cat_spec.append((spec, names, perm))

    # ---- sampling ------------------------------------------------------------
    def latent(self, n):
        return self.rng.normal(size=(n, self.n_num + self.n_cat)) @ self.chol.T

    def cat_codes(self, Z):
        """(n, n_cat) int codes 0..L-1 of the categoricals."""
        out = np.empty((len(Z), self.n_cat), dtype=np.int64)
        for i, (spec, _, perm) in enumerate(self.cat_spec):
            kind, L, cuts, p = spec
            if kind == "cut":
                raw = np.searchsorted(cuts, Z[:, self.n_num + i])
            else:
                # independent multinomial driven by a uniform from the (own) latent coordinate
                u = stats.norm.cdf(Z[:, self.n_num + i])
                raw = np.minimum(np.searchsorted(np.cumsum(p), u), L - 1)
            out[:, i] = perm[raw]
        return out

    def numeric_values(self, Z):
        cols = []
        for j, (t, loc, scale, s) in enumerate(self.num_tf):
            z = Z[:, j]
            if t == "affine":
                v = loc + scale * z
            elif t == "lognormal":
                v = scale * np.exp(s * z)
            elif t == "count":
                v = np.floor(np.exp(1.2 + s * z)).astype(float)
            else:
                v = loc + scale * stats.norm.cdf(z)
            cols.append(v)
        return np.column_stack(cols) if cols else np.empty((len(Z), 0))


def _logits_softmax(rng, K, num_rel, cat_rel, world):
    W = {j: rng.normal(size=K) for j in num_rel}
    E = {i: rng.normal(size=(world.cat_spec[i][0][1], K)) for i in cat_rel}
    quad = {j: rng.normal(size=K) * 0.5 for j in num_rel if rng.random() < 0.2}

    def f(Z, C):
        L = np.zeros((len(Z), K))
        for j, w in W.items():
            L += np.outer(Z[:, j], w)
        for j, w in quad.items():
            L += np.outer(Z[:, j] ** 2 - 1, w)
        for i, e in E.items():
            L += e[C[:, i]]
        return L
    return f, {"num": sorted(W), "cat": sorted(E)}


def _logits_tree(rng, K, num_rel, cat_rel, world, depth):
    feats = [("n", j) for j in num_rel] + [("c", i) for i in cat_rel]

    def build(d):
        if d == 0 or rng.random() < 0.15:
            return ("leaf", rng.normal(size=K) * rng.uniform(1.2, 2.5))
        kind, j = feats[rng.integers(len(feats))]
        if kind == "n":
            test = ("n", j, rng.normal(scale=0.7))
        else:
            L = world.cat_spec[j][0][1]
            sub = rng.random(L) < 0.5
            if sub.all() or not sub.any():
                sub[rng.integers(L)] = ~sub[rng.integers(L)]
            test = ("c", j, sub)
        return ("node", test, build(d - 1), build(d - 1))

    tree = build(depth)

    def f(Z, C):
        L = np.zeros((len(Z), K))
        stack = [(tree, np.arange(len(Z)))]
        while stack:
            node, idx = stack.pop()
            if node[0] == "leaf":
                L[idx] = node[1]
                continue
            (kind, j, t), left, right = node[1], node[2], node[3]
            go = Z[idx, j] > t if kind == "n" else t[C[idx, j]]
            stack.append((left, idx[go]))
            stack.append((right, idx[~go]))
        return L
    return f, {"num": sorted(num_rel), "cat": sorted(cat_rel), "depth": depth}


def _derangement(rng, n):
    while True:
        p = rng.permutation(n)
        if n < 2 or (p != np.arange(n)).all():
            return p


def _sample_labels(rng, L):
    P = special.softmax(L, axis=1)
    u = rng.random((len(L), 1))
    return np.minimum((P.cumsum(1) < u).sum(1), L.shape[1] - 1)


def _realistic(rng, tr, te, numeric, categorical, culprits):
    """Real-data-like columns added to (tr, te) in place; returns the new column names."""
    used = set(tr.columns)
    n_tr, n_te = len(tr), len(te)
    base = numeric[int(rng.integers(len(numeric)))]
    both = pd.concat([tr[base], te[base]]).to_numpy(dtype=float)
    z = (both - np.nanmean(both)) / (np.nanstd(both) + 1e-12)
    heavy = _word(rng, used)
    v = 0.6 * np.nan_to_num(z) + stats.t.rvs(df=rng.uniform(2, 4), size=n_tr + n_te,
                                              random_state=rng)
    skew = _word(rng, used)
    w = np.exp(rng.uniform(1, 2) * rng.normal(size=n_tr + n_te)) * 10 ** rng.uniform(0, 3)
    many = _word(rng, used)
    L = int(rng.integers(30, 151))
    p = 1.0 / np.arange(1, L + 1) ** rng.uniform(0.8, 1.4)
    p /= p.sum()
    names = np.array([f"{_word(rng, set(), 1, 2)}{i}" for i in range(L)], dtype=object)
    c = names[rng.choice(L, n_tr + n_te, p=p)]
    for col, val in ((heavy, v), (skew, w), (many, c)):
        tr[col], te[col] = val[:n_tr], val[n_tr:]
    free = [x for x in numeric if x not in culprits]
    for col in rng.choice(free, min(len(free), int(rng.integers(1, 3))), replace=False):
        r = rng.uniform(0.01, 0.15)
        tr.loc[rng.random(n_tr) < r, col] = np.nan
        te.loc[rng.random(n_te) < r, col] = np.nan
    return [heavy, skew], [many]


def make(mechanism, seed, size=None):
    if mechanism not in MECHANISMS:
        raise ValueError(mechanism)
    if mechanism in _BASE:
        return _appended(mechanism, seed, size)
    rng = np.random.default_rng([7919, seed, MECHANISMS.index(mechanism)])
    n_tr, n_te = SIZES[rng.integers(3)] if size is None else size
    K = int(rng.integers(2, 6))
    n_feat = int(rng.integers(5, 26))
    n_cat = int(rng.integers(1, max(2, n_feat // 2) + 1))
    n_cat = min(n_cat, n_feat - 3)                # >= 3 numerics
    world = _World(rng, n_feat, K, n_cat)
    n_num = world.n_num
    cols = [("n", j) for j in range(n_num)] + [("c", i) for i in range(n_cat)]

    # ---- culprits ---------------------------------------------------------
    culprit_cols = []
    if mechanism in ("covariate_shift", "missingness"):
        culprit_cols = [("n", int(rng.integers(n_num)))]
    elif mechanism in ("relationship_broken", "concept_shift"):
        culprit_cols = [cols[rng.integers(len(cols))]]
    elif mechanism == "interaction":
        pool = [c for c in cols if c[0] == "n"] if rng.random() < 0.7 else cols
        a, b = rng.choice(len(pool), 2, replace=False)
        culprit_cols = [pool[a], pool[b]]
    # culprits whose relation is planted explicitly are excluded from the base model
    excluded = set(culprit_cols) if mechanism in ("relationship_broken", "concept_shift",
                                                  "interaction") else set()
    cand = [c for c in cols if c not in excluded]
    n_rel = int(rng.integers(2, max(3, int(0.6 * len(cand))) + 1))
    n_rel = min(n_rel, len(cand) - 1)             # at least one irrelevant column
    rel = [cand[i] for i in rng.choice(len(cand), n_rel, replace=False)]
    if mechanism == "covariate_shift" and rng.random() < 0.5 and culprit_cols[0] not in rel:
        rel[0] = culprit_cols[0]                  # half the time the shifted column matters
    num_rel = [j for k_, j in rel if k_ == "n"]
    cat_rel = [i for k_, i in rel if k_ == "c"]
    if not num_rel and not cat_rel:
        num_rel = [cand[0][1]] if cand[0][0] == "n" else []
    model_type = "softmax" if rng.random() < 0.55 else "tree"
    if model_type == "softmax":
        base, minfo = _logits_softmax(rng, K, num_rel, cat_rel, world)
        strength = rng.uniform(0.8, 2.0)
    else:
        base, minfo = _logits_tree(rng, K, num_rel, cat_rel, world, int(rng.integers(2, 5)))
        strength = 1.0
    intercept = rng.normal(scale=0.4, size=K)

    # ---- mechanism-specific label terms ----------------------------------
    v_ctr = lambda: (lambda v: v / np.linalg.norm(v))(  # noqa: E731
        (lambda v: v - v.mean())(rng.normal(size=K)))
    meta = {"K": K, "n_feat": n_feat, "n_num": n_num, "n_cat": n_cat, "model": model_type,
            "n_rel": len(rel), "n_train": n_tr, "n_test": n_te}
    extra_tr = extra_te = None
    if mechanism == "concept_shift":
        kind, j = culprit_cols[0]
        s = rng.uniform(1.8, 3.0)
        if kind == "n":
            w = v_ctr() * s * np.sqrt(2)
            variant = "flip" if K == 2 or rng.random() < 0.6 else "permute_classes"
            w_te = -w if variant == "flip" else w[_derangement(rng, K)]
            extra_tr = lambda Z, C, w=w, j=j: np.outer(Z[:, j], w)  # noqa: E731
            extra_te = lambda Z, C, w=w_te, j=j: np.outer(Z[:, j], w)  # noqa: E731
        else:
            L = world.cat_spec[j][0][1]
            E = rng.normal(size=(L, K))
            E = (E - E.mean(1, keepdims=True)) * s
            perm = _derangement(rng, L)
            variant = "permute_levels"
            extra_tr = lambda Z, C, E=E, j=j: E[C[:, j]]  # noqa: E731
            extra_te = lambda Z, C, E=E[perm], j=j: E[C[:, j]]  # noqa: E731
        meta["variant"] = variant
    elif mechanism == "interaction":
        beta = rng.uniform(2.5, 4.0)
        v = v_ctr() * beta * np.sqrt(2)
        variant = "xor" if rng.random() < 0.7 else "product"
        # median splits (latent 0; categorical levels grouped to ~half the mass), so the
        # XOR has no main effect of either culprit when the two are uncorrelated
        splits = []
        Cpl = world.cat_codes(world.latent(20000))
        for kind, j in culprit_cols:
            if kind == "n":
                splits.append(("n", j, 0.0))
            else:
                L = world.cat_spec[j][0][1]
                freq = np.bincount(Cpl[:, j], minlength=L) / len(Cpl)
                half = np.zeros(L, bool)
                for lv in rng.permutation(L):
                    if freq[half].sum() >= 0.5 - freq[lv] / 2:
                        break
                    half[lv] = True
                if not half.any():
                    half[np.argmax(freq)] = True
                splits.append(("c", j, half))

        def sgn(Z, C, sp, cont):
            kind, j, t = sp
            if kind == "n":
                return np.clip(Z[:, j] - t, -2.5, 2.5) if cont else np.sign(Z[:, j] - t)
            return np.where(t[C[:, j]], 1.0, -1.0)

        cont = variant == "product"
        extra_tr = lambda Z, C: np.outer(sgn(Z, C, splits[0], cont) *  # noqa: E731
                                         sgn(Z, C, splits[1], cont), v)
        # test: the same term, computed on shuffled rows -> same label shares, no joint effect
        extra_te = lambda Z, C: extra_tr(Z, C)[rng.permutation(len(Z))]  # noqa: E731
        meta["variant"] = variant

    def labels(Z, C, extra):
        L = base(Z, C) * strength + intercept
        if extra is not None:
            L = L + extra(Z, C)
        return L

    # balance the classes a little on a pilot sample (min share >= ~10%)
    Zp = world.latent(20000)
    Cp = world.cat_codes(Zp)
    for _ in range(8):
        sh = np.bincount(_sample_labels(rng, labels(Zp, Cp, extra_tr)), minlength=K) / len(Zp)
        if sh.min() >= 0.10:
            break
        intercept = intercept + 0.7 * np.log(np.maximum(sh, 0.12) / np.maximum(sh, 1e-3))

    def draw(n, extra):
        Z = world.latent(n)
        C = world.cat_codes(Z)
        return Z, C, _sample_labels(rng, labels(Z, C, extra))

    # ---- train / test ------------------------------------------------------
    Ztr, Ctr, ytr = draw(n_tr, extra_tr)
    if mechanism in ("none", "relationship_broken", "missingness"):
        Zte, Cte, yte = draw(n_te, None)
    elif mechanism in ("concept_shift", "interaction"):
        Zte, Cte, yte = draw(n_te, extra_te)
    elif mechanism == "covariate_shift":
        j = culprit_cols[0][1]
        variant = "truncate" if rng.random() < 0.6 else "tilt"
        if variant == "truncate":
            q = rng.uniform(-0.7, 0.4)            # keep z > q (or < -q): 34%-76% of the range
            side = rng.choice([-1, 1])
            Zp, Cp, yp = draw(int(n_te / (1 - stats.norm.cdf(q)) * 1.3) + 200, None)
            keep = np.flatnonzero(Zp[:, j] > q if side > 0 else Zp[:, j] < -q)
            pick = rng.choice(keep, n_te, replace=False)
            meta.update(variant=f"truncate z{'>' if side > 0 else '<'}{q if side > 0 else -q:.2f}")
        else:
            delta = rng.uniform(0.6, 1.2) * rng.choice([-1, 1])
            Zp, Cp, yp = draw(8 * n_te, None)
            w = np.exp(delta * Zp[:, j])
            pick = rng.choice(len(Zp), n_te, replace=False, p=w / w.sum())
            meta.update(variant=f"tilt delta={delta:.2f}")
        Zte, Cte, yte = Zp[pick], Cp[pick], yp[pick]
        meta["culprit_relevant"] = culprit_cols[0] in rel
    elif mechanism == "prior_shift":
        pi = np.bincount(ytr, minlength=K) / len(ytr)
        for _ in range(1000):
            q = rng.dirichlet(np.full(K, 1.2))
            tv = 0.5 * np.abs(q - pi).sum()
            if q.min() >= 0.04 and 0.12 <= tv <= 0.35:
                break
        need = int(max(n_te * q[k] / max(pi[k], 1e-3) for k in range(K)) * 1.3) + 500
        Zp, Cp, yp = draw(need, None)
        counts = rng.multinomial(n_te, q)
        pick = np.concatenate([rng.choice(np.flatnonzero(yp == k), counts[k],
                                          replace=counts[k] > (yp == k).sum())
                               for k in range(K)])
        pick = rng.permutation(pick)
        Zte, Cte, yte = Zp[pick], Cp[pick], yp[pick]
        meta.update(variant=f"tv={tv:.2f}", test_shares=np.round(q, 3).tolist())

    # ---- raw values ----------------------------------------------------------
    used = set()
    num_names = [_word(rng, used) for _ in range(n_num)]
    cat_names = [_word(rng, used) for _ in range(n_cat)]
    target = _word(rng, used)
    lab_type = rng.choice(["int", "str", "bool"] if K == 2 else ["int", "str"])
    if lab_type == "int":
        lab_vals = list(rng.choice(np.arange(-5, 40), K, replace=False).astype(int))
    elif lab_type == "str":
        u2 = set()
        lab_vals = [_word(rng, u2, 1, 3) for _ in range(K)]
    else:
        lab_vals = [False, True]
    meta["label_type"] = str(lab_type)

    def frame(Z, C, y):
        X = world.numeric_values(Z)
        d = {num_names[j]: X[:, j] for j in range(n_num)}
        for i in range(n_cat):
            names = world.cat_spec[i][1]
            d[cat_names[i]] = np.array(names, dtype=object)[C[:, i]]
        return pd.DataFrame(d)

    tr, te = frame(Ztr, Ctr, ytr), frame(Zte, Cte, yte)
    name_of = lambda c: num_names[c[1]] if c[0] == "n" else cat_names[c[1]]  # noqa: E731
    culprits = tuple(name_of(c) for c in culprit_cols)

    if mechanism == "relationship_broken":
        kind, j = culprit_cols[0]
        col = culprits[0]
        pi = np.bincount(ytr, minlength=K) / len(ytr)
        y_fake = rng.choice(K, n_te, p=pi)                    # independent of test's labels
        if kind == "c":
            variant = "noisy_copy"
            p = rng.uniform(0.55, 0.9)
            levels = list(world.cat_spec[j][1])
            while len(levels) < K + 2:
                levels.append(_word(rng, set(levels), 1, 3))
            own = rng.permutation(len(levels))[:K]        # level carried by each class

            def copy(y):
                out = rng.integers(len(levels), size=len(y))
                hit = rng.random(len(y)) < p
                out[hit] = own[y[hit]]
                return np.array(levels, dtype=object)[out]
            tr[col], te[col] = copy(ytr), copy(y_fake)
            meta["variant"] = f"{variant} p={p:.2f}"
        else:
            variant = "numeric_leak"
            sep = rng.uniform(1.5, 3.0)
            mu = rng.permutation(K) * sep
            sc = 10 ** rng.uniform(-1, 2)
            tr[col] = (mu[ytr] + rng.normal(size=n_tr)) * sc
            te[col] = (mu[y_fake] + rng.normal(size=n_te)) * sc
            meta["variant"] = f"{variant} sep={sep:.2f}"
    if mechanism == "missingness":
        col = culprits[0]
        cls = int(rng.integers(K))
        r = rng.uniform(0.05, 0.40)
        other = r * rng.uniform(0.0, 0.1)
        rate = np.where(ytr == cls, r, other)
        m_tr = rng.random(n_tr) < rate
        variant = "mar" if rng.random() < 0.5 else "never"
        m_te = (rng.random(n_te) < m_tr.mean()) if variant == "mar" else np.zeros(n_te, bool)
        tr.loc[m_tr, col] = np.nan
        te.loc[m_te, col] = np.nan
        meta.update(variant=f"{variant} r={r:.2f} cls_share={np.mean(ytr == cls):.2f}",
                    n_missing_train=int(m_tr.sum()),
                    culprit_relevant=culprit_cols[0] in rel)

    lab = np.array(lab_vals, dtype=object)
    tr[target], te[target] = lab[ytr], lab[yte]
    if lab_type == "int":
        tr[target], te[target] = tr[target].astype(np.int64), te[target].astype(np.int64)
    elif lab_type == "bool":
        tr[target], te[target] = tr[target].astype(bool), te[target].astype(bool)
    order = list(rng.permutation(list(tr.columns)))
    tr, te = tr[order], te[order]
    numeric = [c for c in order if c in num_names]
    categorical = [c for c in order if c in cat_names]
    # max |latent corr| of a culprit with any other column (a source of extra suspects)
    if culprit_cols:
        idx = [c[1] if c[0] == "n" else n_num + c[1] for c in culprit_cols]
        cc = np.abs(world.corr[idx]).copy()
        cc[:, idx] = 0
        meta["culprit_max_corr"] = round(float(cc.max()), 2)
    meta["test_shares"] = meta.get("test_shares") or np.round(
        np.bincount(yte, minlength=K) / n_te, 3).tolist()
    meta["train_shares"] = np.round(np.bincount(ytr, minlength=K) / n_tr, 3).tolist()
    return Case(mechanism, seed, tr.reset_index(drop=True), te.reset_index(drop=True), target,
                numeric, categorical, culprits, meta)


def _appended(mechanism, seed, size):
    """A case of an appended mechanism: its base draw (another stream of seeds), the
    real-data-like columns, then the mechanism."""
    rng = np.random.default_rng([7919, seed, MECHANISMS.index(mechanism), 1])
    base = make(_BASE[mechanism], 100000 + seed, size=size)
    tr, te = base.train.copy(), base.test.copy()
    numeric, categorical = list(base.numeric), list(base.categorical)
    if mechanism == "none_natural":
        # a weak, noisy label: 30-60% of it a coin flip, so every model is close to the
        # prior and its transfer gap is at the mercy of the proxy's own randomness. One
        # flip rate for both files: a rate drawn per file (as before) makes test's labels
        # noisier or cleaner than train's, a real change of P(y | x) (and of P(x | y)) and
        # no control. Test's draw is still made (and ignored) so that every other draw of
        # the case (which rows flip, the real-data-like columns) is the one it always was.
        rate = None
        for f in (tr, te):
            u = rng.random(len(f))
            r = rng.uniform(0.3, 0.6)
            rate = r if rate is None else rate
            flip = u < rate
            f.loc[flip, base.target] = rng.permutation(f[base.target].to_numpy())[flip]
    hn, hc = _realistic(rng, tr, te, numeric, categorical, ())
    numeric, categorical = numeric + hn, categorical + hc
    meta = dict(base.meta)
    if mechanism == "none_natural":
        meta["flip_rate"] = round(rate, 3)
    culprits = ()
    if mechanism == "missing_in_test":
        col = numeric[int(rng.integers(len(base.numeric)))]
        tr[col] = tr[col].fillna(tr[col].median())
        r = rng.uniform(0.2, 0.5)
        te.loc[rng.random(len(te)) < r, col] = np.nan
        culprits, meta["variant"] = (str(col),), f"mcar_test r={r:.2f}"
    elif mechanism == "unseen_levels":
        col = categorical[int(rng.integers(len(base.categorical)))]
        variant = "renamed" if rng.random() < 0.5 else "new"
        if variant == "renamed":          # every level written differently in test
            how = rng.choice(["upper", "suffix", "space"])
            f = {"upper": str.upper, "suffix": lambda x: x + "_v2",
                 "space": lambda x: " " + x}[how]
            te[col] = te[col].map(f)
            variant += f" {how}"
        else:                             # a share of test rows at levels train never shows
            r = rng.uniform(0.2, 0.5)
            hit = rng.random(len(te)) < r
            new = np.array([f"new{_word(rng, set(), 1, 2)}" for _ in range(3)], dtype=object)
            te.loc[hit, col] = new[rng.integers(3, size=int(hit.sum()))]
            variant += f" r={r:.2f}"
        culprits, meta["variant"] = (str(col),), variant
    elif mechanism == "prior_shift_unlabelled":
        te = te.drop(columns=[base.target])
    cols = list(rng.permutation(list(tr.columns)))
    tr = tr[cols]
    te = te[[c for c in cols if c in te.columns]]
    return Case(mechanism, seed, tr.reset_index(drop=True), te.reset_index(drop=True),
                base.target, numeric, categorical, culprits, meta)
