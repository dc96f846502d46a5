"""CUDA path: run with ``pytest -m gpu`` on a machine with a GPU."""

import pytest
import rasterio

from geoseg.calibrate import label_agreement
from geoseg.infer import InferOptions
from geoseg.workflow import run_predict

from .conftest import ZION_BUNDLE, shared_file

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def test_cuda_labels_match_cpu_fp32(cuda, tmp_path):
    scene = shared_file("zion/landsat8_b2345.tif")
    outs = {}
    for name, opts in {
        "cpu": InferOptions(device="cpu", precision="fp32"),
        "cuda": InferOptions(device="cuda", precision="auto", batch_size=0),
    }.items():
        run_predict(scene, ZION_BUNDLE, tmp_path / name, vector=False, options=opts)
        with rasterio.open(tmp_path / name / "labels.tif") as src:
            outs[name] = src.read()
    valid = outs["cpu"][0] != 255
    assert label_agreement(outs["cuda"], outs["cpu"], valid) >= 0.995


def test_automatic_batch_size_on_cuda(cuda):
    from geoseg.predict import Predictor

    pred = Predictor.from_bundle(str(ZION_BUNDLE), device="cuda", batch_size=0)
    b = pred.tiles_per_batch(640)
    assert 1 <= b <= 32 and b & (b - 1) == 0
    t = pred.tiles_per_batch(640, 64)  # probed with the trimmed forward predict runs
    assert 1 <= t <= 32 and t & (t - 1) == 0
