"""The job pool of the comparisons (gamo-reproduce, bench/tabular.py): child
processes on this machine, `jobs` at a time, each with its share of the cores'
threads, passing Ctrl-C and SIGTERM on so that every child can save its work
before it stops; or on a Dask cluster.

A launch has a `command`, a `log`, `threads`, a `label` and a `start_line`;
on a cluster also `steps` (for the line that sends it) and `folders` (where its
runs' result files go) or `result_files` (the files it writes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gamo.files import atomic_path

# A child stopped by a signal: after saving its work (128 + signal), or before its handlers (< 0).
STOPPED = {128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM}


def add_pool_options(parser, work):
    """--jobs, --threads and --cluster, shared by the comparisons; `work`: what is sent
    ("the runs", "the units")."""
    parser.add_argument("--jobs", type=int, default=0,
                        help="processes at a time, each with its share of the cores' threads (default: "
                             "one per core as memory allows; 1: one after another on every core)")
    parser.add_argument("--threads", type=int, default=None,
                        help="TensorFlow and BLAS threads of each process (default: the cores divided "
                             "by --jobs; with --jobs 1, all cores); 0: TensorFlow's own choice")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help=f"send {work} to this Dask scheduler (e.g. tcp://10.0.0.5:8786) instead; "
                             "its workers need the project and the data at the same paths")


def default_jobs(memory_per_job_gb=2.5):
    """Jobs at a time that use this machine best: one per core (a GAMO step's
    updates are a sequential chain that one core serves almost as fast as two),
    as memory allows."""
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return max(1, min(os.cpu_count() or 1, int(memory_gb // memory_per_job_gb)))


def threads_per_job(jobs, threads=None):
    """Each job's threads: `threads` if given, else all cores for one job, else the cores shared."""
    if threads is not None:
        return threads
    return 0 if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs)


def thread_environment(threads):
    """A child's environment: TensorFlow's and BLAS's thread pools limited to `threads` (0: all cores)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if threads:
        env.update({name: str(threads) for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                                                     "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    return env


def play_locally(launches, jobs):
    """Run each launch's `command` (its output into `log`, `threads` threads), `jobs`
    at a time; print its `start_line` when it starts; yield (launch, exit status)
    as each ends.

    SIGTERM and SIGINT are passed on to every running child; no new one starts,
    and the process then exits with 128 + the signal.
    """
    waiting, running, stop = list(launches), {}, []

    def pass_on(signum, frame):
        stop.append(signum)
        for child in running:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while running or (waiting and not stop):     # once stopped, only the running ones are awaited
            while waiting and len(running) < jobs and not stop:
                launch = waiting.pop(0)
                with open(launch.log, "a") as log:
                    child = subprocess.Popen(launch.command, stdout=log, stderr=subprocess.STDOUT,
                                             env=thread_environment(launch.threads))
                running[child] = launch
                print(launch.start_line, flush=True)
            for child in [child for child in running if child.poll() is not None]:
                yield running.pop(child), child.returncode
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop:
        print("stopped; give the same command again to continue", file=sys.stderr)
        raise SystemExit(128 + stop[0])


def play_on_cluster(address, launches):
    """Play the launches on an existing Dask cluster; yield (launch, status) as each ends.

    A worker runs the launch's command (subprocess.run, nothing of this file),
    then sends back its output and the run's result files, which are written
    here as a local run's would be: the workers need the project, its Python
    and the data at this machine's paths.
    """
    from distributed import Client, as_completed

    with Client(address, timeout="30s") as client:
        futures = {}
        for launch in launches:
            environment = thread_environment(launch.threads)
            limits = [f"{name}={value}" for name, value in environment.items()
                      if name.endswith("_THREADS") or name == "TF_CPP_MIN_LOG_LEVEL"]
            futures[client.submit(subprocess.run, ["env", *limits, *launch.command], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, pure=False)] = launch
            print(f"{launch.label}: {launch.steps} steps, sent to {address}", flush=True)
        for future in as_completed(futures):
            launch = futures[future]
            try:
                completed = future.result()
                launch.log.write_text(completed.stdout)
                if completed.returncode == 0:
                    for path in result_files(launch):
                        fetch_file(client, path, worker_of(client, future))
                yield launch, completed.returncode
            except Exception as error:            # the worker itself failed: report, keep the others
                yield launch, f"error on the worker ({type(error).__name__}: {error})"


def worker_of(client, future):
    """The address of the worker that holds a finished task's result (where it ran)."""
    holders = client.who_has(future).get(future.key) or ()
    return next(iter(holders), None)


def result_files(launch):
    """The files a finished launch wrote: its `result_files`, or its runs' result files."""
    if getattr(launch, "result_files", None):
        return list(launch.result_files)
    return [folder / name for folder in launch.folders
            for name in ("settings.json", "Results.npz", "Record.npz")]


def fetch_file(client, path, worker):
    """Copy a result file from the worker that wrote it (its own disk: the
    workers need not share a file system)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    where = {"workers": [worker], "allow_other_workers": False} if worker else {}
    content = client.submit(Path.read_bytes, path, pure=False, **where).result()
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(content)
