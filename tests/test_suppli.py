"""dense_suppli: reading, relabelling, imbalance figures, sampler, batches, metrics."""

import numpy as np
import pytest
from conftest import SEED
from imblearn.metrics import geometric_mean_score
from scipy.stats import chisquare
from sklearn.metrics import balanced_accuracy_score

from gamo import data, errors, files, metrics
from gamo.run import settings


@pytest.mark.parametrize("trial", range(5))
def test_acsa_and_gm_equal_scikit_learn_and_imbalanced_learn(trial):
    rng = np.random.default_rng([SEED, trial])
    truth = rng.integers(0, 5, 300)
    predicted = np.where(rng.random(300) < 0.7, truth, rng.integers(0, 5, 300))
    result = metrics.scores(truth, predicted, 5)
    assert result.acsa == pytest.approx(balanced_accuracy_score(truth, predicted))
    assert result.gm == pytest.approx(geometric_mean_score(truth, predicted))
    assert result.acc == pytest.approx(np.mean(truth == predicted))


def test_gm_is_zero_when_a_class_is_never_recognised():
    truth = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 1, 1, 1, 1])
    result = metrics.scores(truth, predicted, 3)
    assert result.gm == 0.0 == geometric_mean_score(truth, predicted)
    np.testing.assert_allclose(result.tpr, [1, 1, 0])
    assert result.conf_mat.tolist() == [[2, 0, 0], [0, 2, 0], [0, 2, 0]]


def test_relabel_orders_classes_by_training_count_stably():
    train = np.array([7, 7, 7, 3, 3, 5, 5, 9])     # counts: 3->2, 5->2, 7->3, 9->1
    test = np.array([9, 3, 5, 7])
    new_train, new_test, original = data.relabel_by_size(train, test)
    assert original.tolist() == [9, 3, 5, 7]       # 3 before 5: equal counts keep their order
    assert new_test.tolist() == [0, 1, 2, 3]
    assert np.bincount(new_train).tolist() == [1, 2, 2, 3]


def test_relabel_rejects_unseen_test_labels_and_single_class():
    with pytest.raises(errors.InputError, match="label 4 does not occur"):
        data.relabel_by_size(np.array([0, 1]), np.array([4]), "tr.csv", "ts.csv")
    with pytest.raises(errors.InputError, match="at least 2 classes"):
        data.relabel_by_size(np.array([0, 0]), np.array([0]))


def test_imbalance_figures():
    imbalance = data.imbalance_of(np.repeat([0, 1, 2, 3], [10, 20, 40, 40]))
    assert imbalance.minority.tolist() == [0, 1]              # the two classes of 40 are not
    assert imbalance.to_balance.tolist() == [30, 20, 0, 0]
    np.testing.assert_allclose(imbalance.ratios, [4, 2, 1, 1])
    np.testing.assert_allclose(imbalance.fake_label_probabilities, [0.6, 0.4, 0, 0])


def test_balanced_data_stops_with_the_reference_message():
    with pytest.raises(errors.InputError, match="No imbalanced classes found"):
        data.imbalance_of(np.repeat([0, 1], 5))


def test_fake_label_frequencies_match_to_balance():
    imbalance = data.Imbalance(np.array([40, 60, 100, 350, 4000]))
    draws = data.sample_fake_labels(np.random.default_rng(SEED), imbalance, 20000)
    assert draws.shape == (20000, 5)
    assert set(np.unique(draws.sum(axis=1))) == {1.0}
    observed = draws.sum(axis=0)
    assert observed[-1] == 0                                    # never the majority class
    expected = imbalance.fake_label_probabilities[:-1] * 20000
    assert chisquare(observed[:-1], expected).pvalue > 0.01


def test_batches_are_consecutive_with_a_short_last_one():
    slices = data.batch_slices(70, 32)
    assert [(sl.start, sl.stop) for sl in slices] == [(0, 32), (32, 64), (64, 70)]


def test_reader_accepts_integer_and_scientific_notation(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("0.000000000000000000e+00,2.550000000000000000e+02,3.000000000000000000e+00\n"
                    "1,128,0\n")
    features, labels = data.read_labelled_csv(path)
    np.testing.assert_array_equal(features, [[0, 255], [1, 128]])
    assert labels.tolist() == [3, 0]


@pytest.mark.parametrize("content, message", [
    ("", "file is empty"),
    ("1,2,nan\n", "NaN or infinite"),
    ("1,2,3\n1,2\n", "columns"),
])
def test_reader_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(errors.InputError, match=message) as error:
        data.read_labelled_csv(path)
    assert str(path) in str(error.value)


HEADED = "label,a,b\n\n1,2,3\n4,5,6\n\n"     # a header, blank lines: a text editor's line numbers


@pytest.mark.parametrize("bad_line, message", [
    ("7,x,9", "non-numeric cell 'x' at line 6, column 2"),
    ("7,8", "line 6 has 2 columns, line 3 has 3"),
    ("7,8,nan", "NaN or infinite value at line 6, column 3"),
    ("7,inf,9", "NaN or infinite value at line 6, column 2"),
])
def test_reader_errors_give_the_line_a_text_editor_shows(tmp_path, bad_line, message):
    path = tmp_path / "bad.csv"
    path.write_text(HEADED + bad_line + "\n")
    with pytest.raises(errors.InputError) as error:
        data.read_numeric_csv(path)
    assert str(error.value) == f"{path}: {message}"


def test_scaling_maps_pixels_to_minus_one_one():
    np.testing.assert_allclose(data.scale_pixels([0, 127.5, 255]), [-1, 0, 1])


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.npz"
    with pytest.raises(RuntimeError), files.atomic_path(target) as tmp:
        np.savez(tmp, a=np.arange(3))
        raise RuntimeError("crash during a save")
    assert list(tmp_path.iterdir()) == []
    files.save_npz(target, a=np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]


def test_help_shows_the_defaults_of_options_but_not_of_flags():
    parser = settings.new_parser("demo")
    parser.add_argument("--steps", type=int, default=50000, help="steps to play")
    parser.add_argument("--no-jit", dest="jit", action="store_false", help="without XLA")
    text = " ".join(parser.format_help().split())
    assert "steps to play (default: 50000)" in text
    assert "without XLA" in text and "default: True" not in text


@pytest.mark.parametrize("command", ["dense", "fashion", "gamo2pix", "prepare"])
def test_every_command_shows_each_default_once_and_never_an_empty_one(command):
    import importlib

    module = importlib.import_module(f"gamo.cli.{command}")
    parsers = ([module.build_parser(spec) for spec in (module.MNIST, module.FASHION_MNIST)]
               if command == "prepare" else [module.build_parser()])
    for parser in parsers:
        for action in (action for action in parser._actions if action.help):
            shown = " ".join(parser._get_formatter()._expand_help(action).split())
            assert "(default: None)" not in shown and "(default: )" not in shown, shown
            assert shown.lower().count("default") <= 1, shown
