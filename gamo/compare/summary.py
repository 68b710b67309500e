"""The comparison's outputs: results/<name>.json (every run), <name>.md (mean and
standard deviation over seeds, and the test scores at chosen steps), and the
pictures <name>_tpr.png and <name>_curves.png."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

from gamo.compare.runs import method_options
from gamo.files import atomic_path, save_json
from gamo.metrics import chance_note
from gamo.pictures import new_figure, save_figure


def merged_runs(path, new_runs):
    """The runs already in results/<name>.json, with those of this invocation replacing
    any of the same method, seed and steps."""
    def key(run):
        return run["method"], run["seed"], run["steps"]

    old = []
    if Path(path).is_file():
        try:
            old = json.loads(Path(path).read_text()).get("runs", [])
        except ValueError:
            old = []
    fresh = {key(run) for run in new_runs}
    return [run for run in old if key(run) not in fresh] + list(new_runs)


def groups(runs):
    """(steps, method) -> runs, methods in the registry's order, seeds ascending."""
    grouped = {}
    for run in sorted(runs, key=lambda r: (r["steps"], list(method_options()).index(r["method"]), r["seed"])):
        grouped.setdefault((run["steps"], run["method"]), []).append(run)
    return grouped


def mean_std(values):
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return f"{values.mean():.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def table(name, runs, machine):
    lines = [f"# {name}: final test ACSA and GM, mean ± standard deviation over seeds", "",
             "| method | steps | batches | seeds | test ACSA | test GM | training time per run | "
             "whole command per run |",
             "|---|---|---|---|---|---|---|---|"]
    chance = []
    for (steps, method), members in groups(runs).items():
        seeds = ", ".join(str(run["seed"]) for run in members)
        wall = np.mean([run["wall_time_s"] for run in members])
        at_chance = [str(run["seed"]) for run in members if chance_note(run["test"]["tpr"])]
        if at_chance:
            chance.append(f"{method} ({steps} steps) seed {', '.join(at_chance)}")
            method = f"{method} (chance level: {len(at_chance)} of {len(members)})"
        lines.append(f"| {method} | {steps} | {members[0]['batches']} | {seeds} | "
                     f"{mean_std([r['test']['acsa'] for r in members])} | "
                     f"{mean_std([r['test']['gm'] for r in members])} | {wall:.0f} s | "
                     f"{whole_command(members)} |")
    if chance:
        lines += ["", "**Warning: chance level** (ACSA at or below 1/classes, as predicting one class "
                      "for every row): " + "; ".join(chance)
                  + ". Check the data and its scaling (--no-scale)."]
    lines += ["", f"Machine: {machine}. Standard deviation with ddof 1. Training time per run: "
                  "training, evaluations and compilation; the whole command: from its start (imports, "
                  "data loading, compilation, training, saving; a group of seeds shares one command).",
              ""]
    return "\n".join(lines)


def whole_command(members):
    """The mean of the runs' whole-command times (runs written before it was recorded: n/a)."""
    times = [run.get("process_time_s") for run in members]
    return f"{np.mean(times):.0f} s" if all(t is not None for t in times) else "n/a"


def curve_table(runs, report_steps):
    """Test ACSA / GM at each of `report_steps` (from every run's curve), mean ± sd over seeds."""
    lines = ["## Test ACSA / GM during training, mean ± standard deviation over seeds", "",
             "| method | steps | seeds | " + " | ".join(f"step {s}" for s in report_steps) + " |",
             "|---|---|---|" + "---|" * len(report_steps)]
    for (steps, method), members in groups(runs).items():
        cells = []
        for step in report_steps:
            at = [run["curve"]["step"].index(step) for run in members if step in run["curve"]["step"]]
            if len(at) < len(members):
                cells.append("")
                continue
            acsa = [run["curve"]["acsa"][i] for run, i in zip(members, at)]
            gm = [run["curve"]["gm"][i] for run, i in zip(members, at)]
            cells.append(f"{mean_std(acsa)} / {mean_std(gm)}")
        seeds = ", ".join(str(run["seed"]) for run in members)
        lines.append(f"| {method} | {steps} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])


def machine_description():
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def seeds_label(method, members):
    return f"{method} ({len(members)} seed{'s' if len(members) > 1 else ''})"


def save_method_plot(path, title, runs, steps, draw, xlabel, ylabel, top=1.0, log_x=False):
    """One line per method (runs of `steps` steps), drawn by draw(axis, members, label)."""
    figure = new_figure(1, 1, cell=5)
    axis = figure.subplots()
    for (group_steps, method), members in groups(runs).items():
        if group_steps == steps:
            draw(axis, members, seeds_label(method, members))
    if log_x:
        axis.set_xscale("log")
    axis.set(xlabel=xlabel, ylabel=ylabel, ylim=(0, top), title=f"{title}, {steps} steps")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    save_figure(figure, path)


def draw_tpr(axis, members, label):
    """Per-class test TPR, mean over seeds, against the class's training size."""
    tpr = np.mean([run["test"]["tpr"] for run in members], axis=0)
    axis.plot(members[0]["class_counts"], tpr, "o-", label=label)


def draw_acsa_curve(axis, members, label):
    """Test ACSA against step, mean over seeds with a band of ± one standard deviation."""
    step = np.asarray(members[0]["curve"]["step"])
    acsa = np.array([run["curve"]["acsa"] for run in members])
    mean, std = acsa.mean(axis=0), acsa.std(axis=0)
    axis.plot(step, mean, label=label)
    axis.fill_between(step, mean - std, mean + std, alpha=0.2)


def write_summaries(out_dir, name, new_runs, steps, report_steps=()):
    out_dir = Path(out_dir)
    runs = merged_runs(out_dir / f"{name}.json", new_runs)
    save_json(out_dir / f"{name}.json", {"dataset": name, "machine": machine_description(), "runs": runs})
    text = table(name, runs, machine_description())
    if report_steps:
        text += "\n" + curve_table(runs, report_steps)
    with atomic_path(out_dir / f"{name}.md") as tmp:
        Path(tmp).write_text(text)
    save_method_plot(out_dir / f"{name}_tpr.png", name, runs, steps, draw_tpr,
                     "training images in the class", "test TPR (recall)", top=1.02, log_x=True)
    save_method_plot(out_dir / f"{name}_curves.png", name, runs, steps, draw_acsa_curve,
                     "step (2 per batch)", "test ACSA")
    return out_dir / f"{name}.md"
