"""The packed view cache (utils/data/cache.py): the same batches as the PNG path, bit for bit;
rebuilt when a source file changes or a cache file is damaged, never read then.

The oracle is the PNG path of utils/data/pipeline.py (OpenCV decoding and scipy's distance
transform, batch by batch), which the cache must reproduce exactly.
"""

import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from utils.common import atomic_io
from utils.data import BatchPipeline
from utils.data import cache as vc
from utils.task import task_from_ref


def _same(a, b):
    """Batches equal key by key in dtype, shape and every byte (so -0.0 != 0.0, NaN == NaN)."""
    assert sorted(a) == sorted(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape, (k, x.dtype, y.dtype, x.shape, y.shape)
        assert x.tobytes() == y.tobytes(), f"batch key {k!r} differs"


def _pipes(root, cache_dir, **kw):
    args = dict(batch_size=3, n_views=3, num_workers=0, task="rgb")
    args.update(kw)
    args["task"] = task_from_ref(args["task"])
    cat, split = args.pop("category", "chair"), args.pop("split", "train")
    return (
        BatchPipeline(root, cat, split, **args),
        BatchPipeline(root, cat, split, view_cache="auto", cache_dir=str(cache_dir), **args),
    )


@pytest.fixture
def data_copy(tiny_data, tmp_path):
    """A private copy of the tiny data set (8 train, 1 val, 1 test chairs, 4 views), to change."""
    dst = tmp_path / "data"
    shutil.copytree(tiny_data, dst)
    return dst


@pytest.mark.parametrize("task", ["rgb", "partseg"])
def test_cache_batches_identical_to_png_path(task, tiny_data, tmp_path, capsys):
    # training: shuffled, random views, one pass of 8 samples in batches of 3 (the last padded),
    # then the endless stream across an epoch boundary; 4 views per model, 3 drawn per sample
    png, cached = _pipes(tiny_data, tmp_path, task=task, repeat=False)
    assert cached._cache is not None and png._cache is None
    assert png.steps_per_epoch == 3
    for step in range(3):
        _same(png.get_batch(step), cached.get_batch(step))
    assert cached.get_batch(2)["valid"].tolist() == [True, True, False]
    png, cached = _pipes(tiny_data, tmp_path, task=task, seed=5, n_views=4, use_input_view=True)
    for step in (0, 2, 3):
        _same(png.get_batch(step), cached.get_batch(step))
    # validation as training runs it: fixed views 0..V-1, no shuffling, one model padded to a batch
    png, cached = _pipes(tiny_data, tmp_path, task=task, split="val", shuffle=False, view_mode="fixed", repeat=False)
    _same(png.get_batch(0), cached.get_batch(0))
    # evaluation: every input view of every model, threads (prefetching iterator)
    png, cached = _pipes(
        tiny_data, tmp_path, task=task, split="test", all_input_views=True, shuffle=False, repeat=False, num_workers=2
    )
    with png, cached:
        got = list(zip(png, cached))
    assert len(got) == 2
    for a, b in got:
        _same(a, b)
    assert "view cache: building" in capsys.readouterr().err


def test_cache_identical_on_edge_cases(data_copy, tmp_path):
    """Views where the compact types and the masking matter: one foreground pixel in a corner
    (squared distances up to 63^2 + 63^2, beyond float16's exact integers), an empty mask
    (H^2 + W^2 everywhere), renders with a grey background (zeroed off the mask)."""
    png = BatchPipeline(data_copy, "chair", "val", n_views=4, view_mode="fixed", num_workers=0)
    folder = png.model_dir("rendered", 0)
    for v in range(4):
        depth = np.full((64, 64), 255, np.uint8)
        if v == 0:
            depth[0, 63] = 10
        elif v != 1:
            depth[20:40, 25:30] = 100
        cv2.imwrite(os.path.join(folder, f"depth_{v}.png"), depth)
        img = cv2.imread(os.path.join(folder, f"render_{v}.png"))
        img[img.sum(-1) == 0] = (90, 100, 110)
        cv2.imwrite(os.path.join(folder, f"render_{v}.png"), img)
    png, cached = _pipes(
        data_copy,
        tmp_path,
        split="val",
        n_views=4,
        view_mode="fixed",
        all_input_views=True,
        shuffle=False,
        repeat=False,
        batch_size=4,
    )
    a, b = png.get_batch(0), cached.get_batch(0)
    assert a["dist"][0, 0].max() == 63**2 + 63**2 and np.all(a["dist"][0, 1] == 64**2 + 64**2)
    assert a["image"][0, 0, 0].tolist() == np.float32([110 / 255, 100 / 255, 90 / 255]).tolist()  # grey input
    assert a["rgb"][0, 1].max() == 0  # and zeroed in the masked views
    _same(a, b)


def test_cached_arrays_are_the_decoded_files(tiny_data, tmp_path):
    """Independent of the pipeline: rows of the cache are the PNG pixels, masks and exact distances."""
    from scipy import ndimage

    spec = vc.CacheSpec(tiny_data, "chair", "val", task_from_ref("rgb"))
    cache = vc.open_cache(spec, cache_dir=tmp_path)
    [model] = cache.manifest["models"]
    folder = os.path.join(tiny_data, "ShapeNet_rendered", spec.synset, model)
    for v in range(4):
        bgr = cv2.imread(os.path.join(folder, f"render_{v}.png"))
        np.testing.assert_array_equal(cache.arrays["rgb"][v], bgr[..., ::-1])
        fg = cv2.imread(os.path.join(folder, f"depth_{v}.png"))[..., 0] < 254
        np.testing.assert_array_equal(cache.arrays["mask"][v], fg)
        rows, cols = np.nonzero(fg)  # brute force: squared distance to the nearest foreground pixel
        r, c = np.mgrid[:64, :64]
        brute = np.min((r[..., None] - rows) ** 2 + (c[..., None] - cols) ** 2, axis=-1)
        np.testing.assert_array_equal(cache.arrays["dist"][v], brute)
        assert cache.arrays["dist"].dtype == np.uint16
        assert np.array_equal(np.square(ndimage.distance_transform_edt(~fg)).astype(np.float32), brute)
    angles = np.loadtxt(os.path.join(folder, "view.txt"))
    np.testing.assert_array_equal(cache.angles(0), angles[:, :2])


def test_changed_source_file_invalidates_the_cache(data_copy, tmp_path, capsys):
    png, cached = _pipes(data_copy, tmp_path / "cache")
    _same(png.get_batch(0), cached.get_batch(0))
    _, again = _pipes(data_copy, tmp_path / "cache")  # unchanged: reused, not rebuilt
    assert "building" not in capsys.readouterr().err.split("ready")[-1]
    # paint the input view of batch 0's first sample: same file name, new content
    b = png.get_batch(0)
    path = os.path.join(
        png.model_dir("rendered", png.models.index(b["model_id"][0])), f"render_{b['input_view'][0]}.png"
    )
    img = cv2.imread(path)
    img[:8, :8] = (0, 0, 255)
    cv2.imwrite(path, img)
    png, cached = _pipes(data_copy, tmp_path / "cache")
    assert "source files changed" in capsys.readouterr().err
    new = cached.get_batch(0)
    assert new["image"][0, :8, :8].tolist() == [[[1.0, 0.0, 0.0]] * 8] * 8  # red (RGB), read from the cache
    _same(png.get_batch(0), new)
    # a file touched (same bytes, new modification time) also counts as changed
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    _pipes(data_copy, tmp_path / "cache")
    assert "source files changed" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "manifest", "shape"])
