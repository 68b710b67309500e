"""Build the imbalanced (IR 100) Fashion-MNIST benchmark as the GAMO paper's code does.

Same protocol and options as MNIST_process.py (whose code this runs), plus the
reference's transposition of every image (QUIRK, see --no-transpose). With no
CSVs in the working directory it reads the Debian package dataset-fashion-mnist.
"""

from dense_suppli import run_cli
from MNIST_process import DatasetSpec
from MNIST_process import main as prepare_main

DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST = DatasetSpec(
    name="fMnist", train_csv="fashionMnist_train.csv", test_csv="fashionMnist_test.csv",
    transpose=True, fallback_idx_dirs=(DEBIAN_FASHION_DIR,),
    help_to_get_data=(
        "put fashionMnist_train.csv and fashionMnist_test.csv (label first, then 784 pixels) "
        "here, or pass --idx-dir DIR with the four IDX files, or install them with "
        "'apt-get install dataset-fashion-mnist'"),
)


def main(argv=None):
    return prepare_main(argv, FASHION_MNIST)


def cli():
    """The installed command (pyproject.toml's [project.scripts])."""
    run_cli(main)


if __name__ == "__main__":
    cli()
