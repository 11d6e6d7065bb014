"""Drawing helpers shared by the pictures (imports matplotlib: only imported from inside functions).

A *plane* is a 2-D view of RAS-ordered volumes: a horizontal and a vertical array axis, the
world coordinate (mm) of each index along them, and whether the horizontal axis runs right to left
on screen. Images are drawn with ``extent`` in world mm, so axis data coordinates *are* scanner
coordinates (``ax.transData`` maps mm to pixels), and the display convention is an axis inversion
(radiological: patient's right on the screen's left; sagittal: anterior on the left, as on PACS,
FSLeyes, Freeview and ITK-SNAP).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from mednet_pvs.viz._volumes import AXIS_ENDS, AXIS_NAMES, VIEWS, Volumes

BACKGROUND = "black"
TEXT = "white"
LETTERS = "#ffd400"  # orientation letters
PVS = "#ff2a2a"  # PVS mask (contour or overlay)
OTHER_PVS = "#ff9f1a"  # other clusters in gallery crops
PROB_CMAP = "hot"
#: Probabilities fade in between these two values on top of an image (transparent below the first).
PROB_FADE = (0.05, 0.25)


class PVSFigure(Figure):
    """A matplotlib :class:`~matplotlib.figure.Figure` on an Agg canvas (no display, no pyplot).

    Jupyter shows it as PNG when it is a cell's value (``fig = show(...)`` then ``fig``), with or
    without ``%matplotlib inline``; it is not registered with pyplot, so it is never shown twice and
    is freed as soon as it is no longer referenced.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", facecolor=self.get_facecolor())
        return buf.getvalue()


def new_figure(width_in: float, height_in: float, dpi: float = 100) -> PVSFigure:
    """A black figure of the given size (inches) on its own Agg canvas."""
    fig = PVSFigure(figsize=(width_in, height_in), dpi=dpi, facecolor=BACKGROUND)
    FigureCanvasAgg(fig)
    return fig


@dataclass(frozen=True)
class Plane:
    """A 2-D view of RAS-ordered volumes.

    Attributes:
        view: ``"sagittal"``, ``"coronal"`` or ``"axial"``.
        normal, h, v: RAS array axes across the plane, along the screen's horizontal and vertical.
        h0, dh, v0, dv: world coordinate (mm) of index ``i`` is ``h0 + i * dh`` (and ``v0 + i * dv``).
        nh, nv: number of voxels along ``h`` and ``v``.
        flip_h: the horizontal world axis increases to the left on screen.
    """

    view: str
    normal: int
    h: int
    v: int
    h0: float
    dh: float
    v0: float
    dv: float
    nh: int
    nv: int
    flip_h: bool

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(left, right, bottom, top)`` of the voxel edges in world mm (data order, before flipping)."""
        return (self.h0 - self.dh / 2, self.h0 + (self.nh - 0.5) * self.dh,
                self.v0 - self.dv / 2, self.v0 + (self.nv - 0.5) * self.dv)

    @property
    def size_mm(self) -> tuple[float, float]:
        """Width and height of the plane in mm."""
        return self.nh * self.dh, self.nv * self.dv

    def h_mm(self, index: Any) -> Any:
        return self.h0 + np.asarray(index, float) * self.dh

    def v_mm(self, index: Any) -> Any:
        return self.v0 + np.asarray(index, float) * self.dv

    @property
    def letters(self) -> tuple[str, str, str, str]:
        """Orientation letters at the screen's left, right, bottom and top edges."""
        lo, hi = AXIS_ENDS[self.h]
        left, right = (hi, lo) if self.flip_h else (lo, hi)
        return left, right, *AXIS_ENDS[self.v]


def check_view(view: str) -> str:
    from mednet_pvs.errors import ConfigError

    if view not in VIEWS:
        raise ConfigError(f"unknown view {view!r}; use one of {', '.join(VIEWS)}")
    return view


def plane(vols: Volumes, view: str, ref: tuple[int, int, int], radiological: bool = False) -> Plane:
    """The plane ``view`` of ``vols``, with world coordinates measured through voxel ``ref``."""
    normal, h, v = VIEWS[check_view(view)]
    h0, dh = vols.axis_coords(h, ref)
    v0, dv = vols.axis_coords(v, ref)
    flip = (view == "sagittal") or (radiological and h == 0)
    return Plane(view, normal, h, v, h0, dh, v0, dv, vols.shape[h], vols.shape[v], flip)


def cut(volume: np.ndarray, pl: Plane, index: int) -> np.ndarray:
    """The slice ``index`` of a RAS-ordered volume across ``pl.normal``, as an [h, v] array."""
    return np.take(volume, index, axis=pl.normal)


