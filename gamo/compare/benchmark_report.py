"""The tabular benchmark's outputs from its saved units: <name>.json (per data
set and sampler the mean and standard deviation of every score of every
classifier; per classifier and score the ranks and tests), <name>.md and
<name>.png (critical-difference pictures, one per classifier, of balanced
accuracy and AUC)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from gamo.compare import ranks
from gamo.compare.benchmark import CLASSIFIERS, SCORES
from gamo.files import atomic_path, save_json
from gamo.pictures import new_figure, save_figure

FOCUS = "gamo"
PICTURE_SCORES = ("bacc", "auc")


def per_dataset(units: list[dict], classifiers, expected_units: int) -> dict:
    """{data set: {sampler: {units, refused, reasons, sampler_time_s, scores: {classifier:
    {score: [mean, sd]}}}}}; a sampler's scores only where it played every unit."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for unit in units:
        grouped[unit["dataset"], unit["sampler"]].append(unit)
    table: dict[str, dict] = defaultdict(dict)
    for (dataset, sampler), members in grouped.items():
        ok = [unit for unit in members if unit["status"] == "ok"]
        refused = [unit for unit in members if unit["status"] == "refused"]
        entry: dict = {"units": len(members), "refused": len(refused),
                 "reasons": sorted({unit["reason"] for unit in refused}),
                 "sampler_time_s": float(sum(unit["sampler_time_s"] for unit in members)),
                 "classifier_time_s": float(sum(sum(unit.get("classifier_time_s", {}).values())
                                                for unit in members)),
                 "complete": len(ok) == expected_units}
        scores: dict[str, dict] = {}
        entry["scores"] = scores
        if entry["complete"]:
            for classifier in classifiers:
                scores[classifier] = {
                    score: [float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0]
                    for score in SCORES
                    for values in [[unit["scores"][classifier][score] for unit in ok]]}
        table[dataset][sampler] = entry
    return dict(table)


def statistics(table: dict, samplers: list[str], classifiers) -> dict:
    """Per classifier and score: the data sets every sampler completed, mean ranks,
    Friedman, GAMO against each other sampler (Wilcoxon, Holm) and the critical difference."""
    out: dict[str, dict] = {}
    for classifier in classifiers:
        for score in SCORES:
            means = {dataset: {sampler: entry["scores"][classifier][score][0]
                               for sampler, entry in row.items() if entry["complete"]}
                     for dataset, row in table.items()}
            datasets, scores = ranks.complete_rows(means, samplers)
            result: dict = {"datasets": datasets, "n": len(datasets)}
            if len(datasets) >= 2 and len(samplers) >= 2:
                result["mean_ranks"] = dict(zip(samplers, ranks.mean_ranks(scores).tolist()))
                result["critical_difference"] = ranks.critical_difference(len(samplers), len(datasets))
                if len(samplers) >= 3:
                    result["friedman_chi2"], result["friedman_p"] = ranks.friedman(scores)
                if FOCUS in samplers:
                    result["gamo_against"] = ranks.wilcoxon_against(scores, samplers, FOCUS)
            out[f"{classifier}/{score}"] = result
    return out


def sampler_times(table: dict, samplers: list[str]) -> dict[str, float]:
    return {sampler: float(sum(row[sampler]["sampler_time_s"] for row in table.values() if sampler in row))
            for sampler in samplers}


def incomplete(table: dict, samplers: list[str]) -> dict[str, list[str]]:
    """Sampler -> the data sets it has not completed (refused units, or units not yet played)."""
    return {sampler: sorted(dataset for dataset, row in table.items()
                            if not row.get(sampler, {}).get("complete")) for sampler in samplers}


def classifier_time(table: dict) -> float:
    return float(sum(entry["classifier_time_s"] for row in table.values() for entry in row.values()))


def refusal_line(table: dict, sampler: str, datasets: list[str]) -> str:
    """'- smote refused a fold of: a, b (its reasons)'."""
    reasons = sorted({reason for d in datasets for reason in table[d][sampler]["reasons"]})
    return f"- {sampler} refused a fold of: {', '.join(datasets)} ({'; '.join(reasons)})"


