"""One spelling per idea across the commands (:mod:`mednet_pvs.cli.options`): ``-i/--input`` what a
command reads, ``-o/--out`` what it writes, ``-m/--model`` the model; options with a fixed set of
values list them in ``--help`` and refuse others in one line; old spellings still work, hidden,
with one warning. The rule is checked on every registered command, so a new one follows it too."""
from __future__ import annotations

import re
import warnings
from typing import get_args

import pytest
from typer.main import get_command

from mednet_pvs.cli.main import app, main
from mednet_pvs.cli.options import rewrite_args

#: LightningCLI's commands: every argument goes to LightningCLI (--data.*, --model.*, --trainer.*).
PASS_THROUGH = {"fit", "validate", "test"}
#: Commands whose operand stays a positional argument, and why.
POSITIONAL = {
    "info": "a list of files, as ls takes them (shell globs)",
    "models": "a model name or wildcard, not a file",
    "report": "written by another helper this session (report FOLDER); to take -i/--input like the others",
}
#: a short spelling always goes with its long one
PAIRS = {"-i": "--input", "-o": "--out", "-m": "--model"}
#: spellings the rule replaced: never visible again
RETIRED = {"--data", "--pred", "--from", "--source", "--scan", "--in", "--output", "--outdir", "--output-dir", "--json-out"}
#: (command, option) that must offer a fixed set of values (a test below checks them against the library)
CHOICE_OPTIONS = {
    ("demo", "--anatomy"), ("demo", "--contrast"), ("demo", "--backend"), ("synth", "--anatomy"), ("synth", "--contrast"),
    ("fit-frangi", "--contrast"), ("finetune", "--augmentation"), ("finetune", "--accelerator"),
    ("finetune", "--precision"), ("finetune", "--logger"),
}


def _commands() -> dict:
    return {name: cmd for name, cmd in get_command(app).commands.items() if name not in PASS_THROUGH}


def _options(cmd) -> list:  # a click command
    return [p for p in cmd.params if p.param_type_name == "option" and not p.hidden]


def _choices(param) -> list[str] | None:  # a click parameter
    """The values an option accepts, if they are a fixed set (typer 0.29's descriptor, or click's Choice)."""
    desc = getattr(param, "type_descriptor", None)
    values = desc.choices if desc is not None and desc.is_choice else getattr(getattr(param, "type", None), "choices", None)
    return None if values is None else [str(getattr(v, "value", v)) for v in values]


def test_every_command_spells_input_output_and_model_the_same():
    problems = []
    for name, cmd in _commands().items():
        for p in cmd.params:
            if p.param_type_name == "argument" and not p.hidden and name not in POSITIONAL:
                problems.append(f"{name}: positional {p.name.upper()}: take it as -i/--input (read) or -o/--out (written)")
        for p in _options(cmd):
            opts = set(p.opts) | set(p.secondary_opts)
            problems += [f"{name}: {'/'.join(p.opts)}: {short} goes with {long}" for short, long in PAIRS.items()
                         if (short in opts) != (long in opts)]
            problems += [f"{name}: {o} is a retired spelling (see mednet_pvs.cli.options)" for o in opts & RETIRED]
        for old, new in getattr(cmd, "old_spellings", {}).items():
            visible = {o for p in _options(cmd) for o in p.opts}
            if new not in visible or old in visible:
                problems.append(f"{name}: old spelling {old} -> {new}: the new one must be a visible option, the old one not")
    assert not problems, "\n".join(problems)
    every = {n: {o for p in _options(c) for o in p.opts} for n, c in _commands().items()}
    for name in ("predict", "evaluate", "check-data", "fit-frangi", "finetune", "import-nnunet-v1"):
        assert {"-i", "--input"} <= every[name], name
    for name in ("predict", "evaluate", "check-data", "fit-frangi", "finetune", "import-nnunet-v1", "synth", "demo"):
        assert {"-o", "--out"} <= every[name], name
    for name in ("predict", "finetune", "demo"):
        assert {"-m", "--model"} <= every[name], name


def test_choices_are_listed_in_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one help row per option, so a list of choices is not wrapped
    found = set()
    for name, cmd in _commands().items():
        with_choices = {p.opts[-1]: _choices(p) for p in _options(cmd) if _choices(p)}
        if not with_choices:
            continue
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        for opt, values in with_choices.items():
            found.add((name, opt))
            assert "<" + "|".join(values) + ">" in text, f"{name} {opt}: {values} not in --help"
    assert CHOICE_OPTIONS <= found, f"no longer a fixed set of values: {sorted(CHOICE_OPTIONS - found)}"


@pytest.mark.slow  # imports Lightning, the phantoms and the backends (~8 s on a fresh worker)
def test_choices_are_the_ones_the_library_accepts():
    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR
    from lightning.pytorch.accelerators import AcceleratorRegistry

    from mednet_pvs.data.augmentation import PRESETS
    from mednet_pvs.inference.backends import BACKENDS
    from mednet_pvs.synth.phantom_config import ANATOMIES, CONTRASTS
    from mednet_pvs.training.cli import LoggerName

    got = {(n, p.opts[-1]): _choices(p) for n, c in _commands().items() for p in _options(c) if _choices(p)}
    assert got["synth", "--anatomy"] == got["demo", "--anatomy"] == list(ANATOMIES)
    from mednet_pvs.demo import DEMO_CONTRASTS
    from mednet_pvs.synth.domain import CONTRAST_CHOICES

    assert got["synth", "--contrast"] == list(CONTRASTS)
    assert got["demo", "--contrast"] == list(DEMO_CONTRASTS) and set(DEMO_CONTRASTS) < set(CONTRAST_CHOICES)
    assert got["demo", "--backend"] == list(BACKENDS)
    assert got["finetune", "--augmentation"] == list(PRESETS)
    assert got["finetune", "--logger"] and set(got["finetune", "--logger"]) == set(get_args(LoggerName))
    assert set(got["finetune", "--precision"]) <= set(get_args(_PRECISION_INPUT_STR))
    assert set(got["finetune", "--accelerator"]) <= set(AcceleratorRegistry.available_accelerators()) | {"auto", "gpu"}


