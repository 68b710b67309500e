"""What a group of K seeds (gamo.group) costs in memory on JAX: the peak resident
memory of a real short training of the dense or the convolutional script with
--seeds, each K in a fresh process, on Fashion-MNIST IR-100 (from the Debian
package dataset-fashion-mnist). Prints, per K, the peak, the memory each run
adds (the slope between successive K), that against gamo.group's estimate
(memory_per_state() times a run's state) and how many seeds this machine holds.

    KERAS_BACKEND=jax python bench/vmap_memory.py [--script dense|conv] [--groups 1,4,16] [--steps 40]

The last line is a JSON object with the figures. On a GPU the state lives in
the device's memory (bench/vmap.py reports its peak); this measures the host.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gamo.environment import keras_backend_name  # noqa: E402

if keras_backend_name() != "jax":
    sys.exit("bench/vmap_memory.py: run it with KERAS_BACKEND=jax (a group of runs is a JAX program)")

from gamo.group import available_memory_bytes, memory_per_state, state_bytes  # noqa: E402
from gamo.prepare import DEBIAN_FASHION_DIR  # noqa: E402
from gamo.run.settings import new_parser  # noqa: E402


def child(script: str, runs: int, steps: int, folder: str) -> None:
    """Train a group of `runs` seeds; print its peak RSS and one run's state bytes as JSON."""
    from gamo.cli import dense, fashion
    state = {}

    def after_batch(run):
        if "bytes" not in state:        # once: the shapes do not change
            state["bytes"] = state_bytes(run.learner)

    main = dense.main if script == "dense" else fashion.main
    main(["--train", f"{folder}/fMnist_100_trainData.csv", "--test", f"{folder}/fMnist_100_testData.csv",
          "--seeds", f"0-{runs - 1}" if runs > 1 else "0", "--steps", str(steps),
          "--out-dir", f"{folder}/{script}_{runs}/seed{{seed}}"], after_batch=after_batch)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": peak_mib, "state_bytes": state["bytes"]}))


def measure(script: str, runs: int, steps: int, folder: str) -> dict:
    """child() in a fresh process: its figures."""
    output = subprocess.run([sys.executable, __file__, "--child", script, str(runs), str(steps), folder],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv=None):
    parser = new_parser("peak memory of K seeds trained in one compiled JAX step, per K")
    parser.add_argument("--script", choices=("dense", "conv"), default="dense")
    parser.add_argument("--groups", default="1,4,16", help="comma-separated group sizes K, increasing")
    parser.add_argument("--steps", type=int, default=40, help="training steps of each group")
    args = parser.parse_args(argv)
    if not Path(DEBIAN_FASHION_DIR).is_dir():
        sys.exit(f"bench/vmap_memory.py: needs Fashion-MNIST in {DEBIAN_FASHION_DIR} "
                 "(apt-get install dataset-fashion-mnist)")
    from gamo.cli import prepare
    figures = {"script": args.script, "groups": {}}
    with tempfile.TemporaryDirectory() as folder:
        prepare.fashion_mnist_main(["--idx-dir", DEBIAN_FASHION_DIR, "--out-dir", folder])
        previous = None
        for runs in [int(k) for k in args.groups.split(",")]:
            got = measure(args.script, runs, args.steps, folder)
            state_mib = got["state_bytes"] / 2**20
            line = f"K={runs:4d}: peak RSS {got['peak_mib']:8.0f} MiB"
            if previous is not None:
                per_run = (got["peak_mib"] - previous[1]) / (runs - previous[0])
                got["per_run_mib"] = per_run
                line += (f", {per_run:6.1f} MiB per added run = {per_run / state_mib:.1f} x a run's state "
                         f"({state_mib:.1f} MiB; gamo.group estimates {memory_per_state():g} x)")
            figures["groups"][runs] = got
            previous = (runs, got["peak_mib"])
            print(line, flush=True)
    slopes = [g["per_run_mib"] for g in figures["groups"].values() if "per_run_mib" in g]
    if slopes:
        largest = max(figures["groups"])
        available = available_memory_bytes() / 2**20
        more = (available - figures["groups"][largest]["peak_mib"]) / max(slopes)
        figures["seeds_that_fit"] = largest + int(more)
        per_run_estimate = memory_per_state() * figures["groups"][largest]["state_bytes"]
        figures["seeds_gamo_group_allows"] = int(available * 2**20 // per_run_estimate)
        print(f"this machine: {available / 1024:.1f} GiB available, so about {figures['seeds_that_fit']} "
              f"seeds of the {args.script} script in one process by the largest measured slope; "
              f"gamo.group's check allows {figures['seeds_gamo_group_allows']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        main()
