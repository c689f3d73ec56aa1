"""Tests of fertrain.data.readers on videos, frame folders and arrays written by the tests, plus shared videos."""

from __future__ import annotations

from pathlib import Path

import cv2
import torch  # noqa: F401  (before decord: decord2 loads NVBLAS, which breaks torch CPU matmuls if it comes first)
import decord
import numpy as np
import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from fertrain.data.readers import count_frames, list_frame_files, read_frames
from fertrain.data.records import DatasetError

SHARED_REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"

H, W = 48, 64


def frame_level(i: int) -> int:
    """Grey level written into frame ``i`` (frames are told apart by their mean)."""
    return 20 + 10 * i


def frame_numbers(frames: np.ndarray) -> list[int]:
    """Recover the frame number of each frame from its mean grey level (the inverse of ``frame_level``)."""
    means = frames[:, :, 8:].reshape(len(frames), -1).mean(axis=1)  # skip the red bar in columns 0..7
    return [int(round((m - 20) / 10)) for m in means]


def write_video(path: Path, num_frames: int) -> Path:
    """Write an MPEG-4 video whose frame i is grey level 20 + 10 i with a red bar on the left."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (W, H))
    assert writer.isOpened(), "OpenCV cannot write mp4v videos here"
    for i in range(num_frames):
        rgb = np.full((H, W, 3), frame_level(i), np.uint8)
        rgb[:, :8] = (255, 0, 0)
        writer.write(np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV expects BGR
    writer.release()
    return path


def write_frame_folder(folder: Path, num_frames: int, ext: str = ".jpg") -> Path:
    """Write frames named frame_1 .. frame_N without zero padding (lexicographic order would be wrong)."""
    folder.mkdir(parents=True)
    for i in range(num_frames):
        PIL.Image.fromarray(np.full((H, W, 3), frame_level(i), np.uint8)).save(folder / f"frame_{i + 1}{ext}")
    return folder


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", 20)


# ------------------------------------------------------------------------------------------------ videos
def test_video_frames_in_requested_order_with_duplicates(video: Path) -> None:
    idx = np.array([7, 3, 3, 19, 0])
    frames = read_frames(video, idx)
    assert frames.dtype == np.uint8 and frames.shape == (5, H, W, 3) and frames.flags.c_contiguous
    assert frame_numbers(frames) == idx.tolist()
    assert frames[0, :, :8, 0].mean() > 200 and frames[0, :, :8, 2].mean() < 50, "channels are not RGB"


def test_video_frames_as_list_are_views_of_one_decoded_batch(video: Path) -> None:
    """``as_list`` (what ClipDataset asks for): the frames of the stacked read, as views of decord's one buffer
    (no gather copy; repeats share one array), the same bytes as decord's own ``asnumpy`` copy."""
    idx = np.array([7, 3, 3, 19, 0])
    frames = read_frames(video, idx, as_list=True)
    stacked = read_frames(video, idx)
    assert isinstance(frames, list) and len(frames) == 5 and frames[1] is frames[2]
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert np.array_equal(np.stack(frames), stacked) and frame_numbers(stacked) == idx.tolist()
    batch = frames[0].base  # views of the one decoded batch of the 4 distinct frames, not copies
    assert isinstance(batch, np.ndarray) and batch.shape == (4, H, W, 3) and all(f.base is batch for f in frames)
    vr = decord.VideoReader(str(video), ctx=decord.cpu(0), num_threads=1)
    assert np.array_equal(stacked, vr.get_batch(idx.tolist()).asnumpy())
    del vr


def test_video_count_and_clamp(video: Path) -> None:
    assert count_frames(video) == 20
    frames = read_frames(video, np.array([18, 25, 1000]))
    assert frame_numbers(frames) == [18, 19, 19]


def test_video_count_follows_file_changes(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 12)
    assert count_frames(path) == 12
    write_video(path, 6)  # same path, new content: the cached count must not be reused
    assert count_frames(path) == 6
    assert frame_numbers(read_frames(path, np.array([11]))) == [5]


