"""The public API resolves, and importing the package stays light."""
from __future__ import annotations

import subprocess
import sys

import mednet_pvs


def test_every_public_name_resolves():
    for name in mednet_pvs.__all__:
        assert getattr(mednet_pvs, name) is not None, name


def test_import_is_light():
    code = "import sys, mednet_pvs; bad = [m for m in ('torch', 'torchio', 'lightning', 'pandas') if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
