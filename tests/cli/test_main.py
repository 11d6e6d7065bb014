"""The ``mednet-pvs`` entry point itself."""
from __future__ import annotations

from mednet_pvs.cli.main import main


def test_version_needs_no_command(capsys):
    from mednet_pvs.version import __version__

    code = main(["--version"])
    assert code == 0 and capsys.readouterr().out.strip() == __version__


def test_flags_show_no_type_in_help(capsys):
    assert main(["predict", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--save-probs" in text and "<bool>" not in text
    assert "<float" in text, "options that take a value still show its type"
