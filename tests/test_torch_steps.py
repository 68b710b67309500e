"""PyTorch's fast steps (gamo.backend_torch): the networks applied as plain
functions of their variables and the Adam and BatchNorm-site arithmetic in
place give the same state as the Keras-call path they replace, and a step
makes no Keras layer call. Run under KERAS_BACKEND=torch (make test-backends)."""

import contextlib

import keras
import numpy as np
import pytest
from backend_probe import BATCH, CASES, digits, game
from keras.src.backend.torch import core as torch_core  # noqa: F401 (only under PyTorch, see the skip)
from keras.src.layers.layer import Layer

import gamo.backend
from gamo import feature_game, nets
from gamo.data import Imbalance, one_hot

pytestmark = [pytest.mark.every_backend,
              pytest.mark.skipif(gamo.backend.BACKEND != "torch", reason="PyTorch's own steps")]


def state_after(case, batches, plain, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(gamo.backend, "PLAIN_STEPS", plain)
        return {name: np.asarray(v) for name, v in CASES[case](batches).items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_fast_step_leaves_the_state_of_the_keras_calls(case, monkeypatch):
    keras_calls = state_after(case, 3, False, monkeypatch)
    plain = state_after(case, 3, True, monkeypatch)
    assert list(plain) == list(keras_calls)
    for name, value in keras_calls.items():
        # Measured: bit-identical on a CPU (the same operations in the same order);
        # float32 rounding allowed, as other kernels may order sums differently.
        np.testing.assert_allclose(plain[name], value, rtol=1e-5, atol=1e-6, err_msg=f"{case}: {name}")
    assert any(np.any(value != 0) for name, value in plain.items() if "/m:" in name or "adam" in name)


def probe_game(undeferred, monkeypatch):
    """The probe's dense game on the digits (its steps built with or without deferred statistics)."""
    from gamo import backend_torch

    x, y = digits()
    with monkeypatch.context() as patch:
        if undeferred:
            patch.setattr(backend_torch, "deferred_site_statistics", contextlib.nullcontext)
        learner = game(x.shape[1], Imbalance(np.bincount(y)))
    learner.players.set_class_points(x, y)
    return learner, x, one_hot(y, 4)


def test_call_sites_statistics_written_at_the_end_of_a_step_equal_those_written_at_once(monkeypatch):
    states = []
    for undeferred in (True, False):
        learner, x, onehot = probe_game(undeferred, monkeypatch)
        rng = np.random.default_rng(0)
        for start in (0, 32, 64):
            learner.train_on_batch(x[start:start + 32], onehot[start:start + 32], rng)
        states.append({name: np.asarray(v) for name, v in learner.named_state().items()})
    written_at_once, deferred = states
    sites = [name for name in deferred if "trunk_sites" in name]
    assert sites and any(np.any(deferred[name] != 0) for name in sites)
    for name, value in written_at_once.items():
        np.testing.assert_array_equal(deferred[name], value, err_msg=name)


def test_deferred_statistics_are_written_before_a_site_repeats_or_the_trunk_infers(monkeypatch):
    """Inside one deferral: a site's second call averages into its first's statistics,
    and an inference-mode call of the trunk reads them, as when written at once."""
    from gamo.backend_torch import deferred_site_statistics

    def play(learner, x, onehot, deferred):
        k, noise = learner.minority[0], np.random.default_rng(1).standard_normal((4, learner.latent_dim))
        labels = one_hot(np.full(4, k), 4)
        with deferred_site_statistics() if deferred else contextlib.nullcontext():
            learner.generator_updates(k, noise.astype(np.float32), labels)
            learner.generator_updates(k, noise.astype(np.float32), labels)      # the same sites again
            fake = learner.players.fake_batch(noise.astype(np.float32), labels)   # the trunk, inferring
        return keras.ops.convert_to_numpy(fake), {name: np.asarray(v) for name, v in learner.named_state().items()}

    fake_at_once, at_once = play(*probe_game(True, monkeypatch), deferred=False)
    fake_deferred, deferred = play(*probe_game(True, monkeypatch), deferred=True)
    np.testing.assert_array_equal(fake_deferred, fake_at_once)
    for name, value in at_once.items():
        np.testing.assert_array_equal(deferred[name], value, err_msg=name)


class Counts:
    """Keras layer calls and Keras tensor conversions made while counting."""

    def __init__(self, monkeypatch):
        self.layer_calls = self.conversions = 0
        layer_call, convert = Layer.__call__, torch_core.convert_to_tensor

        def counted_call(layer, *args, **kwargs):
            self.layer_calls += 1
            return layer_call(layer, *args, **kwargs)

        def counted_convert(*args, **kwargs):
            self.conversions += 1
            return convert(*args, **kwargs)
        monkeypatch.setattr(Layer, "__call__", counted_call)
        monkeypatch.setattr(torch_core, "convert_to_tensor", counted_convert)


def test_a_dense_step_makes_no_keras_layer_call_and_converts_only_its_inputs(monkeypatch):
    x, y = digits()
    learner = game(x.shape[1], Imbalance(np.bincount(y)))
    learner.players.set_class_points(x, y)
    onehot, rng = one_hot(y, 4), np.random.default_rng(0)
    inputs = learner.step_inputs(x[:32], onehot[:32], rng)
    learner.compiled_step(*inputs)
    with monkeypatch.context() as patch:
        counts = Counts(patch)
        learner.compiled_step(*inputs)
    assert counts.layer_calls == 0       # the Keras-call path makes 134 here, and 292 conversions
    assert counts.conversions <= len(inputs)


class AtenCounts:
    """PyTorch operations (ATen, by name) run while inside, backward passes included."""

    def __enter__(self):
        from collections import Counter

        from torch.utils._python_dispatch import TorchDispatchMode

        counts = self.counts = Counter()

        class Counting(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                counts[func.name()] += 1
                return func(*args, **(kwargs or {}))
        self.mode = Counting()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)


def test_a_dense_step_runs_one_fused_adam_kernel_per_update_and_few_operations():
    x, y = digits()
    learner = game(x.shape[1], Imbalance(np.bincount(y)))
    learner.players.set_class_points(x, y)
    onehot, rng = one_hot(y, 4), np.random.default_rng(0)
    inputs = learner.step_inputs(x[:32], onehot[:32], rng)
    learner.compiled_step(*inputs)
    with AtenCounts() as aten:
        learner.compiled_step(*inputs)
    updates = 4 + 2 * len(learner.minority)          # M, D, M, D, then G against M and D per class
    assert aten.counts["aten::_fused_adam_"] == updates
    assert aten.counts["aten::native_batch_norm"] > 0 and aten.counts["aten::addmm"] > 0
    # The call sites' BatchNorm statistics, written together at the step's end: one debiasing pass.
    assert sum(n for name, n in aten.counts.items() if name.startswith("aten::_foreach_pow")) == 1
    # Measured: 759 operations; 911 writing each call site's statistics at once (b2f3aa2),
    # 1,782 with torch._foreach Adam and Keras' BatchNorm arithmetic (54f003e's parent),
    # 2,535 through Keras' calls.
    assert sum(aten.counts.values()) < 850, aten.counts.most_common(10)


def test_an_f_and_m_update_makes_no_keras_layer_call(monkeypatch):
    x, y = digits()
    images, onehot = x.reshape(-1, 8, 8, 1)[:BATCH], one_hot(y, 4)[:BATCH]
    learner = feature_game.FeatureGamo(nets.build_feature_extractor((8, 8, 1), 32),
                                       game(32, Imbalance(np.bincount(y))), BATCH)
    learner.compiled_feature_step(images, onehot)
    with monkeypatch.context() as patch:
        counts = Counts(patch)
        learner.compiled_feature_step(images, onehot)
    assert counts.layer_calls == 0


def test_a_vae_decodes_numpy_features_outside_a_step():
    from types import SimpleNamespace

    from gamo.optim import AdamStates
    from gamo.vae import ClassVae

    vae = ClassVae(32, (8, 8, 1), SimpleNamespace(consistent_vae=False, jit=True), 0, AdamStates(0.0002, 0.5))
    rng = np.random.default_rng(0)
    images = vae.images_from(rng.uniform(-1, 1, (5, 32)).astype(np.float32), rng)     # NumPy in, as GAMO2pix does
    assert images.shape == (5, 8, 8, 1) and np.all(np.abs(images) <= 1)


def threads_set_during(call, monkeypatch):
    """The intra-op thread counts PyTorch is given while `call` runs."""
    import torch

    counts, set_threads = [], torch.set_num_threads

    def recorded(count):
        counts.append(count)
        set_threads(count)
    with monkeypatch.context() as patch:
        patch.setattr(torch, "set_num_threads", recorded)
        call()
    return counts


def test_convolutional_functions_get_every_core_only_while_waiting_threads_sleep(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(gamo.backend, "CORE_THREADS", before + 1)
    seen = []
    for policy in ("PASSIVE", "ACTIVE"):
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
        step = gamo.backend.compile_function(lambda x: seen.append(torch.get_num_threads()) or x, [],
                                             convolutional=True)
        step(np.zeros((2, 3), np.float32))
    assert seen == [before + 1, before] and torch.get_num_threads() == before
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")          # the user's choice stands
    assert gamo.backend.convolution_threads() is None


def test_f_and_m_and_features_run_on_convolution_threads_and_the_game_on_its_own(monkeypatch):
    import torch

    wide = torch.get_num_threads() + 1
    monkeypatch.setattr(gamo.backend, "convolution_threads", lambda: wide)
    monkeypatch.setattr(gamo.backend, "TORCH_IMAGES_PER_CALL", 64)
    x, y = digits()
    images, onehot = x.reshape(-1, 8, 8, 1), one_hot(y, 4)
    learner = feature_game.FeatureGamo(nets.build_feature_extractor((8, 8, 1), 32),
                                       game(32, Imbalance(np.bincount(y))), BATCH)
    # A training step on 100 images is one call (never cut in chunks), on every core.
    step_threads = threads_set_during(lambda: learner.compiled_feature_step(images[:100], onehot[:100]),
                                      monkeypatch)
    assert step_threads.count(wide) == 1
    features = {}
    features_threads = threads_set_during(lambda: features.update(chunked=learner.features(images[:150])),
                                          monkeypatch)
    assert features_threads.count(wide) == 3            # 150 images: calls of 64, 64 and 22
    learner.gamo.players.set_class_points(features["chunked"], y[:150])
    inputs = learner.gamo.step_inputs(features["chunked"][:BATCH], onehot[:BATCH], np.random.default_rng(0))
    assert wide not in threads_set_during(lambda: learner.gamo.compiled_step(*inputs), monkeypatch)
    # in chunks, as in one call
    whole = keras.ops.convert_to_numpy(learner.extractor(images[:150], training=False))
    np.testing.assert_allclose(features["chunked"], whole, rtol=1e-6, atol=1e-6)


def test_a_deferral_ends_even_if_writing_fails_and_writes_statistics_that_carry_gradients(monkeypatch):
    import torch

    from gamo import backend_torch

    learner, _, _ = probe_game(False, monkeypatch)
    site = learner.players.trunk_sites[("M", learner.minority[0])]
    layer = site.layers[0]
    width = layer.moving_mean.shape[0]
    mean = torch.rand(width, requires_grad=True) * 1      # as an image's moments, from the graph
    record = backend_torch.SiteRecord(site, layer, mean, mean * mean + 1, 4)
    with monkeypatch.context() as patch:
        patch.setattr(backend_torch, "write_site_statistics", lambda records: 1 / 0)
        with pytest.raises(ZeroDivisionError), backend_torch.deferred_site_statistics():
            backend_torch.record_site_statistics(record)
    assert backend_torch._DEFERRAL.waiting is None       # later steps write theirs again
    with backend_torch.deferred_site_statistics():
        backend_torch.record_site_statistics(record)
    accumulator = site.accumulators[layer.name].value
    assert accumulator.grad_fn is None and np.any(keras.ops.convert_to_numpy(accumulator) != 0)