def test_over_reported_video_is_clamped_to_decodable_frames() -> None:
    path = SHARED_REAL / "no_face.mp4"
    if not path.exists():
        pytest.skip(f"{path} absent (shared test data not checked out beside the repo)")
    assert len(decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)) == 98  # container over-reports
    assert count_frames(path) == 95
    frames = read_frames(path, np.array([50, 94, 97]))  # 97 must not reach decord (it shifts its reader)
    ref = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1).get_batch([50, 94]).asnumpy()
    assert np.array_equal(frames[0], ref[0]) and np.array_equal(frames[1], ref[1])
    assert np.array_equal(frames[2], ref[1]), "index 97 should be clamped to the last decodable frame 94"
    # alone, an unclamped request for 97 makes a fresh decord reader return frame 93, not the last frame 94
    assert np.array_equal(read_frames(path, np.array([97]))[0], ref[1])


def test_hevc_mov_falls_back_when_decord_fails() -> None:
    path = SHARED_REAL / "face_noface.mov"
    if not path.exists():
        pytest.skip(f"{path} absent (shared test data not checked out beside the repo)")
    idx = np.arange(0, 169, 12)  # decord's get_batch raises "Error sending packet" on this request
    frames = read_frames(path, idx)
    assert frames.shape == (len(idx), 540, 960, 3)
    for k in (0, 5, 14):  # single frames a fresh decord reader does decode correctly
        ref = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1).get_batch([int(idx[k])]).asnumpy()
        assert np.array_equal(frames[k], ref[0]), f"frame {idx[k]} differs from decord's"


def test_unreadable_video_raises(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"not a video" * 100)
    with pytest.raises(DatasetError, match="garbage.mp4"):
        read_frames(path, np.array([0]))


# ---------------------------------------------------------------------------------------------- frame folders
def test_frame_folder_natural_order_and_only_requested_files_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_frame_folder(tmp_path / "00001", 12)
    (folder / "notes.txt").write_text("not a frame")
    assert [p.name for p in list_frame_files(folder)][:3] == ["frame_1.jpg", "frame_2.jpg", "frame_3.jpg"]
    assert count_frames(folder) == 12

    opened: list[str] = []
    from fertrain.data import readers

    real_decode = readers._decode_image  # every frame file is opened here (PIL, or its bytes for OpenCV)

    def counting_decode(fp, *args, **kwargs):  # noqa: ANN001, ANN202
        opened.append(Path(fp).name)
        return real_decode(fp, *args, **kwargs)

    monkeypatch.setattr(readers, "_decode_image", counting_decode)
    frames = read_frames(folder, np.array([9, 1, 1, 0, 40]))
    assert frames.shape == (5, H, W, 3) and frames.dtype == np.uint8
    assert frame_numbers(frames) == [9, 1, 1, 0, 11]  # 40 clamped to the last frame
    assert sorted(opened) == sorted(["frame_10.jpg", "frame_2.jpg", "frame_1.jpg", "frame_12.jpg"])


def test_png_frames(tmp_path: Path) -> None:
    folder = write_frame_folder(tmp_path / "png", 4, ext=".png")
    frames = read_frames(folder, np.array([3, 0]), reduce_to=8)  # reduce_to is a no-op for PNG
    assert frames.shape == (2, H, W, 3)
    assert frame_numbers(frames) == [3, 0]


