"""TensorBoard event files (tensorboardX, no TensorFlow), read back frame by frame with the
protobuf messages they are made of and TensorBoard's own rule for a resumed run's purge."""

import errno
import struct
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from tensorboardX.proto.event_pb2 import Event, SessionLog  # the `test` extra installs it
from tensorboardX.record_writer import masked_crc32c

from seqbench.cli.train import train_from_config
from seqbench.config import LoggerConfig
from seqbench.records import ModelInfo, RunRecord, SeedSummary, TaskInfo
from seqbench.store import validate
from seqbench.tracking import TensorBoardTracker

TINY = ["trainer=smoke", "trainer.progress=false", "task.length=12"]


def read_events(folder: Path) -> list[Event]:
    """Every event of the event files in `folder` (not below it), file by file in the order they
    were opened, each record's length and data checked against their CRCs."""
    files = []
    for path in folder.glob("events.out.tfevents.*"):
        data, events, at = path.read_bytes(), [], 0
        while at < len(data):
            header = data[at : at + 8]
            (size,) = struct.unpack("<Q", header)
            assert struct.unpack("<I", data[at + 8 : at + 12])[0] == masked_crc32c(header)
            body = data[at + 12 : at + 12 + size]
            assert struct.unpack("<I", data[at + 12 + size : at + 16 + size])[0] == (
                masked_crc32c(body)
            )
            events.append(Event.FromString(body))
            at += 16 + size
        assert events[0].file_version == "brain.Event:2"
        files.append(events)
    files.sort(key=lambda events: events[0].wall_time)
    return [event for events in files for event in events]


def points(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} as TensorBoard keeps a run's scalars, in the order written
    (a step written twice is shown twice), except that a session START at step s drops every
    earlier point at s or later (what a resumed run repeats)."""
    shown: dict[str, list[tuple[int, float]]] = {}
    for event in read_events(folder):
        if event.HasField("session_log") and event.session_log.status == SessionLog.START:
            for tag, series in shown.items():
                shown[tag] = [(step, v) for step, v in series if step < event.step]
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                shown.setdefault(value.tag, []).append((event.step, value.simple_value))
    return shown


def scalars(folder: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of `points`, after checking that no step is shown twice."""
    shown = {}
    for tag, series in points(folder).items():
        shown[tag] = dict(series)
        assert len(shown[tag]) == len(series), f"{tag}: a step shown twice: {series}"
    return shown


def texts(folder: Path) -> dict[str, str]:
    """{tag: the last text logged under it} (the text plugin's "<tag>/text_summary")."""
    found = {}
    for event in read_events(folder):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "text":
                tag = value.tag.removesuffix("/text_summary")
                found[tag] = value.tensor.string_val[0].decode()
    return found


def train(compose_config, tmp_path, overrides):
    composed = compose_config([*TINY, *overrides])
    resolved = OmegaConf.to_container(composed, resolve=True)
    resolved.pop("hydra", None)
    return train_from_config(validate(composed), resolved, tmp_path)


def test_every_seed_gets_its_curves_flow_config_and_summary(compose_config, tmp_path):
    overrides = ["logger=tensorboard", "seeds=[0,1]", "trainer.gradient_flow_steps=[0,4]"]
    record = train(compose_config, tmp_path, overrides)
    assert record.status == "completed"
    root = tmp_path / "tensorboard"
    assert sorted(p.name for p in root.iterdir()) == ["seed_0", "seed_1"]
    curves, flow = record.curves, record.gradient_flow
    for index, seed in enumerate(record.seeds):
        shown = scalars(root / f"seed_{seed}")
        assert sorted(shown) == sorted([*curves.eval, "train/loss"])
        for metric, values in curves.eval.items():
            expected = {step: v[index] for step, v in zip(curves.eval_steps, values, strict=True)}
            assert shown[metric] == pytest.approx(expected, rel=1e-6)
        expected = {s: v[index] for s, v in zip(curves.train_steps, curves.train_loss, strict=True)}
        assert shown["train/loss"] == pytest.approx(expected, rel=1e-6)  # no loss at step 0
        # the gradient flow: ||dL/dh_t|| against t, a curve per measured step and layer
        measured = scalars(root / f"seed_{seed}" / "gradient_flow")
        assert sorted(measured) == ["gradient_flow/step_0/layer_0", "gradient_flow/step_4/layer_0"]
        for step, norms in zip(flow.steps, flow.norm, strict=True):
            norm = np.asarray(norms)[index, 0]  # (T,)
            shown_norm = measured[f"gradient_flow/step_{step}/layer_0"]
            assert sorted(shown_norm) == list(range(len(norm)))
            assert [shown_norm[t] for t in range(len(norm))] == pytest.approx(norm, rel=1e-6)
        written = texts(root / f"seed_{seed}")
        assert "architecture: lstm" in written["config"] and "length: 12" in written["config"]
        assert written["config"].startswith("    ")  # a Markdown code block
        summary = written["summary"]
        assert "status: completed" in summary
        assert f"best step: {record.per_seed[index].best_step}" in summary
        final = record.per_seed[index].final["test/mse"]
        assert f"final/test/mse: {final}" in summary


