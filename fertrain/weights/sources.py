"""Weights that libraries distribute: torchvision's weights enums (through torchvision's own cache) and timm.

torchvision: ``torchvision.models.get_weight("ResNet18_Weights.IMAGENET1K_V1")`` names the file
(``Weights.url``); ``torch.hub`` keeps it in ``<torch.hub.get_dir()>/checkpoints/<file name>``
(``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``). A cached file is read from there
without any network access; its sha256 must start with the hash torchvision puts in the file name
(``resnet18-f37072fd.pth``: ``f37072fd``; ``torch.hub.load_state_dict_from_url(check_hash=True)`` semantics). A file
not in the cache is downloaded by torchvision (``Weights.get_state_dict``) when ``download`` is true, i.e. only
through torchvision, into its cache; offline, the error names the URL and the cache path.

timm (optional, imported only for ``source: timm``): ``timm.create_model(name, pretrained=True)`` through
timm's own cache (Hugging Face Hub); its ResNet-18 keys are torchvision's (``conv1``, ``bn1``, ``layer1`` ..,
``fc``).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch

from fertrain.weights.loader import extract_state_dict, read_checkpoint, sha256_of
from fertrain.weights.spec import WeightsError, WeightsSpec

HASH_IN_NAME = torch.hub.HASH_REGEX  # torch.hub's rule: the hex digits after the last "-" before the extension


def torchvision_weights(enum_name: str):
    """The torchvision weights enum member of ``"ResNet18_Weights.IMAGENET1K_V1"``.

    Raises:
        WeightsError: torchvision does not know the name.
    """
    from torchvision.models import get_weight

    try:
        return get_weight(enum_name)
    except (ValueError, KeyError, AttributeError) as err:
        raise WeightsError(f"torchvision has no weights {enum_name!r} ({err}); e.g. ResNet18_Weights.IMAGENET1K_V1, "
                           "R3D_18_Weights.KINETICS400_V1, R2Plus1D_18_Weights.KINETICS400_V1") from None


def torchvision_normalization(enum_name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` of the eval transform torchvision attaches to a weights enum (``Weights.transforms()``)."""
    preset = torchvision_weights(enum_name).transforms()
    return tuple(float(v) for v in preset.mean), tuple(float(v) for v in preset.std)


def check_declared_normalization(spec: WeightsSpec, mean: tuple[float, ...], std: tuple[float, ...], who: str) -> None:
    """The entry's declared mean/std must be the library's own.

    Raises:
        WeightsError: they differ (message names both).
    """
    if spec.mean is None or spec.std is None:
        return
    if any(abs(a - b) > 1e-6 for a, b in zip(spec.mean + spec.std, mean + std)) or len(spec.mean) != len(mean):
        raise WeightsError(f"weights entry {spec.name!r} declares mean={list(spec.mean)} std={list(spec.std)}, but "
                           f"{who} was trained with mean={list(mean)} std={list(std)}: fix the entry")


def torchvision_cache_path(enum_name: str) -> Path:
    """Where torchvision's cache keeps the file of a weights enum (it may not exist)."""
    url = torchvision_weights(enum_name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def check_hash_prefix(path: Path) -> str:
    """sha256 of a cached torchvision file, checked against the hash prefix in its name.

    Raises:
        WeightsError: the digest does not start with the prefix (message names the file and both values).
    """
    digest = sha256_of(path)
    m = HASH_IN_NAME.search(path.name)
    if m and not digest.startswith(m.group(1)):
        raise WeightsError(f"{path}: sha256 {digest} does not start with {m.group(1)}, the hash in torchvision's "
                           "file name: a damaged or different file in torchvision's cache. Delete it (torchvision "
                           "downloads it again when online), or set weights.check_hash=false to use it anyway")
    return digest


def torchvision_state(spec: WeightsSpec) -> tuple[dict[str, torch.Tensor], str, str, str | None]:
    """``(state, file, format, sha256)`` of a torchvision entry (cache first; download only if allowed).

    Raises:
        WeightsError: unknown enum; not cached and ``download`` false; the download failed (offline); a cached
            file whose hash does not match its name (with ``check_hash``).
    """
    weights = torchvision_weights(str(spec.torchvision))
    mean, std = torchvision_normalization(str(spec.torchvision))
    check_declared_normalization(spec, mean, std, f"torchvision {spec.torchvision}")
    path = torchvision_cache_path(str(spec.torchvision))
    if not path.is_file():
        if not spec.download:
            raise WeightsError(f"weights {spec.name!r} ({spec.torchvision}): {path} is not in torchvision's cache and "
                               f"weights.download=false. Run once with a network connection (torchvision downloads "
                               f"{weights.url} into its cache), or copy that file to {path}")
        try:
            weights.get_state_dict(progress=True, check_hash=spec.check_hash)  # torchvision's own download + cache
        except Exception as err:  # noqa: BLE001 - network errors of any kind become one message
            raise WeightsError(f"weights {spec.name!r} ({spec.torchvision}): not in torchvision's cache ({path}) and "
                               f"the download of {weights.url} failed ({type(err).__name__}: {err}). Offline: copy "
                               f"the file to {path} (or set TORCH_HOME to a folder whose hub/checkpoints has "
                               "it)") from None
    digest = check_hash_prefix(path) if spec.check_hash else sha256_of(path)
    if spec.sha256 and digest != spec.sha256:
        raise WeightsError(f"{path}: sha256 {digest} differs from the entry {spec.name!r} ({spec.sha256})")
    state, fmt = extract_state_dict(read_checkpoint(path, spec.weights_only), str(path))
    return state, str(path), f"torchvision {spec.torchvision}, {fmt}", digest


def timm_state(spec: WeightsSpec) -> tuple[dict[str, torch.Tensor], str, str, str | None]:
    """``(state, name, format, None)`` of a timm entry: ``timm.create_model(spec.timm, pretrained=True)``.

    Raises:
        WeightsError: timm is not installed (it is optional: ``pip install timm``), or timm cannot create or
            download the model (message names it).
    """
    try:
        import timm  # optional: imported only when a timm entry is used
    except ImportError:
        raise WeightsError(f"weights {spec.name!r} come from timm ({spec.timm}), but timm is not installed: it is "
                           "optional in fertrain; `pip install timm` (or `pip install fertrain[timm]`)") from None
    previous = os.environ.get("HF_HUB_OFFLINE")
    if not spec.download:
        os.environ["HF_HUB_OFFLINE"] = "1"  # timm then reads its Hugging Face cache only
    try:
        model = timm.create_model(str(spec.timm), pretrained=True)
    except Exception as err:  # noqa: BLE001 - one message naming the model
        raise WeightsError(f"weights {spec.name!r}: timm could not create {spec.timm!r} with pretrained weights "
                           f"({type(err).__name__}: {err})") from None
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if "mean" in cfg and "std" in cfg:
        check_declared_normalization(spec, tuple(map(float, cfg["mean"])), tuple(map(float, cfg["std"])),
                                     f"timm {spec.timm}")
    state, _ = extract_state_dict(model.state_dict(), f"timm:{spec.timm}")
    return state, f"timm:{spec.timm}", "timm pretrained model state_dict", None


__all__ = ["torchvision_state", "timm_state", "torchvision_cache_path", "torchvision_weights", "read_checkpoint"]
