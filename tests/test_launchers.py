"""Launchers and multi-process set-ups: the Slurm (submitit) and joblib Hydra launchers, ``trainer=slurm``
(Lightning's SLURMEnvironment with auto-requeue), the sbatch template, and the guard against Lightning-launched
DDP inside a multirun. No Slurm cluster and no GPU needed: submission and ``srun`` are stand-ins."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fertrain.checkpoint_io import AtomicCheckpointIO
from fertrain.config import config_dir
from fertrain.train import check_multirun_ddp

REPO = Path(__file__).resolve().parents[1]
CONF = config_dir()


def _compose(overrides: list[str], hydra_cfg: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=hydra_cfg)


def _fake_srun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``srun`` on PATH that records its arguments (one per line) in ``<tmp>/srun_args``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "srun_args"}\n')
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "srun_args"


def test_slurm_launcher_composes_and_writes_the_expected_sbatch(tmp_path: Path, monkeypatch) -> None:
    import submitit

    cfg = _compose(["+experiment=dfew_mscm", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                    "hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=4", f"paths.log_dir={tmp_path}"],
                   hydra_cfg=True)
    launcher_cfg = cfg.hydra.launcher
    assert launcher_cfg._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher_cfg.partition, launcher_cfg.nodes, launcher_cfg.gpus_per_node) == ("gpu", 2, 4)
    assert launcher_cfg.tasks_per_node == 4, "one task (DDP rank) per GPU"
    assert launcher_cfg.cpus_per_task and launcher_cfg.mem_gb and launcher_cfg.timeout_min
    assert launcher_cfg.max_num_timeout > 0, "requeue after a timeout/preemption"

    # the real plugin builds the submitit executor; only the submission itself is replaced
    _fake_srun(tmp_path, monkeypatch)  # submitit's SlurmExecutor refuses to start without srun on PATH
    captured = {}

    def fake_map_array(self, fn, *iterables):
        captured["executor"] = self
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", fake_map_array)
    launcher = instantiate(launcher_cfg)
    launcher.setup(hydra_context=None, task_function=lambda c: None, config=cfg)
    launcher.launch([["seed=1"]], initial_job_idx=0)
    executor = captured["executor"]._executor
    sbatch = executor._make_submission_file_text("python -m fertrain", "uid")
    for line in ("--partition=gpu", "--nodes=2", "--gpus-per-node=4", "--ntasks-per-node=4",
                 f"--cpus-per-task={launcher_cfg.cpus_per_task}", f"--mem={launcher_cfg.mem_gb}GB",
                 f"--time={launcher_cfg.timeout_min}", "--signal=USR2@120"):
        assert f"#SBATCH {line}\n" in sbatch, line
    assert "srun" in sbatch and executor.max_num_timeout == launcher_cfg.max_num_timeout


def test_joblib_launcher_composes_with_n_jobs() -> None:
    cfg = _compose(["+experiment=synthetic_mscm", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], hydra_cfg=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2


@pytest.mark.slow
def test_joblib_multirun_of_two_tiny_jobs(tmp_path: Path) -> None:
    tiny = ["+experiment=synthetic_mscm", "data.datamodule.source.num_train=8", "data.datamodule.source.num_val=4",
            "data.datamodule.source.num_frames=8", "data.datamodule.source.size=48", "data.image_size=48",
            "data.datamodule.sampler.num_segments=2", "data.datamodule.batch_size=4", "debug=limit", "test=false",
            "callbacks.model_checkpoint=null", "~callbacks.rich_progress_bar", "trainer.enable_model_summary=false",
            "data.datamodule.num_workers=0", "model._target_=tests.faults.tiny.TinyVideoNet",  # the launcher is the point
            f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    env = dict(os.environ, WANDB_MODE="offline", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "fertrain", "-m", *tiny, "seed=1,2", "hydra/launcher=joblib",
                           "hydra.launcher.n_jobs=2", "hydra.sweep.subdir=${hydra.job.num}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    sweep = tmp_path / "logs" / "synthetic_mscm" / "multirun"
    summaries = [json.loads((sweep / str(i) / "summary.json").read_text()) for i in (0, 1)]
    assert [s["epochs"] for s in summaries] == [1, 1] and all("val_best" in s for s in summaries)
    seeds = [OmegaConf.load(sweep / str(i) / "config_resolved.yaml").seed for i in (0, 1)]
    assert seeds == [1, 2]


def test_trainer_slurm_requeues_on_sigusr1_and_reads_the_job_shape(monkeypatch) -> None:
    from lightning_fabric.plugins.environments import SLURMEnvironment

    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")
    monkeypatch.setenv("SLURM_NNODES", "2")
    cfg = _compose(["+experiment=dfew_mscm", "trainer=slurm"])
    assert (cfg.trainer.devices, cfg.trainer.num_nodes) == (4, 2)
    assert cfg.trainer.strategy._target_.endswith("DDPStrategy")
    plugins = instantiate(cfg.trainer.plugins)
    env = [p for p in plugins if isinstance(p, SLURMEnvironment)]
    assert len(env) == 1 and env[0].auto_requeue and env[0].requeue_signal == signal.SIGUSR1
    assert any(isinstance(p, AtomicCheckpointIO) for p in plugins), "trainer=slurm keeps atomic checkpoint writes"
    assert [type(p) for p in instantiate(_compose(["trainer=cpu"]).trainer.plugins)] == [AtomicCheckpointIO]


def test_sbatch_template_runs_srun_with_the_job_shape(tmp_path: Path, monkeypatch) -> None:
    script = REPO / "scripts" / "slurm" / "train.sbatch"
    text = script.read_text()
    for line in ("#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue", "#SBATCH --ntasks-per-node=",
                 "#SBATCH --gpus-per-node="):
        assert line in text, line
    args_file = _fake_srun(tmp_path, monkeypatch)
    env = dict(os.environ, SLURM_JOB_ID="7", SLURM_NNODES="2", SLURM_NTASKS_PER_NODE="4", PYTHON="python")
    proc = subprocess.run(["bash", str(script), "+experiment=dfew_mscm", "data.fold=3"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    args = args_file.read_text().splitlines()
    assert args[:4] == ["--kill-on-bad-exit=1", "python", "-m", "fertrain"], shlex.join(args)
    overrides = args[4:]
    assert overrides[-1] == "ckpt_path=last"
    cfg = _compose(overrides)  # what every rank composes
    assert (cfg.trainer.devices, cfg.trainer.num_nodes, cfg.data.fold, cfg.ckpt_path) == (4, 2, 3, "last")


def test_ddp_inside_a_multirun_fails_fast_unless_an_external_launcher_started_it() -> None:
    ddp = _compose(["trainer=ddp"]).trainer
    with pytest.raises(ValueError, match=r"trainer.strategy=pytorch_lightning.strategies.DDPStrategy with "
                                         r"trainer.devices=2 .*inside a Hydra multirun"):
        check_multirun_ddp(ddp, multirun=True, environ={})
    check_multirun_ddp(ddp, multirun=False, environ={})  # a single run: Lightning's relaunch is fine
    for launcher_env in ({"SLURM_NTASKS": "8"}, {"LOCAL_RANK": "0", "WORLD_SIZE": "4"}):  # srun, torchrun
        check_multirun_ddp(ddp, multirun=True, environ=launcher_env)
    check_multirun_ddp(_compose(["trainer=gpu"]).trainer, multirun=True, environ={})  # one job per GPU
    cpu = _compose(["trainer=cpu"]).trainer
    check_multirun_ddp(cpu, multirun=True, environ={})
    for strategy, devices, fails in (("auto", 2, True), ("ddp_find_unused_parameters_true", 2, True),
                                     ("ddp_spawn", 2, False), ("ddp", 1, False), ("fsdp", "0,1", True)):
        trainer = OmegaConf.create({**OmegaConf.to_container(cpu), "strategy": strategy, "devices": devices})
        if fails:
            with pytest.raises(ValueError, match="replays the whole sweep"):
                check_multirun_ddp(trainer, multirun=True, environ={})
        else:
            check_multirun_ddp(trainer, multirun=True, environ={})
    with pytest.raises(ValueError, match="num_nodes=2"):
        check_multirun_ddp(OmegaConf.merge(ddp, {"devices": 1, "num_nodes": 2}), multirun=True, environ={})



def test_cli_cfg_job_and_hydra_show_the_slurm_set_up(tmp_path: Path) -> None:
    """What a user checks before submitting: ``--cfg job`` (resolved, inside a 2-node x 4-GPU Slurm job) and
    ``--cfg hydra`` of ``python -m fertrain ... hydra/launcher=slurm trainer=slurm``."""
    import yaml

    args = [sys.executable, "-m", "fertrain", "+experiment=dfew_mscm", "hydra/launcher=slurm", "trainer=slurm",
            "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4", "hydra.launcher.nodes=2"]
    env = dict(os.environ, SLURM_NTASKS_PER_NODE="4", SLURM_NNODES="2", WANDB_MODE="offline")
    # both at once (each only composes and prints)
    procs = [subprocess.Popen([*args, *extra], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for extra in (["--cfg", "job", "--resolve"], ["--cfg", "hydra"])]
    outs = [p.communicate(timeout=300) for p in procs]
    job, hydra_cfg = (subprocess.CompletedProcess(p.args, p.returncode, out, err) for p, (out, err) in zip(procs, outs))
    assert job.returncode == 0, job.stderr[-3000:]
    trainer = yaml.safe_load(job.stdout)["trainer"]
    assert (trainer["devices"], trainer["num_nodes"]) == (4, 2)  # read from the Slurm job
    assert [p["_target_"].rsplit(".", 1)[-1] for p in trainer["plugins"]] == ["AtomicCheckpointIO",
                                                                            "SLURMEnvironment"]
    assert trainer["plugins"][1]["auto_requeue"] is True
    assert hydra_cfg.returncode == 0, hydra_cfg.stderr[-3000:]
    launcher = yaml.safe_load(hydra_cfg.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["nodes"], launcher["gpus_per_node"]) == ("gpu", 2, 4)