def frame(ax: Any, pl: Plane, *, letters: bool = True, scale: bool = True, fontsize: float = 11,
          lim: tuple[float, float, float, float] | None = None) -> None:
    """Set the panel's limits (world mm, flipped per convention), blank it, add letters and a scale bar.

    Args:
        lim: ``(h_min, h_max, v_min, v_max)`` in mm to show (default: the whole plane).
    """
    l, r, b, t = pl.extent if lim is None else lim
    ax.set_xlim((r, l) if pl.flip_h else (l, r))
    ax.set_ylim(b, t)
    ax.set_aspect("equal")
    ax.set_facecolor(BACKGROUND)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if letters:
        orientation_letters(ax, pl.letters, fontsize)
    if scale:
        scale_bar(ax, abs(r - l), fontsize=max(fontsize - 3, 6))


def orientation_letters(ax: Any, letters: tuple[str, str, str, str], fontsize: float = 11) -> None:
    """Letters at the left, right, bottom and top edges of a panel (text artists in axes coordinates)."""
    spots = (((0.012, 0.5), "left", "center"), ((0.988, 0.5), "right", "center"),
             ((0.5, 0.012), "center", "bottom"), ((0.5, 0.988), "center", "top"))
    for txt, ((x, y), ha, va) in zip(letters, spots):
        ax.text(x, y, txt, transform=ax.transAxes, color=LETTERS, fontsize=fontsize, fontweight="bold",
                ha=ha, va=va, gid="orientation")


def nice_length(width_mm: float, fraction: float = 0.25) -> float:
    """The largest of 1, 2, 5, 10, 20, 50, 100 mm not above ``fraction`` of ``width_mm``."""
    options = [v for v in (1, 2, 5, 10, 20, 50, 100) if v <= fraction * width_mm]
    return float(options[-1] if options else 1)


def scale_bar(ax: Any, width_mm: float, fontsize: float = 8) -> None:
    """A horizontal bar of a round length (mm) at the panel's bottom right, labelled."""
    length = nice_length(width_mm)
    frac = length / width_mm
    x1, y = 0.975, 0.045
    ax.plot([x1 - frac, x1], [y, y], transform=ax.transAxes, color=TEXT, lw=2.2, solid_capstyle="butt", gid="scale_bar")
    ax.text(x1 - frac / 2, y + 0.015, f"{length:g} mm", transform=ax.transAxes, color=TEXT, fontsize=fontsize,
            ha="center", va="bottom", gid="scale_bar")


def gray(ax: Any, pl: Plane, data_hv: np.ndarray, vmin: float, vmax: float) -> Any:
    """Draw an [h, v] intensity slice in gray, voxel by voxel (no smoothing)."""
    return ax.imshow(data_hv.T, cmap="gray", vmin=vmin, vmax=vmax, origin="lower", extent=pl.extent,
                     interpolation="nearest", aspect="equal")


def outline_segments(mask_hv: np.ndarray, pl: Plane) -> np.ndarray:
    """(N, 2, 2) line segments (world mm) along the voxel edges between mask and background."""
    m = np.pad(np.asarray(mask_hv, bool), 1)
    i, j = np.nonzero(m[1:, 1:-1] != m[:-1, 1:-1])  # edges between columns: at h index i - 0.5
    x, y = pl.h_mm(i - 0.5), pl.v_mm(j - 0.5)
    across = np.stack([np.stack([x, y], -1), np.stack([x, y + pl.dv], -1)], 1)
    i, j = np.nonzero(m[1:-1, 1:] != m[1:-1, :-1])  # edges between rows: at v index j - 0.5
    x, y = pl.h_mm(i - 0.5), pl.v_mm(j - 0.5)
    along = np.stack([np.stack([x, y], -1), np.stack([x + pl.dh, y], -1)], 1)
    return np.concatenate([across, along]).reshape(-1, 2, 2)


def draw_mask(ax: Any, pl: Plane, mask_hv: np.ndarray, mode: str = "contour", color: str = PVS,
              lw: float = 0.9, alpha: float = 0.75) -> None:
    """Draw an [h, v] mask as voxel-edge outlines (``"contour"``) or a translucent fill (``"overlay"``)."""
    from matplotlib.colors import to_rgba

    if not mask_hv.any():
        return
    if mode == "contour":
        ax.add_collection(LineCollection(outline_segments(mask_hv, pl), colors=color, linewidths=lw, gid="pvs_outline"))
    else:
        rgba = np.zeros((*mask_hv.T.shape, 4))
        rgba[mask_hv.T] = to_rgba(color, alpha)
        ax.imshow(rgba, origin="lower", extent=pl.extent, interpolation="nearest", aspect="equal")


def check_mode(mode: str) -> str:
    from mednet_pvs.errors import ConfigError

    if mode not in ("contour", "overlay"):
        raise ConfigError(f"unknown mode {mode!r}; use 'contour' or 'overlay'")
    return mode


