"""Train GAMO on feature vectors (flattened images or any features): the
original's dense_gamo_main.py, now a face of the `gamo` package.

    python MNIST_process.py          # writes Mnist_100_trainData.csv, ...
    python dense_gamo_main.py        # trains, writes Mnist_100_Gamo/

Where the original's parts live now:
    the settings and the command line         gamo/cli/dense.py (Settings, build_parser, main)
    the networks and their compiled models    gamo/nets.py, gamo/optim.py (see dense_net.py)
    one batch's updates, steps 1-6:           gamo/game.py (Gamo.step: the whole sequence in
    M, D on the real batch; the fake batch;   one compiled function; Players.fake_batch;
    M, D on it; G+IGU_k against M, then D     Gamo.generator_updates)
    the loop over batches, step += 2          gamo/run/loop.py (batches, train)
    evaluation, pictures, saved models,       gamo/run/loop.py (Run)
    Record.npz and Results.npz
The baselines (--classifier-only, --smote): gamo/learner.py (ClassifierOnly).
"""

from gamo.cli.dense import cli, main  # noqa: F401

if __name__ == "__main__":
    cli()
