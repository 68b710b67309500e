"""Put gamo-benchmark's summary (results/benchmark.json) into README.md, between
the lines `<!-- benchmark-results -->` and `<!-- /benchmark-results -->`: the
mean ranks for balanced accuracy and AUC, GAMO against no sampler, SMOTE and
the best-ranked sampler, the picture and the sampler times.

    python -m gamo.cli.benchmark --summary-only     # writes results/benchmark.json
    python bench/benchmark_readme.py [--note "text for the machine line"]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- benchmark-results -->", "<!-- /benchmark-results -->"
SCORES = {"bacc": "balanced accuracy", "auc": "AUC"}


def ranks_table(summary: dict) -> list[str]:
    samplers = summary["samplers"]
    lines = ["| classifier | score | " + " | ".join(samplers) + " | Friedman p |",
             "|---|---|" + "---|" * (len(samplers) + 1)]
    for classifier in summary["classifiers"]:
        for score, label in SCORES.items():
            result = summary["statistics"][f"{classifier}/{score}"]
            ranks = [result["mean_ranks"][s] for s in samplers]
            cells = [f"**{r:.2f}**" if r == min(ranks) else f"{r:.2f}" for r in ranks]
            friedman = f"{result['friedman_p']:.2g}"
            lines.append(f"| {classifier} | {label} | " + " | ".join(cells) + f" | {friedman} |")
    return lines


def against(test: dict) -> str:
    return f"{test['wins']} / {test['ties']} / {test['losses']}, p {test['p_holm']:.2g}"


def gamo_table(summary: dict) -> list[str]:
    lines = ["| classifier | against none | against SMOTE | against the best-ranked |", "|---|---|---|---|"]
    for classifier in summary["classifiers"]:
        result = summary["statistics"][f"{classifier}/bacc"]
        others = {s: r for s, r in result["mean_ranks"].items() if s != "gamo"}
        best = min(others, key=others.get)
        tests = result["gamo_against"]
        lines.append(f"| {classifier} | {against(tests['none'])} | {against(tests['smote'])} | "
                     f"{best}: {against(tests[best])} |")
    return lines


def minutes(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def block(summary: dict, note: str) -> str:
    datasets = summary["datasets"]
    units = sum(entry.get("units", 0) for table in datasets.values() for entry in table.values())
    complete = summary["statistics"]["lr/bacc"]["n"]
    times = summary["sampler_time_s"]
    others = ", ".join(f"{s} {minutes(t)}" for s, t in sorted(times.items()) if s != "gamo")
    share = times["gamo"] / sum(times.values())
    return "\n".join([
        START,
        f"**Results** ({complete} of {len(datasets)} data sets ranked: those every sampler completed; "
        f"{units} units; `results/benchmark.md`, `.json`, `.png`). Mean ranks over those data sets "
        "(1 is best; bold: the best; Friedman p):", "",
        *ranks_table(summary), "",
        "GAMO against no sampler, SMOTE and the best-ranked sampler, balanced accuracy (wins / ties / "
        "losses over the data sets, Wilcoxon signed-rank p with Holm's correction over GAMO's "
        f"{len(summary['samplers']) - 1} comparisons):", "",
        *gamo_table(summary), "",
        "![Critical-difference pictures: mean ranks, bars join samplers within Nemenyi's critical "
        "difference](results/benchmark.png)", "",
        f"Sampler time: GAMO {minutes(times['gamo'])} of {minutes(sum(times.values()))} ({share:.0%}); "
        f"the others {others}. {note}", "",
        END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summary", default=str(ROOT / "results" / "benchmark.json"))
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--note", default="",
                        help="said after the sampler times (machine, command, wall time)")
    args = parser.parse_args()
    summary = json.loads(Path(args.summary).read_text())
    readme = Path(args.readme)
    text = readme.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"error: {readme}: no {START} ... {END} block")
    readme.write_text(pattern.sub(lambda _: block(summary, args.note), text))
    print(f"{readme}: benchmark block rewritten from {args.summary}")


if __name__ == "__main__":
    main()
