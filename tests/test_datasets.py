"""Posed-image datasets: NeRF-synthetic, instant-ngp and COLMAP readers on fixtures written here,
pose conventions, lens undistortion, hostile archives, and the real scenes when present."""

from __future__ import annotations

import io
import json
import math
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from vqpress_server.core.data import DatasetConfig, load_dataset, open_dataset_archive
from vqpress_server.core.data.blender import opengl_c2w_to_viewmat
from vqpress_server.core.data.distortion import distort_points, undistort_image, undistort_points
from vqpress_server.core.errors import ConfigError, FormatError

W, H = 8, 6


def rot(axis: str, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def c2w(i: int) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rot("z", 30 * i) @ rot("x", 70)
    m[:3, 3] = [math.sin(i), math.cos(i), 1.5 + 0.1 * i]
    return m


def write_png(path: Path, i: int, alpha: bool = True) -> np.ndarray:
    rng = np.random.default_rng(i)
    a = rng.integers(0, 256, (H, W, 4 if alpha else 3), dtype=np.uint8)
    if alpha:
        a[0, 0, 3] = 0  # fully transparent pixel
        a[0, 1, 3] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return a


def make_nerf_synthetic(root: Path, n_train: int = 3, n_test: int = 1) -> None:
    for split, n in (("train", n_train), ("test", n_test)):
        frames = []
        for i in range(n):
            write_png(root / split / f"r_{i}.png", i)
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w(i).tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.9, "frames": frames}))