def test_damaged_cache_is_detected_and_rebuilt(damage, tiny_data, tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    png, cached = _pipes(tiny_data, cache_dir, task="partseg")
    folder = cached._cache.folder
    reference = png.get_batch(1)
    del cached
    capsys.readouterr()
    if damage == "truncate":  # an interrupted copy: the file ends early
        path = folder / "rgb.npy"
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size - 100)
        reason = r"rgb\.npy is \d+ bytes, expected \d+ \(truncated or damaged\)"
    elif damage == "manifest":
        (folder / vc.MANIFEST).unlink()
        reason = "manifest.json is missing"
    else:  # another array of the right byte size but the wrong shape
        np.save(folder / "dist.npy", np.zeros((64, 8 * 4, 64), np.uint16))
        reason = r"dist\.npy holds uint16 \(64, 32, 64\), the manifest says uint16 \(32, 64, 64\)"
    _, cached = _pipes(tiny_data, cache_dir, task="partseg")
    err = capsys.readouterr().err
    assert re.search(reason, err), err
    assert "view cache: building" in err
    _same(reference, cached.get_batch(1))
    spec = vc.CacheSpec(tiny_data, "chair", "train", task_from_ref("partseg"))
    vc.check(folder, spec, cached.models, vc.source_fingerprint(spec, cached.models))  # valid again


