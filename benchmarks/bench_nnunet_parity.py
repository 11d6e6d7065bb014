"""mednet-pvs exact mode vs nnU-Net v2's own predictor: same folder, same case, same TTA, side by side.

    NNUNET_V2_PYTHON=/tmp/nnv2/venv/bin/python .venv/bin/python benchmarks/bench_nnunet_parity.py \
        [--model <v2 trainer folder>] [--case <scan.nii.gz> ...] [--rounds 2] [--threads 1] [--no-tta]

``NNUNET_V2_PYTHON`` is a Python with nnunetv2 installed in a throwaway environment (never the
project's; see tests/data/nnunet_v2_reference/README.md). Each run is a fresh subprocess that loads
the model and predicts the case(s) once; the two tools alternate round by round. Reported per tool:
CPU seconds (user + sys of the child, loading included), wall seconds, peak resident memory (the
child's ``ru_maxrss``), and whether the label maps agree. mednet-pvs runs twice per round: exact
(``strict=True``, the default: one network input per call, as nnU-Net) and batched (``strict=False``:
tiles and mirrored copies through the network together, another convolution kernel). Default: the two-fold ResEnc-M fixture
folder and the fixture's RAS input.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "data" / "nnunet_v2_reference"

OURS = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np, torch
    torch.set_num_threads({threads})
    t0, c0 = time.perf_counter(), time.process_time()
    from mednet_pvs.zoo import load_pretrained
    from mednet_pvs.io import save_like
    model = load_pretrained({model!r}, device="cpu")
    for case, out in {cases!r}:
        pred = model.predict(case, tta={tta}, strict={strict})
        save_like(pred.label_map if pred.label_map is not None else pred.mask, pred.scan, out, dtype=np.uint8)
    r = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({{"cpu": r.ru_utime + r.ru_stime, "wall": time.perf_counter() - t0, "maxrss_mb": r.ru_maxrss / 1024}}))
""")

THEIRS = textwrap.dedent("""
    import json, resource, sys, time
    import torch
    torch.set_num_threads({threads})
    t0 = time.perf_counter()
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring={tta}, device=torch.device("cpu"),
                        verbose=False, allow_tqdm=False)
    p.initialize_from_trained_model_folder({model!r}, use_folds=None, checkpoint_name="checkpoint_final.pth")
    cases = {cases!r}
    p.predict_from_files_sequential([[c] for c, _ in cases], [o[:-len(".nii.gz")] for _, o in cases],
                                    save_probabilities=False, overwrite=True)
    r = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({{"cpu": r.ru_utime + r.ru_stime, "wall": time.perf_counter() - t0, "maxrss_mb": r.ru_maxrss / 1024}}))
""")


def _run(python: str, code: str, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE", nnUNet_def_n_proc="1",
               nnUNet_raw="/tmp", nnUNet_preprocessed="/tmp", nnUNet_results="/tmp")
    out = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REF / "results" / "Dataset901_PVS" / "nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres"))
    ap.add_argument("--case", nargs="+", default=[str(REF / "inputs" / "ras_T2w.nii.gz")])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-tta", action="store_true")
    args = ap.parse_args()
    theirs_py = os.environ.get("NNUNET_V2_PYTHON")
    if not theirs_py:
        sys.exit("set NNUNET_V2_PYTHON to a Python that has nnunetv2 installed (a throwaway environment)")
    import nibabel as nib
    import numpy as np

    tmp = Path(tempfile.mkdtemp(prefix="nnv2bench_"))
    tools = (("mednet-pvs", sys.executable, OURS, True), ("batched", sys.executable, OURS, False),
             ("nnU-Net", theirs_py, THEIRS, True))
    results: dict[str, list[dict]] = {t[0]: [] for t in tools}
    outs = {}
    for r in range(args.rounds):
        for tool, python, template, strict in tools:
            cases = [(c, str(tmp / f"{tool}_{i}.nii.gz")) for i, c in enumerate(args.case)]
            outs[tool] = [o for _, o in cases]
            code = template.format(threads=args.threads, model=args.model, cases=cases, tta=not args.no_tta,
                                   strict=strict)
            res = _run(python, code, args.threads)
            results[tool].append(res)
            print(f"round {r}: {tool:10s} cpu {res['cpu']:7.1f} s  wall {res['wall']:7.1f} s  peak {res['maxrss_mb']:7.0f} MB", flush=True)
    best = {t: min(x["cpu"] for x in v) for t, v in results.items()}
    print(f"model {args.model}\ncases {args.case}; tta {not args.no_tta}; threads {args.threads}; rounds {args.rounds}")
    for tool, label in (("mednet-pvs", "exact (strict=True, default)"), ("batched", "batched (strict=False)")):
        agree = [float((np.asarray(nib.load(a).dataobj) == np.asarray(nib.load(b).dataobj)).mean())
                 for a, b in zip(outs[tool], outs["nnU-Net"])]
        print(f"mednet-pvs {label}: best CPU {best[tool]:.1f} s vs nnU-Net {best['nnU-Net']:.1f} s -> "
              f"ratio nnU-Net / mednet-pvs = {best['nnU-Net'] / best[tool]:.2f}x; peak memory "
              f"{max(x['maxrss_mb'] for x in results[tool]):.0f} MB; label maps identical in {min(agree):.6f} "
              f"of voxels (worst case)")
    print(f"nnU-Net peak memory {max(x['maxrss_mb'] for x in results['nnU-Net']):.0f} MB")


if __name__ == "__main__":
    main()
