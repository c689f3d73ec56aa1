"""DDP evaluation equals single-process evaluation, to the last digit (2 CPU processes, gloo, ``ddp_spawn``).

Lightning's default for a distributed val/test DataLoader is ``DistributedSampler``, which pads the dataset with
duplicated samples so that every rank gets the same count; on an evaluation set whose size is not divisible by
the world size that changes UAR/WAR. fertrain's datamodule uses ``UnrepeatedDistributedSampler`` for val/test
(every sample exactly once, uneven shards) and the task sums a torchmetrics confusion matrix across processes,
so the metrics must equal those of one process. The second test documents the trap: the plain sampler
evaluates one clip twice and the metrics change.

``ddp_spawn`` (not ``ddp``) because Lightning's ``ddp`` relaunches ``sys.argv``, which would rerun pytest; each
evaluation runs in a fresh Python process with a clean distributed environment (``_evaluate_fresh``).
Each ``trainer.validate``/``trainer.test`` call spawns 2 fresh processes (~10-20 s each on 2 shared cores).
The last test runs the real CLI with ``trainer=ddp`` (a subprocess, so the relaunch of ``sys.argv`` is harmless).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from fertrain.config import config_dir
from fertrain.data.clip_dataset import ClipDataset
from fertrain.data.datamodule import ClipDataModule
from fertrain.data.datasets.dfew import make_miniature_dfew
from fertrain.train import build

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
WORLD_SIZE = 2
CLIPS_PER_CLASS = 5  # 35 clips; fold 1: 7 test clips, val_from_train=0.2 -> 7 val clips (both odd)


class IndexRecorder(pl.Callback):
    """Writes, per rank and stage, the dataset indices of every evaluated clip to ``<out>/<stage>_rank<r>.json``.

    Runs inside the spawned processes (pickled with the trainer arguments), hence files rather than memory.
    """

    def __init__(self, out: str) -> None:
        self.out = out
        self.seen: dict[str, list[int]] = {}
        self.labels: dict[str, list[int]] = {}

    def _record(self, stage: str, batch: dict, pl_module) -> None:
        self.seen.setdefault(stage, []).extend(int(i) for i in batch["index"])
        self.labels.setdefault(stage, []).extend(int(y) for y in batch["label"])

    def _write(self, trainer: pl.Trainer, stage: str, pl_module) -> None:
        path = Path(self.out) / f"{stage}_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.seen.pop(stage, [])))
        # (index, label) pairs this rank evaluated, for failure messages
        path.with_suffix(".labels.json").write_text(json.dumps(self.labels.pop(stage, [])))
        # this rank's own confusion-matrix total before the task's epoch end syncs it (callbacks run first):
        # must equal the clips this rank evaluated (states shared between ranks would hold both ranks' clips)
        local = int(pl_module._metrics(stage).confmat.confmat.sum())
        path.with_suffix(".counted.json").write_text(json.dumps(local))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._record("val", batch, pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._record("test", batch, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, "val", pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, "test", pl_module)


class PaddedEvalDataModule(ClipDataModule):
    """Lightning's default behaviour: a plain val/test DataLoader, into which Lightning injects a padding
    ``DistributedSampler`` under DDP (the trap this file documents)."""

    def _loader(self, split: str, train: bool) -> DataLoader:
        if train:
            return super()._loader(split, train)
        return DataLoader(self.datasets[split], batch_size=self.eval_batch_size, shuffle=False, num_workers=0)


def _compose(tmp: Path, root: Path, extra: list[str]) -> DictConfig:
    overrides = [
        "+experiment=dfew_mscm", f"data.root={root}", "data.fold=1", "data.image_size=32",
        "data.datamodule.source.val_from_train=0.2",
        "data.datamodule.sampler.num_segments=4", "data.datamodule.sampler.frames_per_segment=1",
        "data.datamodule.batch_size=2", "data.datamodule.num_workers=0",
        "callbacks=none", "logger=csv", "+trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        f"paths.output_dir={tmp / 'run'}", f"paths.log_dir={tmp / 'logs'}", *extra,
    ]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=overrides)


@torch.no_grad()
def _diverse_weights(cfg: DictConfig) -> dict[str, torch.Tensor]:
    """Task weights whose predictions vary from clip to clip and are mostly (not all) right, without training.

    A random-init network in eval mode tends to predict one class for every clip, which would make the metric
    comparison trivial; training takes minutes on CPU. So the head becomes a nearest-class-mean classifier on
    the random-init features of the *train* clips (eval sampling and transform): ``W[c] = m_c - m``,
    ``b = -W m`` (``m_c`` class mean feature, ``m`` mean feature). Deterministic: one forward pass, no backward.
    """
    pl.seed_everything(0)
    datamodule, task = build(cfg)
    net = task.net.eval()
    train = ClipDataset(datamodule.split_records("train"), datamodule.sampler, datamodule.eval_transform,
                        train=False)
    feats, labels = [], []
    for batch in DataLoader(train, batch_size=8):
        feats.append(net.forward_features(datamodule.on_after_batch_transfer(batch, 0)["video"]))  # (B, F)
        labels.append(batch["label"])
    f, y = torch.cat(feats), torch.cat(labels)  # (N, F), (N,)
    mean = f.mean(dim=0)  # (F,)
    weight = torch.stack([f[y == c].mean(dim=0) - mean for c in range(datamodule.num_classes)])  # (K, F)
    net.head.weight.copy_(weight)
    net.head.bias.copy_(-weight @ mean)
    return {k: v.clone() for k, v in task.state_dict().items()}


def _evaluate(cfg: DictConfig, weights: dict[str, torch.Tensor], devices: int, out: Path) -> dict[str, Any]:
    """``trainer.validate`` and ``trainer.test`` with the real trainer config on ``devices`` CPU processes.

    Returns:
        ``{"val": logged metrics, "test": logged metrics, "val_indices": [...], "test_indices": [...],
        "test_confmat": (K, K) list (single process only)}``; indices are the evaluated dataset indices of all
        ranks, concatenated.
    """
    out.mkdir(parents=True, exist_ok=True)
    datamodule, task = build(cfg)
    task.load_state_dict(weights)
    extra: dict[str, Any] = {"devices": devices}
    if devices > 1:
        extra["strategy"] = "ddp_spawn"  # Lightning's `ddp` would relaunch sys.argv (= pytest)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[IndexRecorder(str(out))], **extra)
    assert trainer.world_size == devices
    val = trainer.validate(task, datamodule=datamodule, verbose=False)[0]
    test = trainer.test(task, datamodule=datamodule, verbose=False)[0]
    result = {"val": val, "test": test, "test_confmat": task.last_test.get("confmat")}
    for stage in ("val", "test"):
        files = sorted(out.glob(f"{stage}_rank?.json"))
        assert len(files) == devices, f"expected one index file per rank, got {files}"
        result[f"{stage}_indices"] = [i for f in files for i in json.loads(f.read_text())]
        result[f"{stage}_per_rank"] = {f.stem: (list(zip(json.loads(f.read_text()),
                                                         json.loads(f.with_suffix(".labels.json").read_text()))),
                                                json.loads(f.with_suffix(".counted.json").read_text()))
                                       for f in files}  # (index, label) and running count per rank, for messages
    return result


# Environment keys a parent process (pytest, after other tests) may carry that steer torch.distributed / Lightning.
_DIST_ENV_PREFIXES = ("MASTER_", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE",
                      "PL_", "SLURM_", "TORCHELASTIC_", "OMPI_", "PMI_")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DIST_ENV_PREFIXES)}
    return env | {"WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}


def _child_main(args: dict[str, Any]) -> None:
    """Entry point of the fresh evaluation process (see :func:`_evaluate_fresh`); writes ``<out>/result.json``."""
    out = Path(args["out"])
    cfg = _compose(Path(args["tmp"]), Path(args["root"]), args["extra"])
    weights = torch.load(args["weights"], weights_only=True)
    if args["mode"] == "evaluate":
        result = _evaluate(cfg, weights, devices=args["devices"], out=out)
    else:  # "validate": the plain (padding) sampler case, validation only
        out.mkdir(parents=True, exist_ok=True)
        datamodule, task = build(cfg)
        task.load_state_dict(weights)
        extra: dict[str, Any] = {"devices": args["devices"]}
        if args["devices"] > 1:
            extra["strategy"] = "ddp_spawn"
        trainer = instantiate(cfg.trainer, logger=False, callbacks=[IndexRecorder(str(out))], **extra)
        result = {"val": trainer.validate(task, datamodule=datamodule, verbose=False)[0]}
    (out / "result.json").write_text(json.dumps(result, default=float))


def _evaluate_fresh(tmp: Path, root: Path, extra: list[str], weights: Path, devices: int, out: Path,
                    mode: str = "evaluate") -> dict[str, Any]:
    """Run the evaluation in a fresh Python process with a clean distributed environment, as a user's run is.

    History: inside pytest, these evaluations intermittently counted one clip less than they evaluated. The cause
    was not pytest: ``ddp_spawn`` moved the task's metric states into shared memory, so both ranks updated one
    confusion matrix (counts doubled by the cross-process sum, ratios unchanged; an increment lost when both ranks
    added at once). ``RecognitionTask.setup`` now gives every process private states, and the per-rank count
    assertion in ``test_ddp_eval_equals_single_process`` fails without it.
    """
    args = {"tmp": str(tmp), "root": str(root), "extra": extra, "weights": str(weights), "devices": devices,
            "out": str(out), "mode": mode}
    code = "import json, sys; from tests.test_ddp import _child_main; _child_main(json.loads(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=REPO, env=_clean_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads((out / "result.json").read_text())


def _recognition_metrics(logged: dict[str, float], stage: str) -> dict[str, float]:
    """UAR, WAR and per-class recalls of ``stage``.

    ``{stage}/loss`` is left out: it is logged with ``self.log(..., sync_dist=True)``, which averages the per-rank
    means (4 and 3 clips here), not the clips, so it differs from the single-process loss under uneven shards
    (e.g. 1.958 vs 1.678 in this set-up). Exact alternative: a torchmetrics ``MeanMetric`` weighted by the batch
    size (sums synchronised across ranks).
    """
    keys = {k: v for k, v in logged.items() if k.startswith(f"{stage}/") and k != f"{stage}/loss"}
    assert {f"{stage}/uar", f"{stage}/war"} <= set(keys), f"missing metrics in {sorted(logged)}"
    return keys


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("ddp")
    root = make_miniature_dfew(tmp / "DFEW", clips_per_class=CLIPS_PER_CLASS, num_frames=4, size=32)
    cfg = _compose(tmp, root, [])
    weights = tmp / "weights.pt"
    torch.save(_diverse_weights(cfg), weights)
    return tmp, root, weights


@pytest.fixture(scope="module")
def single(setup: tuple[Path, Path, Path]) -> dict[str, Any]:
    """One process evaluating val and test (a fresh interpreter), the reference of both DDP tests."""
    tmp, root, weights = setup
    return _evaluate_fresh(tmp, root, [], weights, devices=1, out=tmp / "single")


def test_ddp_eval_equals_single_process(setup: tuple[Path, Path, Path], single: dict[str, Any]) -> None:
    tmp, root, weights = setup
    n_val, n_test = len(single["val_indices"]), len(single["test_indices"])
    # the point of the test: sizes not divisible by the world size, so padding would show
    assert n_val % WORLD_SIZE == 1 and n_test % WORLD_SIZE == 1, (n_val, n_test)
    # precondition: predictions are not trivial (several predicted classes, neither all right nor all wrong)
    confmat = torch.tensor(single["test_confmat"])
    assert (confmat.sum(dim=0) > 0).sum() >= 2, f"one predicted class only:\n{confmat}"
    assert 0.0 < single["test"]["test/war"] < 1.0 and 0.0 < single["val"]["val/war"] < 1.0

    ddp = _evaluate_fresh(tmp, root, [], weights, devices=WORLD_SIZE, out=tmp / "ddp")
    for stage, n in (("val", n_val), ("test", n_test)):
        # every clip evaluated exactly once across the two ranks
        assert sorted(ddp[f"{stage}_indices"]) == list(range(n)), ddp[f"{stage}_indices"]
        # each rank's metric state holds its own clips only (ddp_spawn shares tensors between processes)
        for rank, (pairs, local) in ddp[f"{stage}_per_rank"].items():
            assert local == len(pairs), f"{stage} {rank}: confusion matrix holds {local} clips, evaluated {len(pairs)}"
        # ... hence identical UAR, WAR and per-class recall: exact float equality, not approx
        assert _recognition_metrics(ddp[stage], stage) == _recognition_metrics(single[stage], stage), (
            f"{stage}: (index, label) evaluated per rank {ddp[f'{stage}_per_rank']}; single process "
            f"{single[f'{stage}_per_rank']}")


def test_plain_distributed_sampler_would_skew_metrics(setup: tuple[Path, Path, Path],
                                                     single: dict[str, Any]) -> None:
    """Documents the trap: without an unrepeated sampler, Lightning pads val with a duplicate and WAR changes."""
    tmp, root, weights = setup
    target = f"{PaddedEvalDataModule.__module__}.{PaddedEvalDataModule.__qualname__}"
    padded = _evaluate_fresh(tmp, root, [f"data.datamodule._target_={target}"], weights, devices=WORLD_SIZE,
                             out=tmp / "padded", mode="validate")["val"]
    seen = [i for f in sorted((tmp / "padded").glob("val_rank?.json")) for i in json.loads(f.read_text())]
    n_val = max(seen) + 1
    assert len(seen) == n_val + 1 and len(set(seen)) == n_val, f"expected exactly one duplicate, saw {seen}"

    single = single["val"]  # the same config and weights in one process
    # WAR = c / 7 without padding, (c + d) / 8 with it (d in {0, 1}): equal only if c = 7 d, i.e. 0 or 1
    assert 0.0 < single["val/war"] < 1.0
    per_rank = {f.stem: (list(zip(json.loads(f.read_text()), json.loads(f.with_suffix(".labels.json").read_text()))),
                         json.loads(f.with_suffix(".counted.json").read_text()))
                for f in sorted((tmp / "padded").glob("val_rank?.json"))}
    assert padded["val/war"] != single["val/war"], f"padded {padded}; (index, label) per rank {per_rank}"


def test_cli_ddp_run_equals_single_process_eval_of_its_checkpoint(tmp_path: Path) -> None:
    """The path users run: ``python -m fertrain ... trainer=ddp`` (Lightning's ``ddp`` relaunches the command for
    rank 1, which composes the same deterministic run directory) on 2 CPU processes. Its ``val_last`` and
    ``test_last`` (from ``summary.json``) must equal one process evaluating the ``last.ckpt`` it wrote. Val and
    test have 7 clips each (odd), so padding would change WAR even if every clip got the same prediction."""
    root = make_miniature_dfew(tmp_path / "DFEW", clips_per_class=CLIPS_PER_CLASS, num_frames=4, size=32)
    common = [f"data.root={root}", "data.fold=1", "data.image_size=32", "data.datamodule.source.val_from_train=0.2",
              "data.datamodule.sampler.num_segments=4", "data.datamodule.sampler.frames_per_segment=1",
              "data.datamodule.batch_size=2", "debug=limit", "trainer.limit_val_batches=1.0",
              "trainer.limit_test_batches=1.0"]
    env = dict(os.environ, WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "fertrain", "+experiment=dfew_mscm", *common, "trainer=ddp",
                           "trainer.accelerator=cpu", "trainer.precision=32-true", f"paths.log_dir={tmp_path / 'logs'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    run_dir = tmp_path / "logs" / "dfew_mscm" / "fold1_seed42"
    assert (run_dir / "train_ddp_process_1.log").is_file(), "rank 1 did not run in the same run directory"
    summary = json.loads((run_dir / "summary.json").read_text())
    last = run_dir / "checkpoints" / "last.ckpt"

    cfg = _compose(tmp_path, root, ["data.fold=1", "debug=limit", "trainer.limit_val_batches=1.0",
                                    "trainer.limit_test_batches=1.0"])
    datamodule, task = build(cfg)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    val = trainer.validate(task, datamodule=datamodule, ckpt_path=str(last), verbose=False)[0]
    test = trainer.test(task, datamodule=datamodule, ckpt_path=str(last), verbose=False)[0]
    assert (summary["val_last"]["uar"], summary["val_last"]["war"]) == (val["val/uar"], val["val/war"])
    assert (summary["test_last"]["uar"], summary["test_last"]["war"]) == (test["test/uar"], test["test/war"])
