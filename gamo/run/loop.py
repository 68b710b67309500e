"""The training loop and the run around it: batches pass after pass, the
evaluations, pictures, saved models, checkpoints and result files."""

from __future__ import annotations

import math
import sys
import time
from typing import NamedTuple

import numpy as np

from gamo.backend import numpy_losses, thread_settings
from gamo.environment import PROCESS_STARTED, keras_backend_name
from gamo.errors import InputError
from gamo.files import atomic_path, save_json, save_npz
from gamo.layers import with_stock_layers
from gamo.metrics import chance_note, scores
from gamo.pictures import save_image_grid, save_learning_curve
from gamo.run.base import RunBase
from gamo.run.record import Record, save_losses_csv
from gamo.run.report import library_versions, progress_bar
from gamo.run.settings import comparable
from gamo.run.stop import checkpointed_stop


class Run(RunBase):
    """What a GAMO run keeps around the learner: its step, random generators and record,
    the evaluations, pictures, saved models, checkpoints and result files.

    `evaluate()` returns (train Scores, test Scores); `pictures` (a function of a
    random generator giving a grid of flat images) and `image_side` draw a
    picture at each evaluation; `facts` go into settings.json at the end.
    """

    def __init__(self, settings, learner, evaluate, rng, facts=None, pictures=None, image_side=None):
        self.learner, self.evaluate, self.rng = learner, evaluate, rng
        self.facts, self.pictures, self.image_side = facts or {}, pictures, image_side
        self.step = 0
        self.picture_rng = np.random.default_rng([settings.seed, 1])
        super().__init__(settings, learner.loss_names(), [self.rng, self.picture_rng])
        self.record = Record(settings.steps, settings.eval_every, learner.num_classes, learner.loss_names())
        self.latest = None

    def postfix(self):
        scores = {} if self.latest is None else {"test_acsa": f"{self.latest.acsa:.4f}",
                                                 "test_gm": f"{self.latest.gm:.4f}"}
        return {**scores, **super().postfix()}

    def evaluate_and_report(self, index, progress=None, final=False):
        """The final evaluation leaves its interval's sums in the checkpoint: a run
        continued to more steps evaluates that step again, over the same batches."""
        train, test = self.evaluate()
        losses = self.losses.means() if final else self.losses.take()
        self.record.store(index, self.step, train, test, losses)
        self.latest = test
        for name, result in (("train", train), ("test", test)):
            (progress.write if progress is not None else print)(
                f"step {self.step} {name}: ACSA {result.acsa:.4f} GM {result.gm:.4f} "
                f"TPR {np.array2string(result.tpr, precision=4, max_line_width=200)}")
        if progress is not None:
            progress.set_postfix(self.postfix())
        if self.record.loss_names:
            save_losses_csv(self.out_dir / "losses.csv", self.record)
        scores = {f"{metric}/{name}": getattr(result, metric) for metric in ("acsa", "gm", "acc")
                  for name, result in (("train", train), ("test", test))}
        self.write_scalars(self.step, {**{f"loss/{name}": mean for name, mean in losses.items()}, **scores})
        if self.pictures is not None and self.image_side:
            path = self.out_dir / "Pictures" / f"{self.out_dir.name}_{self.step}.png"
            save_image_grid(path, self.pictures(self.picture_rng), self.image_side)

    def save_models(self):
        folder = self.out_dir / f"gamo_models_{self.step}"
        for name, model in self.learner.models().items():
            with atomic_path(folder / f"{name}_{self.step}.keras") as tmp:
                with_stock_layers(model).save(tmp)

    def save_checkpoint(self, number=None):
        """Every state variable, the step to continue from, the record, the generators and
        the settings, in checkpoints/step_<number>: named, as the models saved at the same
        moment are (gamo_models_<number>), after the step of the batch last trained (the
        final one after the final step); `number` defaults to the step to continue from."""
        self.write_state(self.step if number is None else number, self.learner.named_state(),
                         {"step": self.step}, self.record.state())

    def resume(self):
        """Continue from the newest usable checkpoint in the output folder."""
        folder, state, arrays = self.read_state(self.learner.named_state(), self.check_checkpoint)
        self.record.restore(arrays)
        self.step = state["step"]
        print(f"resumed from {folder}, continuing at step {self.step}")

    def check_checkpoint(self, state, arrays):
        """Raise ValueError, KeyError or TypeError if a checkpoint's state or record do not fit this run."""
        step = state["step"]
        if not isinstance(step, int) or step < 0 or step % 2:
            raise ValueError(f"step {step!r} is not a step of this run")
        if step > self.settings.steps:
            raise InputError(f"{self.checkpoint_root}: the newest checkpoint is at step {step}, past "
                             f"--steps {self.settings.steps}; give --steps {step} or more to continue it")
        length = len(arrays["steps_seen"])      # shorter: a run continued to more steps
        for key, expected in self.record.state().items():
            if key.startswith("loss_") and key not in arrays:     # written before losses were recorded
                continue
            if (arrays[key].shape[1:] != expected.shape[1:] or not 0 < arrays[key].shape[0] <= len(expected)
                    or arrays[key].shape[0] != length or arrays[key].dtype != expected.dtype):
                raise ValueError(f"{key} has shape {arrays[key].shape}, expected {expected.shape}")

    def save_results(self):
        save_npz(self.out_dir / "Record.npz", **self.record.arrays)
        if self.record.loss_names:
            save_losses_csv(self.out_dir / "losses.csv", self.record)
        if self.latest is not None:
            test = self.latest
            save_npz(self.out_dir / "Results.npz", acsa=test.acsa, gm=test.gm, tpr=test.tpr,
                     confMat=test.conf_mat, acc=test.acc)

    def stopped(self):
        """After a stop request: the results so far, and the line to print."""
        self.save_results()
        self.close_board()
        return (f"stopped at step {self.step}: checkpoint in {self.checkpoint_root}/, results so "
                f"far in {self.out_dir}/; continue with the same command and --resume")

    def finish(self):
        """Final evaluation (and picture) at the last index, final models, checkpoint and results."""
        self.evaluate_and_report(self.record.length - 1, final=True)
        self.save_models()
        self.save_checkpoint()
        self.save_results()
        save_learning_curve(self.out_dir / "learning_curve.png", self.record)
        self.close_board()
        wall = self.wall_time()
        save_json(self.out_dir / "settings.json", {
            **comparable(self.settings), "method": self.settings.method, "status": "finished",
            "final_step": self.step, "batches": self.step // 2,
            "classifier_updates": self.learner.classifier_updates(), **self.facts, "wall_time_s": wall,
            "process_time_s": time.time() - PROCESS_STARTED,
            "backend": keras_backend_name(), "threads": thread_settings(),
            "versions": library_versions()})
        test, out = self.latest, self.out_dir
        print(f"final test ACSA {test.acsa:.4f} GM {test.gm:.4f} acc {test.acc:.4f} after {self.step} steps "
              f"in {wall:.0f} s; outputs in {out}/ (learning curve: {out}/learning_curve.png)")
        if note := chance_note(test.tpr):
            print(f"warning: {note}: check the data and its scaling (--no-scale)", file=sys.stderr)
        return test


