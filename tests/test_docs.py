"""The public API's docstrings follow numpydoc: its own validation, less the
optional sections (See Also, Examples, an extended summary)."""

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

PUBLIC = ["gamo.GamoClassifier", "gamo.GamoClassifier.fit", "gamo.GamoClassifier.predict",
          "gamo.GamoClassifier.predict_proba", "gamo.GamoClassifier.sample", "gamo.GamoSampler"]
OPTIONAL = {"SA01", "EX01", "ES01"}


@pytest.mark.parametrize("name", PUBLIC)
def test_public_docstrings_follow_numpydoc(name):
    errors = [f"{code} {message}" for code, message in numpydoc_validate.validate(name)["errors"]
              if code not in OPTIONAL]
    assert errors == []
