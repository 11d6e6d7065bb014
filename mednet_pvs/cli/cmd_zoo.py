"""``mednet-pvs models`` (the registry) and ``mednet-pvs import-nnunet-v1`` (authors' folders -> bundle)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mednet_pvs.cli.options import choices

#: import-nnunet-v2 --checkpoint (module level: typer resolves the annotation here)
V2Checkpoint = choices("V2Checkpoint", ["final", "best"])
#: import-nnunet-v2 --mode
V2Mode = choices("V2Mode", ["exact", "approximate"])


def register(app: typer.Typer) -> None:
    @app.command("models")
    def models(
        name: Optional[str] = typer.Argument(None, help="A model name (show its details) or a wildcard pattern such as 'mednet-*'."),
        as_json: bool = typer.Option(False, "--json", help="Print the list as JSON (one object per model)."),
        as_csv: bool = typer.Option(False, "--csv", help="Print the list as CSV (one row per model)."),
    ) -> None:
        """List the registered models: contrast, network, reported figures, where the weights come from."""
        from rich.console import Console
        from rich.table import Table

        from mednet_pvs.cli.tables import output_format, print_rows
        from mednet_pvs.errors import ConfigError
        from mednet_pvs.zoo.catalog import find_entry, model_entries, unknown_name_message

        fmt = output_format(as_json, as_csv)
        console = Console(soft_wrap=True)
        entry = find_entry(name) if name and not any(c in name for c in "*?[") else None
        if entry is not None and fmt == "table":
            _show_entry(console, entry)
            return
        entries = [entry] if entry is not None else model_entries(name or "*")
        if name and not entries:
            raise ConfigError(unknown_name_message(name))
        rows = [e.summary_row() for e in entries]
        if fmt != "table":
            print_rows(rows, fmt)
            return
        if console.width < 100:  # a narrow terminal or a pipe (80 columns): one block per model
            for row in rows:
                console.print(f"[bold]{row['name']}[/]  {row['contrast']}  {row['network']}", highlight=False)
                for key in ("regions", "validation", "weights"):
                    if row[key]:
                        console.print(f"    {key}: {row[key]}", highlight=False)
            console.print("Details: mednet-pvs models <name>. Load: load_pretrained('<name>') or mednet-pvs predict -m <name>.")
            return
        table = Table(title="mednet-pvs models")
        table.add_column("name", no_wrap=True)
        for col in ("contrast", "network", "regions", "validation (reported)", "weights"):
            table.add_column(col)
        for row in rows:
            table.add_row(row["name"], row["contrast"], row["network"], row["regions"], row["validation"], row["weights"])
        console.print(table)
        console.print("Details: mednet-pvs models <name>. Load: load_pretrained('<name>') or mednet-pvs predict -m <name>.")

    from mednet_pvs.cli.options import INPUT, OUT, renamed

    @app.command("import-nnunet-v1", cls=renamed(positional="--input"))
    def import_nnunet_v1(
        folder: Path = typer.Option(..., *INPUT, help="nnU-Net v1 result folder: <Task>/<Trainer>__<Plans> (or a folder above one, or one fold_<k>)."),
        out: Path = typer.Option(..., *OUT, help="Bundle folder to write (config.json, model.safetensors, README.md)."),
        name: Optional[str] = typer.Option(None, "--name", help="Model name; a registry name (e.g. mednet-pvs-t2w) also attaches its figures and citation."),
        folds: Optional[str] = typer.Option(None, "--folds", help="Comma-separated folds to use (e.g. 0,1,2 or all); default every fold found."),
        checkpoint: str = typer.Option("model_final_checkpoint", "--checkpoint", help="Checkpoint stem (model_final_checkpoint, model_best)."),
        training_orientation: str = typer.Option("RAS", "--training-orientation", help="With --mode approximate: axis codes the training scans were stored in (nnU-Net v1 does not reorient)."),
        mode: str = typer.Option("exact", "--mode", help="exact: nnU-Net v1's own pipeline, step for step (default); approximate: the project's pipeline (reoriented, can be fine-tuned)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a bundle already in --out."),
    ) -> None:
        """Turn the authors' nnU-Net v1 result folders (all folds) into one mednet-pvs model bundle."""
        import warnings

        from rich.console import Console

        from mednet_pvs.zoo.import_nnunet_v1 import ZooImportWarning, import_nnunet_v1
        from mednet_pvs.zoo.pretrained import save_pretrained

        console = Console(stderr=True, soft_wrap=True)
        chosen = _import_target(out, overwrite, folds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZooImportWarning)  # printed below from meta
            model = import_nnunet_v1(folder, folds=chosen, checkpoint=checkpoint, name=name,
                                     training_orientation=training_orientation, device="cpu", mode=mode)
        save_pretrained(model, out, load_as=str(out))
        src, inf = model.meta["source"], model.inference
        console.print(f"imported {src['trainer']} ({src['task']}), folds {', '.join(src['folds'])}: "
                      f"{model.network.name}, {len(model.networks)} member(s)", highlight=False)
        if mode == "exact":
            p = model.pipeline
            console.print(f"exact mode (nnU-Net v1): spacing {list(p.spacing)} mm (network axes), transpose "
                          f"{list(p.transpose_forward)}, {p.normalization_schemes[0]} (mask {p.use_mask_for_norm[0]}); "
                          f"patch {list(inf.window.patch_size)}, mirroring axes {list(inf.window.mirror_axes)}", highlight=False)
        else:
            pre = model.preprocessing
            console.print(f"approximate mode: spacing {pre.target_spacing} mm, orientation {pre.orientation}, {pre.normalisation}; "
                          f"patch {inf.window.patch_size}, mirroring axes {inf.window.mirror_axes}", highlight=False)
        for w in model.meta.get("import_warnings", []):
            console.print(f"[yellow]warning:[/] {w}", highlight=False)
        console.print(f"wrote {out} (config.json, model.safetensors, README.md); load it with load_pretrained('{out}') "
                      f"or mednet-pvs predict -m {out}", highlight=False)

    from mednet_pvs.cli.options import plain

    @app.command("import-nnunet-v2", cls=renamed(positional="--input"))
    def import_nnunet_v2(
        folder: Path = typer.Option(..., *INPUT, help="nnU-Net v2 trainer folder: <Dataset>/<Trainer>__<Plans>__<configuration> (plans.json, dataset.json, fold_*)."),
        out: Path = typer.Option(..., *OUT, help="Bundle folder to write (config.json, model.safetensors, README.md)."),
        name: Optional[str] = typer.Option(None, "--name", help="Model name (default: the dataset folder's name)."),
        folds: Optional[str] = typer.Option(None, "--folds", help="Comma-separated folds to use (e.g. 0,1 or all); default every fold found."),
        checkpoint: V2Checkpoint = typer.Option("final", "--checkpoint", help="checkpoint_final.pth or checkpoint_best.pth."),  # type: ignore[valid-type]
        mode: V2Mode = typer.Option("exact", "--mode", help="exact: nnU-Net's predictor step for step (default); approximate: the project's pipeline (reoriented, can be fine-tuned; single-channel z-score models only)."),  # type: ignore[valid-type]
        training_orientation: str = typer.Option("RAS", "--training-orientation", help="With --mode approximate: axis codes the training scans were stored in (nnU-Net does not reorient)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a bundle already in --out."),
    ) -> None:
        """Turn a trained nnU-Net v2 model (all folds) into one bundle that runs exactly as nnU-Net's predictor
        (or, --mode approximate, with the project's own pipeline, for fine-tuning)."""
        from rich.console import Console

        from mednet_pvs.zoo.import_nnunet_v2 import import_nnunet_v2 as do_import
        from mednet_pvs.zoo.pretrained import save_pretrained

        console = Console(stderr=True, soft_wrap=True)
        chosen = _import_target(out, overwrite, folds)
        model = do_import(folder, folds=chosen, checkpoint=plain(checkpoint), name=name, device="cpu", mode=plain(mode),
                          training_orientation=training_orientation)
        save_pretrained(model, out, load_as=str(out))
        if plain(mode) == "approximate":
            pre, inf = model.preprocessing, model.inference
            console.print(f"imported {model.meta['trainer']} ({model.meta['plans']}), folds {', '.join(model.meta['folds'])}: "
                          f"approximate mode: spacing {pre.target_spacing} mm, orientation {pre.orientation}, "
                          f"{pre.normalisation}; patch {inf.window.patch_size}, mirroring axes {inf.window.mirror_axes}",
                          highlight=False)
            console.print(f"wrote {out}; fine-tune it with mednet-pvs finetune --from {out}", highlight=False)
            return
        p = model.pipeline
        console.print(f"imported {model.meta['trainer']} ({model.meta['plans']}, {model.meta['configuration']}), folds "
                      f"{', '.join(model.meta['folds'])}: {model.network.name}, channels "
                      f"{', '.join(p.channel_names.values())}, labels {', '.join(p.labels)}", highlight=False)
        console.print(f"exact mode: spacing {list(p.spacing)} mm (network axes), transpose {list(p.transpose_forward)}, "
                      f"{', '.join(p.normalization_schemes)}; patch {list(model.inference.window.patch_size)}, "
                      f"mirroring axes {list(model.inference.window.mirror_axes)}", highlight=False)
        console.print(f"wrote {out} (config.json, model.safetensors, README.md); load it with load_pretrained('{out}') "
                      f"or mednet-pvs predict -m {out}", highlight=False)