def test_nerf_synthetic_reads_splits_intrinsics_and_composites_alpha(tmp_path: Path) -> None:
    make_nerf_synthetic(tmp_path)
    ds = load_dataset(tmp_path, DatasetConfig(background=(0.0, 1.0, 0.0)))
    assert ds.layout == "nerf_synthetic"
    assert (len(ds), ds.train_indices, ds.test_indices) == (4, [0, 1, 2], [3])
    img = ds.images[0]
    assert img.shape == (H, W, 3) and img.dtype == torch.float32
    assert torch.equal(img[0, 0], torch.tensor([0.0, 1.0, 0.0]))  # alpha 0 -> the background
    src = np.asarray(Image.open(tmp_path / "train" / "r_0.png"), dtype=np.float32) / 255
    assert torch.allclose(img[0, 1], torch.from_numpy(src[0, 1, :3]))  # alpha 1 -> the photo
    a = src[..., 3:]
    expect = src[..., :3] * a + np.array([0, 1, 0], np.float32) * (1 - a)
    assert torch.allclose(img, torch.from_numpy(expect), atol=1e-6)
    cam = ds.cameras[0]
    f = 0.5 * W / math.tan(0.45)
    assert np.allclose(cam.K, [[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
    assert (cam.width, cam.height) == (W, H)


def test_point_in_front_of_camera_projects_to_the_principal_point() -> None:
    m = c2w(2)
    view = opengl_c2w_to_viewmat(m, Path("t.json"), "frame")
    center = m[:3, 3]
    assert np.allclose(view @ np.append(center, 1), [0, 0, 0, 1])  # the camera center maps to the origin
    ahead = m @ np.array([0.0, 0.0, -2.0, 1.0])  # OpenGL cameras look down -z
    up = m @ np.array([0.0, 1.0, -2.0, 1.0])  # OpenGL +y is up in the image
    p, q = view @ ahead, view @ up
    assert np.allclose(p[:3], [0, 0, 2])  # OpenCV: +z forward
    K = np.array([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]])
    uv = K @ p[:3]
    assert np.allclose(uv[:2] / uv[2], [40, 30])
    uq = K @ q[:3]
    assert uq[1] / uq[2] < 30  # "up" lands above the center: OpenCV's y points down


def make_instant_ngp(root: Path, coeffs: dict[str, float], n: int = 3) -> None:
    frames = []
    for i in range(n):
        write_png(root / "images" / f"{i:04d}.png", 10 + i, alpha=False)
        frames.append({"file_path": f"images/{i:04d}.png", "transform_matrix": c2w(i).tolist()})
    meta = {"fl_x": 9.0, "fl_y": 8.5, "cx": 4.2, "cy": 2.9, "w": W, "h": H, **coeffs, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))


def test_instant_ngp_and_nerf_synthetic_give_the_same_pose(tmp_path: Path) -> None:
    make_nerf_synthetic(tmp_path / "nerf", n_train=3, n_test=0)
    make_instant_ngp(tmp_path / "ngp", {"k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0})
    a = load_dataset(tmp_path / "nerf")
    b = load_dataset(tmp_path / "ngp")
    assert b.layout == "instant_ngp"
    for ca, cb in zip(a.cameras, b.cameras, strict=True):
        assert np.allclose(ca.viewmat, cb.viewmat)
    assert np.allclose(b.cameras[0].K, [[9.0, 0, 4.2], [0, 8.5, 2.9], [0, 0, 1]])
    # Without distortion the photo is unchanged.
    src = np.asarray(Image.open(tmp_path / "ngp" / "images" / "0000.png"), dtype=np.float32) / 255
    assert torch.allclose(b.images[0], torch.from_numpy(src))


def test_downscale_scales_images_and_intrinsics(tmp_path: Path) -> None:
    make_instant_ngp(tmp_path, {})
    ds = load_dataset(tmp_path, DatasetConfig(downscale=2))
    cam = ds.cameras[0]
    assert ds.images[0].shape == (H // 2, W // 2, 3)
    assert np.allclose(cam.K, [[4.5, 0, 2.1], [0, 4.25, 1.45], [0, 0, 1]])
    with pytest.raises(ConfigError, match="downscale"):
        load_dataset(tmp_path, DatasetConfig(downscale=0))


def test_undistort_points_inverts_distort_points() -> None:
    coeffs = (0.0578, -0.0805, -0.00098, 0.00016)
    g = torch.Generator().manual_seed(0)
    xy = (torch.rand(2000, 2, generator=g, dtype=torch.float64) - 0.5) * 1.2
    assert torch.allclose(undistort_points(distort_points(xy, coeffs), coeffs), xy, atol=1e-12)


def test_undistort_image_round_trip() -> None:
    """A lens image synthesized from an analytic scene undistorts back to the pinhole view."""
    h, w = 96, 128
    K = np.array([[110.0, 0, 63.0], [0, 108.0, 49.0], [0, 0, 1]])
    coeffs = (-0.12, 0.03, 0.002, -0.001)

    def scene(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # smooth colors over normalized coords
        return torch.stack([0.5 + 0.4 * torch.sin(3 * x), 0.5 + 0.4 * torch.cos(4 * y), 0.5 + 0.3 * x * y], -1)

    v, u = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij"
    )
    xy_d = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]], -1)
    xy = undistort_points(xy_d, coeffs)  # where each photo pixel looks in the pinhole view
    photo = scene(xy[..., 0], xy[..., 1]).float()
    pinhole = scene(xy_d[..., 0], xy_d[..., 1]).float()  # the same pixel grid without a lens
    out = undistort_image(photo, K, coeffs)
    inner = (slice(8, h - 8), slice(8, w - 8))
    err = (out[inner] - pinhole[inner]).abs().max().item()
    assert err < 2e-3, err
    # The distorted photo itself is far from the pinhole view: the test is not vacuous.
    assert (photo[inner] - pinhole[inner]).abs().max().item() > 0.02


# -- COLMAP -------------------------------------------------------------------------------------------
QUATS = [(1.0, 0.0, 0.0, 0.0), (0.9238795, 0.0, 0.3826834, 0.0), (0.8, 0.36, 0.0, 0.48)]
TVECS = [(0.1, -0.2, 3.0), (0.0, 0.5, 2.0), (-1.0, 0.0, 4.0)]
PTS = [(0.0, 0.1, 0.2, 255, 0, 0), (1.0, -1.0, 0.5, 0, 128, 255)]


def make_colmap(root: Path, binary: bool) -> None:
    sp = root / "sparse" / "0"
    sp.mkdir(parents=True)
    for i in range(3):
        write_png(root / "images" / f"img{i}.png", 20 + i, alpha=False)
    if binary:
        cams = struct.pack("<Q", 2)
        cams += struct.pack("<iiQQ4d", 1, 1, W, H, 9.0, 8.0, 4.0, 3.0)  # PINHOLE
        cams += struct.pack("<iiQQ4d", 2, 2, W, H, 9.0, 4.0, 3.0, 0.0)  # SIMPLE_RADIAL, k = 0
        (sp / "cameras.bin").write_bytes(cams)
        imgs = struct.pack("<Q", 3)
        for i, (q, t) in enumerate(zip(QUATS, TVECS, strict=True)):
            imgs += struct.pack("<i7di", i + 1, *q, *t, 1 if i < 2 else 2) + f"img{i}.png".encode() + b"\0"
            imgs += struct.pack("<Q", 1) + struct.pack("<ddq", 1.0, 2.0, -1)
        (sp / "images.bin").write_bytes(imgs)
        pts = struct.pack("<Q", len(PTS))
        for j, p in enumerate(PTS):
            pts += struct.pack("<Q3d3Bd", j, *p[:3], *p[3:], 0.5) + struct.pack("<Q", 1) + struct.pack("<ii", 1, 0)
        (sp / "points3D.bin").write_bytes(pts)
    else:
        (sp / "cameras.txt").write_text(
            f"# Camera list\n1 PINHOLE {W} {H} 9.0 8.0 4.0 3.0\n2 SIMPLE_RADIAL {W} {H} 9.0 4.0 3.0 0.0\n"
        )
        lines = ["# Image list"]
        for i, (q, t) in enumerate(zip(QUATS, TVECS, strict=True)):
            lines.append(f"{i + 1} {' '.join(map(str, q))} {' '.join(map(str, t))} {1 if i < 2 else 2} img{i}.png")
            lines.append("1.0 2.0 -1" if i != 1 else "")
        (sp / "images.txt").write_text("\n".join(lines) + "\n")
        (sp / "points3D.txt").write_text(
            "".join(f"{j} {p[0]} {p[1]} {p[2]} {p[3]} {p[4]} {p[5]} 0.5 1 0\n" for j, p in enumerate(PTS))
        )


@pytest.mark.parametrize("binary", [False, True])
def test_colmap_text_and_binary(tmp_path: Path, binary: bool) -> None:
    make_colmap(tmp_path, binary)
    ds = load_dataset(tmp_path, DatasetConfig(test_every=2))
    assert ds.layout == "colmap"
    assert (len(ds), ds.train_indices, ds.test_indices) == (3, [1], [0, 2])
    assert [c.name for c in ds.cameras] == ["img0.png", "img1.png", "img2.png"]
    # Quaternion (w, x, y, z) rotation about y by 45 degrees; the pose is world-to-camera already.
    view = ds.cameras[1].viewmat
    assert np.allclose(view[:3, :3], rot("y", 45), atol=1e-6)
    assert np.allclose(view[:3, 3], TVECS[1])
    # A world point at the camera's optical axis projects to the principal point.
    p_world = np.linalg.solve(view, np.array([0.0, 0.0, 2.5, 1.0]))
    uv = ds.cameras[1].K @ (view @ p_world)[:3]
    assert np.allclose(uv[:2] / uv[2], [4.0, 3.0])
    assert np.allclose(ds.cameras[2].K, [[9.0, 0, 4.0], [0, 9.0, 3.0], [0, 0, 1]])
    assert ds.points is not None and ds.point_colors is not None
    assert torch.allclose(ds.points, torch.tensor([p[:3] for p in PTS], dtype=torch.float32))
    assert torch.allclose(ds.point_colors, torch.tensor([p[3:] for p in PTS], dtype=torch.float32) / 255)


def test_colmap_binary_with_lying_count_is_rejected(tmp_path: Path) -> None:
    make_colmap(tmp_path, binary=True)
    p = tmp_path / "sparse" / "0" / "images.bin"
    p.write_bytes(struct.pack("<Q", 10**12) + p.read_bytes()[8:])
    with pytest.raises(FormatError, match="more than the file holds"):
        load_dataset(tmp_path)


# -- archives -----------------------------------------------------------------------------------------
def zip_of(folder: Path, out: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f"scene/{f.relative_to(folder)}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return out


def test_good_archive_extracts_and_loads(tmp_path: Path) -> None:
    make_nerf_synthetic(tmp_path / "src")
    arc = zip_of(tmp_path / "src", tmp_path / "scene.zip")
    ds = open_dataset_archive(arc, tmp_path / "out", max_bytes=1 << 20, max_files=100)
    assert ds.layout == "nerf_synthetic" and len(ds) == 4


@pytest.mark.parametrize(
    ("name", "words"), [("../evil.txt", "escapes"), ("scene/../../evil.txt", "escapes"), ("/etc/evil", "absolute")]
)
def test_archive_path_escape_is_rejected(tmp_path: Path, name: str, words: str) -> None:
    make_nerf_synthetic(tmp_path / "src")
    arc = zip_of(tmp_path / "src", tmp_path / "bad.zip", {name: b"x"})
    with pytest.raises(FormatError, match=words):
        open_dataset_archive(arc, tmp_path / "out", max_bytes=1 << 20, max_files=100)
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_archive_symlink_and_hardlink_are_rejected(tmp_path: Path) -> None:
    for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        arc = tmp_path / f"links{kind!r}.tar"
        with tarfile.open(arc, "w") as tf:
            info = tarfile.TarInfo("scene/transforms.json")
            info.type, info.linkname = kind, "/etc/passwd"
            tf.addfile(info)
        with pytest.raises(FormatError, match="link"):
            open_dataset_archive(arc, tmp_path / f"out{kind!r}", max_bytes=1 << 20, max_files=100)
    # A zip member marked as a symlink in its external attributes.
    arc = tmp_path / "link.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        info = zipfile.ZipInfo("scene/link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(FormatError, match="symbolic link"):
        open_dataset_archive(arc, tmp_path / "outz", max_bytes=1 << 20, max_files=100)


def test_archive_zip_bomb_and_too_many_files_are_rejected(tmp_path: Path) -> None:
    arc = tmp_path / "bomb.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("scene/big.bin", b"\0" * (4 << 20))  # compresses to a few KiB
    assert arc.stat().st_size < 64 << 10
    with pytest.raises(FormatError, match="declares"):
        open_dataset_archive(arc, tmp_path / "out", max_bytes=1 << 20, max_files=100)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i in range(20):
            data = b"x"
            info = tarfile.TarInfo(f"scene/f{i}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    (tmp_path / "many.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(FormatError, match="more than 10 members"):
        open_dataset_archive(tmp_path / "many.tar.gz", tmp_path / "out2", max_bytes=1 << 20, max_files=10)


def test_archive_missing_image_is_named(tmp_path: Path) -> None:
    make_nerf_synthetic(tmp_path / "src")
    (tmp_path / "src" / "train" / "r_2.png").unlink()
    arc = zip_of(tmp_path / "src", tmp_path / "scene.zip")
    with pytest.raises(FormatError, match="r_2.png"):
        open_dataset_archive(arc, tmp_path / "out", max_bytes=1 << 20, max_files=100)


def test_json_path_escape_is_rejected(tmp_path: Path) -> None:
    make_nerf_synthetic(tmp_path)
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    meta["frames"][0]["file_path"] = "../../secret"
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="leaves the dataset folder"):
        load_dataset(tmp_path)


def test_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(Exception, match="no dataset layout"):
        load_dataset(tmp_path)


# -- real data ----------------------------------------------------------------------------------------
def test_real_nerf_synthetic_lego(shared_scene: Callable[..., Path]) -> None:
    ds = load_dataset(shared_scene("nerf_synthetic_lego_400"))
    assert ds.layout == "nerf_synthetic"
    assert (len(ds), len(ds.train_indices), len(ds.test_indices)) == (100, 87, 13)
    assert ds.images[0].shape == (400, 400, 3)
    f = 0.5 * 400 / math.tan(0.5 * 0.6911112070083618)
    assert np.isclose(ds.cameras[0].K[0, 0], f)
    # Lego sits at the origin: every camera sees it in front (+z in OpenCV axes), near the image center.
    for cam in ds.cameras:
        p = cam.viewmat @ np.array([0.0, 0.0, 0.0, 1.0])
        assert p[2] > 0
        uv = cam.K @ p[:3]
        assert np.allclose(uv[:2] / uv[2], [200, 200], atol=60)


def test_real_instant_ngp_fox(shared_scene: Callable[..., Path]) -> None:
    ds = load_dataset(shared_scene("instant_ngp_fox"), DatasetConfig(downscale=8))
    assert ds.layout == "instant_ngp"
    assert (len(ds), len(ds.train_indices), len(ds.test_indices)) == (67, 58, 9)
    assert ds.images[0].shape == (240, 135, 3)
    assert np.isclose(ds.cameras[0].K[0, 0], 1375.52 / 8)