def _flip(path, offsets):
    """Invert the bytes at ``offsets`` of ``path`` in place: same size, same modification time."""
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    for k in offsets:
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_flipped_pixels_are_found_at_open_and_rebuilt(tiny_data, tmp_path, capsys):
    """The issue's case: the pixels of rgb.npy inverted in place (same size and mtime). The next
    pipeline finds it (the CRC-32 of its chunks), rebuilds, and gives the PNG path's batches."""
    png, cached = _pipes(tiny_data, tmp_path)
    reference = png.get_batch(0)
    folder = cached._cache.folder
    del cached
    path = folder / "rgb.npy"
    _flip(path, range(path.stat().st_size - 64 * 64 * 3 * 8, path.stat().st_size))  # the last 8 views
    capsys.readouterr()
    _, cached = _pipes(tiny_data, tmp_path)
    err = capsys.readouterr().err
    assert re.search(r"rgb\.npy rows \d+\.\.\d+: CRC-32 differs from the one recorded at build", err), err
    assert "view cache: building" in err
    for step in range(3):
        _same(png.get_batch(step), cached.get_batch(step))
    _same(reference, cached.get_batch(0))


@pytest.mark.parametrize("workers", [0, 2])
def test_damage_seen_only_when_read_rebuilds_before_the_batch(workers, tiny_data, tmp_path, monkeypatch, capsys):
    """A damaged chunk that the sample at open does not check (none here) is found when a batch
    first reads it: the cache is rebuilt and every batch is still the PNG path's, with threads too."""
    monkeypatch.setattr(vc, "CHUNK_BYTES", 4096)  # a row (a view) is more: one view per chunk
    monkeypatch.setattr(vc, "OPEN_SAMPLE_CHUNKS", 0)
    kw = dict(repeat=False, num_workers=workers, batch_size=2)
    png, cached = _pipes(tiny_data, tmp_path, **kw)
    cache = cached._cache
    assert len(cache.manifest["files"]["dist"]["chunk_crc32"]) == 8 * 4  # 8 models x 4 views
    path = cache.folder / "dist.npy"
    _flip(path, [path.stat().st_size - 3])  # one byte of the last view's distance map
    capsys.readouterr()
    png, cached = _pipes(tiny_data, tmp_path, **kw)
    assert "building" not in capsys.readouterr().err  # not seen at open
    with png, cached:
        for a, b in zip(png, cached):
            _same(a, b)
    err = capsys.readouterr().err
    assert re.search(r"dist\.npy rows \d+\.\.\d+: CRC-32 differs .*; rebuilding it", err), err
    assert err.count("rebuilding it") == 1
    assert cached._cache is not None and cached._cache.verified_share() > 0


def test_command_line_builds_and_verify_finds_flipped_bytes(tiny_data, tmp_path, monkeypatch, capsys):
    argv = ["--data_dir", str(tiny_data), "--split", "val", "--task", "rgb", "--cache_dir", str(tmp_path)]
    assert vc.main(argv) == 0
    assert "view cache: building" in capsys.readouterr().err
    folder = tmp_path / vc.CacheSpec(tiny_data, "chair", "val", task_from_ref("rgb")).name()
    path = folder / "dist.npy"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # same size, one byte wrong: only a checksum sees it
    path.write_bytes(bytes(data))
    monkeypatch.setattr(vc, "OPEN_SAMPLE_CHUNKS", 0)  # the sample at open would see it: switched off
    assert vc.main(argv) == 0 and "building" not in capsys.readouterr().err
    assert vc.main(argv + ["--verify"]) == 0
    assert "dist.npy: CRC-32 differs" in capsys.readouterr().err
    assert path.read_bytes() != bytes(data)
    assert vc.main(argv + ["--verify"]) == 0 and "CRC-32" not in capsys.readouterr().err


