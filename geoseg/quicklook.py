"""A quick-look PNG of a label raster with a legend (read decimated: memory is bounded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from geoseg.taxonomy import ClassDef, Taxonomy


def render_quicklook(
    labels: str | Path, taxonomy: Taxonomy, dest: str | Path, *, max_size: int = 1024
) -> Path:
    """Render the fine band (or coarse, when there are no fine classes) with a legend.

    The raster is read through its overviews at most ``max_size`` pixels on a side.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    with rasterio.open(labels) as src:
        scale = max(src.width, src.height) / max_size
        shape = (
            max(1, round(src.height / max(scale, 1))),
            max(1, round(src.width / max(scale, 1))),
        )
        band = 2 if taxonomy.fine else 1
        coarse = src.read(1, out_shape=shape)
        data = src.read(band, out_shape=shape)
    classes: list[ClassDef] = list(taxonomy.fine) if band == 2 else list(taxonomy.coarse)
    rgba = np.zeros((*shape, 4), dtype=np.uint8)
    present: list[ClassDef] = []
    for c in classes:
        m = data == c.code
        if m.any():
            rgba[m] = (*c.rgb, 255)
            present.append(c)
    if band == 2:  # childless coarse classes show in the coarse band
        for i in taxonomy.childless_coarse_index:
            c = taxonomy.coarse[i]
            m = coarse == c.code
            if m.any():
                rgba[m] = (*c.rgb, 255)
                present.append(c)
    h, w = shape
    fig_w = 8.0
    fig = Figure(figsize=(fig_w + 3.5, max(2.5, fig_w * h / w)), dpi=100)
    ax = fig.subplots()
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    handles = [
        Patch(facecolor=c.color, edgecolor="black", linewidth=0.3, label=f"{c.code} {c.name}")
        for c in present
    ]
    if handles:
        ax.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            fontsize=8,
            frameon=False,
        )
    ax.set_title(Path(labels).name + f" ({taxonomy.name})", fontsize=10)
    fig.tight_layout()
    dest = Path(dest)
    fig.savefig(dest)
    return dest
