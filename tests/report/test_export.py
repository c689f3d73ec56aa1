"""``python -m fertrain.export``: ONNX (onnxruntime) and TorchScript exports of MSCM and DMFE give the PyTorch
model's logits within 1e-4 on a random clip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fertrain import export
from tests.helpers import compose_config

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'fertrain[export]')")
pytest.importorskip("onnxscript", reason="onnxscript not installed (pip install 'fertrain[export]')")

MODELS = {  # small but real configs: 4 frames of 32 px for MSCM, one 32 px image for DMFE (cosine head)
    "mscm": ["+experiment=synthetic_mscm", "data.image_size=32", "data.datamodule.sampler.num_segments=4",
             "+model.scales=[[1,1],[1,2]]"],  # 2 correlation scales of 9 displacements: a faster export
    "dmfe": ["+experiment=rafdb_dmfe", "data.root=/nonexistent/RAF-DB", "data.image_size=32"],
}


def fake_checkpoint(tmp_path: Path, name: str) -> tuple[Path, torch.nn.Module]:
    """A checkpoint as ``python -m fertrain`` writes it (resolved config + ``net.*`` weights), random weights."""
    cfg = compose_config(MODELS[name], tmp_path)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    torch.manual_seed(0)
    net = instantiate(OmegaConf.create(resolved["model"])).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics, so eval mode matters
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / name / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"fertrain_config": resolved, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}},
               path)
    return path, net


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mscm", "dmfe"])
def test_onnx_and_torchscript_match_pytorch(tmp_path: Path, name: str) -> None:
    ckpt, net = fake_checkpoint(tmp_path, name)
    shape = (4, 3, 32, 32) if name == "mscm" else (1, 3, 32, 32)
    x = torch.randn((3, *shape), generator=torch.Generator().manual_seed(5))  # batch 3: not the exported batch
    with torch.no_grad():
        ref = net(x).numpy()
    # ONNX through the CLI's code path, then checked here independently with onnxruntime
    assert export.main([f"ckpt={ckpt}", "format=onnx"]) == 0
    onnx_path = ckpt.with_suffix(".onnx")
    meta = json.loads(onnx_path.with_name("last.onnx.json").read_text())
    assert meta["input"]["shape"] == ["B", *shape] and meta["check"]["max_abs_diff"] <= 1e-4
    assert meta["output"]["class_names"] == list(OmegaConf.to_container(compose_config(
        MODELS[name], tmp_path).data.class_names, resolve=True))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"video": x.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    # TorchScript
    out = tmp_path / "ts" / f"{name}.pt"
    assert export.main([f"ckpt={ckpt}", "format=torchscript", f"out={out}"]) == 0
    with torch.no_grad():
        got = torch.jit.load(str(out))(x).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert not list(tmp_path.rglob("*.tmp.*"))


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for argv, message in ((["format=onnx"], "missing ckpt="), ([f"ckpt={tmp_path}/x.ckpt", "format=tflite"],
                                                              "format='tflite'"),
                          (["ckpt=a", "format=onnx", "colour=red"], "unknown key 'colour'"),
                          ([f"ckpt={tmp_path}/x.ckpt", "format=onnx"], "no such checkpoint file")):
        with pytest.raises(SystemExit) as info:
            export.main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("fertrain.export: error: ") and message in err and err.count("\n") == 1


def test_check_failure_is_exit_1_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    ckpt, _ = fake_checkpoint(tmp_path, "dmfe")
    monkeypatch.setattr(export, "run_export", lambda path, fmt, x: np.zeros((2, 7), dtype=np.float32) + 9.0)
    with pytest.raises(SystemExit) as info:
        export.main([f"ckpt={ckpt}", "format=torchscript"])
    assert info.value.code == 1 and "differs from the PyTorch model by" in capsys.readouterr().err
    assert not ckpt.with_suffix(".pt").exists() and not list(ckpt.parent.glob("*.tmp.*"))
