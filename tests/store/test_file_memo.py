"""What is read from a file is reused only while the file is unchanged: asset checks, model hashes and
calibrations are looked up per request, and none may answer for a file that changed since."""

from __future__ import annotations

import os
import shutil
import time

from charforge.emotion.calibration import Calibration, Curve, Point, load_calibration, save_calibration
from charforge.files import RACY_NS, FileMemo, file_sha256
from charforge.models import weights_hash
from charforge.paths import sha256_bytes


def settle(path, seconds_ago: float = 10.0) -> None:
    """Date a file back, as if it was written a while ago (past the racy window)."""
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def counting_memo():
    reads = []

    def read(path):
        reads.append(path)
        return path.read_bytes()

    return FileMemo(read), reads


def test_a_settled_file_is_read_once_and_read_again_when_it_changes(tmp_path):
    memo, reads = counting_memo()
    path = tmp_path / "f.bin"
    path.write_bytes(b"first")
    settle(path)
    assert [memo(path) for _ in range(3)] == [b"first"] * 3 and len(reads) == 1
    path.write_bytes(b"other")  # same size, new mtime
    assert memo(path) == b"other" and len(reads) == 2


def test_a_file_written_just_now_is_not_kept(tmp_path):
    """Within the racy window a second write may leave the mtime unchanged: nothing is kept then."""
    memo, reads = counting_memo()
    path = tmp_path / "f.bin"
    path.write_bytes(b"aaaa")
    assert memo(path) == b"aaaa"
    with open(path, "r+b") as handle:  # rewritten in place, same size, most likely within the same clock tick
        handle.write(b"bbbb")
    assert memo(path) == b"bbbb" and len(reads) == 2
    assert RACY_NS >= 1_000_000_000


def test_asset_hashes_follow_the_bytes(tmp_path):
    path = tmp_path / "asset.png"
    path.write_bytes(b"x" * 100)
    assert file_sha256(path) == sha256_bytes(b"x" * 100)
    path.write_bytes(b"y" * 100)
    assert file_sha256(path) == sha256_bytes(b"y" * 100)
    path.unlink()
    assert file_sha256(path) is None and file_sha256(tmp_path) is None


def test_a_calibration_file_is_parsed_again_after_it_is_rewritten(tmp_path):
    def calibration(hash_char: str) -> Calibration:
        points = [Point(word="slightly", attention=1.0, response=0.2), Point(word="very", attention=1.2, response=0.9)]
        curve = Curve(points=points)
        return Calibration(model_hash=hash_char * 64, method="judge", emotions={"joy": curve})

    path = save_calibration(calibration("a"), tmp_path)
    settle(path)
    first = load_calibration(tmp_path)
    assert first == calibration("a") and load_calibration(tmp_path) is first  # parsed once
    save_calibration(calibration("b"), tmp_path)
    assert load_calibration(tmp_path) == calibration("b")


def test_the_model_hash_follows_added_and_changed_weight_files(tmp_path, tiny_model_dir):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    for folder, _dirs, files in os.walk(model):  # as if downloaded long ago: every listing and digest is kept
        for name in [*files, "."]:
            settle(os.path.join(folder, name))
    before = weights_hash(str(model))
    assert weights_hash(str(model)) == before
    [weights] = (model / "unet").glob("*.safetensors")
    shutil.copy(weights, model / "unet" / "extra.safetensors")  # a new file in a component folder
    with_extra = weights_hash(str(model))
    assert with_extra != before
    (model / "unet" / "extra.safetensors").unlink()
    assert weights_hash(str(model)) == before
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))  # the same file, other bytes
    assert weights_hash(str(model)) not in (before, with_extra)
