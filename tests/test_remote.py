"""Scenes and truth read over HTTP (GDAL's /vsicurl/), as from S3 or a CDN: real data.

A local server answers byte-range requests, as object stores do, so GDAL reads only
the parts of each Cloud-Optimized GeoTIFF it needs; nothing leaves the machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geoseg import api
from geoseg.cli import cli
from tests.conftest import SHARED, ZION_BUNDLE, shared_file

#: A static file server answering ``Range: bytes=a-b`` with 206 Partial Content, run in
#: its own process: GDAL opens a URL holding the GIL, so a server thread of the test's
#: own process could not answer it.
SERVER = r"""
import os, re, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

class Handler(SimpleHTTPRequestHandler):
    def send_head(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        match = re.match(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match is None:
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            return open(path, "rb")
        start = int(match.group(1) or 0)
        end = min(int(match.group(2) or size - 1), size - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            self.wfile.write(f.read(end - start + 1))
        sys.stderr.write(f"GET {self.path} {start}-{end}\n")

    def log_message(self, *args):
        pass

os.chdir(sys.argv[1])
httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``(base URL of ../shared/data, the server's log of ranges read)``."""
    shared_file("zion/landsat8_b2345.tif")
    log = tmp_path_factory.mktemp("server") / "requests.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(SHARED)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            yield f"http://127.0.0.1:{port}", log
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            proc.stdout.close()  # type: ignore[union-attr]


def test_a_scene_predicted_from_a_url_is_the_local_prediction(server, zion_prediction, tmp_path):
    base, log = server
    url = f"{base}/zion/landsat8_b2345.tif"
    run = api.predict(url, ZION_BUNDLE, tmp_path / "remote", vector=False)
    with (
        rasterio.open(tmp_path / "remote" / "labels.tif") as remote,
        rasterio.open(zion_prediction / "labels.tif") as local,
    ):  # fmt: skip
        np.testing.assert_array_equal(remote.read(), local.read())
        assert remote.crs == local.crs and remote.transform == local.transform
    recorded = json.loads((tmp_path / "remote" / "run.json").read_text())["input"]
    assert recorded["path"] == url and run["input"]["path"] == url
    ranges = [line for line in log.read_text().splitlines() if "landsat8_b2345" in line]
    assert ranges  # GDAL asked for byte ranges, as of an object store
    # truth over HTTP too: the same scores as from the local files
    truth = {lvl: f"nlcd2011_{lvl}.tif" for lvl in ("level1", "level2")}
    scores = [
        api.evaluate(
            tmp_path / "remote" / "labels.tif",
            coarse=f"{root}/zion/{truth['level1']}",
            fine=f"{root}/zion/{truth['level2']}",
            bootstrap=0,
        )
        for root in (base, str(SHARED))
    ]
    for level in ("coarse", "fine"):
        assert scores[0][level]["confusion_matrix"] == scores[1][level]["confusion_matrix"]


def test_a_url_that_is_not_there_is_one_line(server, tmp_path):
    base, _ = server
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["predict", f"{base}/zion/missing.tif", "--model", str(ZION_BUNDLE), "--out", str(out)]
    )
    assert result.exit_code == 1
    assert re.search(r"missing\.tif: .*404", result.output), result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists() and not any(Path(tmp_path).iterdir())
