"""Print pip constraints that pin every dependency of pyproject.toml (and of the
extras named on the command line) to its floor: `make test-oldest` installs
exactly those and runs the quick tests, so the floors we declare are tested."""

import re
import sys
import tomllib
from pathlib import Path

FLOOR = re.compile(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)")


def floors(extras):
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in extras
                                              for r in project["optional-dependencies"][extra]]
    pins = {}
    for requirement in requirements:
        match = FLOOR.match(requirement)
        if match is None:
            sys.exit(f"pyproject.toml: {requirement!r} has no >= floor")
        pins[match.group(1).lower()] = match.group(3)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


if __name__ == "__main__":
    print("\n".join(floors(sys.argv[1:])))
