"""GAMO, Generative Adversarial Minority Oversampling (Mullick, Datta and Das,
ICCV 2019), in Keras 3 on TensorFlow, JAX or PyTorch.

    from gamo import GamoClassifier, GamoSampler

`import gamo` alone starts no backend and prints nothing: the estimators (and
Keras with its backend) are imported when first asked for.

Where things live:
    gamo.environment   which backend, started quietly; the scripts' backend settings
    gamo.backend       the seam to the backend: gradients, compiling, routing rows
    gamo.seeding       seeds, and the caller's random state kept
    gamo.layers        the project's registered layers (IGU's convex combination,
                       call-site BatchNorm, F's LeakyReLU, the VAE's sampling)
    gamo.nets          M, D, the generator trunk, the IGUs, the feature extractor F
    gamo.state         state variables and their stable (checkpoint) names
    gamo.optim         the loss, one update, the Adam states
    gamo.learner       the Learner interface; the classifier alone (the baseline)
    gamo.game          GAMO's players and its compiled step
    gamo.feature_game  convolutional GAMO (F learned end to end)
    gamo.vae, gamo.gamo2pix   GAMO2pix: images from generated feature vectors
    gamo.data, gamo.metrics, gamo.images, gamo.pictures, gamo.prepare, gamo.files
    gamo.run           settings, output folder, record, checkpoints, stop, report, loop
    gamo.cli           the commands (the top-level scripts call these)
    gamo.estimators    GamoClassifier and GamoSampler (their checks and scalings: gamo.validation)
    gamo.methods       the methods a run can train (GAMO, its ablation, the baselines)
    gamo.group         many runs of one game in one compiled step (JAX)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"
__all__ = ["GamoClassifier", "GamoSampler", "__version__"]

if TYPE_CHECKING:
    from gamo.estimators import GamoClassifier, GamoSampler


def __getattr__(name: str) -> Any:
    """The estimators, imported on first use (PEP 562): Keras and its backend start then."""
    if name in ("GamoClassifier", "GamoSampler"):
        from gamo import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'gamo' has no attribute {name!r}")
