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
        as_json: bool = typer.Option(False, "--json", help="Print the good files' grids as JSON (errors still on stderr)."),
        as_csv: bool = typer.Option(False, "--csv", help="Print the good files' grids as CSV (errors still on stderr)."),
    ) -> None:
        """Read each file with the same checks as training and inference, and print its grid.

        Every file is checked: the good ones are listed in the table, each bad one is one line
        ``error: <file>: <problem>`` on stderr; exits 1 when any file is bad."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Column, Table

        from mednet_pvs.cli.tables import output_format, print_rows
        from mednet_pvs.errors import MednetError
        from mednet_pvs.io import load_image

        fmt = output_format(as_json, as_csv)
        table = Table(Column("file", overflow="fold"), "shape", "spacing (mm)", "orientation", "dtype", "min", "max")
        records: list[dict] = []
        errors: list[str] = []
        for f in files:
            try:
                scan = load_image(f, kind="label" if label else "image", max_anisotropy=max_anisotropy)
                row = (
                    escape(str(f)),
                    "x".join(map(str, scan.shape)),
                    " x ".join(f"{s:.3g}" for s in scan.spacing),
                    "".join(scan.orientation),
                    str(scan.header.get_data_dtype()),
                    f"{float(scan.data.min()):.4g}",
                    f"{float(scan.data.max()):.4g}",
                )
            except MednetError as e:
                text = str(e)
                errors.append(text if str(f) in text else f"{f}: {text}")
            except Exception as e:  # noqa: BLE001 -- one odd file never stops the others being checked
                errors.append(f"{f}: {type(e).__name__}: {' '.join(str(e).split())}")
            else:
                table.add_row(*row)
                records.append({"file": str(f), "shape": list(scan.shape), "spacing_mm": [round(v, 6) for v in scan.spacing],
                                "orientation": "".join(scan.orientation), "dtype": str(scan.header.get_data_dtype()),
                                "min": float(scan.data.min()), "max": float(scan.data.max())})
        if fmt == "csv":
            print_rows([{**r, "shape": "x".join(map(str, r["shape"])), "spacing_mm": " x ".join(map(str, r["spacing_mm"]))}
                        for r in records], "csv")
        elif fmt == "json":
            print_rows(records, "json")
        elif table.row_count:
            Console().print(table)
        for text in errors:
            typer.secho(f"error: {text}", err=True, fg="red")
        if errors:
            raise typer.Exit(1)
