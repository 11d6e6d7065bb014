"""``mednet-pvs predict``: segment PVS in one scan, a folder, or a manifest (thin wrapper)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict(
        inputs: Optional[Path] = typer.Option(None, "-i", "--input", help="A NIfTI scan, a folder of scans (nnU-Net's <case>_0000/_0001 names: one case, several channels), a DICOM folder (converted with dcm2niix into <out>/converted), a manifest .csv/.tsv or a BIDS-like folder."),
        outdir: Path = typer.Option(..., "-o", "--out", help="Output folder (one subfolder per case, plus summary.csv)."),
        model: str = typer.Option(..., "-m", "--model", help="A registry name (mednet-pvs models), hf://owner/repo@<commit>, a model folder, an nnU-Net v2 trainer folder or an nnU-Net v1 result folder."),
        channel: Optional[list[str]] = typer.Option(None, "--channel", help="NAME=path, once per input channel of a multi-channel model (e.g. --channel T1w=a.nii.gz --channel FLAIR=b.nii.gz): one case, instead of -i."),
        device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)."),
        tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Mirroring test-time augmentation (default: the model's setting)."),
        step: Optional[float] = typer.Option(None, help="Sliding-window step as a fraction of the patch (default: the model's, 0.5)."),
        save_probs: bool = typer.Option(False, "--save-probs", help="Also write the PVS probability map."),
        regions: str = typer.Option("atlas", help="Per-region burden from: atlas (default: the MNI152 region map registered to each scan, affine), none, or a region map (aseg/SynthSeg) file or folder of <case id>*.nii.gz (cases without one use the atlas)."),
        brainmask: Optional[Path] = typer.Option(None, help="Brain mask for a single input scan."),
        preview: bool = typer.Option(False, "--preview", help="Also write a PNG overview per case."),
        shard: Optional[str] = typer.Option(None, help="K/N: process only this share of the inputs (e.g. SLURM array task K of N)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Redo cases whose outputs already exist (also those made by another model or settings)."),
        max_anisotropy: float = typer.Option(8.0, "--max-anisotropy", min=1.0, help="Largest coarsest/finest voxel size ratio accepted."),
        compile_: bool = typer.Option(False, "--compile", help="torch.compile the networks (pays minutes of compilation once per run; then faster)."),
        backend: str = typer.Option("torch", "--backend", help="Where the networks run: torch, onnxruntime (CPU, ~2x faster; exported once and cached; pip install 'mednet-pvs[onnx]'), openvino (CPU; pip install 'mednet-pvs[openvino]'), inductor (CPU; PyTorch's AOTInductor, needs a C++ compiler; compiled once, about a minute, then cached) or auto (onnxruntime on the CPU where installed)."),
        precision: str = typer.Option("fp32", "--precision", help="fp32 (default: equal to torch within 1e-3), or bf16 with --backend openvino on a CPU with native bf16 (AMX/AVX512-BF16): faster, labels not identical."),
        quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only failed cases and the final line (no progress)."),
        brain_mode: Optional[str] = typer.Option(None, "--brain-mode", help="Models that find the brain themselves (mednet-pvs-synth-any), without --brainmask: first_pass (the first pass's mask), both_passes (kept where the second pass agrees) or auto (both passes on whole heads, the first within the image's signal on skull-stripped scans); default: the model's."),
        layout: str = typer.Option("flat", "--layout", help="Output layout: flat (a folder per case) or bids (BIDS derivatives: sub-*/[ses-*/]anat/*_desc-pvs_mask.nii.gz, dataset_description.json, phenotype/pvs_burden.tsv)."),
    ) -> None:
        """Segment PVS, write masks, stats and a summary; cases already done are skipped."""
        from rich.console import Console

        from mednet_pvs.inference.batch import collect_inputs, parse_shard, predict_batch, select_shard
        from mednet_pvs.inference.outputs import LAYOUTS
        from mednet_pvs.zoo import load_pretrained

        from mednet_pvs.cli.progress import progress_display
        from mednet_pvs.errors import ConfigError
        from mednet_pvs.analysis.atlas import REGION_MODES
        from mednet_pvs.io import check_output_dir

        console = Console(stderr=True, soft_wrap=True)
        shard_kn = parse_shard(shard)
        from mednet_pvs.inference.backends import apply_backend, check_backend, check_precision

        precision = check_precision(precision, check_backend(backend))  # a bad name: one line before anything is read or written
        check_output_dir(outdir)
        from mednet_pvs.inference.settings import BRAIN_MASK

        if brain_mode is not None and brain_mode not in BRAIN_MASK:
            raise ConfigError(f"--brain-mode must be one of {', '.join(BRAIN_MASK)}, not {brain_mode!r}")
        if layout not in LAYOUTS:
            raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
        region_path = None if regions in REGION_MODES else Path(regions)
        if (inputs is None) == (not channel):
            raise ConfigError("give the input with -i/--input, or a multi-channel case with --channel NAME=path (not both)")
        pairs = _channel_pairs(channel or [])
        if inputs is not None:
            cases = collect_inputs(inputs, regions=region_path, brainmask=brainmask, converted=Path(outdir) / "converted")
        net = load_pretrained(model, device=device)
        if brain_mode is not None:
            if not getattr(net, "predicts_brain", False):
                raise ConfigError(f"--brain-mode: {model} has no brain class (it does not find the brain itself)")
            net.inference = net.inference.updated({"brain_mask": brain_mode})
        if str(getattr(net, "device", "cpu")).startswith("cpu"):  # large activations: reuse freed memory (mednet_pvs.inference.cpu_memory)
            from mednet_pvs.inference import cpu_memory

            cpu_memory.reuse_freed_memory()
        if pairs:
            from mednet_pvs.inference.batch import _attach_regions, channel_case

            cases = [channel_case(pairs, getattr(net, "channel_names", ("image",)), brainmask=brainmask)]
            if region_path is not None:
                cases = _attach_regions(cases, region_path)
        todo = select_shard(cases, shard_kn)
        if compile_:
            if not hasattr(net, "compile"):
                raise ConfigError(f"--compile: {model} has no networks to compile")
            net.compile()
        apply_backend(net, backend, precision=precision)
        if not quiet and getattr(net, "backend_build", None):
            b = net.backend_build
            console.print(f"backend: {b['backend']} ({b['precision']}), {b['threads']} thread(s); " + (f"converted in {b['convert_s']:.1f} s (cached for next time)" if b["convert_s"] else "from the cache"))
        if not quiet:
            console.print(f"model: {net!r}; {len(todo)} case(s)" + (f" (shard {shard})" if shard else ""))
        show = progress_display(console, len(todo), quiet=quiet)
        with show:
            report = predict_batch(
                cases, outdir, net, tta=tta, step=step, save_probs=save_probs, preview=preview,
                overwrite=overwrite, shard=shard_kn, on_case=show.case, on_tile=None if quiet else show.tile,
                max_anisotropy=max_anisotropy, model_source=model, layout=layout,
                regions="none" if regions == "none" else "atlas",
            )
        console.print(
            f"{len(report.done)} done, {len(report.skipped)} skipped (already done), {len(report.failed)} failed"
            + (f", {len(report.excluded)} not segmented (not 3D anatomical scans)" if report.excluded else "")
            + f" in {report.seconds['total']:.1f} s" + (f"; summary: {report.summary}" if report.summary else "")
        )
        if report.failed:
            raise typer.Exit(1)



def _channel_pairs(items: list[str]) -> dict[str, str]:
    """``["T1w=a.nii.gz", ...]`` -> ``{"T1w": "a.nii.gz"}``; a malformed or repeated name is one line."""
    from mednet_pvs.errors import ConfigError

    pairs: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"--channel {item!r}: expected NAME=path (e.g. T1w=sub-01_T1w.nii.gz)")
        if name.strip() in pairs:
            raise ConfigError(f"--channel {name.strip()} is given twice")
        pairs[name.strip()] = path.strip()
    return pairs
