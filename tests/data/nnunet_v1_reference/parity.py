"""Parity of mednet-pvs's nnU-Net v1 exact mode with nnunet 1.7.1's predict_from_folder, per case.

    .venv/bin/python tests/data/nnunet_v1_reference/parity.py
"""
import json
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)
sys.path.insert(0, "tests/inference")
from test_nnunet_v1_exact import CASES, MODELS, REF, _folder, _reference

from mednet_pvs.zoo import load_pretrained

for plans in MODELS:
    m = load_pretrained(str(_folder(plans)), device="cpu")
    tta = json.loads((REF / "predictions" / f"Task901_PVS__{plans}" / "reference.json").read_text())["tta"]
    for case in CASES:
        lab, prob = _reference(plans, case)
        t = time.perf_counter()
        p = m.predict(REF / "inputs" / f"{case}_T2w.nii.gz", tta=tta)
        a, b = p.mask == 1, lab == 1
        print(f"{plans:24s} {case:6s} tta={tta} labels identical {float((p.mask == lab).mean()):.6f} "
              f"dice {2*(a&b).sum()/max(a.sum()+b.sum(),1):.6f} max|dp| {np.abs(p.probabilities-prob).max():.2e} "
              f"({time.perf_counter()-t:.1f} s)", flush=True)
