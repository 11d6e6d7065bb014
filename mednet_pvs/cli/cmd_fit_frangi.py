"""``mednet-pvs fit-frangi``: fit the classical baseline (threshold, scales, mask erosion) on labelled
data and save it."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from mednet_pvs.cli.options import INPUT, OUT, choices, plain, renamed

#: A fitted Dice below this is reported with a warning: the baseline found (almost) nothing.
NEAR_ZERO_DICE = 0.1

#: Best combinations listed after a grid fit.
SHOWN_COMBINATIONS = 5

#: Contrasts the Frangi baseline knows (polarity: T2w/PD bright tubes, T1w/FLAIR dark; auto: fitted).
Contrast = choices("Contrast", ("T2w", "T1w", "FLAIR", "PD", "auto"))

#: What is fitted: the threshold only, or threshold, scales, scale normalisation and mask erosion.
FitMode = choices("FitMode", ("all", "threshold"))


def parse_numbers(text: str, option: str, example: str, *, zero: bool) -> tuple[float, ...]:
    """``"0.5,1,1.5"`` -> ``(0.5, 1.0, 1.5)``: finite numbers, > 0 (``zero``: >= 0); anything else a
    ConfigError naming ``option``."""
    from mednet_pvs.errors import ConfigError

    try:
        values = tuple(float(p) for p in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) and (v >= 0 if zero else v > 0) for v in values):
        sign = ">= 0" if zero else "> 0"
        raise ConfigError(f"{option} takes comma-separated numbers {sign} in mm (e.g. {example}), not {text!r}")
    return values


def describe(row: dict) -> str:
    """One combination in words: scales, normalisation, polarity, erosion, threshold."""
    scales = ",".join(f"{s:g}" for s in row["sigmas_mm"])
    norm = "scale-normalised" if row["scale_normalise"] else "not normalised"
    return (f"scales {scales} mm ({norm}), {row['polarity']} tubes, mask erosion {row['mask_erosion_mm']:g} mm, "
            f"threshold {row['threshold']:.4g}")


def register(app: typer.Typer) -> None:
    @app.command("fit-frangi", cls=renamed({"--data": "--input"}))
    def fit_frangi_cmd(
        data: Path = typer.Option(..., *INPUT, help="Labelled cohort: manifest .csv/.tsv or BIDS-like folder."),
        out: Path = typer.Option(..., *OUT, help="Model folder to write (use it as -m/--model in predict)."),
        contrast: Contrast = typer.Option("T2w", "--contrast", case_sensitive=False,
                                          help="Scan contrast: T2w or PD (bright PVS), T1w or FLAIR (dark PVS), "
                                               "auto (the fit tries both polarities)."),
        fit: FitMode = typer.Option("all", "--fit", case_sensitive=False,
                                    help="all: threshold, scales, scale normalisation and mask erosion together; "
                                         "threshold: the threshold only (defaults, or one --scales / --erosion)."),
        scales: Optional[list[str]] = typer.Option(None, "--scales",
                                                   help="A scale set to try, in mm, e.g. 0.5,1,1.5; repeat for several "
                                                        "(default: four sets from 0.5 to 2 mm)."),
        erosion: Optional[str] = typer.Option(None, "--erosion",
                                              help="Brain mask erosions to try, in mm, e.g. 0,2,3 (default 0,1,2,3,4,5)."),
    ) -> None:
        """Fit the Frangi baseline (best mean voxel Dice on the cohort) and save a model folder."""
        from mednet_pvs.inference.frangi_model import fit_frangi
        from mednet_pvs.io import check_output_dir

        scale_sets = [parse_numbers(s, "--scales", "0.5,1,1.5", zero=False) for s in scales] if scales else None
        erosions = parse_numbers(erosion, "--erosion", "0,2,3", zero=True) if erosion is not None else None
        check_output_dir(out)
        model, result = fit_frangi(data, plain(contrast), fit=plain(fit), scale_sets=scale_sets, erosions_mm=erosions)
        model.save_pretrained(out)
        rows = sorted(result.rows(), key=lambda r: -r["mean_dice"] if r["mean_dice"] == r["mean_dice"] else math.inf)
        chosen = {**{k: getattr(model.config, k) for k in ("sigmas_mm", "scale_normalise", "polarity", "mask_erosion_mm")},
                  "threshold": model.config.threshold}
        typer.echo(f"{describe(chosen)}: mean training Dice {result.best_dice:.3f} over {len(result.dice)} case(s), "
                   f"best of {len(rows)} combination(s); wrote {out}")
        if len(rows) > 1:
            typer.echo("best combinations (mean training Dice):")
            for row in rows[:SHOWN_COMBINATIONS]:
                typer.echo(f"  {row['mean_dice']:.3f}  {describe(row)}")
        if result.best_dice < NEAR_ZERO_DICE:
            typer.secho(f"warning: the best Frangi Dice on this cohort is {result.best_dice:.3f}: the filter barely finds these PVS "
                        "(e.g. bright CSF and vessels respond like tubes); treat it as a floor, not a segmenter", err=True, fg="yellow")
