"""Parity of mednet-pvs's nnU-Net v1 exact mode with nnunet 1.7.1's predict_from_folder, per case.

    .venv/bin/python tests/data/nnunet_v1_reference/parity.py [--multi]

``--multi``: only the two-channel folders (Task902_PVSWMH, Task903_PVSCT): labels identical,
Dice per foreground class, max |difference| over every foreground probability.
"""
import json
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)
sys.path.insert(0, "tests/inference")
from test_nnunet_v1_exact import (
    CASES,
    MODELS,
    MULTI,
    REF,
    _channels,
    _folder,
    _multi_folder,
    _multi_reference,
    _reference,
)

from mednet_pvs.zoo import load_pretrained

for plans in MODELS if "--multi" not in sys.argv else ():
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

for name in MULTI:
    m = load_pretrained(str(_multi_folder(name)), device="cpu")
    for case in CASES:
        lab, fg, args = _multi_reference(name, case)
        t = time.perf_counter()
        p = m.predict(_channels(case), tta=args["tta"], step=args["step_size"])
        got_lab = p.label_map if p.label_map is not None else p.mask
        got = p.class_probabilities[1:] if p.class_probabilities is not None else p.probabilities[None]
        dice = [2 * ((got_lab == k) & (lab == k)).sum() / max((got_lab == k).sum() + (lab == k).sum(), 1)
                for k in range(1, len(fg) + 1)]
        print(f"{name:24s} {case:6s} tta={args['tta']} labels identical {float((got_lab == lab).mean()):.6f} "
              f"dice {' '.join(f'{d:.6f}' for d in dice)} max|dp| {np.abs(got - fg).max():.2e} "
              f"({time.perf_counter()-t:.1f} s)", flush=True)
