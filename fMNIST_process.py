"""Build the imbalanced (IR 100) Fashion-MNIST benchmark as the GAMO paper's code
does: the original's fMNIST_process.py, now a face of the `gamo` package.

The same protocol and options as MNIST_process.py, plus the reference's
transposition of every image (QUIRK, see --no-transpose). With no CSVs in the
working directory it reads the Debian package dataset-fashion-mnist.

Where the original's parts live now: gamo/prepare.py (FASHION_MNIST, and the
code it shares with MNIST), gamo/cli/prepare.py (fashion_mnist_main).
"""

from gamo.cli.prepare import fashion_mnist_cli as cli
from gamo.cli.prepare import fashion_mnist_main as main  # noqa: F401

if __name__ == "__main__":
    cli()
