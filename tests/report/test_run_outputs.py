"""What a run leaves for people to read: csv, wandb and TensorBoard together, the plots written by the task and the
same images in TensorBoard and wandb, the chance level beside the test result."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from fertrain.report import plots
from tests.helpers import compose_config, run_experiment


@pytest.mark.parametrize("choice, expected", [
    ("logger=csv", {"csv"}),
    ("logger=tensorboard", {"csv", "tensorboard"}),  # wandb and tensorboard add to csv
    ("logger=[wandb,tensorboard]", {"csv", "wandb", "tensorboard"}),
    ("logger=[csv,wandb,tensorboard]", {"csv", "wandb", "tensorboard"}),
])
def test_logger_combinations_compose(tmp_path: Path, choice: str, expected: set[str]) -> None:
    cfg = compose_config([choice], tmp_path)
    assert set(cfg.logger) == expected
    assert {str(c._target_).rsplit(".", 1)[1] for c in cfg.logger.values()} <= {"ResumableCSVLogger", "WandbLogger",
                                                                                 "TensorBoardLogger"}


@pytest.mark.slow
def test_demo_run_plots_reach_tensorboard_and_wandb(tmp_path: Path, demo_faces: Path) -> None:
    # the demo's real video (its faces at 32 px): 2 epochs of 2 batches; the whole (balanced) val and test sets
    summary = run_experiment([f"data.cache_dir={demo_faces}", "logger=[csv,wandb,tensorboard]", "data.image_size=32",
                              "trainer.max_steps=4", "data.datamodule.batch_size=4", "trainer.limit_val_batches=1.0",
                              "trainer.limit_test_batches=1.0"], tmp_path)
    run = Path(summary["run_dir"])
    for tag in ("test_best", "test_last"):
        assert summary[tag]["chance_uar"] == 0.5 and summary[tag]["chance_war"] == 0.5  # balanced 2-class test set
    sizes = {"confusion_val_last.png": plots.confusion_matrix_size(2), "confusion_test_best.png":
             plots.confusion_matrix_size(2), "confusion_test_last.png": plots.confusion_matrix_size(2),
             "learning_curves.png": plots.LEARNING_CURVES_SIZE}
    for name, (w, h) in sizes.items():
        with Image.open(run / "plots" / name) as im:
            assert im.size == (round(w * plots.DPI), round(h * plots.DPI)), name
    # 2 epochs of 2 batches: the learning curve has both validated epochs, with train and val loss
    assert len(summary["val_last"]) and summary["val_last"]["epoch"] == 1 and "train_loss" in summary["val_last"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = set(events.Tags()["images"])
    assert {"confusion/val_last", "confusion/test_best", "confusion/test_last", "learning_curves"} <= tags
    assert len(events.Images("learning_curves")) == 2  # redrawn after each validation epoch
    media = {p.name.rsplit("_", 2)[0] for p in (run / "wandb").glob("offline-run-*/files/media/images/**/*.png")}
    assert {"learning_curves", "test_best", "val_last"} <= media, media