def heat(ax: Any, pl: Plane, probs_hv: np.ndarray, *, on_image: bool) -> Any:
    """Draw an [h, v] probability slice or projection (0..1) in ``hot``; returns the image artist.

    On top of an image, probabilities fade in between :data:`PROB_FADE` (transparent below);
    alone (black background), the colour map is shown opaque.
    """
    import matplotlib as mpl

    p = probs_hv.T
    rgba = mpl.colormaps[PROB_CMAP](Normalize(0.0, 1.0)(p))
    if on_image:
        lo, hi = PROB_FADE
        rgba[..., 3] = np.clip((p - lo) / (hi - lo), 0.0, 1.0)
    im = ax.imshow(rgba, origin="lower", extent=pl.extent, interpolation="nearest", aspect="equal")
    im.set_gid("probability")
    return im


def prob_colorbar(fig: Any, ax: Any, label: str = "PVS probability") -> Any:
    """A 0..1 ``hot`` colour bar just right of ``ax`` (white text on black)."""
    import matplotlib as mpl

    cax = ax.inset_axes([1.03, 0.08, 0.045, 0.84])
    cb = fig.colorbar(mpl.cm.ScalarMappable(Normalize(0.0, 1.0), PROB_CMAP), cax=cax)
    cb.set_label(label, color=TEXT, fontsize=9)
    cb.set_ticks([0, 0.25, 0.5, 0.75, 1.0])
    cb.ax.tick_params(colors=TEXT, labelsize=8)
    cb.outline.set_edgecolor(TEXT)
    return cb


def position_text(pl: Plane, world_mm: float) -> str:
    """``"z = +12.0 mm"`` for a slice across ``pl.normal`` at ``world_mm``."""
    return f"{AXIS_NAMES[pl.normal]} = {world_mm:+.1f} mm"


def convention_text(radiological: bool) -> str:
    return ("radiological convention (patient's right on the left)" if radiological
            else "neurological convention (patient's right on the right)")


def grid_note(vols: Volumes) -> str:
    """A note for oblique grids (shown on their own voxel axes, not resampled), else ``""``."""
    ang = vols.obliquity_deg
    return f"; oblique grid ({ang:.0f} deg off axis) shown on its own voxel axes" if ang >= 1.0 else ""


def panel_grid(widths_in: list[float] | list[list[float]], heights_in: list[float], heading: str = "", *,
               gap_in: tuple[float, float] = (0.06, 0.3), margins_in: tuple[float, float, float] = (0.06, 0.06, 0.06),
               dpi: float = 100) -> tuple[PVSFigure, list[list[Any]]]:
    """A figure holding rows of panels of given physical sizes, placed exactly (no layout engine).

    Args:
        widths_in: panel widths (inches), the same for every row, or one list per row.
        heights_in: row heights (inches).
        heading: the figure title, wrapped to the figure's width in a band at the top.
        gap_in: (between columns, above each row for panel titles), inches.
        margins_in: (left, right, bottom), inches.

    Returns:
        ``(figure, axes)`` with ``axes[row][col]``; each panel keeps its aspect, anchored at its top.
    """
    import textwrap

    rows = [list(w) for w in widths_in] if isinstance(widths_in[0], (list, tuple)) else [list(widths_in)] * len(heights_in)  # type: ignore[arg-type]
    left, right, bottom = margins_in
    width = left + right + max(sum(r) + gap_in[0] * (len(r) - 1) for r in rows)
    text = textwrap.fill(heading, max(30, int(width * 12.5))) if heading else ""
    head_in = 0.12 + 0.2 * (text.count("\n") + 1) if text else 0.05
    height = head_in + bottom + sum(h + gap_in[1] for h in heights_in)
    fig = new_figure(width, height, dpi)
    if text:
        fig.text(0.5, 1 - 0.08 / height, text, color=TEXT, fontsize=11, ha="center", va="top", gid="heading")
    axes: list[list[Any]] = []
    y = height - head_in
    for r, h in zip(rows, heights_in):
        y -= gap_in[1] + h
        x, row = left, []
        for w in r:
            ax = fig.add_axes((x / width, y / height, w / width, h / height))
            ax.set_anchor("N")
            row.append(ax)
            x += w + gap_in[0]
        axes.append(row)
    return fig, axes


def title(ax: Any, text: str, fontsize: float = 10) -> None:
    """A white panel title."""
    ax.set_title(text, color=TEXT, fontsize=fontsize, pad=4)


def row_label(fig: Any, ax: Any, text: str) -> None:
    """A vertical label left of a panel row (in the figure's left margin)."""
    box = ax.get_position()
    fig.text(box.x0 - 0.004, box.y0 + box.height / 2, text, color=TEXT, fontsize=10, rotation=90, ha="right", va="center")
