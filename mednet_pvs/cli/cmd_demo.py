"""``mednet-pvs demo``: the quick start - make a synthetic PVS phantom, segment it with the bundled
model, write the mask, stats and pictures, and print Dice against the phantom's truth."""
from __future__ import annotations

from pathlib import Path

import typer

from mednet_pvs.cli.options import MODEL, OUT, choices, plain

# The values the library accepts (tests/cli/test_cli_names.py checks them against
# mednet_pvs.synth.phantom_config and mednet_pvs.inference.backends, not imported here: --help stays fast).
Anatomy = choices("Anatomy", ("mni", "procedural"))
Contrast = choices("Contrast", ("T2w", "T1w", "FLAIR", "PD", "any"))
Backend = choices("Backend", ("torch", "onnxruntime", "openvino", "inductor", "auto"))


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo_out"), *OUT, help="Folder for the phantom, the mask, stats and pictures."),
        seed: int = typer.Option(0, "--seed", min=0, help="Phantom seed."),
        anatomy: Anatomy = typer.Option("mni", "--anatomy", case_sensitive=False, help="mni (full brain at 1 mm) or procedural (64^3, fast)."),
        contrast: Contrast = typer.Option("T2w", "--contrast", case_sensitive=False,
                                          help="T2w (PVS bright), T1w (PVS dark): the per-contrast models; FLAIR, PD or any "
                                               "(a random contrast): the any-contrast model."),
        head: bool = typer.Option(False, "--head", help="A whole head (skull, scalp, eyes, neck) instead of a skull-stripped "
                                                       "brain: the any-contrast model finds the brain itself."),
        model: str = typer.Option("auto", *MODEL,
                                  help="Model to segment with: auto (the bundled model of the contrast, or the any-contrast model), a zoo name or folder, or none."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
        backend: Backend = typer.Option("torch", "--backend", case_sensitive=False, help="Where the network runs: torch, onnxruntime (CPU; pip install 'mednet-pvs[onnx]'), openvino (CPU; pip install 'mednet-pvs[openvino]'), inductor (CPU; needs a C++ compiler) or auto."),
        quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress; only the summary."),
    ) -> None:
        """Make a synthetic PVS phantom (MNI152, 1 mm, burden 2), segment it, report Dice against its truth."""
        from rich.console import Console

        from mednet_pvs.cli.progress import progress_display
        from mednet_pvs.demo import run_demo
        from mednet_pvs.io import check_output_dir

        check_output_dir(out)
        if str(device or "cpu").startswith("cpu"):  # large activations: reuse freed memory (mednet_pvs.inference.cpu_memory)
            from mednet_pvs.inference import cpu_memory

            cpu_memory.reuse_freed_memory()
        show = progress_display(Console(stderr=True, soft_wrap=True), 1, quiet=quiet)
        with show:
            result = run_demo(out, seed, anatomy=plain(anatomy), contrast=plain(contrast), head=head,
                              model=None if model.lower() == "none" else model, device=device, backend=plain(backend),
                              progress=None if quiet else (lambda done, total: show.tile("phantom", done, total)))
        for line in result.summary_lines():
            typer.echo(line)
