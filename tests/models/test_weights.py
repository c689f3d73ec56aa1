"""Pretrained weights load completely or fail loudly; the input normalisation follows the weights entry.

Every checkpoint here is written from a randomly initialised network (tests/models/checkpoints.py); nothing is
downloaded (``no_downloads`` makes any download attempt fail the test).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest
import torch
import torchvision
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fertrain.models import MSCM, R3D18, FrameMeanResNet18, R2Plus1D18, ResNet18Image
from fertrain.models.ceflnet import CEFLNet
from fertrain.models.dmfe import DMFE
from fertrain.models.fesnet import FESNet
from fertrain.weights import WeightsError, WeightsSpec, generic_spec, known_entries
from fertrain.weights.__main__ import main as weights_cli
from tests.helpers import compose_config
from tests.models.checkpoints import RESNET18_FORMATS, resnet18_source, trunk_of, write_checkpoint

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # (N, 3, H, W) frames


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Tests never download: any torch.hub / torchvision download attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to download {args[:1]}")

    import torchvision.models._api as tv_api

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", refuse)


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    return resnet18_source()


def entry(name: str, **fields) -> WeightsSpec:
    """A conf/weights entry as a spec, with ``fields`` replacing its values (e.g. ``path``)."""
    raw = {k: v for k, v in known_entries()[name].items() if not (isinstance(v, str) and "${" in v)}
    raw.update(fields)
    return WeightsSpec.from_config(raw)


# the entry (and its key rules) each layout is loaded with, and the model it is loaded into
CASES = {
    "torchvision": ("state_dict", {}, lambda w: MSCM(num_classes=3, weights=w)),
    "state_dict_key": ("state_dict", {}, lambda w: FrameMeanResNet18(num_classes=3, weights=w)),
    "emotion_fan": ("emotion_fan_ferplus_resnet18", {}, lambda w: CEFLNet(num_classes=7, weights=w)),
    "ceflnet": ("ceflnet_resnet18", {}, lambda w: CEFLNet(num_classes=7, weights=w)),
    "dataparallel": ("state_dict", {}, lambda w: DMFE(num_classes=7, weights=w)),
    "lightning_model": ("state_dict", {}, lambda w: ResNet18Image(num_classes=7, weights=w)),
    "lightning_fertrain": ("state_dict", {}, lambda w: MSCM(num_classes=3, weights=w)),
    "model_key": ("state_dict", {}, lambda w: ResNet18Image(num_classes=7, weights=w)),
    "renamed": ("state_dict", {"prefix": "encoder.", "rename": {f"stage{i}.": f"layer{i}." for i in range(1, 5)}},
                lambda w: FrameMeanResNet18(num_classes=3, weights=w)),
}
assert set(CASES) == set(RESNET18_FORMATS)


@pytest.mark.parametrize("fmt", RESNET18_FORMATS)
def test_every_layout_loads_all_backbone_tensors_and_reproduces_the_outputs(fmt: str, source, tmp_path: Path) -> None:
    path = write_checkpoint(fmt, source, tmp_path / f"{fmt}.pth")
    name, rules, build = CASES[fmt]
    norm = {} if name != "state_dict" else {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    model = build(dataclasses.replace(entry(name, **norm, **rules), path=str(path))).eval()
    report = model.weights_report
    assert (report["loaded"], report["total"]) == (100, 100), report  # ResNet-18 trunk: 62 params + 38 BN stats
    assert report["file"] == str(path) and report["sha256"] and report["error"] is None
    with torch.no_grad():
        torch.testing.assert_close(model.pretrained_target()(X), trunk_of(source)(X), rtol=0, atol=0)
        if isinstance(model, ResNet18Image):  # the model's own output path: trunk + global average pool
            ref = torch.flatten(source.avgpool(trunk_of(source)(X)), 1)
            torch.testing.assert_close(model.forward_features(X[:, None]), ref, rtol=1e-6, atol=1e-6)
    if fmt in ("emotion_fan", "torchvision"):
        assert report["ignored"] == ["fc.weight", "fc.bias"]  # the FER+ / ImageNet classifier, not loaded
    if fmt == "ceflnet":
        assert sorted(report["ignored"]) == ["fc.bias", "fc.weight", "feature.bias", "feature.weight"]


@pytest.mark.parametrize("cls, builder, arch", [(R3D18, torchvision.models.video.r3d_18, "r3d_18"),
                                                (R2Plus1D18, torchvision.models.video.r2plus1d_18, "r2plus1d_18")])
def test_video_resnets_load_torchvision_files(cls, builder, arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = builder(weights=None).eval()  # with its 400-class fc, as torchvision's Kinetics file
    path = tmp_path / f"{arch}.pth"
    torch.save(src.state_dict(), path)
    model = cls(num_classes=5, weights=generic_spec(path, arch=arch)).eval()
    assert model.weights_report["loaded"] == model.weights_report["total"] > 0
    clip = torch.randn(1, 4, 3, 32, 32)  # (B, T, C, H, W)
    src.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(clip), src(clip.permute(0, 2, 1, 3, 4)), rtol=0, atol=0)
    with pytest.raises(WeightsError, match="hold a resnet18 backbone.*is a " + arch):
        cls(num_classes=5, weights=generic_spec(path))  # a 2-D entry refused by a 3-D model


def test_a_file_with_no_matching_key_fails_naming_file_prefixes_and_fix(source, tmp_path: Path) -> None:
    path = tmp_path / "other_names.pth"
    sd = source.state_dict()
    stem = {"conv1.": "stem_conv.", "bn1.": "stem_bn."}
    torch.save({"encoder." + next((new + k[len(old):] for old, new in stem.items() if k.startswith(old)),
                                  k.replace("layer", "stage")): v for k, v in sd.items()}, path)
    with pytest.raises(WeightsError) as err:
        MSCM(num_classes=3, weights=generic_spec(path, prefix=""))
    msg = str(err.value)
    assert str(path) in msg and "0 of 100 tensors" in msg
    assert "'encoder.' (122 keys: stem_conv, stem_bn, stage1, stage2, stage3, stage4, fc)" in msg  # prefixes found
    fix = re.search(r"(weights\.prefix='encoder\.') (weights\.rename=\[\S+\])", msg)  # the rule that fixes it
    assert fix and "stem_conv.:conv1." in fix.group(2) and "stage4.:layer4." in fix.group(2), msg
    # ... typed on the command line as printed, it really fixes it
    cfg = compose_config(["model=frame_mean", "weights=state_dict", f"weights.path={path}", "weights.mean=[0,0,0]",
                          "weights.std=[1,1,1]", fix.group(1), fix.group(2)], tmp_path)
    assert instantiate(cfg.model).weights_report["loaded"] == 100


def test_a_file_with_half_the_tensors_fails_unless_allowed(source, tmp_path: Path) -> None:
    path = tmp_path / "half.pth"
    torch.save({"module." + k: v for k, v in source.state_dict().items() if not k.startswith(("layer3", "layer4"))},
               path)
    with pytest.raises(WeightsError) as err:
        DMFE(num_classes=7, weights=generic_spec(path))
    msg = str(err.value)
    assert str(path) in msg and "loaded only 50 of 100 tensors" in msg and "(50%)" in msg
    assert "'module.' (62 keys: conv1, bn1, layer1, layer2, fc)" in msg
    assert "weights.allow_missing=[layer3.,layer4.]" in msg
    ok = DMFE(num_classes=7, weights=generic_spec(path, allow_missing=("layer3.", "layer4.*")))
    assert ok.weights_report["loaded"] == 50 and len(ok.weights_report["allowed_missing"]) == 20  # report cut at 20


def test_extra_blocks_shape_mismatches_arch_and_checksum_fail(source, tmp_path: Path) -> None:
    sd = source.state_dict()
    deeper = dict(sd) | {k.replace("layer1.1.", "layer1.2."): v for k, v in sd.items() if k.startswith("layer1.1.")}
    torch.save(deeper, tmp_path / "deeper.pth")  # a ResNet-34-like third block: would load "100%" and drop it
    with pytest.raises(WeightsError, match=r"have no place in .*ResNet deeper than 18 layers.*weights.ignore=\[layer1.\]"):
        MSCM(num_classes=3, weights=generic_spec(tmp_path / "deeper.pth"))
    grey = dict(sd) | {"conv1.weight": sd["conv1.weight"][:, :1]}
    torch.save(grey, tmp_path / "grey.pth")
    with pytest.raises(WeightsError, match=r"conv1.weight \(file conv1.weight: \(64, 1, 7, 7\), backbone: \(64, 3, 7, 7\)\)"):
        MSCM(num_classes=3, weights=generic_spec(tmp_path / "grey.pth"))
    torch.save(sd, tmp_path / "ok.pth")
    with pytest.raises(WeightsError, match="sha256 .* differs from the entry"):
        MSCM(num_classes=3, weights=generic_spec(tmp_path / "ok.pth", sha256="0" * 64))
    with pytest.raises(WeightsError, match="hold a r3d_18 backbone.*MSCM.backbone is a resnet18"):
        MSCM(num_classes=3, weights=entry("kinetics400_r3d18"))
    with pytest.raises(WeightsError, match="does not exist.*download Resnet18_FER\\+_pytorch.pth.tar from https://1drv.ms"):
        CEFLNet(num_classes=7, weights=entry("emotion_fan_ferplus_resnet18", path=str(tmp_path / "absent.pth.tar")))
    with pytest.raises(WeightsError, match="FESNet has no pretrained backbone"):
        FESNet(num_classes=3, weights=generic_spec(tmp_path / "ok.pth"))
    with pytest.raises(WeightsError, match="weights=state_dict weights.path="):
        MSCM(num_classes=3, weights=entry("none"), pretrained_path=str(tmp_path / "ok.pth"))  # old config key


def test_torchvision_entries_come_from_torchvision_cache_only(source, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    spec = entry("imagenet_resnet18", download=False)
    with pytest.raises(WeightsError, match=r"not in torchvision's cache.*download=false.*resnet18-f37072fd.pth"):
        ResNet18Image(num_classes=7, weights=spec)
    with pytest.raises(WeightsError, match="download of https://download.pytorch.org/models/resnet18-f37072fd.pth failed"):
        ResNet18Image(num_classes=7, weights=entry("imagenet_resnet18"))  # download=true: via torchvision (refused here)
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(source.state_dict(), cached)  # random weights under torchvision's name: the hash in the name fails
    with pytest.raises(WeightsError, match="does not start with f37072fd"):
        ResNet18Image(num_classes=7, weights=spec)
    model = ResNet18Image(num_classes=7, weights=dataclasses.replace(spec, check_hash=False)).eval()
    assert model.weights_report["loaded"] == 100 and model.weights_report["file"] == str(cached)
    torch.testing.assert_close(model.backbone(X), trunk_of(source)(X), rtol=0, atol=0)


def test_every_entry_is_valid_and_library_normalisations_match() -> None:
    from fertrain.weights.sources import torchvision_normalization

    entries = known_entries()
    assert {"none", "state_dict", "imagenet_resnet18", "kinetics400_r3d18", "kinetics400_r2plus1d18",
            "emotion_fan_ferplus_resnet18"} <= set(entries)
    for name, raw in entries.items():
        concrete = {k: v for k, v in raw.items() if not (isinstance(v, str) and ("${" in v or v == "???"))}
        spec = WeightsSpec.from_config(concrete)
        assert spec.name == name
        if spec.source == "torchvision":
            mean, std = torchvision_normalization(spec.torchvision)
            assert (list(spec.mean), list(spec.std)) == (list(mean), list(std)), name
            assert spec.file_name in spec.url
        if spec.input_range == (0.0, 1.0):
            assert spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0), name
    fer = entries["emotion_fan_ferplus_resnet18"]  # checked against Open-Debin/Emotion-FAN basic_code/load.py
    assert (fer["file_name"], fer["prefix"], fer["ignore"]) == ("Resnet18_FER+_pytorch.pth.tar", "module.", ["fc."])


def test_timm_is_optional_and_missing_timm_is_one_clear_error(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm":
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(WeightsError, match="timm is not installed.*pip install timm"):
        MSCM(num_classes=3, weights=entry("timm_resnet18"))


# ------------------------------------------------------------------------------------------------ normalisation
@pytest.fixture(scope="module")
def dfew(tmp_path_factory) -> Path:
    from fertrain.data.datasets.dfew import make_miniature_dfew

    return make_miniature_dfew(tmp_path_factory.mktemp("dfew") / "DFEW", clips_per_class=1, num_frames=4, size=40,
                               folds=(1,))


def _normalised_batch(overrides: list[str], tmp_path: Path):
    cfg = compose_config(["data=dfew", "model=frame_mean", "data.image_size=32", "data.datamodule.num_workers=0",
                          "data.datamodule.batch_size=2", *overrides], tmp_path)
    dm = instantiate(cfg.data.datamodule)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    raw = batch["video"].clone()  # uint8 (B, T, C, H, W)
    return cfg, raw, dm.on_after_batch_transfer(batch, 0)["video"]


def test_the_batch_normalisation_is_the_weights_entrys(dfew: Path, source, tmp_path: Path, caplog) -> None:
    fer = write_checkpoint("emotion_fan", source, tmp_path / "Resnet18_FER+_pytorch.pth.tar")
    cfg, raw, x = _normalised_batch([f"data.root={dfew}", "weights=emotion_fan_ferplus_resnet18",
                                     f"weights.path={fer}"], tmp_path)
    assert raw.dtype == torch.uint8 and x.dtype == torch.float32
    torch.testing.assert_close(x, raw.float() / 255)  # the FER+ weights' [0, 1] input: mean 0, std 1
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    model = instantiate(cfg.model)  # the same config loads the weights, and the normalisations agree
    assert model.weights_report["loaded"] == 100 and model.weights_report["normalization"]["matches"]

    _, raw, x = _normalised_batch([f"data.root={dfew}", "weights=imagenet_resnet18"], tmp_path)
    tv = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()  # torchvision's own statistics
    mean, std = torch.tensor(tv.mean).view(3, 1, 1), torch.tensor(tv.std).view(3, 1, 1)
    torch.testing.assert_close(x, (raw.float() / 255 - mean) / std)

    cfg, raw, x = _normalised_batch([f"data.root={dfew}", "weights=emotion_fan_ferplus_resnet18",
                                     f"weights.path={fer}", "data.datamodule.mean=[0.5,0.5,0.5]"], tmp_path)
    torch.testing.assert_close(x, raw.float() / 255 - 0.5)  # the override is applied ...
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["weights"]["applied_mean"] == [0.5, 0.5, 0.5] and resolved["weights"]["mean"] == [0.0] * 3
    with caplog.at_level(logging.WARNING, logger="fertrain.weights.loader"):
        model = instantiate(cfg.model)
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "mean=[0.0, 0.0, 0.0]" in warning[0] and "mean=[0.5, 0.5, 0.5]" in warning[0]
    assert model.weights_report["normalization"]["matches"] is False  # ... and recorded with the load report


def test_model_pretrained_path_in_a_config_says_what_to_use(tmp_path: Path, source) -> None:
    path = write_checkpoint("torchvision", source, tmp_path / "r18.pth")
    cfg = compose_config([f"model.pretrained_path={path}"], tmp_path)
    with pytest.raises(Exception, match=f"weights=state_dict weights.path={path}"):
        instantiate(cfg.model)


# --------------------------------------------------------------------------------------------------------- CLI
def test_inspect_prints_format_prefixes_and_the_dry_run(source, tmp_path: Path, capsys) -> None:
    path = write_checkpoint("emotion_fan", source, tmp_path / "Resnet18_FER+_pytorch.pth.tar")
    assert weights_cli(["inspect", str(path), "--model", "mscm"]) == 0
    out = capsys.readouterr().out
    assert "format:     {'state_dict': ...} checkpoint (other keys: epoch, prec1)" in out
    assert "prefixes:   'module.' (122 keys: conv1, bn1, layer1, layer2, layer3, layer4, fc)" in out
    assert "tensors:    122" in out and "rule:     strip prefix 'module.'" in out
    assert "loaded:   100/100 tensors (100%)" in out and "verdict:  OK" in out

    half = tmp_path / "half.pth"
    torch.save({k: v for k, v in source.state_dict().items() if not k.startswith(("layer3", "layer4"))}, half)
    with pytest.raises(SystemExit) as exit_:
        weights_cli(["inspect", str(half), "--model", "ceflnet"])
    captured = capsys.readouterr()
    assert exit_.value.code == 1 and "verdict:  WOULD FAIL" in captured.out
    errors = [line for line in captured.err.splitlines() if line]
    assert len(errors) == 1 and errors[0].startswith("fertrain.weights: error: ") and str(half) in errors[0]
    with pytest.raises(SystemExit) as exit_:
        weights_cli(["inspect", str(tmp_path / "absent.pth")])
    assert exit_.value.code == 2
    assert weights_cli(["list"]) == 0 and "| emotion_fan_ferplus_resnet18 | file | resnet18 |" in capsys.readouterr().out
