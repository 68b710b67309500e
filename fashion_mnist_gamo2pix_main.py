"""GAMO2pix: images from GAMO's generated feature vectors, one class at a time:
the original's fashion_mnist_gamo2pix_main.py, now a face of the `gamo` package.

    python fashion_mnist_gamo_main.py         # writes fMnist_100_Gamo/gamo_models_<step>/
    python fashion_mnist_gamo2pix_main.py     # writes fMnist_100_ImgGen/

Where the original's parts live now:
    the settings and the command line          gamo/cli/gamo2pix.py (PixSettings, main)
    loading F, G and the IGUs                  gamo/gamo2pix.py (load_gamo_models)
    each class's VAE and its training step     gamo/vae.py (ClassVae; networks: see
                                               fashion_mnist_gamo2pix_net.py)
    the classes one after another, pictures    gamo/gamo2pix.py (PixRun, save_class_pictures)
    every 500 steps, models every 2000
    GAMO samples through the decoder, PNGs     gamo/gamo2pix.py (gamo_features), gamo/pictures.py
"""

from gamo.cli.gamo2pix import cli, main  # noqa: F401

if __name__ == "__main__":
    cli()
