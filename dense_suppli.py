"""The helpers of GAMO on feature vectors: the original's dense_suppli.py, now a
face of the `gamo` package, re-exported here under the original's roles.

Where the original's parts live now:
    reading a CSV (features, then the label)   gamo/data.py (read_labelled_csv, load_dataset)
    scaling pixels to [-1, 1]                  gamo/data.py (scale_pixels)
    relabelling classes by size; the           gamo/data.py (relabel_by_size, Imbalance,
    imbalance ir_k and to_balance_k            imbalance_of)
    the fake-label sampler                     gamo/data.py (sample_fake_labels)
    batches of the once-shuffled set           gamo/data.py (batch_slices, training_rows)
    ACSA, GM, accuracy, TPR, confusion matrix  gamo/metrics.py (scores)
    the pictures of generated samples          gamo/pictures.py (save_image_grid)
    Record.npz and Results.npz                 gamo/run/record.py (Record), gamo/run/loop.py (Run)
What the original did not have: settings and options (gamo/run/settings.py), the
output folder's lock (gamo/run/folder.py), checkpoints (gamo/run/checkpoint.py),
clean stops (gamo/run/stop.py), progress and TensorBoard (gamo/run/report.py),
atomic writes (gamo/files.py), one-line errors (gamo/errors.py).
"""

from gamo.data import (  # noqa: F401
    Imbalance,
    batch_slices,
    imbalance_of,
    load_dataset,
    one_hot,
    read_labelled_csv,
    relabel_by_size,
    sample_fake_labels,
    scale_pixels,
    training_rows,
)
from gamo.metrics import Scores, scores  # noqa: F401
from gamo.pictures import save_image_grid  # noqa: F401
