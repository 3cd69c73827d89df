#!/usr/bin/env python3
"""Regenerate the SciPy/NumPy reference numbers pasted into src/stats tests.

Usage (any throwaway venv will do, nothing is committed):
    python3 -m venv /tmp/scipy-venv
    /tmp/scipy-venv/bin/pip install scipy numpy
    /tmp/scipy-venv/bin/python scripts/stats-reference.py

Every number printed here appears in a Rust test together with the call
that produced it, so a change in either side shows up as a failing test.
"""
import numpy as np
import scipy
from scipy import stats

print(f"# scipy {scipy.__version__}, numpy {np.__version__}")

print("\n## quantiles: np.quantile(x, p) (default method='linear', type 7)")
x = [3.1, 1.2, 7.5, 4.4, 2.0, 9.9, 5.5]
for p in [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]:
    print(f"x={x} p={p}: {float(np.quantile(x, p))!r}")
even = [10.0, 2.0, 8.0, 4.0]
print(f"np.median({even}) = {float(np.median(even))!r}")

print("\n## mean / std: np.mean(x), np.std(x, ddof=1), std/mean")
print(f"mean={float(np.mean(x))!r} std={float(np.std(x, ddof=1))!r} cv={float(np.std(x, ddof=1) / np.mean(x))!r}")

print("\n## outliers: Tukey fences on np.percentile(y, [25, 75])")
y = [10.1, 9.8, 10.3, 10.0, 9.9, 10.2, 25.0, 10.1]
q1, q3 = (float(q) for q in np.percentile(y, [25, 75]))
iqr = q3 - q1
print(f"y={y} q1={q1!r} q3={q3!r} lower={q1 - 1.5 * iqr!r} upper={q3 + 1.5 * iqr!r}")

print("\n## mannwhitneyu(a, b, alternative='two-sided', method=...)")
cases = [
    ("exact, no ties", [1.1, 2.3, 3.5, 4.2, 5.0], [3.9, 4.8, 6.1, 7.7, 8.2, 9.4], "exact"),
    ("exact, separated 3v3", [1.0, 2.0, 3.0], [4.0, 5.0, 6.0], "exact"),
    ("exact, 8v8", [12.1, 13.4, 11.8, 14.2, 12.9, 13.1, 12.5, 15.0],
     [13.9, 14.8, 15.5, 13.6, 16.1, 14.4, 15.2, 12.2], "exact"),
    ("exact, U at centre", [1.0, 4.0], [2.0, 3.0], "exact"),
    ("asymptotic, no ties 12v10",
     [5.1, 4.9, 6.2, 5.8, 6.0, 5.5, 5.3, 6.4, 4.7, 5.9, 6.1, 5.0],
     [6.3, 6.8, 7.1, 5.6, 6.6, 7.4, 6.9, 5.7, 7.0, 6.5], "asymptotic"),
    ("asymptotic, ties", [1, 2, 2, 3, 3, 3, 4], [3, 4, 4, 5, 5, 6], "asymptotic"),
    ("asymptotic, ties, small", [1, 1, 2], [2, 3, 3], "asymptotic"),
]
for name, a, b, method in cases:
    r = stats.mannwhitneyu(a, b, alternative="two-sided", method=method)
    print(f"{name}: a={a} b={b} method={method}: U={float(r.statistic)!r} p={float(r.pvalue)!r}")

print("\n## normal survival function: stats.norm.sf(z)")
for z in [-1.5, 0.0, 0.5, 1.0, 1.96, 3.0, 5.0, 8.0, 10.0, 20.0]:
    print(f"norm.sf({z}) = {float(stats.norm.sf(z))!r}")
