"""predict_batch reads the next case and writes the previous one while the model works (nnU-Net's
-npp/-nps), with the same outputs as one step at a time."""
from __future__ import annotations

import threading
import time

import nibabel as nib
import numpy as np
import pytest

import mednet_pvs.inference.batch as batch
from mednet_pvs.inference.batch import collect_inputs, predict_batch
from mednet_pvs.synth import PhantomConfig, make_cohort
from mednet_pvs.zoo import load_pretrained


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("overlap")
    make_cohort(root, 3, PhantomConfig(anatomy="procedural", shape=(32, 32, 32), contrast="T2w", burden=3), seed=2)
    return collect_inputs(root / "manifest.csv")


class Recorder:
    """Wraps a model: logs when each predict starts and ends, and when each read starts."""

    def __init__(self, model, monkeypatch):
        self.model, self.events, self.lock = model, [], threading.Lock()
        real = batch.load_image

        def load_image(path, **kw):
            self.log("read", str(path))
            return real(path, **kw)

        monkeypatch.setattr(batch, "load_image", load_image)

    def log(self, what, who):
        with self.lock:
            self.events.append((time.perf_counter(), what, who))

    def predict(self, scan, **kw):
        self.log("predict-start", scan.path)
        time.sleep(0.3)  # a model that takes a while: the next read should start meanwhile
        pred = self.model.predict(scan, **kw)
        self.log("predict-end", scan.path)
        return pred

    def provenance(self, **kw):
        return self.model.provenance(**kw)


def test_overlap_reads_ahead_and_gives_the_same_outputs(tmp_path, scans, monkeypatch):
    model = load_pretrained("frangi-t2w")
    outputs = {}
    for overlap in (True, False):
        rec = Recorder(model, monkeypatch)
        report = predict_batch(scans, tmp_path / str(overlap), rec, overlap_io=overlap, save_probs=True)
        assert report.ok and len(report.done) == 3
        first_end = next(t for t, what, _ in rec.events if what == "predict-end")
        second_read = [t for t, what, _ in rec.events if what == "read"][1]
        assert (second_read < first_end) == overlap, rec.events
        outputs[overlap] = tmp_path / str(overlap)
    for case in scans:
        for name in ("mask", "prob"):
            f = f"{case.case_id}/{case.case_id}_{name}.nii.gz"
            a, b = (np.asanyarray(nib.load(outputs[o] / f).dataobj) for o in (True, False))
            assert np.array_equal(a, b), f
        stats = f"{case.case_id}/{case.case_id}_clusters.csv"
        assert (outputs[True] / stats).read_text() == (outputs[False] / stats).read_text()


def test_a_case_failing_in_the_writer_costs_only_that_case(tmp_path, scans, monkeypatch):
    import mednet_pvs.analysis.burden as burden  # predict_batch imports pvs_burden from here when it runs

    original = burden.pvs_burden

    def flaky(mask, affine, **kw):
        if flaky.calls == 1:
            flaky.calls += 1
            raise RuntimeError("disk trouble")
        flaky.calls += 1
        return original(mask, affine, **kw)

    flaky.calls = 0
    monkeypatch.setattr(burden, "pvs_burden", flaky)
    report = predict_batch(scans, tmp_path / "out", load_pretrained("frangi-t2w"))
    assert len(report.done) == 2 and list(report.failed) == [scans[1].case_id]
    assert "RuntimeError: disk trouble" in report.failed[scans[1].case_id]
