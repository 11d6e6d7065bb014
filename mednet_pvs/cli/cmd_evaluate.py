"""``mednet-pvs evaluate``: score predicted PVS masks against references (per case and cohort)."""
from __future__ import annotations

from pathlib import Path

import typer

from mednet_pvs.cli.options import INPUT, OUT, renamed

#: Metrics shown in the terminal table (all are in the CSV/JSON files).
SHOWN = (
    "dice", "precision", "recall", "cluster_dice", "det_f1", "hd95_mm", "surface_dice",
    "small_det_recall", "large_det_recall", "abs_count_diff", "abs_vol_diff_mm3",
)


#: Fewer cases than this make Pearson r and ICC(3,1) meaningless (2 points always correlate perfectly).
MIN_AGREEMENT_CASES = 3


def register(app: typer.Typer) -> None:
    @app.command("evaluate", cls=renamed({"--pred": "--input"}))
    def evaluate_cmd(
        pred: Path = typer.Option(..., *INPUT, help="Predicted masks: a predict output folder or a folder of NIfTI masks."),
        ref: Path = typer.Option(..., "-r", "--ref", help="Folder of reference masks, or a cohort manifest (.csv/.tsv) / BIDS folder."),
        out: Path = typer.Option(..., *OUT, help="Output folder for per_case.csv, summary.csv, summary.json."),
        regions: Path = typer.Option(None, "--regions", help="Folder of region maps (aseg/SynthSeg), paired by case id."),
        min_size_mm3: float = typer.Option(0.0, help="Drop clusters smaller than this (mm^3) from both masks first."),
        tolerance_mm: float = typer.Option(1.0, help="Surface Dice tolerance (mm)."),
    ) -> None:
        """Dice, precision/recall, cluster Dice, detection, HD95, surface Dice, count/volume agreement
        (Pearson r, ICC(3,1)); per region (white matter, basal ganglia) with --regions. Exits 1 when
        any case could not be evaluated."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        from mednet_pvs.analysis.evaluate import evaluate, write_evaluation
        from mednet_pvs.io import check_output_dir

        check_output_dir(out)  # a bad output place fails now, not after every case is scored
        per_case, summary = evaluate(pred, ref, regions=regions, min_size_mm3=min_size_mm3, tolerance_mm=tolerance_mm)
        paths = write_evaluation(per_case, summary, out)
        console = Console()
        table = Table(title=f"{summary['n_ok']} of {summary['n_cases']} cases evaluated")
        for col in ("metric", "mean", "std", "median", "n"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        prefixes = [""] + [f"{g}_" for g in summary["parameters"].get("groups", [])]
        for prefix in prefixes:
            for m in SHOWN:
                s = summary["metrics"].get(prefix + m)
                if s is None:
                    continue
                table.add_row(prefix + m, *(_fmt(s[k]) for k in ("mean", "std", "median")), str(s["n"]))
        console.print(table)
        if summary["agreement"]:
            agree = Table("predicted vs reference", title="Burden agreement over cases")
            for col in ("Pearson r", "ICC(3,1)", "n"):
                agree.add_column(col, justify="right")
            for name, a in summary["agreement"].items():
                agree.add_row(name, _fmt(a["pearson_r"]), _fmt(a["icc31"]), str(a["n"]))
            console.print(agree)
            few = min(a["n"] for a in summary["agreement"].values())
            if few < MIN_AGREEMENT_CASES:
                typer.secho(f"warning: burden agreement over {few} case(s): Pearson r and ICC need at least "
                            f"{MIN_AGREEMENT_CASES} cases to mean anything; read them as not measured", err=True, fg="yellow")
        for f in summary["failed"]:
            console.print(f"[red]{escape(f['case_id'])}[/red]: {f['status']}: {escape(f['error'])}", highlight=False, soft_wrap=True)
        console.print(f"wrote {paths['per_case']}, {paths['summary_csv']}, {paths['summary_json']}", highlight=False, soft_wrap=True)
        if summary["n_failed"]:
            raise typer.Exit(code=1)


def _fmt(v: float) -> str:
    return "-" if v is None or v != v else f"{v:.4g}"