def test_a_copy_that_keeps_the_modification_time_invalidates_the_cache(data_copy, tmp_path, capsys):
    """``cp -p`` / ``rsync -a`` of a changed render over an old one, with the same size and the same
    modification time: the change time the kernel sets gives it away; the rebuilt cache holds the
    new pixels."""
    png = BatchPipeline(data_copy, "chair", "train", task=task_from_ref("rgb"), batch_size=3, n_views=3, num_workers=0)
    b = png.get_batch(0)
    path = os.path.join(
        png.model_dir("rendered", png.models.index(b["model_id"][0])), f"render_{b['input_view'][0]}.png"
    )
    old = cv2.imread(path)
    new = old.copy()
    new[:8, :8] = 255 - new[:8, :8]
    encoded = [cv2.imencode(".png", x)[1].tobytes() for x in (old, new)]
    size = max(len(e) for e in encoded) + 16  # both padded after their IEND chunk (decoders stop there)
    with open(path, "wb") as f:
        f.write(encoded[0].ljust(size, b"\0"))
    png, cached = _pipes(data_copy, tmp_path / "cache")
    _same(png.get_batch(0), cached.get_batch(0))
    st = os.stat(path)
    with open(path, "wb") as f:  # cp -p: the new bytes, then the old times
        f.write(encoded[1].ljust(size, b"\0"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    capsys.readouterr()
    png, cached = _pipes(data_copy, tmp_path / "cache")
    assert "source files changed" in capsys.readouterr().err
    got = cached.get_batch(0)
    _same(png.get_batch(0), got)
    assert got["image"][0, :8, :8].tolist() == (1 - b["image"][0, :8, :8]).tolist()  # the new pixels, inverted


FULL_DISK = """
import errno, shutil, sys
import numpy as np
from utils.data import BatchPipeline
from utils.data import cache as vc
from utils.task import task_from_ref

data, cache_dir, mode, disk = sys.argv[1:5]
free = 512 << 10 if mode == "honest" else 1 << 40  # "full": the check passes, the disk fills while writing
if disk == "simulated" or mode == "full":
    shutil.disk_usage = lambda path: shutil._ntuple_diskusage(free, 0, free)
if disk == "simulated":  # no small file system to mount: every write past 512 KiB fails with ENOSPC
    written, real_open = [0], open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            written[0] += memoryview(b).nbytes
            if written[0] > 512 << 10:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

    def full_open(path, mode="r", *args, **kw):
        f = real_open(path, mode, *args, **kw)
        return Full(f) if "w" in mode else f

    def no_map(*args, **kw):  # a memory map would not see the full disk: its writes fail too
        raise OSError(errno.ENOSPC, "No space left on device")

    vc.open = full_open
    np.lib.format.open_memmap = no_map
kw = dict(batch_size=3, n_views=3, num_workers=0)
png = BatchPipeline(data, "chair", "train", task=task_from_ref("rgb"), **kw)
cached = BatchPipeline(data, "chair", "train", task=task_from_ref("rgb"), view_cache="auto", cache_dir=cache_dir, **kw)
a, b = png.get_batch(0), cached.get_batch(0)
same = all(np.asarray(a[k]).tobytes() == np.asarray(b[k]).tobytes() for k in a)
print("cache used:", cached._cache is not None, "same batch:", same)
"""


@pytest.mark.parametrize("mode", ["honest", "full"])
def test_a_full_disk_falls_back_to_the_png_files(mode, small_disk, tiny_data, tmp_path):
    """The cache (about 1 MiB here) on a 512 KiB disk. ``honest``: the free-space check refuses to
    build, one line. ``full``: the check is fooled and the disk fills during the writes, which
    memory-mapped stores turned into SIGBUS (the process died, exit 135, no message); now an
    ENOSPC error, the same one line, no folder left. Either way the PNG path's batches follow.
    Without a small file system to mount (not root, no tmpfs), the full disk is simulated."""
    cache_dir = (small_disk if small_disk is not None else tmp_path) / "cache"
    disk = "tmpfs" if small_disk is not None else "simulated"
    res = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tiny_data), str(cache_dir), mode, disk],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=os.getcwd()),
        timeout=600,
    )
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    assert "cache used: False same batch: True" in res.stdout, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if "view cache:" in line]
    if mode == "honest":  # one line, nothing started
        want = r"not enough free space to build the view cache: it needs [\d.]+ MiB plus a 64.0 MiB margin"
        assert len(lines) == 1, res.stderr
    else:  # "building ...", then one line
        want = r"\.npy: no space left on the disk; free space there or write elsewhere"
        assert len(lines) == 2 and "view cache: building" in lines[0], res.stderr
    assert re.search(want, lines[-1]), lines[-1]
    assert lines[-1].endswith("reading the PNG files instead (the same batches; --cache_dir moves the cache)")
    assert "Traceback" not in res.stderr
    assert not cache_dir.exists() or os.listdir(cache_dir) == []  # no unfinished folder left


