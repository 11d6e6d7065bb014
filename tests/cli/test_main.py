"""The ``mednet-pvs`` entry point itself."""
from __future__ import annotations

from mednet_pvs.cli.main import main


def test_version_needs_no_command(capsys):
    from mednet_pvs.version import __version__

    code = main(["--version"])
    assert code == 0 and capsys.readouterr().out.strip() == __version__
