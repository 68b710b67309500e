"""The paper's comparison over seeds: now the installed command gamo-reproduce
(gamo/cli/reproduce.py, which says what it does; the harness is gamo/compare/).
This file keeps `python bench/reproduce.py ...` working in a clone.

    python bench/reproduce.py --dataset fmnist --seeds 0,1,2 --steps 50000
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gamo.cli.reproduce import cli, main  # noqa: E402, F401

if __name__ == "__main__":
    cli()
