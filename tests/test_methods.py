"""The methods' table (gamo.methods): the classical baselines from imbalanced-learn,
and a new method as one entry, usable everywhere without touching another file."""

import json

import numpy as np
import pytest
from conftest import DIGITS_TRAIN_COUNTS, SEED

from gamo.data import read_labelled_csv
from gamo.errors import InputError
from gamo.methods import METHODS, oversampled

MAJORITY = max(DIGITS_TRAIN_COUNTS.values())
NEW_BASELINES = ("random", "adasyn", "borderline-smote")


@pytest.mark.parametrize("name", NEW_BASELINES)
def test_each_new_baseline_grows_the_classes_seeded_and_keeps_the_real_rows(digits_csvs, name):
    x, y = read_labelled_csv(digits_csvs[0])
    balanced, labels = oversampled(name, x, y, seed=SEED)
    counts = np.bincount(labels)[list(DIGITS_TRAIN_COUNTS)]
    if name == "random":          # exactly the majority's count; ADASYN and Borderline-SMOTE about it
        assert counts.tolist() == [MAJORITY] * len(DIGITS_TRAIN_COUNTS)
    else:
        assert (counts > np.array(list(DIGITS_TRAIN_COUNTS.values()))).sum() >= 2 and counts.max() == MAJORITY
    assert balanced.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(balanced[:len(y)], x)
    again, again_labels = oversampled(name, x, y, seed=SEED)
    np.testing.assert_array_equal(again, balanced)
    np.testing.assert_array_equal(again_labels, labels)
    other, _ = oversampled(name, x, y, seed=SEED + 1)
    assert other.shape != balanced.shape or not np.array_equal(other, balanced)


def test_a_sampler_that_refuses_the_set_gives_one_line_naming_the_method():
    # Two far-apart classes: ADASYN finds no majority neighbours around the minority and refuses.
    rng = np.random.default_rng(SEED)
    x = np.concatenate([rng.normal(0, 0.1, (30, 2)), rng.normal(100, 0.1, (6, 2))]).astype(np.float32)
    y = np.array([1] * 30 + [0] * 6)
    with pytest.raises(InputError, match=r"^t\.csv: adasyn cannot balance this training set \(.+\)$") as refused:
        oversampled("adasyn", x, y, seed=SEED, path="t.csv")
    assert "\n" not in str(refused.value)


def test_an_unknown_method_is_refused_naming_the_known_ones():
    with pytest.raises(InputError, match="unknown method 'nope'; known: baseline, smote, gamo-nodis, gamo, random, adasyn, "
                                         "borderline-smote"):
        oversampled("nope", np.zeros((2, 1)), np.array([0, 1]), seed=SEED)


PLUGIN = """
import numpy as np
from gamo.methods import Method, register_method


class FirstRowTwice:
    \"\"\"A trivial over-sampler: every class gets its first row once more.\"\"\"

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit_resample(self, x, y):
        first = [int(np.flatnonzero(y == label)[0]) for label in np.unique(y)]
        return np.concatenate([x, x[first]]), np.concatenate([y, y[first]])


register_method("first-twice", Method("the classifier alone on each class's first row added", "FirstTwice",
                                      game=False, sampler=lambda seed, smallest: FirstRowTwice(seed)))
"""


@pytest.mark.slow
def test_a_new_method_is_one_entry_usable_by_the_script_the_summary_and_the_harness(digits_csvs, tmp_path,
                                                                                   capsys, monkeypatch):
    """The entry lives in a module of the user's (GAMO_METHODS names it): no file of
    the project changes, and the harness's child processes know it too."""
    from gamo.cli import dense

    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "first_twice_method.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "plugin"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "plugin"))
    monkeypatch.setenv("GAMO_METHODS", "first_twice_method")
    monkeypatch.setitem(METHODS, "first-twice", None)          # so that it is removed after the test
    train, test = digits_csvs
    dense.main(["--train", str(train), "--test", str(test), "--method", "first-twice", "--steps", "20",
                "--eval-every", "10", "--no-jit", "--out-dir", str(tmp_path / "script")])
    printed = capsys.readouterr().out
    assert "method: the classifier alone on each class's first row added" in printed
    assert f"first-twice: {sum(DIGITS_TRAIN_COUNTS.values()) + 4} training rows" in printed
    settings = json.loads((tmp_path / "script" / "settings.json").read_text())
    assert settings["method"] == "first-twice"
    assert sum(settings["train_counts"]) == sum(DIGITS_TRAIN_COUNTS.values()) + 4
    from gamo.cli import reproduce
    runs = reproduce.main(["--dataset", "mnist5k", "--train", str(train), "--test", str(test), "--name", "new",
                           "--methods", "first-twice", "--seeds", str(SEED), "--steps", "20", "--eval-every", "10",
                           "--no-jit", "--jobs", "1", "--out-dir", str(tmp_path / "harness")])
    assert [run["method"] for run in runs] == ["first-twice"]
    assert "first-twice" in (tmp_path / "harness" / "new.md").read_text()


def test_a_methods_module_that_cannot_be_imported_is_named_in_one_line(monkeypatch):
    from gamo.methods import methods

    monkeypatch.setenv("GAMO_METHODS", "no_such_module_of_methods")
    with pytest.raises(InputError, match=r"^GAMO_METHODS: cannot import no_such_module_of_methods "
                                         r"\(ModuleNotFoundError: .*\)$"):
        methods()


@pytest.mark.parametrize("argv, old_flags, same", [
    (["--method", "smote"], {"smote": True}, True),
    (["--smote"], {"smote": True}, True),
    (["--method", "baseline"], {"classifier_only": True}, True),
    (["--method", "gamo-nodis"], {"no_discriminator": True}, True),
    (["--method", "gamo"], {}, True),
    (["--method", "adasyn"], {}, False),             # an old GAMO record is not an ADASYN run
    (["--method", "smote"], {"classifier_only": True}, False),
])
def test_records_written_before_method_existed_say_it_with_its_aliases(argv, old_flags, same):
    from gamo.cli import dense
    from gamo.run.settings import comparable, first_difference, settings_from

    settings = settings_from(dense.build_parser().parse_args(["--out-dir", "x", *argv]), dense.Settings)
    old = {name: value for name, value in comparable(settings).items() if name != "method"}
    old.update({"classifier_only": False, "smote": False, "no_discriminator": False, **old_flags})
    difference = first_difference(settings, comparable(settings), old)
    assert (difference is None) is same, difference


def test_method_and_an_alias_that_disagree_are_refused():
    from gamo.cli import dense
    from gamo.run.settings import settings_from

    with pytest.raises(InputError, match="--method adasyn: contradicts --smote"):
        settings_from(dense.build_parser().parse_args(["--method", "adasyn", "--smote"]), dense.Settings)
