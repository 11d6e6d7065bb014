"""``mednet-pvs fit-frangi``: fit the classical baseline's threshold on labelled data and save it."""
from __future__ import annotations

from pathlib import Path

import typer

from mednet_pvs.cli.options import INPUT, OUT, choices, plain, renamed

#: A fitted Dice below this is reported with a warning: the baseline found (almost) nothing.
NEAR_ZERO_DICE = 0.1


#: Contrasts the Frangi baseline knows (polarity: T2w bright tubes, T1w/FLAIR dark).
Contrast = choices("Contrast", ("T2w", "T1w", "FLAIR"))


def register(app: typer.Typer) -> None:
    @app.command("fit-frangi", cls=renamed({"--data": "--input"}))
    def fit_frangi_cmd(
        data: Path = typer.Option(..., *INPUT, help="Labelled cohort: manifest .csv/.tsv or BIDS-like folder."),
        out: Path = typer.Option(..., *OUT, help="Model folder to write (use it as -m/--model in predict)."),
        contrast: Contrast = typer.Option("T2w", "--contrast", case_sensitive=False,
                                          help="Scan contrast: T2w (bright PVS), T1w or FLAIR (dark PVS)."),
    ) -> None:
        """Choose the Frangi threshold that maximises mean Dice on the cohort; save a model folder."""
        from mednet_pvs.inference.frangi_model import fit_frangi
        from mednet_pvs.io import check_output_dir

        check_output_dir(out)
        model, fit = fit_frangi(data, plain(contrast))
        model.save_pretrained(out)
        typer.echo(f"threshold {model.config.threshold:.4g}: mean training Dice {fit.best_dice:.3f} over {len(fit.dice)} case(s); wrote {out}")
        if fit.best_dice < NEAR_ZERO_DICE:
            typer.secho(f"warning: the best Frangi Dice on this cohort is {fit.best_dice:.3f}: the filter barely finds these PVS "
                        "(e.g. bright CSF and vessels respond like tubes); treat it as a floor, not a segmenter", err=True, fg="yellow")
