"""A cohort QC report: one self-contained HTML page of a cohort's PVS results.

    cases = [CaseQC("sub-01", site="A", count=12, volume_mm3=80.0, pictures=case_pictures(img, mask))]
    flag_outliers(cases)                       # burden far outside the cohort (median/MAD)
    html = render_report(cases, title="PVS QC", provenance=[("the model", run_record)])

The page holds everything it shows: pictures are PNG inlined as base64 ``data:`` URIs, styles and
the few lines of script that sort the table are inline, nothing is fetched (no fonts, CDN or
network). It shows the cohort's numbers (cases, failed, flagged), the model and settings that made
the results (provenance), plots of PVS count and volume by site and their distribution, a sortable
table with one row per case, and per case its flags, per-region burden and pictures (a maximum-
intensity projection of the PVS and orthogonal slices with the mask filled in red).

Reading a ``predict`` output folder into :class:`CaseQC` records is
:func:`mednet_pvs.inference.report.write_report`'s job (it knows the output names); this module
knows nothing of files but the pictures it is given.
"""
from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Flag levels, most serious first (``error``: no usable result; ``warning``: look at it).
LEVELS = ("error", "warning")
#: Robust z-score above which a case's count or volume is flagged as far outside the cohort.
OUTLIER_Z = 3.0
#: Fewest cases with results for outlier flags to mean anything.
MIN_CASES_FOR_OUTLIERS = 5
#: Resolution (dots per inch) of the pictures inlined in the page: about 60 % of the figures' own.
PICTURE_DPI = 60


@dataclass
class Flag:
    """Something to look at in a case: ``level`` (one of :data:`LEVELS`) and a one-line text."""

    level: str
    text: str


@dataclass
class CaseQC:
    """What the report shows of one case.

    Attributes:
        case_id: the case's id.
        site: acquisition site / group (``"all"`` when the cohort has none).
        status: ``"ok"``, ``"failed"`` or ``"incomplete"`` (outputs missing).
        count: number of PVS clusters, or ``None`` without a result.
        volume_mm3: total PVS volume (mm^3), or ``None``.
        mean_probability: mean PVS probability inside the mask, or ``None``.
        regions: per-region burden, ``{key: {"name", "count", "volume_mm3"}}``.
        flags: what to look at (:class:`Flag`).
        pictures: ``{caption: PNG bytes}``, shown in this order.
        provenance: what made the result (model, settings, inputs), as stored with it.
        notes: other facts shown with the case (e.g. ``{"input scan": path}``).
    """

    case_id: str
    site: str = "all"
    status: str = "ok"
    count: int | None = None
    volume_mm3: float | None = None
    mean_probability: float | None = None
    regions: dict[str, dict[str, Any]] = field(default_factory=dict)
    flags: list[Flag] = field(default_factory=list)
    pictures: dict[str, bytes] = field(default_factory=dict)
    provenance: dict[str, Any] | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def flag(self, level: str, text: str) -> None:
        """Add a flag (``level`` one of :data:`LEVELS`)."""
        if level not in LEVELS:
            raise ValueError(f"flag level {level!r} is not one of {LEVELS}")
        self.flags.append(Flag(level, text))

    @property
    def level(self) -> str:
        """The most serious flag's level, or ``""`` when none."""
        return next((lv for lv in LEVELS if any(f.level == lv for f in self.flags)), "")


# ------------------------------------------------------------------------------------ numbers