@pytest.mark.parametrize("argv, option", [
    (["demo", "--contrast", "DWI"], "--contrast"),
    (["synth", "-o", "{tmp}", "--anatomy", "moon"], "--anatomy"),
    (["fit-frangi", "-i", "{tmp}", "-o", "{tmp}", "--contrast", "DWI"], "--contrast"),
    (["finetune", "-m", "x", "-i", "{tmp}", "-o", "{tmp}", "--logger", "mlflow"], "--logger"),
])
def test_a_value_outside_the_choices_is_one_line_and_nothing_runs(tmp_path, capsys, argv, option):
    out = tmp_path / "out"
    code = main([a.replace("{tmp}", str(out)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: Invalid value for") and option in err and "--help" in err, err
    assert not out.exists()


def test_a_usage_error_is_one_line(capsys):
    assert main(["evaluate", "-o", "x"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: Missing option '-i' / '--input'. (see mednet-pvs evaluate --help)", err


@pytest.mark.parametrize("old, new", [
    (["evaluate", "--pred", "{x}", "--ref", "{x}", "-o", "{o}"], ["evaluate", "-i", "{x}", "--ref", "{x}", "-o", "{o}"]),
    (["fit-frangi", "--data", "{x}", "-o", "{o}"], ["fit-frangi", "-i", "{x}", "-o", "{o}"]),
    (["finetune", "--from", "{x}", "--data", "{x}", "-o", "{o}"], ["finetune", "-m", "{x}", "-i", "{x}", "-o", "{o}"]),
    (["check-data", "{x}", "-j", "1", "--json", "{o}/r.json"], ["check-data", "-i", "{x}", "-j", "1", "-o", "{o}/r.json"]),
    (["import-nnunet-v1", "{x}", "-o", "{o}"], ["import-nnunet-v1", "-i", "{x}", "-o", "{o}"]),
])
def test_old_spellings_still_work_with_one_warning_each(tmp_path, capsys, old, new):
    """Same result (here: the same one-line refusal of a missing input) and one warning per old spelling."""
    def run(argv):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = main([a.replace("{x}", str(tmp_path / "missing")).replace("{o}", str(tmp_path / "out")) for a in argv])
        return code, capsys.readouterr().err, [str(w.message) for w in caught if w.category is FutureWarning]

    code_new, err_new, warned_new = run(new)
    code_old, err_old, warned_old = run(old)
    assert code_old == code_new == 1 and err_old == err_new and not warned_new, (err_old, err_new)
    assert len(warned_old) == sum(a.startswith("--") and a not in new for a in old) + (old[1] == "{x}"), warned_old
    assert all("deprecated" in w and re.search(r"use (-i/--input|-o/--out|-m/--model)", w) for w in warned_old), warned_old


@pytest.mark.slow  # a fresh interpreter (~5 s)
def test_a_deprecation_is_one_warning_line_from_the_installed_command(tmp_path):
    import subprocess
    import sys

    code = "import sys; from mednet_pvs.cli.main import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", code, "fit-frangi", "--data", str(tmp_path / "missing"), "-o", str(tmp_path / "o")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1 and out.stderr.splitlines()[0] == "warning: --data is deprecated and will be removed; use -i/--input", out.stderr
    assert len(out.stderr.splitlines()) == 2 and out.stderr.splitlines()[1].startswith("error: "), out.stderr


def test_synth_takes_its_folder_as_out_and_still_as_an_argument(tmp_path, capsys):
    args = ["-n", "1", "--anatomy", "procedural", "--shape", "32", "--no-confounders"]
    assert main(["synth", "-o", str(tmp_path / "new"), *args]) == 0
    with pytest.warns(FutureWarning, match="use -o/--out"):
        assert main(["synth", str(tmp_path / "old"), *args]) == 0
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == sorted(p.name for p in (tmp_path / "old").iterdir())


def test_rewrite_leaves_values_and_everything_after_double_dash_alone():
    class Opt:  # the two attributes rewrite_args reads from click's options
        def __init__(self, *opts, flag=False):
            self.opts, self.is_flag, self.count, self.param_type_name = list(opts), flag, False, "option"

    params = [Opt("-i", "--input"), Opt("--name"), Opt("-q", "--quiet", flag=True)]
    renames = {"--data": "--input"}
    with pytest.warns(FutureWarning, match="--data is deprecated"):  # once: the second --data is --name's value
        assert rewrite_args(["--name", "--data", "--data=a"], params, renames) == ["--name", "--data", "--input=a"]
    with pytest.warns(FutureWarning, match="use -i/--input scan.nii"):
        assert rewrite_args(["-q", "scan.nii", "--name", "n"], params, {}, "--input") == ["-q", "--input", "scan.nii", "--name", "n"]
    assert rewrite_args(["-i", "a", "b"], params, {}, "--input") == ["-i", "a", "b"]  # given once: b is left to fail
    assert rewrite_args(["--", "--data"], params, renames, "--input") == ["--", "--data"]