def test_reduce_to_close_to_full_decode_and_resize(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    smooth = np.stack([xx, yy, (xx + yy) / 2], axis=-1).astype(np.uint8)  # gradients, 256 x 256
    folder = tmp_path / "smooth"
    folder.mkdir()
    PIL.Image.fromarray(smooth).save(folder / "0.jpg", quality=95)

    full = read_frames(folder, np.array([0]))[0]
    reduced = read_frames(folder, np.array([0]), reduce_to=64)[0]
    assert full.shape == (256, 256, 3)
    assert reduced.shape == (64, 64, 3), "draft should pick the 1/4 DCT scale for a 64-pixel target"
    resized = cv2.resize(full, (64, 64), interpolation=cv2.INTER_AREA)
    mae = np.abs(reduced.astype(np.float32) - resized.astype(np.float32)).mean()
    assert mae < 3.0, f"reduced decode differs from decode + resize by {mae:.2f} grey levels"
    # draft never goes below the requested size: 100 pixels -> scale 1/2 (128), not 1/4 (64)
    assert read_frames(folder, np.array([0]), reduce_to=100).shape == (1, 128, 128, 3)


def test_corrupt_jpeg_names_the_file(tmp_path: Path) -> None:
    folder = write_frame_folder(tmp_path / "clip", 3)
    good = (folder / "frame_2.jpg").read_bytes()
    (folder / "frame_2.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (folder / "frame_3.jpg").write_bytes(b"\x00garbage" * 20)  # not an image at all
    assert frame_numbers(read_frames(folder, np.array([0]))) == [0]  # the intact frame still reads
    with pytest.raises(DatasetError, match=r"(?i)frame_2\.jpg cannot be decoded .*truncated"):
        read_frames(folder, np.array([1]))
    with pytest.raises(DatasetError, match=r"frame_3\.jpg cannot be decoded"):
        read_frames(folder, np.array([2]))


def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="empty holds no"):
        read_frames(empty, np.array([0]))
    with pytest.raises(DatasetError, match="holds no"):
        count_frames(empty)
    missing = tmp_path / "nowhere" / "00042"
    with pytest.raises(DatasetError, match=r"nowhere/00042 does not exist"):
        read_frames(missing, np.array([0]))
    with pytest.raises(DatasetError, match=r"nowhere/00042 does not exist"):
        count_frames(missing)


def test_bad_indices_raise(video: Path) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        read_frames(video, np.array([-1, 2]))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        read_frames(video, np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="integers"):
        read_frames(video, np.array([0.5]))


# ------------------------------------------------------------------------------------------------- arrays
def test_npy_frames(tmp_path: Path) -> None:
    arr = np.stack([np.full((H, W, 3), frame_level(i), np.uint8) for i in range(5)])
    np.save(tmp_path / "clip.npy", arr)
    assert count_frames(tmp_path / "clip.npy") == 5
    frames = read_frames(tmp_path / "clip.npy", np.array([4, 9, 0]))
    assert isinstance(frames, np.ndarray) and not isinstance(frames, np.memmap)
    assert frame_numbers(frames) == [4, 4, 0]

    np.save(tmp_path / "float.npy", arr.astype(np.float32))
    with pytest.raises(DatasetError, match=r"float\.npy has dtype float32 .*expected uint8 \(N, H, W, 3\)"):
        read_frames(tmp_path / "float.npy", np.array([0]))


# --------------------------------------------------------------------------------------------- DataLoader
class _ReadDataset(Dataset):
    """Reads one clip per item inside __getitem__ (the pattern the real ClipDataset follows)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(read_frames(self.paths[i], np.array([0, 5, 9])))


def test_reading_inside_forked_dataloader_workers(video: Path, tmp_path: Path) -> None:
    folder = write_frame_folder(tmp_path / "frames", 10)
    paths = [video, folder, video, folder]
    expected = [read_frames(p, np.array([0, 5, 9])) for p in paths]  # decord used in the parent before fork
    loader = DataLoader(
        _ReadDataset(paths), batch_size=1, num_workers=2, timeout=60, multiprocessing_context="fork"
    )
    got = [batch[0].numpy() for batch in loader]
    assert len(got) == 4
    for g, e in zip(got, expected):
        assert np.array_equal(g, e)
        assert frame_numbers(g) == [0, 5, 9]
