"""State that is not a parameter, and the stable names under which every
variable is checkpointed (a model's prefix and the Keras variable path)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from gamo.optim import AdamState


def state_variable(shape: int | Sequence[int], name: str, dtype: str = "float32") -> keras.Variable:
    """A zero-initialised variable that is state, not a parameter."""
    return keras.Variable(np.zeros(shape, dtype), dtype=dtype, trainable=False, name=name)


def named_model_variables(prefix: str, model: keras.Model) -> dict[str, keras.Variable]:
    """{prefix/variable path: variable} for every variable of a model (a stable
    name: the checkpoint key)."""
    return {f"{prefix}/{v.path}": v for v in model.variables}


def named_optimizer_variables(prefix: str, optimizer: AdamState) -> dict[str, keras.Variable]:
    """{prefix/name: variable} for an Adam state: ours name their moments after
    the variables they track, Keras' own after their paths."""
    names = getattr(optimizer, "names", None) or [v.path for v in optimizer.variables]
    return {f"{prefix}/{name}": v for name, v in zip(names, optimizer.variables)}


def merged_names(*groups: Mapping[str, keras.Variable]) -> dict[str, keras.Variable]:
    """One {name: variable} from several; a name given twice is a programming error."""
    merged: dict[str, keras.Variable] = {}
    for group in groups:
        for name, variable in group.items():
            if name in merged:
                raise ValueError(f"two state variables named {name}")
            merged[name] = variable
    return merged