def _import_target(out: Path, overwrite: bool, folds: Optional[str]) -> Optional[list[str]]:
    """The importers' shared checks: ``--out`` writable and not already a model (unless
    ``--overwrite``), before anything is read; ``--folds "0,1"`` -> ``["0", "1"]`` (``None``: all)."""
    from mednet_pvs.errors import ConfigError
    from mednet_pvs.io import check_output_dir

    check_output_dir(out)
    if (out / "config.json").exists() and not overwrite:
        raise ConfigError(f"{out} already holds a model (config.json); pass --overwrite to replace it")
    return [f.strip() for f in folds.split(",") if f.strip()] if folds else None


def _show_entry(console, entry) -> None:  # noqa: ANN001 - rich Console, ZooEntry
    """Print one entry in full (what it is, figures, how to get the weights)."""
    row = entry.summary_row()
    console.print(f"[bold]{entry.name}[/]: {entry.title}", highlight=False)
    for key in ("contrast", "network", "regions", "weights"):
        if row[key]:
            console.print(f"  {key}: {row[key]}", highlight=False)
    if entry.training_data:
        console.print(f"  training data: {entry.training_data}", highlight=False)
    for f in entry.validation:
        console.print(f"  {f.metric} {f.region or ''}: {f.value:.2f} ({f.protocol or ''}; {f.data or ''})", highlight=False)
    w = entry.weights
    if w.kind == "external":
        console.print(f"  how to get the weights: {' '.join(str(w.how_to_get).split())}", highlight=False)
        console.print(f"  import: {w.import_command}", highlight=False)
    if entry.licence:
        console.print(f"  licence: {entry.licence}", highlight=False)
    if entry.citation:
        console.print(f"  cite: {' '.join(entry.citation.split())}", highlight=False)
