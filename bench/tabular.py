"""GAMO against classical over-samplers on scikit-learn's two small sets, with
GAMO's own classifier M: a case of the tabular benchmark (gamo-benchmark).

Data sets (no download): digits (8x8 digits, 64 features, 10 classes, made
imbalanced at the paper's ratios, IR 17.4) and breast-cancer (its malignant
class cut to a tenth of the benign one, IR 10). Samplers: none, random, SMOTE,
ADASYN and GAMO (GamoSampler with --gamo-steps steps, the reference's learning
rate); classifier: GAMO's M alone with --updates updates, as in the paper's
comparison (every arm's M gets the same updates). Repeated stratified 5-fold
cross-validation; results/tabular.json, .md and .png; each unit is kept in
results/runs/benchmark/ and reused when the command is given again.

    python bench/tabular.py --updates 2000
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gamo.cli import benchmark  # noqa: E402
from gamo.errors import run_cli  # noqa: E402
from gamo.run.settings import new_parser  # noqa: E402


def build_parser():
    parser = new_parser(__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--updates", type=int, default=2000, help="updates of M after every sampler")
    parser.add_argument("--gamo-steps", type=int, default=2000, help="GamoSampler's steps (2 per batch)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the 5-fold split")
    parser.add_argument("--datasets", default="sklearn", help="digits, breast-cancer, or both (sklearn)")
    parser.add_argument("--samplers", default="none,random,smote,adasyn,gamo", help="comma-separated")
    parser.add_argument("--out-dir", default="results", help="where tabular.json, .md and .png go")
    parser.add_argument("--jobs", type=int, default=0, help="processes at a time (default: one per core)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return benchmark.main(["--datasets", args.datasets, "--samplers", args.samplers,
                           "--classifiers", "gamo-m",
                           "--m-updates", str(args.updates), "--repeats", str(args.repeats),
                           "--gamo", f"steps={args.gamo_steps}", "--gamo", "learning_rate=0.0002",
                           "--name", "tabular", "--out-dir", args.out_dir, "--jobs", str(args.jobs)])


if __name__ == "__main__":
    run_cli(main)
