"""Read and write hyperspectral cubes, whole or window by window; decide their layout.

In memory a cube is always **bands first**, ``(bands, H, W)``, in the file's own dtype.
This package is the only place in ras2s that transposes.

Supported formats (by extension): ``.mat`` (MATLAB v4/v5 via scipy, v7.3 via h5py),
``.npy``, ``.npz``, ``.h5``/``.hdf5``, ``.tif``/``.tiff``, ENVI ``.hdr`` (+ its data
file), ``.zarr`` (a directory store) and a folder of per-band PNGs (CAVE style). One
module per format (:mod:`~ras2s.io.mat`, :mod:`~ras2s.io.npy`, :mod:`~ras2s.io.h5`,
:mod:`~ras2s.io.tiff`, :mod:`~ras2s.io.envi`, :mod:`~ras2s.io.png`,
:mod:`~ras2s.io.zarr`), behind one interface (:mod:`~ras2s.io.dataset`):

- :func:`open_cube` gives a :class:`CubeSource` (``shape``, ``dtype``, ``metadata``,
  ``read(window)``), windowed for ENVI, ``.npy``, HDF5, MAT 7.3, TIFF and zarr;
- :func:`create_cube` gives a :class:`CubeSink` (``write(window, block)``, ``commit()``,
  ``abort()``), published atomically;
- :func:`read_cube` and :func:`write_cube` do the same for a whole cube at once.

What protects data is :mod:`~ras2s.io.checks`; temp + fsync + rename is
:mod:`~ras2s.io.atomic`; folders of cubes and default names :mod:`~ras2s.io.discovery`.

Layout rule
-----------
How the spectral axis of a stored 3-D array is found, first rule that applies wins:

1. ``--layout HWB`` (bands last) or ``--layout BHW`` (bands first) always wins.
2. ENVI, TIFF and zarr say it in their metadata: ENVI ``interleave`` (bsq = BHW, bip =
   HWB, bil = rows x bands x cols, reported as ``HBW``); TIFF axes (``...YX`` = bands
   first, ``YX...`` = bands last); zarr dimension names (``band`` first or last). A PNG
   folder is one band per file.
3. ``.mat`` files (v5 and v7.3) follow MATLAB's convention rows x cols x bands (HWB).
   A v7.3 array, which HDF5 returns axes-reversed, is put back in MATLAB order first.
   Exception: a shape whose last two axes are equal and differ from the first
   (e.g. 64 x 100 x 100) looks like band-first data saved in a .mat; that contradicts
   the convention, so it is an error asking for ``--layout``.
4. Containers with no convention (``.npy``, ``.npz``, plain ``.h5``, zarr without
   dimension names): the spectral axis is the first or the last one. Rows x cols x
   bands when the first two sizes are equal and the last differs (512 x 512 x 31);
   bands x rows x cols when the last two are equal and the first differs (31 x 512 x
   512). Anything else (all sizes different, all equal, or first == last) is an error
   asking for ``--layout``: never a guess.

Nothing is ever squeezed, cropped, resampled, reordered or converted (only a
non-native byte order is made native).
"""

from __future__ import annotations

from .atomic import (
    FolderLock,
    atomic_path,
    write_atomically,
    write_text_atomically,
)
from .atomic import _in_chain as _in_chain
from .atomic import _no_room as _no_room
from .base import FORMATS, GEOTIFF_TAGS, CubeFile
from .checks import (
    check_input,
    check_output,
    check_replaceable,
    check_suffix,
    input_files,
    is_png_cube_folder,
    output_files,
)
from .dataset import _WRITERS as _WRITERS
from .dataset import (
    CubeSink,
    CubeSource,
    bad_bands,
    create_cube,
    cube_nodata,
    open_cube,
    read_cube,
    write_cube,
)
from .discovery import default_output_path, expand_inputs, find_cubes, sha256_array, sha256_file
from .layout import LAYOUTS, detect_layout
from .mat import _write_mat73 as _write_mat73

# also here, not public: _WRITERS, _in_chain, _no_room, _write_mat73 (the tests use them)
__all__ = [
    "FORMATS",
    "GEOTIFF_TAGS",
    "LAYOUTS",
    "CubeFile",
    "CubeSink",
    "CubeSource",
    "FolderLock",
    "atomic_path",
    "bad_bands",
    "check_input",
    "check_output",
    "check_replaceable",
    "check_suffix",
    "create_cube",
    "cube_nodata",
    "default_output_path",
    "detect_layout",
    "expand_inputs",
    "find_cubes",
    "input_files",
    "is_png_cube_folder",
    "open_cube",
    "output_files",
    "read_cube",
    "sha256_array",
    "sha256_file",
    "write_atomically",
    "write_cube",
    "write_text_atomically",
]
