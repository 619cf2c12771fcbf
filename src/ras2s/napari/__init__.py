"""The ras2s napari plugin (npe2): open, denoise, compare and assess cubes in napari.

Contributions (``napari.yaml``, under the ``napari.manifest`` entry point):

- **reader**: every format ras2s reads (:mod:`ras2s.napari._reader`), bands first, one
  image layer per cube, the file's metadata in ``layer.metadata``;
- **writer**: an image layer in any format ras2s writes, metadata kept
  (:mod:`ras2s.napari._writer`);
- **widgets**: *Denoise* (:class:`~ras2s.napari._denoise.DenoiseWidget`), *Compare*
  (:class:`~ras2s.napari._compare.CompareWidget`) and *Assess*
  (:class:`~ras2s.napari._assess.AssessWidget`).

Install with ``pip install "ras2s[napari]"``; nothing here is imported by the rest of
ras2s, and importing this package does not import napari or Qt.
"""

from __future__ import annotations

__all__ = ["AssessWidget", "CompareWidget", "DenoiseWidget", "get_reader", "write_image"]


def __getattr__(name: str):
    if name == "DenoiseWidget":
        from ._denoise import DenoiseWidget

        return DenoiseWidget
    if name == "CompareWidget":
        from ._compare import CompareWidget

        return CompareWidget
    if name == "AssessWidget":
        from ._assess import AssessWidget

        return AssessWidget
    if name == "get_reader":
        from ._reader import get_reader

        return get_reader
    if name == "write_image":
        from ._writer import write_image

        return write_image
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