def _hms(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def ranks_markdown(stats: dict, samplers: list[str], classifiers) -> list[str]:
    lines = ["| classifier | score | data sets | " + " | ".join(samplers) + " | Friedman p |",
             "|---|---|---|" + "---|" * (len(samplers) + 1)]
    for classifier in classifiers:
        for score, label in SCORES.items():
            result = stats[f"{classifier}/{score}"]
            if "mean_ranks" not in result:
                continue
            ranks_of = [result["mean_ranks"][sampler] for sampler in samplers]
            cells = [f"**{r:.2f}**" if r == min(ranks_of) else f"{r:.2f}" for r in ranks_of]
            friedman = f"{result['friedman_p']:.2g}" if "friedman_p" in result else ""
            lines.append(f"| {classifier} | {label} | {result['n']} | " + " | ".join(cells)
                         + f" | {friedman} |")
    return lines


def gamo_markdown(stats: dict, classifiers) -> list[str]:
    lines = ["| classifier | score | against | wins / ties / losses of GAMO | Wilcoxon p | Holm p |",
             "|---|---|---|---|---|---|"]
    for classifier in classifiers:
        for score, label in SCORES.items():
            for other, test in stats[f"{classifier}/{score}"].get("gamo_against", {}).items():
                mark = " *" if test["p_holm"] < 0.05 else ""
                lines.append(f"| {classifier} | {label} | {other} | {test['wins']} / {test['ties']} / "
                             f"{test['losses']} | {test['p']:.2g} | {test['p_holm']:.2g}{mark} |")
    return lines


def per_dataset_markdown(table: dict, samplers: list[str], classifiers, development: set[str]) -> list[str]:
    lines = ["| data set | " + " | ".join(samplers) + " |", "|---|" + "---|" * len(samplers)]
    for dataset in sorted(table):
        cells = []
        for sampler in samplers:
            entry = table[dataset].get(sampler)
            if entry is None or not entry["complete"]:
                cells.append("refused" if entry and entry["refused"] else "")
                continue
            means = [entry["scores"][c]["bacc"] for c in classifiers]
            cells.append(f"{np.mean([m for m, _ in means]):.3f} ± {np.mean([s for _, s in means]):.3f}")
        mark = " (dev)" if dataset in development else ""
        lines.append(f"| {dataset}{mark} | " + " | ".join(cells) + " |")
    return lines


def markdown(name: str, header: dict, table: dict, stats: dict, samplers, classifiers, development) -> str:
    times = sampler_times(table, samplers)
    missing = incomplete(table, samplers)
    lines = [f"# {name}: over-samplers on {len(table)} imbalanced data sets", "",
             f"Protocol: {header['protocol']}", "",
             "## Mean ranks (1 is best; over the data sets every sampler completed)", "",
             *ranks_markdown(stats, samplers, classifiers), "",
             "## GAMO against each other sampler (* Holm-adjusted p < 0.05)", "",
             *gamo_markdown(stats, classifiers), "",
             "## Wall time per sampler (fitting the sampler, every unit)", "",
             "| sampler | time | share |", "|---|---|---|",
             *[f"| {s} | {_hms(t)} | {t / max(sum(times.values()), 1e-9):.0%} |"
               for s, t in times.items()], "",
             f"Compute time of every saved unit (samplers and classifiers, summed): "
             f"{_hms(sum(times.values()) + classifier_time(table))}; this invocation: "
             f"{_hms(header['wall_time_s'])} of wall time ({header['machine']}). GAMO's units ran on "
             f"the Keras backend {', '.join(header.get('gamo_backends') or ['(none yet)'])}.", ""]
    refusals = {s: sorted(d for d in table if table[d].get(s, {}).get("refused")) for s in samplers}
    if any(refusals.values()):
        lines += ["## Refused", "", *[refusal_line(table, s, ds) for s, ds in refusals.items() if ds], ""]
    unfinished = {s: [d for d in ds if d not in refusals[s]] for s, ds in missing.items()}
    if any(unfinished.values()):
        lines += ["## Not yet played (give the same command again to continue)", ""] + [
            f"- {s}: {len(ds)} data sets" for s, ds in unfinished.items() if ds] + [""]
    lines += ["## Balanced accuracy per data set (mean over the classifiers of the mean ± sd over folds)", "",
              "(dev): the development subset, on which GAMO's defaults were chosen.", "",
              *per_dataset_markdown(table, samplers, classifiers, development), ""]
    return "\n".join(lines)


def save_picture(path: Path, stats: dict, samplers: list[str], classifiers) -> None:
    """Critical-difference pictures: one row per score of PICTURE_SCORES, one column per classifier."""
    figure = new_figure(len(PICTURE_SCORES), len(classifiers), cell=1)
    figure.set_size_inches(4.2 * len(classifiers), 0.42 * (len(samplers) + 4) * len(PICTURE_SCORES))
    axes = figure.subplots(len(PICTURE_SCORES), len(classifiers), squeeze=False)
    for row, score in enumerate(PICTURE_SCORES):
        for column, classifier in enumerate(classifiers):
            result = stats[f"{classifier}/{score}"]
            if "mean_ranks" in result:
                ranks.draw_critical_difference(
                    axes[row][column], samplers, np.array([result["mean_ranks"][s] for s in samplers]),
                    result["critical_difference"], f"{classifier}, {SCORES[score]} ({result['n']} data sets)")
            else:
                axes[row][column].axis("off")
    figure.tight_layout()
    save_figure(figure, path)


def write(out_dir, name: str, header: dict, units: list[dict], samplers: list[str], classifiers,
          development: set[str], expected_units: int, datasets=()) -> Path:
    """Write <name>.json, .md and .png from the units (of `datasets`: those without a
    saved unit are listed as not played yet); returns the markdown's path."""
    out_dir = Path(out_dir)
    table = per_dataset(units, classifiers, expected_units)
    for dataset in datasets:
        table.setdefault(dataset, {})
    stats = statistics(table, samplers, classifiers)
    header = {**header, "sampler_time_s": sampler_times(table, samplers),
              "classifiers": {c: CLASSIFIERS[c] for c in classifiers}, "development": sorted(development)}
    save_json(out_dir / f"{name}.json", {**header, "datasets": table, "statistics": stats})
    text = markdown(name, header, table, stats, samplers, classifiers, development)
    with atomic_path(out_dir / f"{name}.md") as tmp:
        Path(tmp).write_text(text)
    save_picture(out_dir / f"{name}.png", stats, samplers, classifiers)
    return out_dir / f"{name}.md"


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
