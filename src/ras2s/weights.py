"""Named weights for RAS2S, and the converter from the authors' checkpoint layout.

Names:

``default``
    Weights trained by this project, shipped inside the package with a JSON card.
``official``
    The authors' released checkpoint (``checkpoints/s2s.pth`` of MIV-XJTU/RAS2S at commit
    a45a373). Looked up, in order: the path in ``$RAS2S_OFFICIAL_WEIGHTS``; the user cache
    (``<user cache dir>/ras2s/s2s_official.pth``); otherwise downloaded from its public URL
    only when asked (``download=True``, or ``ras2s weights download official``). Every
    source is verified by sha256.

Anything else is a path to a checkpoint in either layout: ours (``{"format": "ras2s",
"config": ..., "state_dict": ...}``, written by :func:`save_weights` or ``ras2s export``),
or the authors' (``{"net": state_dict, ...}`` or a bare state dict with their key names).

Loading is strict: every tensor of the checkpoint must map onto exactly one parameter of
the network with the same shape, and every parameter must be filled; otherwise a
:class:`~ras2s.errors.WeightsError` names the key.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from .errors import OutputError, WeightsError
from .io import atomic_path, sha256_file, write_atomically
from .model import RAS2S, RAS2SConfig
from .precision import apply_precision

OFFICIAL_URL = (
    "https://github.com/MIV-XJTU/RAS2S/raw/a45a373e79b1ff2f62db9595f085d32647c7907d/"
    "checkpoints/s2s.pth"
)
OFFICIAL_SHA256 = "eeae0f8f6d34fcc61c55c8c97c921d84fd0a375645e93686c891868e78a2da8e"
OFFICIAL_ENV = "RAS2S_OFFICIAL_WEIGHTS"
DEFAULT_RESOURCE = "default.pt"


@dataclass(frozen=True)
class NamedWeights:
    """A registry entry: where a named set of weights comes from."""

    name: str
    description: str
    sha256: str | None = None
    url: str | None = None
    env: str | None = None
    resource: str | None = None


REGISTRY: dict[str, NamedWeights] = {
    "default": NamedWeights(
        "default",
        "trained by the ras2s project, shipped in the package (see its card)",
        resource=DEFAULT_RESOURCE,
    ),
    "official": NamedWeights(
        "official",
        "the authors' released checkpoint (MIV-XJTU/RAS2S @ a45a373, checkpoints/s2s.pth)",
        sha256=OFFICIAL_SHA256,
        url=OFFICIAL_URL,
        env=OFFICIAL_ENV,
    ),
}


def cache_dir() -> Path:
    """The user cache folder of ras2s (``$RAS2S_CACHE`` overrides it)."""
    if os.environ.get("RAS2S_CACHE"):
        return Path(os.environ["RAS2S_CACHE"])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ras2s"))


def _verified(path: Path, spec: NamedWeights, origin: str) -> Path:
    if spec.sha256 is not None and sha256_file(path) != spec.sha256:
        raise WeightsError(
            f"{path} ({origin}) does not match the sha256 of the {spec.name!r} weights "
            f"({spec.sha256[:12]}...): the file is corrupt or a different checkpoint"
        )
    return path


def download(name: str = "official", *, force: bool = False) -> Path:
    """Download named weights into the user cache, verify their sha256, return the path."""
    spec = _spec(name)
    if spec.url is None:
        raise WeightsError(f"the {name!r} weights have no download URL")
    target = cache_dir() / f"s2s_{name}.pth"
    if target.exists() and not force:
        return _verified(target, spec, "cache")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(target.parent, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as err:
        raise WeightsError(
            f"cache folder {target.parent} is not usable ({type(err).__name__}: "
            f"{err.strerror or err}); set $RAS2S_CACHE to a writable folder"
        ) from None
    try:
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(spec.url, timeout=60) as src:
                while block := src.read(1 << 20):
                    out.write(block)
            _verified(tmp, spec, f"downloaded from {spec.url}")
    except OutputError as err:  # the download itself failed (atomic_path words it so)
        raise WeightsError(
            f"could not download the {name!r} weights from {spec.url}: {err.__cause__ or err}"
        ) from None
    return target


def _spec(name: str) -> NamedWeights:
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(
            f"unknown weights name {name!r}; known names: {', '.join(REGISTRY)}, or a file path"
        ) from None


def resolve(weights: str | os.PathLike, *, download_missing: bool = False) -> Path:
    """The checkpoint file behind a weights name or path.

    Raises
    ------
    WeightsError
        When the name is unknown, the file is missing or fails its sha256 check, or the
        ``official`` weights are neither configured, cached nor allowed to download.
    """
    if isinstance(weights, os.PathLike) or str(weights) not in REGISTRY:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(
                f"weights {str(weights)!r}: no such file, and not a known name "
                f"({', '.join(REGISTRY)})"
            )
        return path
    spec = REGISTRY[str(weights)]
    if spec.resource is not None:
        resource = resources.files("ras2s") / "weights_data" / spec.resource
        if not resource.is_file():
            raise WeightsError(
                "the 'default' weights are not available in this version of ras2s yet; "
                "use weights='official' (the authors' checkpoint: set $RAS2S_OFFICIAL_WEIGHTS "
                "to its path or run `ras2s weights download official`) or a checkpoint path"
            )
        return Path(str(resource))
    if spec.env and os.environ.get(spec.env):
        path = Path(os.environ[spec.env])
        if not path.is_file():
            raise WeightsError(f"${spec.env} points to {path}, which is not a file")
        return _verified(path, spec, f"${spec.env}")
    cached = cache_dir() / f"s2s_{spec.name}.pth"
    if cached.is_file():
        return _verified(cached, spec, "cache")
    if download_missing:
        return download(spec.name)
    raise WeightsError(
        f"the {spec.name!r} weights are not on this machine: set ${spec.env} to the path of "
        f"the checkpoint, or run `ras2s weights download {spec.name}` (or pass "
        f"download=True) to fetch it from {spec.url}"
    )


# ---------------------------------------------------------------------------------------
# The authors' checkpoint layout -> ours


def _official_key_map(config: RAS2SConfig) -> dict[str, tuple[list[str], Callable]]:
    """Our parameter name -> (the authors' parameter names, how to combine them)."""
    same = lambda tensors: tensors[0]  # noqa: E731
    concat = lambda tensors: torch.cat(tensors, dim=0)  # noqa: E731
    table: dict[str, tuple[list[str], Callable]] = {}

    def conv(ours: str, theirs: str, bias: bool = True) -> None:
        table[f"{ours}.weight"] = ([f"{theirs}.weight"], same)
        if bias:
            table[f"{ours}.bias"] = ([f"{theirs}.bias"], same)

    def compensation(ours: str, theirs: str) -> None:
        for mine, their in (("query", "q"), ("key", "k"), ("value", "v")):
            conv(f"{ours}.{mine}", f"{theirs}.{their}")
        for block in (0, 1):
            for layer in ("conv1", "conv2"):
                conv(f"{ours}.refine.{block}.{layer}", f"{theirs}.res.{block}.{layer}")

    def gru(ours: str, theirs: str, fused: bool) -> None:
        for part in ("weight", "bias"):
            table[f"{ours}.gates.{part}"] = (
                [f"{theirs}.conv_gru.convz.{part}", f"{theirs}.conv_gru.convr.{part}"],
                concat,
            )
        conv(f"{ours}.candidate", f"{theirs}.conv_gru.convq")
        if fused:
            conv(f"{ours}.fuse", f"{theirs}.fusion")

    regions, channels = config.regions, config.channels
    conv("encoder.embed.conv1", "encoder.conv_inp_1")
    conv("encoder.embed.conv2", "encoder.conv_inp_2")
    compensation("encoder.compensate", "encoder.corr")
    gru("encoder.descending", "encoder.encoder_layer", fused=False)
    gru("encoder.ascending", "encoder.encoder_layer1_b", fused=True)
    ssra = "encoder.ssra.ssra"
    conv("encoder.regions.filter_context", f"{ssra}.conv_kernel.1")
    conv("encoder.regions.filter_bank", f"{ssra}.conv_kernel.3")
    table["encoder.regions.spatial_classifier.weight"] = (
        [f"{ssra}.spatial_guide.b.weight"],
        lambda t: t[0].reshape(regions, channels, 3, 3),
    )
    table["encoder.regions.spatial_classifier.bias"] = (
        [f"{ssra}.spatial_guide.b.bias"],
        lambda t: t[0].reshape(regions),
    )
    conv("encoder.regions.spatial_classifier.routing.squeeze", f"{ssra}.spatial_guide.b_rf.a")
    conv(
        "encoder.regions.spatial_classifier.routing.excite",
        f"{ssra}.spatial_guide.b_rf.b",
        bias=False,
    )
    conv("encoder.regions.spectral_classifier", f"{ssra}.spectral_guide.fc1")
    conv("encoder.regions.fuse", f"{ssra}.fution_ss")

    conv("decoder.attend.score", "decoder.attention.conv1")
    compensation("decoder.compensate", "decoder.corr")
    gru("decoder.descending", "decoder.convgru_layers", fused=False)
    gru("decoder.ascending", "decoder.decoder_layer1_b", fused=True)
    conv("decoder.merge_feedback", "decoder.fution_layers")
    conv("decoder.embed_output.conv1", "decoder.conv_inp_1")
    conv("decoder.embed_output.conv2", "decoder.conv_inp_2")
    for i in (1, 2, 3):
        conv(f"decoder.head.conv{i}", f"decoder.conv_out_{i}")
    return table


# Shapes the authors' layout stores where ours differs (checked before reshaping).
def _official_shape(key: str, config: RAS2SConfig) -> tuple[int, ...] | None:
    if key.endswith("spatial_guide.b.weight"):
        return (1, config.regions, config.channels, 3, 3)
    if key.endswith("spatial_guide.b.bias"):
        return (1, config.regions)
    return None


def _official_config(state: dict[str, torch.Tensor], origin: str) -> RAS2SConfig:
    try:
        channels = state["encoder.conv_inp_1.weight"].shape[0]
        regions = state["encoder.ssra.ssra.spectral_guide.fc1.weight"].shape[0]
        window = state["decoder.attention.conv1.weight"].shape[0]
    except KeyError as err:
        raise WeightsError(f"{origin}: authors' checkpoint lacks {err.args[0]!r}") from None
    return RAS2SConfig(channels=channels, regions=regions, reach=(window - 1) // 2)


def convert_official(
    state: dict[str, torch.Tensor], *, origin: str = "checkpoint"
) -> tuple[RAS2SConfig, dict[str, torch.Tensor]]:
    """Map the authors' flat state dict onto ours.

    Every key of ``state`` must be used exactly once and every parameter of ours filled,
    with matching shapes; otherwise :class:`WeightsError` names the offending key.
    """
    config = _official_config(state, origin)
    expected = RAS2S(config).state_dict()
    table = _official_key_map(config)
    unused = set(state)
    converted: dict[str, torch.Tensor] = {}
    for ours, (theirs, combine) in table.items():
        for key in theirs:
            if key not in state:
                raise WeightsError(f"{origin}: missing key {key!r} (needed for {ours!r})")
            want = _official_shape(key, config)
            if want is not None and tuple(state[key].shape) != want:
                raise WeightsError(
                    f"{origin}: key {key!r} has shape {tuple(state[key].shape)}, expected {want}"
                )
            unused.discard(key)
        tensor = combine([state[k] for k in theirs])
        if tuple(tensor.shape) != tuple(expected[ours].shape):
            raise WeightsError(
                f"{origin}: key {theirs[0]!r} gives shape {tuple(tensor.shape)} for {ours!r}, "
                f"expected {tuple(expected[ours].shape)}"
            )
        converted[ours] = tensor
    if unused:
        raise WeightsError(f"{origin}: unexpected keys {sorted(unused)}")
    missing = set(expected) - set(converted)
    if missing:  # the table must cover the whole network; this guards its upkeep
        raise WeightsError(f"{origin}: no source for parameters {sorted(missing)}")
    return config, converted


def _checked_load(model: RAS2S, state: dict[str, torch.Tensor], origin: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise WeightsError(f"{origin}: missing key {missing[0]!r} ({len(missing)} missing)")
    if unexpected:
        raise WeightsError(f"{origin}: unexpected key {unexpected[0]!r} ({len(unexpected)} in all)")
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise WeightsError(f"{origin}: key {key!r} holds {type(tensor).__name__}, not a tensor")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise WeightsError(
                f"{origin}: key {key!r} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise WeightsError(
                f"{origin}: key {key!r} holds {bad} NaN or Inf values; the checkpoint is "
                "corrupt (or comes from a diverged training run)"
            )
    model.load_state_dict(state, strict=True)


def _load_failure(err: Exception) -> str:
    """One line on why ``torch.load`` failed, without torch's advice to unpickle code."""
    text = str(err)
    if "Unsupported global" in text:
        return (
            "holds Python objects besides tensors (a pickled model or training state); "
            "ras2s loads only tensors, never code: save a state dict, or use `ras2s export`"
        )
    _, marker, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (rest if marker else text).splitlines() if line.strip()]
    reason = next((line for line in lines if "weights_only" not in line), "")
    detail = f"{type(err).__name__}: {reason[:200]}" if reason else type(err).__name__
    return f"not a readable PyTorch checkpoint ({detail})"


def read_checkpoint(path: Path) -> tuple[RAS2SConfig, dict[str, torch.Tensor], dict]:
    """Read a checkpoint of either layout: ``(config, our state dict, card)``."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files
        raise WeightsError(f"{path}: {_load_failure(err)}") from None
    if not isinstance(raw, dict):
        raise WeightsError(f"{path}: a checkpoint must hold a dict, found {type(raw).__name__}")
    if raw.get("format") == "ras2s":
        try:
            config = RAS2SConfig(**raw["config"])
            return config, raw["state_dict"], raw.get("card", {})
        except (KeyError, TypeError, ValueError) as err:
            raise WeightsError(f"{path}: malformed ras2s checkpoint ({err})") from None
    state = raw.get("net", raw)
    if not isinstance(state, dict) or "encoder.corr.k.weight" not in state:
        raise WeightsError(
            f"{path}: neither a ras2s checkpoint nor the authors' layout "
            f"(top-level keys: {sorted(map(str, raw))[:8]})"
        )
    config, converted = convert_official(state, origin=str(path))
    card = {"source": "authors' checkpoint layout", "epoch": raw.get("epoch")}
    return config, converted, card


def load_model(
    weights: str | os.PathLike = "default",
    device: str | torch.device = "cpu",
    *,
    download: bool = False,
    precision: str = "auto",
) -> RAS2S:
    """Build RAS2S with the given weights, in eval mode, on ``device``.

    Parameters
    ----------
    weights:
        ``"default"``, ``"official"``, or a path to a checkpoint (ours or the authors').
    device:
        A torch device (``"cpu"``, ``"cuda"``, ...).
    download:
        Allow downloading the ``official`` weights when they are not configured or cached.
    precision:
        ``"auto"`` (default: bfloat16 where ``device`` computes it natively, else
        float32), ``"fp32"`` or ``"bf16"``; see :mod:`ras2s.precision`. The choice is in
        ``model.precision``.

    Returns
    -------
    RAS2S
        Its ``forward`` takes a float tensor ``(N, bands, H, W)`` in the normalised range
        (about [0, 1]) and returns the denoised tensor of the same shape and dtype (it
        computes in the model's precision). The model card is in ``model.card``.

    Examples
    --------
    >>> import os, torch, ras2s
    >>> model = ras2s.load_model("official")  # doctest: +SKIP
    >>> model(torch.rand(1, 31, 64, 64)).shape  # doctest: +SKIP
    torch.Size([1, 31, 64, 64])
    """
    path = resolve(weights, download_missing=download)
    config, state, card = read_checkpoint(path)
    model = RAS2S(config)
    _checked_load(model, state, str(path))
    model.card = {"weights": str(weights), "path": str(path), **card}
    return apply_precision(model.eval(), precision, device)


def save_weights(
    model: RAS2S, path: str | os.PathLike, card: dict | None = None, *, force: bool = True
) -> Path:
    """Write an inference checkpoint in our layout, atomically; return its path.

    The tensors are stored as contiguous float32 whatever the model's precision and
    memory format. The file is flushed to the disk before it takes its name (see
    :func:`ras2s.io.write_atomically`); ``force=False`` never replaces a file that
    exists when the write ends (:class:`~ras2s.errors.OutputError`).
    """
    path = Path(path)
    state = {k: v.detach().cpu().float().contiguous() for k, v in model.state_dict().items()}
    payload = {
        "format": "ras2s",
        "config": model.config.to_dict(),
        "state_dict": state,
        "card": json.loads(json.dumps(card or {})),
    }

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object: torch rejects dot-file names
            torch.save(payload, handle)

    return write_atomically(path, save, force=force)
