"""What the view cache's checksums cost (``utils/data/cache.py``): verifying at open and when first read.

Usage::

    python benchmarks/bench_cache_verify.py              # 512 MiB of views
    python benchmarks/bench_cache_verify.py --mib 64     # quicker

Writes one array file of ``--mib`` MiB of random uint8 views (64 x 64 x 3, as the cache's renders) with the
cache's writer (``_ArrayFile``: plain ``write()`` calls, a CRC-32 per chunk of rows) into a
temporary folder, reads it back through a memory map from the page cache (as training does after
the first pass) and measures, best of ``--rounds``:

* **every chunk verified** (what reading the whole cache once adds, once per process): MiB/s and
  seconds per GiB of cache;
* **the sample at open** (``OPEN_SAMPLE_CHUNKS`` random chunks an array): ms per array;
* **the bookkeeping per batch** once the chunks are verified (``ViewCache.verify_rows`` on the
  rows of one batch of the demo, 8 samples x (1 input + 4 supervision) views): microseconds;
* **writing** the file with its checksums, and the CRC-32 alone over the same bytes (the share of
  the build the checksums take, beside the decoding and distance maps that dominate it).

A cold read from disk adds the disk's read time, which the first epoch pays anyway.
"""

import argparse
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np


def _best(fn, rounds):
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(mib=512, rounds=3, folder=None):
    """The numbers of the module's docstring, as a dict."""
    from utils.data import cache as vc

    row = (64, 64, 3)
    n = max(1, int(mib * 2**20) // int(np.prod(row)))
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, (256,) + row, dtype=np.uint8)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "views.npy"

        def write():
            f = vc._ArrayFile(path, (n,) + row, np.uint8)
            for start in range(0, n, len(block)):
                f.write(block[: min(len(block), n - start)])
            return f.finish()

        write_s = _best(write, rounds)
        info = write()
        data = path.read_bytes()
        crc_s = _best(lambda: zlib.crc32(data), rounds)
        data = None
        array = np.load(path, mmap_mode="r")
        manifest = dict(files=dict(views=info, start=dict(chunk_rows=1, chunk_crc32=[0])))
        arrays = dict(views=array, start=np.array([0, n]))

        def verify_all():
            for k in range(len(info["chunk_crc32"])):
                vc.verify_chunk("views", array, info, k)

        all_s = _best(verify_all, rounds)
        sample_s = _best(lambda: vc.verify_sample(dict(files=dict(views=info)), dict(views=array)), rounds)
        cache = vc.ViewCache(tmp, manifest, arrays)
        cache.verify_rows("views", np.arange(n))
        rows = rng.integers(0, n, (8, 5))
        per_batch = _best(lambda: [cache.verify_rows("views", rows) for _ in range(1000)], rounds) / 1000
        size = path.stat().st_size
    return dict(
        mib=size / 2**20,
        chunks=len(info["chunk_crc32"]),
        verify_mib_s=size / 2**20 / all_s,
        verify_s_per_gib=all_s * 2**30 / size,
        sample_ms=1e3 * sample_s,
        batch_us=1e6 * per_batch,
        write_mib_s=size / 2**20 / write_s,
        crc_share_of_write=crc_s / write_s,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=float, default=512, help="size of the array file (MiB)")
    p.add_argument("--rounds", type=int, default=3, help="repeats of each measurement (the best counts)")
    p.add_argument("--dir", default=None, help="folder for the temporary file (default: the system's)")
    args = p.parse_args(argv)
    r = measure(args.mib, args.rounds, args.dir)
    print(
        f"view cache checksums, {r['mib']:.0f} MiB in {r['chunks']} chunks, from the page cache:\n"
        f"  verify every chunk:      {r['verify_mib_s']:.0f} MiB/s ({r['verify_s_per_gib']:.2f} s per GiB of cache)\n"
        f"  sample at open:          {r['sample_ms']:.1f} ms per array\n"
        f"  bookkeeping per batch:   {r['batch_us']:.0f} us (8 x 5 rows, chunks already verified)\n"
        f"  write with checksums:    {r['write_mib_s']:.0f} MiB/s; the CRC-32 is {100 * r['crc_share_of_write']:.0f} % "
        "of that time"
    )


if __name__ == "__main__":
    main()
