"""A picture of a finished dense GAMO run's generator: samples of every minority
class, a row each, labelled with the class's name, in the images' natural
orientation (the Fashion-MNIST files hold them transposed, as the reference's do).

    python bench/samples.py --run fMnist_100_Gamo --train fMnist_100_trainData.csv \\
        --test fMnist_100_testData.csv --out results/fmnist_dense_samples.png
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gamo.data import load_dataset, one_hot
from gamo.environment import import_backend_quietly
from gamo.errors import InputError, run_cli
from gamo.images import square_side
from gamo.pictures import save_image_grid
from gamo.run.settings import new_parser

import_backend_quietly()   # before Keras, which imports its backend

import keras  # noqa: E402

import gamo.layers  # noqa: E402, F401  (registers the generator's layers for loading)
from gamo.images import add_picture_options, class_titles, parse_names, upright  # noqa: E402


def newest_models(run_dir):
    """The gamo_models_<step> folder of the run's last step, and that step."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("gamo_models_*")
             if (m := re.fullmatch(r"gamo_models_(\d+)", p.name))]
    if not found:
        raise InputError(f"{run_dir}: no gamo_models_<step> folder (a finished dense GAMO run?)")
    return max(found)


def generated(folder, step, k, count, num_classes, rng):
    """count samples of class k: noise and label k, the trunk, then class k's IGU."""
    trunk = keras.models.load_model(folder / f"GEN_{step}.keras")
    igu = keras.models.load_model(folder / f"GenP_{k}_{step}.keras")
    noise = rng.standard_normal((count, trunk.inputs[0].shape[-1])).astype(np.float32)
    code = trunk([noise, one_hot(np.full(count, k), num_classes)], training=False)
    return keras.ops.convert_to_numpy(igu(code, training=False))


def main(argv=None):
    parser = new_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="output folder of a finished dense_gamo_main.py run")
    parser.add_argument("--train", required=True, help="its training CSV")
    parser.add_argument("--test", required=True, help="its test CSV")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    add_picture_options(parser)
    args = parser.parse_args(argv)
    dataset = load_dataset(args.train, args.test)
    side = square_side(dataset.x_train.shape[1])
    if side is None:
        raise InputError(f"{args.train}: {dataset.x_train.shape[1]} features are not a square image")
    step, folder = newest_models(args.run)
    rng, minority = np.random.default_rng(args.seed), [int(k) for k in dataset.imbalance.minority]
    rows = []
    for k in minority:
        images = generated(folder, step, k, args.per_class, dataset.imbalance.num_classes, rng)
        rows.append(images if args.as_stored else upright(images, (side, side)))
    titles = class_titles(dataset, minority, parse_names(args.names))
    save_image_grid(args.out, np.stack(rows), side, row_titles=titles, cell=0.95)
    print(f"wrote {args.out}: {args.per_class} samples of each of {len(rows)} classes at step {step}")


if __name__ == "__main__":
    run_cli(main)
