"""Comparing samplers over many data sets (Demšar 2006): mean ranks, the
Friedman test, one sampler against each other by Wilcoxon's signed-rank test
with Holm's correction, win/tie/loss counts, and a critical-difference picture
(Nemenyi's critical difference at the 5% level).

A table here is a 2-D array: one row per data set, one column per sampler,
higher is better; data sets missing a sampler's score are left out of the
table beforehand (complete_rows)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def complete_rows(table: dict[str, dict[str, float]], columns: list[str]) -> tuple[list[str], np.ndarray]:
    """{data set: {sampler: score}} -> (data sets with every sampler's score, their scores)."""
    rows = [name for name, row in table.items() if all(np.isfinite(row.get(c, np.nan)) for c in columns)]
    return rows, np.array([[table[name][c] for c in columns] for name in rows], dtype=float).reshape(
        len(rows), len(columns))


def mean_ranks(scores: np.ndarray) -> np.ndarray:
    """Each column's mean rank over the rows: 1 the best, ties sharing the mean of their ranks."""
    return stats.rankdata(-scores, axis=1).mean(axis=0)


def friedman(scores: np.ndarray) -> tuple[float, float]:
    """Friedman's chi-square and its p-value (scipy), over 3 or more columns."""
    statistic, p_value = stats.friedmanchisquare(*scores.T)
    return float(statistic), float(p_value)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def wilcoxon_against(scores: np.ndarray, columns: list[str], focus: str) -> dict[str, dict]:
    """`focus` against every other column: Wilcoxon's signed-rank p-value (two-sided,
    scipy's defaults; 1.0 when every difference is zero), Holm-adjusted over the
    comparisons, and wins / ties / losses of `focus` over the rows."""
    index = columns.index(focus)
    others = [c for c in columns if c != focus]
    raw, counts = [], []
    for other in others:
        difference = scores[:, index] - scores[:, columns.index(other)]
        raw.append(float(stats.wilcoxon(difference).pvalue) if np.any(difference != 0) else 1.0)
        counts.append(tuple(int(np.sum(test)) for test in (difference > 0, difference == 0, difference < 0)))
    adjusted = holm(raw) if raw else np.array([])
    return {other: {"p": p, "p_holm": float(q), "wins": w, "ties": t, "losses": loss}
            for other, p, q, (w, t, loss) in zip(others, raw, adjusted, counts)}


def critical_difference(columns: int, rows: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of mean ranks: q_alpha sqrt(k (k + 1) / (6 N)),
    q_alpha the studentized range's quantile over sqrt(2)."""
    q = stats.studentized_range.ppf(1 - alpha, columns, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(columns * (columns + 1) / (6 * rows)))


def draw_critical_difference(axis, names: list[str], ranks: np.ndarray, cd: float, title: str) -> None:
    """Mean ranks on a line (best at the left), each name on a leader, and a bar
    joining every run of samplers whose ranks differ by less than `cd`."""
    order = np.argsort(ranks)
    k = len(names)
    axis.set_xlim(0.5, k + 0.5)
    axis.set_ylim(-len(names) - 1.5, 2.2)
    axis.hlines(1, 1, k, color="black", linewidth=1)
    for tick in range(1, k + 1):
        axis.vlines(tick, 1, 1.2, color="black", linewidth=1)
        axis.text(tick, 1.35, str(tick), ha="center", fontsize=8)
    for line, column in enumerate(order):
        y = -line - 0.5
        axis.plot([ranks[column]] * 2, [1, y], color="tab:blue", linewidth=0.8)
        axis.text(ranks[column] + 0.05, y, f"{names[column]} ({ranks[column]:.2f})", va="center", fontsize=8)
    cliques: list[tuple[int, int]] = []
    for start in range(k):
        end = start
        while end + 1 < k and ranks[order[end + 1]] - ranks[order[start]] < cd:
            end += 1
        if end > start and not any(s <= start and end <= e for s, e in cliques):
            cliques.append((start, end))
    for level, (start, end) in enumerate(cliques):
        y = 0.75 - 0.18 * level
        axis.hlines(y, ranks[order[start]] - 0.03, ranks[order[end]] + 0.03, color="tab:red", linewidth=2.5)
    axis.hlines(2.0, 1, 1 + cd, color="tab:red", linewidth=1.5)
    axis.text(1 + cd / 2, 2.1, f"CD {cd:.2f}", ha="center", fontsize=8)
    axis.set_title(title, fontsize=9)
    axis.axis("off")