def robust_z(values: Sequence[float]) -> np.ndarray:
    """Robust z-scores: ``0.6745 * (x - median) / MAD`` (Iglewicz and Hoaglin's modified z).

    When more than half the values are equal (MAD 0), the mean absolute deviation stands in
    (``(x - median) / (1.2533 * meanAD)``); when all are equal, every score is 0.

    Args:
        values: (N,) numbers.

    Returns:
        (N,) float scores (0 for an empty input's nothing).
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return x
    dev = x - np.median(x)
    mad = float(np.median(np.abs(dev)))
    if mad > 0:
        return 0.6745 * dev / mad
    mean_ad = float(np.mean(np.abs(dev)))
    return dev / (1.2533 * mean_ad) if mean_ad > 0 else np.zeros_like(x)


def flag_outliers(cases: Sequence[CaseQC], z: float = OUTLIER_Z, min_cases: int = MIN_CASES_FOR_OUTLIERS) -> str:
    """Flag cases whose PVS count or volume lies far outside the cohort's (``|robust z| > z``).

    Scores are over the cases with a result (:func:`robust_z`), the whole cohort together.

    Args:
        cases: the cohort; flags are added in place.
        z: threshold on the robust z-score.
        min_cases: fewer cases with a result than this: nothing is flagged.

    Returns:
        One line saying what was done (shown on the page).
    """
    done = [c for c in cases if c.count is not None and c.volume_mm3 is not None]
    if len(done) < min_cases:
        return f"outliers not flagged: {len(done)} case(s) with a result, fewer than {min_cases}"
    for what, unit, get in (("count", "", lambda c: c.count), ("volume", " mm\u00b3", lambda c: c.volume_mm3)):
        values = [float(get(c)) for c in done]
        med = float(np.median(values))
        for c, s, v in zip(done, robust_z(values), values):
            if abs(s) > z:
                side = "above" if s > 0 else "below"
                c.flag("warning", f"PVS {what} {v:g}{unit} far {side} the cohort (robust z {s:+.1f}, median {med:g}{unit})")
    return f"outliers: PVS count or volume with |robust z| > {z:g} (median/MAD over {len(done)} cases)"


# ----------------------------------------------------------------------------------- pictures

def _png(fig: Any, dpi: float = PICTURE_DPI) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    return buf.getvalue()


def case_pictures(image: Any, mask: Any, affine: Any = None, *, probs: Any = None, dpi: float = PICTURE_DPI) -> dict[str, bytes]:
    """The report's pictures of one case, as PNG bytes.

    Args:
        image: the scan (any :func:`~mednet_pvs.viz.show_slices` input), or ``None``: the
            projection is drawn without background and no slices are drawn.
        mask: (X, Y, Z) PVS mask on the image's grid (same kinds of input).
        affine: 4x4 voxel-to-scanner matrix (mm) for bare arrays.
        probs: PVS probability map on the same grid: projected instead of the mask when given.
        dpi: resolution of the PNGs.

    Returns:
        ``{"maximum-intensity projection": png, "slices": png}`` (slices only with an image).

    Raises:
        InputError: volumes not 3-D or not on one grid (from the drawing functions).
    """
    from mednet_pvs.viz.projection import show_mip
    from mednet_pvs.viz.slices import show_slices

    out = {"maximum-intensity projection": _png(show_mip(probs if probs is not None else mask, affine, image=image), dpi)}
    if image is not None:
        out["slices"] = _png(show_slices(image, mask, affine, mode="overlay"), dpi)
    return out


def cohort_plots(cases: Sequence[CaseQC], dpi: float = 80) -> dict[str, bytes]:
    """Plots of the cohort: PVS count and volume per site (one dot per case, flagged cases in red,
    the site's median as a bar) and their distribution (histograms).

    Returns:
        ``{"count": png, "volume": png}``; empty when no case has a result.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    done = [c for c in cases if c.count is not None and c.volume_mm3 is not None]
    if not done:
        return {}
    sites = sorted({c.site for c in done})
    out = {}
    for key, label, get in (("count", "PVS count (clusters)", lambda c: c.count),
                            ("volume", "PVS volume (mm\u00b3)", lambda c: c.volume_mm3)):
        fig = Figure(figsize=(6.6, 3.0), dpi=dpi, facecolor="white")
        FigureCanvasAgg(fig)
        by_site, hist = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(1.2, 0.5 * len(sites)) + 1, 2]})
        rng = np.random.default_rng(0)
        for i, site in enumerate(sites):
            group = [c for c in done if c.site == site]
            vals = np.array([float(get(c)) for c in group])
            jitter = rng.uniform(-0.18, 0.18, vals.size)
            colours = ["#d62728" if c.flags else "#1f77b4" for c in group]
            by_site.scatter(i + jitter, vals, s=22, c=colours, zorder=3, edgecolors="none")
            by_site.hlines(np.median(vals), i - 0.3, i + 0.3, colors="#333333", lw=2, zorder=2)
        by_site.set_xticks(range(len(sites)), [f"{s}\n(n={sum(c.site == s for c in done)})" for s in sites], fontsize=8)
        by_site.set_xlim(-0.6, len(sites) - 0.4)
        by_site.set_ylabel(label)
        by_site.set_title(f"{label} by site (bar: median; red: flagged)", fontsize=9)
        values = [float(get(c)) for c in done]
        hist.hist(values, bins=min(30, max(5, len(values) // 3)), color="#1f77b4", edgecolor="white")
        hist.set_xlabel(label)
        hist.set_ylabel("cases")
        hist.set_title(f"distribution over {len(values)} cases", fontsize=9)
        fig.tight_layout()
        out[key] = _png(fig, dpi)
    return out


# --------------------------------------------------------------------------------------- HTML

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:1em 2em;background:#fafafa;color:#222}
h1{margin:.2em 0}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.muted{color:#666;font-size:.9em}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
.tiles{display:flex;gap:1em;flex-wrap:wrap}.tile{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5em 1em}
.tile b{font-size:1.5em;display:block}
table{border-collapse:collapse;background:#fff;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
td:first-child{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}
#cases th{cursor:pointer;background:#eee;user-select:none;position:sticky;top:0}
#cases th[aria-sort=ascending]::after{content:" \\25B2"}#cases th[aria-sort=descending]::after{content:" \\25BC"}
tr.error{background:#fde0e0}tr.warning{background:#fff4d6}
.flag{display:inline-block;border-radius:4px;padding:0 .4em;margin:.1em 0;font-size:.9em}
.flag.error{background:#d62728;color:#fff}.flag.warning{background:#ffcc4d;color:#222}
.case{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:1em 0}
.case.error{border-left:6px solid #d62728}.case.warning{border-left:6px solid #ffcc4d}
.pics{display:flex;gap:.6em;flex-wrap:wrap;align-items:flex-start}figure{margin:0}
figcaption{font-size:.8em;color:#555}img{max-width:100%;height:auto;display:block}
"""

# Sorts the table when a column header is clicked (again: the other way); numbers as numbers,
# empty cells last. Each cell's sort key is its data-v attribute.
_SCRIPT = """
(function(){
  var table=document.getElementById('cases');
  var heads=table.tHead.rows[0].cells;
  function key(row,i){var v=row.cells[i].getAttribute('data-v');return v===null?row.cells[i].textContent:v;}
  function sortBy(i,dir){
    var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
    var numeric=heads[i].getAttribute('data-type')==='num';
    rows.sort(function(a,b){
      var x=key(a,i),y=key(b,i);
      if(x===''&&y!=='')return 1; if(y===''&&x!=='')return -1;
      var c=numeric?(parseFloat(x)-parseFloat(y)):x.localeCompare(y,undefined,{numeric:true});
      return dir==='ascending'?c:-c;});
    rows.forEach(function(r){body.appendChild(r);});
    for(var j=0;j<heads.length;j++){heads[j].removeAttribute('aria-sort');}
    heads[i].setAttribute('aria-sort',dir);
  }
  Array.prototype.forEach.call(heads,function(th,i){
    th.addEventListener('click',function(){
      sortBy(i,th.getAttribute('aria-sort')==='ascending'?'descending':'ascending');});
  });
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _num(value: float | None, fmt: str = "{:g}") -> tuple[str, str]:
    """``(shown text, sort key)`` of a number; ``("", "")`` for none."""
    return ("", "") if value is None else (fmt.format(value), repr(float(value)))


def _anchor(case_id: str) -> str:
    return "case-" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in case_id)


def _flags_html(flags: Sequence[Flag]) -> str:
    return "<br>".join(f'<span class="flag {f.level}">{_e(f.text)}</span>' for f in flags)


def _region_keys(cases: Sequence[CaseQC]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for c in cases:
        for k, r in c.regions.items():
            keys.setdefault(k, str(r.get("name") or k))
    return keys


def _table(cases: Sequence[CaseQC]) -> str:
    regions = _region_keys(cases)
    head = [("case", "text"), ("site", "text"), ("status", "text"), ("PVS count", "num"), ("volume mm\u00b3", "num"),
            ("mean prob.", "num")] + [(f"{k} count", "num") for k in regions] + [("flags", "num")]
    keys = ["case", "site", "status", "count", "volume", "mean_probability"] + [f"region-{k}" for k in regions] + ["flags"]
    ths = "".join(f'<th data-key="{_e(k)}" data-type="{t}" title="{_e(regions.get(k[7:], "") if k.startswith("region-") else "")}">'
                  f"{_e(name)}</th>" for (name, t), k in zip(head, keys))
    rows = []
    for c in cases:
        cells = [f'<td data-v="{_e(c.case_id)}"><a href="#{_anchor(c.case_id)}">{_e(c.case_id)}</a></td>',
                 f"<td>{_e(c.site)}</td>", f"<td>{_e(c.status)}</td>"]
        for value, fmt in ((c.count, "{:d}"), (c.volume_mm3, "{:.1f}"), (c.mean_probability, "{:.3f}")):
            shown, sort = _num(value, fmt)
            cells.append(f'<td class="num" data-v="{sort}">{shown}</td>')
        for k in regions:
            shown, sort = _num(c.regions.get(k, {}).get("count"), "{:d}")
            cells.append(f'<td class="num" data-v="{sort}">{shown}</td>')
        severity = 2 * sum(f.level == "error" for f in c.flags) + sum(f.level == "warning" for f in c.flags)
        cells.append(f'<td data-v="{severity}">{_flags_html(c.flags)}</td>')
        rows.append(f'<tr class="{c.level}" data-case="{_e(c.case_id)}">{"".join(cells)}</tr>')
    return f'<table id="cases"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _provenance_html(prov: Mapping[str, Any]) -> str:
    model = prov.get("model", {}) or {}
    rows = [("model", model.get("name")), ("kind", model.get("kind")), ("source", model.get("source")),
            ("weights sha256", model.get("weights_sha256")), ("members", model.get("members")),
            ("mednet-pvs version", prov.get("version"))]
    for group in ("settings",):
        for k, v in (prov.get(group) or {}).items():
            rows.append((k, json.dumps(v) if isinstance(v, (list, dict)) else v))
    pre = model.get("preprocessing")
    if pre:
        rows.append(("preprocessing", json.dumps(pre)))
    known = {"model", "settings", "version", "inputs"}
    rows += [(k, json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in prov.items() if k not in known]
    body = "".join(f'<tr><th>{_e(k)}</th><td class="mono">{_e(v)}</td></tr>' for k, v in rows if v is not None)
    return f'<table class="provenance">{body}</table>'


def _case_html(c: CaseQC) -> str:
    nums = []
    for label, value, fmt in (("PVS count", c.count, "{:d}"), ("volume", c.volume_mm3, "{:.1f} mm\u00b3"),
                              ("mean probability", c.mean_probability, "{:.3f}")):
        if value is not None:
            nums.append(f"{label} <b>{fmt.format(value)}</b>")
    parts = [f'<div class="case {c.level}" id="{_anchor(c.case_id)}">',
             f'<h3>{_e(c.case_id)} <span class="muted">site {_e(c.site)} \u00b7 {_e(c.status)}</span></h3>',
             "<p>" + (" \u00b7 ".join(nums) if nums else "no result") + "</p>"]
    if c.flags:
        parts.append(f"<p>{_flags_html(c.flags)}</p>")
    row = []
    if c.regions:
        body = "".join(f'<tr><td>{_e(r.get("name") or k)}</td><td class="num">{_e(r.get("count", ""))}</td>'
                       f'<td class="num">{_num(r.get("volume_mm3"), "{:.1f}")[0]}</td></tr>' for k, r in c.regions.items())
        row.append(f'<table class="regions"><thead><tr><th>region</th><th>PVS count</th><th>volume mm\u00b3</th></tr></thead>'
                     f"<tbody>{body}</tbody></table>")
    if c.pictures:
        figs = "".join(f"<figure>{_img(png, f'{c.case_id}: {cap}')}<figcaption>{_e(cap)}</figcaption></figure>"
                       for cap, png in c.pictures.items())
        row.append(figs)
    if row:
        parts.append(f'<div class="pics">{"".join(row)}</div>')
    if c.notes:
        parts.append("<p class=\"muted mono\">" + "<br>".join(f"{_e(k)}: {_e(v)}" for k, v in c.notes.items()) + "</p>")
    parts.append("</div>")
    return "".join(parts)


def render_report(
    cases: Sequence[CaseQC],
    *,
    title: str = "PVS cohort QC report",
    subtitle: str = "",
    provenance: Sequence[tuple[str, Mapping[str, Any]]] = (),
    notes: Sequence[str] = (),
) -> str:
    """The report page, as one self-contained HTML string.

    Args:
        cases: the cohort, in the table's first order (flags already added, e.g. by :func:`flag_outliers`).
        title: the page's heading.
        subtitle: a line under it (e.g. the folder and the date).
        provenance: ``(heading, record)`` pairs: what made the results (``model``, ``settings``,
            ``version``, ...), one per distinct record.
        notes: lines shown under the summary (how sites and outliers were decided).

    Returns:
        The HTML text (UTF-8), nothing fetched from elsewhere when shown.
    """
    n_failed = sum(c.status != "ok" for c in cases)
    n_flagged = sum(bool(c.flags) for c in cases)
    done = [c for c in cases if c.count is not None]
    median = f"{np.median([c.count for c in done]):g}" if done else "-"
    tiles = [("cases", len(cases)), ("with a result", len(done)), ("failed, incomplete or skipped", n_failed),
             ("flagged", n_flagged), ("median PVS count", median), ("sites", len({c.site for c in cases}))]
    plots = cohort_plots(cases)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{_e(title)}</h1>", f'<p class="muted">{_e(subtitle)}</p>' if subtitle else "",
             '<div class="tiles" id="summary">' + "".join(f'<div class="tile"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in tiles) + "</div>"]
    if notes:
        parts.append('<ul class="muted">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    if provenance:
        parts.append('<h2 id="provenance">Provenance</h2>')
        for heading, record in provenance:
            parts.append(f"<h4>{_e(heading)}</h4>{_provenance_html(record)}")
    if plots:
        parts.append('<h2 id="plots">Cohort</h2><div class="pics">' + "".join(
            f'<figure class="plot">{_img(png, f"PVS {k} by site and distribution")}</figure>' for k, png in plots.items()) + "</div>")
    parts.append('<h2 id="table">Cases</h2><p class="muted">Click a column heading to sort; click a case to see it.</p>')
    parts.append(_table(cases))
    parts.append('<h2 id="details">Each case</h2>')
    parts.extend(_case_html(c) for c in cases)
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(p for p in parts if p)
