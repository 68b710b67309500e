"""Train convolutional GAMO: the original's fashion_mnist_gamo_main.py, now a
face of the `gamo` package.

    python fMNIST_process.py             # writes fMnist_100_trainData.csv, ...
    python fashion_mnist_gamo_main.py    # trains, writes fMnist_100_Gamo/

Where the original's parts live now:
    the settings and the command line            gamo/cli/fashion.py (ConvSettings, main)
    F (see fashion_mnist_net.py); M, D, G, IGUs   gamo/nets.py
    each round: (a) an F+M epoch updating F,     gamo/feature_game.py (FeatureGamo.rounds,
    (b) the training set's features, (c) a pass  .epoch, .features)
    of the dense game on them
    one batch of the game                        gamo/game.py (Gamo.step), unchanged
    the loop, stopping inside the pass at        gamo/run/loop.py (batches, train, Run)
    --steps; evaluation through F then M; saved
    models with Conv_<step>
"""

from gamo.cli.fashion import cli, main  # noqa: F401

if __name__ == "__main__":
    cli()
