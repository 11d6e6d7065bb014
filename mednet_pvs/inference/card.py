"""The one model-card writer: the ``README.md`` written beside ``config.json`` and the weights.

Everything comes from the bundle's :class:`~mednet_pvs.inference.bundle.BundleConfig` (``meta``
holds the data, figures, licence, citation and how the model was trained; a registry entry
supplies them for models imported under its name), so a card can always be regenerated from the
config. The YAML front matter is what the Hugging Face Hub reads. Every writer of bundles (``save_pretrained``,
training's export, fine-tuning, the importers, ``push_to_hub``) gets its card from :func:`model_card`.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mednet_pvs.inference.bundle import BundleConfig

PAPER_BIBTEX = """@article{low2025mednetpvs,
  title   = {MedNet-PVS: A MedNeXt-Based Deep Learning Model for Automated Segmentation of Perivascular Spaces},
  author  = {Low, Zhen Xuen Brandon and Zhang, Rory and Min, Hang and Pham, William and Vivash, Lucy and
             Moses, Jasmine and Lynch, Miranda and Dorfman, Karina and Marotta, Cassandra and Koh, Shaun and
             Bunyamin, Jacob and Rowsthorn, Ella and Jarema, Alex and Peiris, Himashi and Chen, Zhaolin and
             Shultz, Sandy R. and Wright, David K. and Kong, Dexiao and Naismith, Sharon L. and
             O'Brien, Terence J. and Xia, Ying and Law, Meng and Sinclair, Benjamin},
  journal = {arXiv preprint arXiv:2508.20256},
  year    = {2025}
}"""

_TAGS = ["mednet-pvs", "medical-imaging", "mri", "brain", "segmentation", "perivascular-spaces", "pytorch"]


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " x ".join(_fmt(v) for v in value) if all(isinstance(v, (int, float)) for v in value) else json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _network_line(config: BundleConfig) -> str:
    if config.network is None:
        return f"none ({config.kind} model)"
    from mednet_pvs.nets import describe_network

    return f"`{config.network.name}` ({describe_network(config.network)}); {len(config.members)} ensemble member(s)"


def _training_lines(training: dict[str, Any]) -> list[str]:
    """How the model was trained (a training export or a zoo entry records it), one item a line."""
    lines = ["## Training", ""]
    for key, value in training.items():
        text = f"`{value}`" if key == "command" else (f"`{json.dumps(value)}`" if isinstance(value, (dict, list)) else str(value))
        lines.append(f"- {key.replace('_', ' ')}: {text}")
    return [*lines, ""]


def _validation_lines(meta: dict[str, Any]) -> list[str]:
    lines = ["## Validation", ""]
    metrics = meta.get("metrics") or []
    if isinstance(metrics, list) and metrics:  # figures as their authors report them
        lines += ["| metric | region | value | protocol | data |", "|---|---|---|---|---|"]
        for m in metrics:
            lines.append(f"| {m.get('metric', '')} | {m.get('region', '')} | {_fmt(m.get('value', ''))} | "
                         f"{m.get('protocol', '')} | {m.get('data', '')} |")
        lines += ["", meta.get("metrics_note") or "Figures as reported by the model's authors (means over validation folds or sites)."]
    elif isinstance(metrics, dict) and metrics:  # this package's validation at the exported checkpoint
        lines += ["| metric | value |", "|---|---|", *[f"| {k} | {_fmt(v)} |" for k, v in metrics.items()], "",
                  "Whole-volume validation of the exported checkpoint (mednet-pvs training)."]
    else:
        lines.append("No validation figures recorded with this model.")
    before = meta.get("metrics_before_finetuning")
    if before:
        lines += ["", f"Before fine-tuning: {', '.join(f'{k} {_fmt(v)}' for k, v in before.items())}."]
    return [*lines, ""]


def model_card(config: BundleConfig, *, load_as: str | None = None) -> str:
    """The model card (Markdown with Hub front matter) of a bundle.

    Args:
        config: the bundle's config (``model.bundle_config()``).
        load_as: what to pass to ``load_pretrained`` in the usage example (``hf://owner/repo``,
            a registry name); default ``"<this folder>"``.
    """
    meta = dict(config.meta or {})
    name = config.name
    contrast = meta.get("contrast") or "the training contrast"
    front = ["---", "library_name: mednet-pvs", "tags:", *[f"- {t}" for t in _TAGS]]
    if meta.get("license_id"):
        front.append(f"license: {meta['license_id']}")
    front.append("---")

    lines = [*front, "", f"# {name}", ""]
    if meta.get("title"):
        lines += [f"**{meta['title']}**", ""]
    lines += [meta.get("description") or f"A perivascular space (PVS) segmentation model for {contrast} brain MRI, for "
              "[mednet-pvs](https://arxiv.org/abs/2508.20256).", ""]
    spec = load_as or "<this folder>"
    lines += [
        "## Use", "",
        "```python",
        "from mednet_pvs.zoo import load_pretrained",
        f"model = load_pretrained({spec!r})",
        f"pred = model.predict('sub-01_{meta.get('contrast') or 'T2w'}.nii.gz')   # probabilities + mask on the input grid",
        "pred.save('out/', 'sub-01')",
        "```", "",
        f"Command line: `mednet-pvs predict -i scans/ -o out/ -m {spec}`", "",
        "## Model", "",
        "| | |", "|---|---|",
        f"| network | {_network_line(config)} |",
        f"| contrast | {meta.get('contrast') or 'not recorded'} |",
    ]
    if meta.get("regions"):
        lines.append(f"| regions | {', '.join(meta['regions'])} |")
    pre, inf = config.preprocessing, config.inference
    if pre is not None:
        lines += [
            f"| target spacing (mm) | {_fmt(pre.target_spacing) if pre.target_spacing else 'each scan its own'}"
            + (f"; finer axes kept down to {pre.finest_spacing:g}" if pre.finest_spacing else "") + " |",
            f"| orientation | {pre.orientation or 'as stored'} |",
            f"| normalisation | {pre.normalisation} (inside the brain mask, else the nonzero foreground) |",
        ]
    if inf is not None:
        w = inf.window
        lines += [
            f"| patch | {_fmt(w.patch_size)} voxels, step {_fmt(w.step)} |",
            f"| test-time mirroring | {'axes ' + ', '.join(map(str, w.mirror_axes)) if w.mirror_axes else 'none'} |",
            f"| threshold | {_fmt(inf.threshold)} |",
        ]
        if inf.min_cluster_mm3:
            lines.append(f"| minimum cluster | {_fmt(inf.min_cluster_mm3)} mm^3 |")
        if inf.output_resampling == "area":
            lines.append("| back to the input grid | averaged over each input voxel (thick slices: a voxel is PVS when most of it is) |")
        keep = "" if inf.brain_keep == 0.5 else f" (brain probability > {_fmt(inf.brain_keep)})"
        if inf.brain_mask == "both_passes":
            lines.append(f"| brain mask | the first pass's, kept where the second pass (cropped and normalised inside it) also finds brain{keep} |")
        elif inf.brain_mask == "auto":
            lines.append(f"| brain mask | whole head: the first pass's, kept where the second pass (cropped and normalised inside it) also "
                         f"finds brain{keep}; skull-stripped input: the first pass's, within the image's non-zero voxels |")
    if config.frangi is not None:
        lines.append(f"| Frangi settings | `{json.dumps(config.frangi.to_dict())}` |")
    lines.append("")
    if meta.get("training_data"):  # a string; a config's "a: b" may arrive as a mapping (jsonargparse parses it)
        data = meta["training_data"]
        lines += ["## Training data", "", data if isinstance(data, str) else json.dumps(data), ""]
    if isinstance(meta.get("training"), dict) and meta["training"]:
        lines += _training_lines(meta["training"])
    lines += _validation_lines(meta)
    source = meta.get("source")
    if source:
        lines += ["## Provenance", "", "```json", json.dumps(source, indent=1, default=str), "```", ""]
    notes = [*(meta.get("import_warnings") or []), *(meta.get("import_notes") or [])]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    lines += ["## Licence", "", meta.get("licence") or "Not recorded: ask the model's authors before sharing it.", ""]
    lines += ["## Citation", ""]
    if meta.get("citation"):
        lines += [meta["citation"].strip(), ""]
    lines += ["Please cite the MedNet-PVS paper:", "", "```bibtex", PAPER_BIBTEX, "```", ""]
    return "\n".join(lines)
