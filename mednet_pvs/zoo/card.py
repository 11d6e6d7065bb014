"""Model cards: the ``README.md`` written beside ``config.json`` and ``model.safetensors``.

Everything comes from the bundle's ``config.json`` (``meta`` holds the data, figures, licence and
citation; a registry entry supplies them for models imported under its name), so a card can
always be regenerated from the config. The YAML front matter is what the Hugging Face Hub reads.
"""
from __future__ import annotations

import json
from typing import Any

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


def _network_line(network: dict[str, Any], members: int) -> str:
    kw = network.get("kwargs", {})
    name = network.get("name", "?")
    if name.startswith("mednext"):
        detail = f"MedNeXt v1, {kw.get('n_channels')} base channels, kernel {kw.get('kernel_size')}, blocks {kw.get('block_counts')}"
    elif name == "generic_unet_v1":
        detail = (f"nnU-Net v1 Generic_UNet, {kw.get('base_num_features')} base features, {kw.get('num_pool')} poolings, "
                  f"kernels {kw.get('conv_kernel_sizes')}")
    else:
        detail = name
    return f"`{name}` ({detail}); {members} ensemble member(s)"


def model_card(config: dict[str, Any], *, load_as: str | None = None) -> str:
    """The model card (Markdown with Hub front matter) of a bundle's ``config.json`` content.

    Args:
        config: what :func:`mednet_pvs.inference.bundle.bundle_config` returns.
        load_as: what to pass to ``load_pretrained`` in the usage example (``hf://owner/repo``,
            a registry name); default ``"<this folder>"``.
    """
    meta = dict(config.get("meta") or {})
    name = config.get("name", "model")
    pre, inf = config.get("preprocessing", {}), config.get("inference", {})
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
        f"| network | {_network_line(config.get('network', {}), len(config.get('members', [])))} |",
        f"| contrast | {meta.get('contrast') or 'not recorded'} |",
    ]
    if meta.get("regions"):
        lines.append(f"| regions | {', '.join(meta['regions'])} |")
    lines += [
        f"| target spacing (mm) | {_fmt(pre.get('target_spacing')) if pre.get('target_spacing') else 'each scan its own'} |",
        f"| orientation | {pre.get('orientation') or 'as stored'} |",
        f"| normalisation | {pre.get('normalisation')} (inside the brain mask, else the nonzero foreground) |",
        f"| patch | {_fmt(inf.get('patch_size'))} voxels, step {_fmt(inf.get('step'))} |",
        f"| test-time mirroring | {'axes ' + ', '.join(map(str, inf['mirror_axes'])) if inf.get('mirror_axes') else 'none'} |",
        f"| threshold | {_fmt(inf.get('threshold'))} |",
        "",
    ]
    if meta.get("training_data"):
        lines += ["## Training data", "", meta["training_data"], ""]
    training = meta.get("training")
    if isinstance(training, dict) and training.get("command"):  # trained by this package: how to do it again
        lines += ["## Training", ""]
        lines += [f"- {k.replace('_', ' ')}: " + (f"`{v}`" if k == "command" else str(v)) for k, v in training.items()]
        lines.append("")
    metrics = meta.get("metrics") or []
    metrics = metrics if isinstance(metrics, list) else []  # a training export's {"val_dice": ...} is not a figure list
    lines += ["## Validation", ""]
    if metrics:
        lines += ["| metric | region | value | protocol | data |", "|---|---|---|---|---|"]
        for m in metrics:
            lines.append(f"| {m.get('metric', '')} | {m.get('region', '')} | {_fmt(m.get('value', ''))} | "
                         f"{m.get('protocol', '')} | {m.get('data', '')} |")
        lines += ["", meta.get("metrics_note") or "Figures as reported by the model's authors (means over validation folds or sites)."]
    else:
        lines.append("No validation figures recorded with this model.")
    lines.append("")
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