def small_record(seeds=(0,)):
    task = TaskInfo("adding", "adding", "adding", None, {"mse": "min"}, "mse", {"mse": None})
    model = ModelInfo("lstm", param_count=1, hidden_size=1)
    return RunRecord(
        name="adding-lstm", status="running", config={}, task=task, model=model, seeds=list(seeds)
    )


def log_steps(tracker, steps, offset=0.0):
    for step in steps:
        loss = None if step == 0 else np.array([step + offset])
        tracker.log_eval(step, {"val/mse": np.array([step / 10 + offset])}, loss)


def test_a_resumed_job_purges_the_steps_it_repeats(tmp_path):
    cfg = LoggerConfig(backends=["tensorboard"])
    first = TensorBoardTracker(cfg, {"seeds": [0]}, small_record(), tmp_path)
    log_steps(first, [0, 2, 4, 6])  # interrupted after step 6, checkpointed at 2
    first.finish(small_record())
    again = TensorBoardTracker(cfg, {"seeds": [0]}, small_record(), tmp_path)
    log_steps(again, [4, 6, 8], offset=100.0)
    record = small_record()
    record.status = "completed"
    record.per_seed = [SeedSummary(seed=0, status="completed", best_step=8, final={"val/mse": 1})]
    again.finish(record)
    folder = tmp_path / "tensorboard" / "seed_0"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    shown = scalars(folder)
    assert shown["val/mse"] == pytest.approx({0: 0.0, 2: 0.2, 4: 100.4, 6: 100.6, 8: 100.8})
    assert shown["train/loss"] == pytest.approx({2: 2.0, 4: 104.0, 6: 106.0, 8: 108.0})
    assert texts(folder)["summary"].splitlines()[0] == "    status: completed"
    # a shared tensorboard_dir: one folder per configuration (the wandb group), then per seed
    shared = LoggerConfig(backends=["tensorboard"], tensorboard_dir=str(tmp_path / "tb"))
    tracker = TensorBoardTracker(shared, {"seeds": [0]}, small_record([3]), tmp_path)
    log_steps(tracker, [0])
    tracker.finish(small_record([3]))
    (group,) = (tmp_path / "tb").iterdir()
    assert group.name.startswith("adding-lstm-") and (group / "seed_3").is_dir()


def test_a_failing_writer_warns_once_and_training_goes_on(tmp_path, monkeypatch, capsys):
    from tensorboardX.event_file_writer import EventsWriter

    cfg = LoggerConfig(backends=["tensorboard"])
    tracker = TensorBoardTracker(cfg, {}, small_record(), tmp_path)
    log_steps(tracker, [0])

    def full(self, event):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(EventsWriter, "write_event", full)
    log_steps(tracker, [2, 4])
    tracker.log_gradient_flow(4, np.ones((1, 1, 3)))
    tracker.finish(small_record())
    assert not tracker.active
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"seqbench: warning: tensorboard could not log (no space left on device writing "
        f"{tmp_path / 'x'}"
    )
    assert lines[0].endswith("; training goes on without its event files")
    assert scalars(tmp_path / "tensorboard" / "seed_0") == {"val/mse": {0: 0.0}}


def test_without_tensorboardx_or_its_folder_one_warning(tmp_path, monkeypatch, capsys):
    import sys

    blocked = tmp_path / "file"
    blocked.write_text("")
    cfg = LoggerConfig(backends=["tensorboard"], tensorboard_dir=str(blocked))
    tracker = TensorBoardTracker(cfg, {}, small_record(), tmp_path)
    log_steps(tracker, [0, 2])
    tracker.finish(small_record())
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("seqbench: warning: tensorboard could not start (NotADirectoryError: ")
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    tracker = TensorBoardTracker(
        LoggerConfig(backends=["tensorboard"]), {}, small_record(), tmp_path
    )
    assert not tracker.active
    (line,) = capsys.readouterr().err.splitlines()
    assert "pip install 'seqbench[tensorboard]'" in line
