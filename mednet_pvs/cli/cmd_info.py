"""``mednet-pvs info``: check images and describe their grids (shape, spacing, orientation, range)."""
from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info(
        files: list[Path] = typer.Argument(..., help="NIfTI files (.nii, .nii.gz) to check."),
        label: bool = typer.Option(False, "--label", help="Treat the files as label maps (constant allowed)."),
        max_anisotropy: float = typer.Option(8.0, help="Largest coarsest/finest voxel size ratio accepted."),
    ) -> None:
        """Read each file with the same checks as training and inference, and print its grid."""
        from rich.console import Console
        from rich.table import Table

        from mednet_pvs.io import load_image

        table = Table("file", "shape", "spacing (mm)", "orientation", "dtype", "min", "max")
        for f in files:
            scan = load_image(f, kind="label" if label else "image", max_anisotropy=max_anisotropy)
            table.add_row(
                str(f),
                "x".join(map(str, scan.shape)),
                " x ".join(f"{s:.3g}" for s in scan.spacing),
                "".join(scan.orientation),
                str(scan.header.get_data_dtype()),
                f"{float(scan.data.min()):.4g}",
                f"{float(scan.data.max()):.4g}",
            )
        Console().print(table)