def test_folders_of_killed_builds_are_removed_at_the_next_open(tiny_data, tmp_path, capsys):
    """A build killed with SIGKILL leaves its working folder (its .owner lock then free); the next
    open on the same cache folder removes it, with a line, and leaves a live build's folder alone."""
    cache_dir = tmp_path / "cache"
    code = (
        "import os, sys\n"
        "from utils.data import cache as vc\n"
        "from utils.task import task_from_ref\n"
        "def killed(*a, **k):\n"
        "    os.kill(os.getpid(), 9)\n"
        "vc._write_arrays = killed\n"
        "vc.open_cache(vc.CacheSpec(sys.argv[1], 'chair', 'val', task_from_ref('rgb')), cache_dir=sys.argv[2])\n"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    res = subprocess.run([sys.executable, "-c", code, str(tiny_data), str(cache_dir)], env=env)
    assert res.returncode == -9
    [left] = os.listdir(cache_dir)
    assert left.startswith(".rgb_03001627_val_64x64_n1024.tmp-")
    live = atomic_io.WorkDir(cache_dir / "rgb_03001627_test_64x64_n1024")  # a build still running
    capsys.readouterr()
    vc.open_cache(vc.CacheSpec(tiny_data, "chair", "val", task_from_ref("rgb")), cache_dir=cache_dir)
    err = capsys.readouterr().err
    assert f"view cache: removed {cache_dir / left}, left by an interrupted run" in err
    assert sorted(os.listdir(cache_dir)) == sorted([live.path.name, "rgb_03001627_val_64x64_n1024"])
    live.discard()


def test_training_flags_reach_the_pipeline(tiny_data, tmp_path):
    from utils.train import config

    argv = ["--exp", "x", "--data_dir", str(tiny_data), "--batch_size", "2"]
    args = config.parse_train_args("rgb", argv + ["--view_cache", "auto", "--cache_dir", str(tmp_path / "c")])
    with BatchPipeline.from_args(args, task_from_ref("rgb"), "val", num_workers=0) as p:
        assert p._cache is not None and p._cache.folder.parent == tmp_path / "c"
    assert config.parse_train_args("rgb", argv).view_cache == "auto"  # the recommended default
    plain = config.parse_train_args("rgb", argv + ["--view_cache", "off"])
    assert BatchPipeline.from_args(plain, task_from_ref("rgb"), "val", num_workers=0)._cache is None
    # the same batches either way: a run may be resumed with the cache switched on or off
    assert config.changed_flags(plain, args) == []


def test_bench_data_table_arithmetic():
    """benchmarks/bench_data.py's ratios, checked by hand: B = 8 samples per 50 ms step = 160 samples/s."""
    from benchmarks import bench_data as bench

    text = bench.table(50.0, 40.0, {("cache", 1): 1600.0}, {("cache", 1): 2.0}, 10.0)
    assert "-> 160 samples/s" in text and "5.0 ms -> 1600 samples/s" in text
    assert "| cache | 1 | 1600 | 10.0x | 1.00x | 2.00 | 4.8% |" in text  # 2 / (2 + 40) CPU ms


def test_bench_cache_verify_runs_and_its_arithmetic(tmp_path):
    """benchmarks/bench_cache_verify.py on 2 MiB: 170 views of 12 KiB (under the 341 rows of one chunk); the
    seconds per GiB are the inverse of the MiB/s (by hand: 1024 / rate)."""
    from benchmarks import bench_cache_verify as bench

    r = bench.measure(mib=2, rounds=1, folder=str(tmp_path))
    assert r["chunks"] == 1 and r["mib"] == pytest.approx((128 + 170 * 64 * 64 * 3) / 2**20)
    assert r["verify_s_per_gib"] == pytest.approx(1024 / r["verify_mib_s"])
    assert r["verify_mib_s"] > 0 and r["sample_ms"] > 0 and r["batch_us"] > 0 and 0 < r["crc_share_of_write"]
