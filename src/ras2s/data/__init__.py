"""Training data: patch extraction from clean cubes, the on-disk patch store, datasets.

``prepare`` turns a folder of clean cubes into a patch store (one raw float32 ``.npy``
per split, read with ``np.load(mmap_mode="r")``, plus ``manifest.json``);
:class:`PatchDataset` serves augmented patches from it without loading it whole;
:class:`MixedBatchSampler` mixes batches of further stores (other band counts) in.
"""

from .augment import augment
from .dataset import EpochSampler, MixedBatchSampler, PatchDataset, StorePatches
from .patches import extract_patches, patch_count, rescale
from .prepare import BAND_RULES, PrepareConfig, prepare

__all__ = [
    "BAND_RULES",
    "EpochSampler",
    "MixedBatchSampler",
    "PatchDataset",
    "PrepareConfig",
    "StorePatches",
    "augment",
    "extract_patches",
    "patch_count",
    "prepare",
    "rescale",
]