def evaluation(learner, dataset, as_inputs=lambda x: x):
    """(train Scores, test Scores) of the learner's classifier on the dataset's
    own (imbalanced) training set and on its test set."""
    c = dataset.imbalance.num_classes

    def evaluate():
        return (scores(dataset.y_train, learner.predict_labels(as_inputs(dataset.x_train)), c),
                scores(dataset.y_test, learner.predict_labels(as_inputs(dataset.x_test)), c))
    return evaluate


def class_counts(dataset, train_labels):
    """The class sizes of the data and of the rows trained on, for settings.json."""
    c = dataset.imbalance.num_classes
    return {"class_counts": dataset.imbalance.counts.tolist(),
            "train_counts": np.bincount(train_labels, minlength=c).tolist()}


class Pass(NamedTuple):
    """One pass over the training batches: the rows, their one-hot labels and the batches."""

    rows: np.ndarray
    onehot: np.ndarray
    slices: list


def batches(passes, step, steps):
    """(rows, one-hot labels) of every batch from `step` to `steps` (2 per batch),
    pass after pass from `passes` (an iterator of Pass); a run resumed at `step`
    continues with the batch after its checkpoint. A pass is asked for only
    when one more batch is due."""
    while step < steps:
        rows, onehot, slices = next(passes)
        for batch in slices[(step // 2) % len(slices):]:
            yield rows[batch], onehot[batch]
            step += 2
            if step >= steps:
                return


def played(learner, passes, step, steps, rng):
    """Train `learner` on every batch from `step` to `steps` (see batches), its random
    draws from `rng`; yield each batch's {loss name: NumPy value} once it is trained."""
    for rows, onehot in batches(passes, step, steps):
        yield numpy_losses(learner.train_on_batch(rows, onehot, rng))


def train(run, passes, after_batch=None):
    """The whole schedule of a run: the batches of `passes` until step reaches
    --steps; an evaluation at every eval_every steps, the models and a
    checkpoint at every save_every; then the final outputs.

    Ctrl-C (SIGINT) or SIGTERM: the current batch ends, a checkpoint and the
    results so far are written, and the process exits with 130 (143). A NaN or
    infinite loss raises NotFinite at once, before that batch's evaluation
    or checkpoint (run_cli: exit status 3).
    after_batch(run), if given, is called after every batch (monitoring).
    """
    return train_together([run], [passes], None, after_batch)[0]


def train_together(runs, passes, group=None, after_batch=None):
    """train() for several runs in lockstep, each on its own passes: with `group`
    (gamo.group.LearnerGroup of their learners), every batch of all of them is
    one compiled step, and the group's state is written back into each run's
    learner before it evaluates or saves. All runs stand at the same step.
    after_batch(runs[0]), if given, is called after every batch."""
    s = runs[0].settings
    progress = progress_bar(math.ceil(s.steps / 2), done=runs[0].step // 2)
    sync = group.sync if group is not None else lambda: None
    with checkpointed_stop(lambda: "\n".join(run.stopped() for run in runs)) as stop, progress:
        for losses in batch_losses(runs, passes, group):
            step = runs[0].step
            for run, run_losses in zip(runs, losses):
                run.add_losses(run_losses, step, progress)
            progress.update(1)
            evaluate_now = step % s.eval_every == 0
            save_now = step % s.save_every == 0 and step != 0
            if evaluate_now or save_now:
                sync()
            for run in runs:
                if evaluate_now:
                    run.evaluate_and_report(step // s.eval_every, progress)
                if save_now:
                    run.save_models()
                run.step += 2
            if after_batch is not None:
                after_batch(runs[0])
            if save_now or stop.signum:
                sync()
                for run in runs:
                    run.save_checkpoint(number=step)
            stop.raise_if_asked()
    sync()
    return [run.finish() for run in runs]


def batch_losses(runs, passes, group=None):
    """Train every run on its next batch, until --steps; yield the runs' losses of each
    batch ([{loss name: NumPy value}] in the order of `runs`)."""
    if group is None:
        run, = runs
        for losses in played(run.learner, passes[0], run.step, run.settings.steps, run.rng):
            yield [losses]
        return
    iterators = [batches(run_passes, run.step, run.settings.steps) for run, run_passes in zip(runs, passes)]
    for rows in zip(*iterators):
        yield group.train_on_batches(rows, [run.rng for run in runs])
