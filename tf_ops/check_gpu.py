"""GPU check of the CUDA kernels (not run by CI; needs nvcc and an NVIDIA GPU).

    python tf_ops/check_gpu.py [--out DIR] [--arch sm_90] [--reps 20]

1. Compiles the framework-free ``*.cu`` files plus ``check_gpu_host.cu`` (host-pointer
   wrappers) with nvcc into a standalone shared library -- no TensorFlow involved.
2. Calls each launcher through ctypes on random clouds and compares with the float64
   numpy/scipy references of ``tf_ops/reference.py``: nn_distance (distances, indices,
   gradient), approx_match (match, cost, gradient), auction_match (permutation, cost
   ratio to scipy's exact assignment), the fused mask/feature projections (values,
   coverage, gradients; scenes with pixel-boundary points, points behind the camera and
   depth ties) and pixel_nearest (which pixels find a point, the found distances, the
   gradient).
3. Prints a table (GPU model, max errors, GPU times, and the compiled CPU op's times
   when the CPU library is built) to paste into tf_ops/README.md; exits 1 if a check
   fails, 2 if there is no usable GPU (the compile step still ran).

The compile step alone (``compile_library``) is what tests/test_tf_ops_cuda.py runs
on machines with nvcc but no GPU.
"""

import argparse
import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
HOST_WRAPPERS = "check_gpu_host.cu"  # compiled with build.py's CUDA_SOURCES

_f32 = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_i32 = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_int, _float, _pf = ctypes.c_int, ctypes.c_float, ctypes.POINTER(ctypes.c_float)


_SIBLINGS = "_differ_tf_ops"  # tf_ops/*.py imported without tf_ops/__init__.py (which imports TensorFlow)


def _sibling(name):
    """Imports tf_ops/<name>.py as ``_differ_tf_ops.<name>``: a package over this folder whose
    __init__ is not run, so TensorFlow is not imported (the modules used here need only numpy,
    scipy and each other, through relative imports)."""
    if _SIBLINGS not in sys.modules:
        spec = importlib.util.spec_from_loader(_SIBLINGS, loader=None, is_package=True)
        package = importlib.util.module_from_spec(spec)
        package.__path__ = [HERE]
        sys.modules[_SIBLINGS] = package
    return importlib.import_module(f"{_SIBLINGS}.{name}")


def find_nvcc():
    """nvcc as tf_ops/build.py finds it."""
    return _sibling("build").find_nvcc()


def compile_library(out_dir, nvcc=None, arch=None, sources=None):
    """Compiles the .cu files into ``out_dir/libdiffer_cuda_check.so`` in ONE nvcc call; returns its path.

    Raises RuntimeError with nvcc's message on failure.
    """
    nvcc = nvcc or find_nvcc()
    if not nvcc:
        raise RuntimeError("nvcc not found (set NVCC or CUDA_HOME)")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "libdiffer_cuda_check.so")
    include = os.path.join(HERE, "include")
    cmd = [nvcc, "-shared", "-O3", "-std=c++17", "-Xcompiler", "-fPIC", f"-I{include}", "-o", out]
    if arch:
        cmd.append(f"-arch={arch}")
    cmd += [os.path.join(HERE, s) for s in (sources or _sibling("build").CUDA_SOURCES + [HOST_WRAPPERS])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nvcc failed (exit {proc.returncode}):\n  {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return out


def load(path):
    """ctypes handle with the signatures of check_gpu_host.cu."""
    lib = ctypes.CDLL(path)
    lib.differ_gpu_name.restype = ctypes.c_char_p
    lib.differ_gpu_name.argtypes = [ctypes.c_char_p, _int]
    for name, args in {
        "differ_host_nn_distance": [_int, _int, _f32, _int, _f32, _f32, _i32, _f32, _i32, _int, _pf],
        "differ_host_nn_distance_grad": [_int, _int, _f32, _int, _f32, _f32, _i32, _f32, _i32, _f32, _f32, _int, _pf],
        "differ_host_approx_match": [_int, _int, _int, _f32, _f32, _f32, _f32, _f32, _f32, _int, _pf, _pf, _pf],
        "differ_host_auction_match": [_int, _int, _f32, _f32, _float, _i32, _i32, _int, _pf],
        "differ_host_projection": [
            _int,
            _int,
            _int,
            _f32,
            _f32,
            _int,
            _int,
            _float,
            _int,
            _float,
            _int,
            _float,
            _f32,
            _f32,
            _f32,
            _f32,
            _f32,
            _f32,
            _f32,
            _f32,
            _int,
            _pf,
            _pf,
            _pf,
            _pf,
        ],
        "differ_host_pixel_nearest": [
            _int,
            _int,
            _int,
            _f32,
            _int,
            _int,
            _f32,
            ctypes.c_double,
            _f32,
            _i32,
            _f32,
            _f32,
            _int,
            _pf,
            _pf,
        ],
    }.items():
        fn = getattr(lib, name)
        fn.restype = ctypes.c_char_p
        fn.argtypes = args
    return lib


def gpu_name(lib):
    """Name of CUDA device 0; RuntimeError when there is none."""
    buf = ctypes.create_string_buffer(256)
    err = lib.differ_gpu_name(buf, 256)
    if err:
        raise RuntimeError(f"CUDA: {err.decode()}")
    return buf.value.decode()


def _call(fn, *args):
    err = fn(*args)
    if err:
        raise RuntimeError(f"{fn.__name__}: {err.decode()}")


def _ms():
    return ctypes.c_float(0.0)


# ------------------------------------------------------------------------------------ checks
def check_nn_distance(lib, rng, b, n, m, reps):
    reference = _sibling("reference")
    p = (rng.random((b, n, 3)) - 0.5).astype(np.float32)
    q = (rng.random((b, m, 3)) - 0.5).astype(np.float32)
    d1, d2 = np.empty((b, n), np.float32), np.empty((b, m), np.float32)
    i1, i2 = np.empty((b, n), np.int32), np.empty((b, m), np.int32)
    t = _ms()
    _call(lib.differ_host_nn_distance, b, n, p, m, q, d1, i1, d2, i2, reps, ctypes.byref(t))
    r1, ri1, r2, ri2 = reference.nn_distance(p, q)
    err_d = max(np.max(np.abs(d1 - r1) / np.maximum(r1, 1e-12)), np.max(np.abs(d2 - r2) / np.maximum(r2, 1e-12)))
    # indices: must point at a neighbour as close as the reference one (ties allowed)
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    e1 = np.sum((p64 - np.take_along_axis(q64, i1[..., None].astype(np.int64), 1)) ** 2, -1) - r1
    e2 = np.sum((q64 - np.take_along_axis(p64, i2[..., None].astype(np.int64), 1)) ** 2, -1) - r2
    err_i = max(np.abs(e1).max(), np.abs(e2).max())
    g1 = rng.standard_normal((b, n)).astype(np.float32)
    g2 = rng.standard_normal((b, m)).astype(np.float32)
    o1, o2 = np.empty((b, n, 3), np.float32), np.empty((b, m, 3), np.float32)
    tg = _ms()
    _call(lib.differ_host_nn_distance_grad, b, n, p, m, q, g1, i1, g2, i2, o1, o2, reps, ctypes.byref(tg))
    err_g = 0.0
    for k in range(b):
        rg1, rg2 = reference.nn_distance_grad(p[k], q[k], g1[k], i1[k], g2[k], i2[k])
        scale = max(np.abs(rg1).max(), np.abs(rg2).max(), 1e-12)
        err_g = max(err_g, np.abs(o1[k] - rg1).max() / scale, np.abs(o2[k] - rg2).max() / scale)
    ok = err_d < 1e-5 and err_i < 1e-6 and err_g < 1e-5
    return {
        "op": f"nn_distance B={b} N={n} M={m}",
        "ok": ok,
        "error": f"dist rel {err_d:.1e}, idx {err_i:.1e}, grad rel {err_g:.1e}",
        "gpu_ms": f"{t.value:.3f} fwd, {tg.value:.3f} grad",
    }


def check_approx_match(lib, rng, b, n, m, reps):
    reference = _sibling("reference")
    p = (rng.random((b, n, 3)) - 0.5).astype(np.float32)
    q = (rng.random((b, m, 3)) - 0.5).astype(np.float32)
    match = np.empty((b, m, n), np.float32)
    cost = np.empty(b, np.float32)
    g1, g2 = np.empty((b, n, 3), np.float32), np.empty((b, m, 3), np.float32)
    tm, tc, tg = _ms(), _ms(), _ms()
    _call(
        lib.differ_host_approx_match,
        b,
        n,
        m,
        p,
        q,
        match,
        cost,
        g1,
        g2,
        reps,
        ctypes.byref(tm),
        ctypes.byref(tc),
        ctypes.byref(tg),
    )
    err_m = err_c = err_g = 0.0
    for k in range(b):
        rm = reference.approx_match(p[k], q[k])
        err_m = max(err_m, np.abs(match[k] - rm).max())
        rc = reference.match_cost(p[k], q[k], match[k])
        err_c = max(err_c, abs(cost[k] - rc) / rc, abs(cost[k] - reference.match_cost(p[k], q[k], rm)) / rc)
        rg1, rg2 = reference.match_cost_grad(p[k], q[k], match[k])
        scale = max(np.abs(rg1).max(), np.abs(rg2).max())
        err_g = max(err_g, np.abs(g1[k] - rg1).max() / scale, np.abs(g2[k] - rg2).max() / scale)
    ok = err_m < 1e-3 and err_c < 1e-3 and err_g < 1e-4
    return {
        "op": f"approx_match+match_cost B={b} N={n} M={m}",
        "ok": ok,
        "error": f"match abs {err_m:.1e}, cost rel {err_c:.1e}, grad rel {err_g:.1e}",
        "gpu_ms": f"{tm.value:.2f} match, {tc.value:.3f} cost, {tg.value:.3f} grad",
    }


def check_auction_match(lib, rng, b, n, reps, rel_tol=1e-4):
    reference = _sibling("reference")
    p = (rng.random((b, n, 3)) - 0.5).astype(np.float32)
    q = (rng.random((b, n, 3)) - 0.5).astype(np.float32)
    match_l, match_r = np.empty((b, n), np.int32), np.empty((b, n), np.int32)
    t = _ms()
    _call(lib.differ_host_auction_match, b, n, p, q, rel_tol, match_l, match_r, reps, ctypes.byref(t))
    worst, perm_ok = 0.0, True
    t0 = time.perf_counter()
    exact = [reference.emd_exact(p[k], q[k]) for k in range(b)]
    t_exact = (time.perf_counter() - t0) * 1e3
    for k in range(b):
        is_perm = np.array_equal(np.sort(match_l[k]), np.arange(n))
        perm_ok &= bool(is_perm and np.array_equal(match_r[k][match_l[k]], np.arange(n)))
        worst = max(worst, reference.assignment_cost(p[k], q[k], match_l[k]) / exact[k])
    ok = perm_ok and worst <= 1 + max(rel_tol, 1e-5) + 1e-6
    return {
        "op": f"auction_match B={b} N={n}",
        "ok": ok,
        "error": f"permutation {'yes' if perm_ok else 'NO'}, cost/exact max {worst:.6f}",
        "gpu_ms": f"{t.value:.2f} (scipy exact: {t_exact:.0f} for all {b})",
    }


SIGMA_SQ, RADIUS, BETA = 0.4, 1.0, 100.0  # the original's values, as in tests/test_tf_ops_projection.py


def projection_scene(rng, b, n, h, w):
    """float32 (b, n, 3) projected points with the hard cases of tests/test_tf_ops_projection.py:
    integral and half-integral coordinates, points behind the camera and far off-image, groups
    sharing a well and a depth."""
    pix = np.stack([rng.uniform(-4, h + 4, (b, n)), rng.uniform(-4, w + 4, (b, n)), rng.uniform(0.5, 3, (b, n))], -1)
    k = n // 10
    if k:
        pix[:, :k, :2] = rng.integers(-2, min(h, w) + 2, (b, k, 2))
        pix[:, k : 2 * k, :2] = rng.integers(-2, min(h, w) + 2, (b, k, 2)) + 0.5
        pix[:, 2 * k : 2 * k + 2] = [-1e4, -1e4, 1e-3]
        ties = np.arange(2 * k + 2, 3 * k + 2)
        pix[:, ties, :2] = pix[:, rng.integers(0, n, len(ties)), :2] + rng.uniform(-0.3, 0.3, (b, len(ties), 2))
        pix[:, ties, 2] = 1.25
    return pix.astype(np.float32)


def check_projection(lib, rng, b, n, h, w, c, reps):
    reference, params = _sibling("reference"), _sibling("params")
    pix = projection_scene(rng, b, n, h, w)
    feat = rng.uniform(size=(b, n, c)).astype(np.float32)
    g_mask = rng.standard_normal((b, h, w)).astype(np.float32)
    g_map = rng.standard_normal((b, h, w, c)).astype(np.float32)
    mask, cov = np.empty((b, h, w), np.float32), np.empty((b, h, w), np.float32)
    fmap = np.empty((b, h, w, c), np.float32)
    gpm, gpf, gfe = np.empty((b, n, 3), np.float32), np.empty((b, n, 3), np.float32), np.empty((b, n, c), np.float32)
    t = [_ms() for _ in range(4)]
    _call(
        lib.differ_host_projection,
        b,
        n,
        c,
        pix,
        feat,
        h,
        w,
        SIGMA_SQ,
        params.gaussian_half_width(SIGMA_SQ),
        RADIUS,
        params.well_half_width(RADIUS),
        BETA,
        g_mask,
        g_map,
        mask,
        fmap,
        cov,
        gpm,
        gpf,
        gfe,
        reps,
        *[ctypes.byref(x) for x in t],
    )
    err_v = err_g = 0.0
    cov_ok = True
    for k in range(b):
        err_v = max(err_v, np.abs(mask[k] - reference.mask_projection(pix[k], h, w, SIGMA_SQ)).max())
        rf, rc = reference.feature_projection(pix[k], feat[k], h, w, RADIUS, BETA)
        err_v = max(err_v, np.abs(fmap[k] - rf).max())
        cov_ok &= bool(np.array_equal(cov[k], rc))
        pairs = [(gpm[k], reference.mask_projection_grad(pix[k], h, w, SIGMA_SQ, g_mask[k]))]
        pairs += list(
            zip((gpf[k], gfe[k]), reference.feature_projection_grad(pix[k], feat[k], h, w, RADIUS, BETA, g_map[k]))
        )
        for got, want in pairs:
            err_g = max(err_g, np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))
    ok = err_v < 1e-5 and err_g < 1e-4 and cov_ok
    return {
        "op": f"mask+feature_projection B={b} N={n} {h}x{w} C={c}",
        "ok": ok,
        "error": f"values abs {err_v:.1e}, coverage {'equal' if cov_ok else 'DIFFERS'}, grads rel {err_g:.1e}",
        "gpu_ms": f"mask {t[0].value:.3f} + {t[1].value:.3f} grad, features {t[2].value:.3f} + {t[3].value:.3f} grad",
    }


def check_pixel_nearest(lib, rng, b, n, h, w, reps):
    reference = _sibling("reference")
    pts = np.stack([rng.uniform(-10, h + 10, (b, n)), rng.uniform(-10, w + 10, (b, n)), np.ones((b, n))], -1)
    pts[:, : n // 8, :2] = rng.integers(-3, min(h, w) + 3, (b, n // 8, 2)) + 0.5 * rng.integers(0, 2, (b, n // 8, 2))
    pts[:, n // 8 : n // 8 + 2, :2] = -1e4
    pts = pts.astype(np.float32)
    query = (rng.random((b, h, w)) < 0.6).astype(np.float32)
    cap = float(h * h + w * w)
    g_dist = rng.standard_normal((b, h, w)).astype(np.float32)
    idx, dist, grad = np.empty((b, h, w), np.int32), np.empty((b, h, w), np.float32), np.empty((b, n, 3), np.float32)
    t, tg = _ms(), _ms()
    _call(
        lib.differ_host_pixel_nearest,
        b,
        n,
        3,
        pts,
        h,
        w,
        query,
        cap,
        g_dist,
        idx,
        dist,
        grad,
        reps,
        ctypes.byref(t),
        ctypes.byref(tg),
    )
    err, err_g, same_found, agree = 0.0, 0.0, True, []
    for k in range(b):
        ref_idx, ref_d = reference.pixel_nearest(pts[k], query[k], cap)
        same_found &= bool(np.array_equal(idx[k] < 0, ref_idx < 0)) and bool(np.all(np.isinf(dist[k][idx[k] < 0])))
        hit = (idx[k] >= 0) & (ref_idx >= 0)
        rows, cols = np.nonzero(hit)
        p = pts[k].astype(np.float64)[idx[k][hit]]
        d = (rows - p[:, 0]) ** 2 + (cols - p[:, 1]) ** 2
        err = max(
            err,
            float(np.max(np.abs(d - ref_d[hit]) / np.maximum(ref_d[hit], 1e-12), initial=0.0)),
            float(np.max(np.abs(dist[k][hit] - ref_d[hit]) / np.maximum(ref_d[hit], 1e-6), initial=0.0)),
        )
        agree.append(np.mean(idx[k][hit] == ref_idx[hit]) if hit.any() else 1.0)
        want = np.zeros((n, 3))  # the gradient for the returned indices: 2 g (point - pixel)
        rows, cols = np.nonzero(idx[k] >= 0)
        j = idx[k][rows, cols]
        np.add.at(want[:, 0], j, 2 * g_dist[k][rows, cols] * (pts[k, j, 0] - rows))
        np.add.at(want[:, 1], j, 2 * g_dist[k][rows, cols] * (pts[k, j, 1] - cols))
        err_g = max(err_g, np.abs(grad[k] - want).max() / max(np.abs(want).max(), 1e-12))
    ok = bool(same_found and err < 1e-6 and err_g < 1e-5)
    return {
        "op": f"pixel_nearest B={b} N={n} {h}x{w}",
        "ok": ok,
        "error": f"found {'same' if same_found else 'DIFFERS'}, dist rel {err:.1e}, "
        f"same index {100 * min(agree):.2f}% (ties), grad rel {err_g:.1e}",
        "gpu_ms": f"{t.value:.3f} + {tg.value:.3f} grad",
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "build", "gpu_check"), help="where to put the library")
    ap.add_argument("--arch", default=None, help="nvcc -arch value (default: nvcc's default; 'native' is good)")
    ap.add_argument("--reps", type=int, default=10, help="timed repetitions per launcher")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    path = compile_library(args.out, arch=args.arch)
    print(f"compiled {path} in {time.time() - t0:.1f} s")
    lib = load(path)
    try:
        name = gpu_name(lib)
    except RuntimeError as e:
        print(f"no usable GPU ({e}): the CUDA sources compile, but nothing was run", file=sys.stderr)
        return 2
    smi = shutil.which("nvidia-smi")
    driver = (
        subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
        ).stdout.strip()
        if smi
        else "?"
    )
    print(f"GPU: {name} (driver {driver})")
    rng = np.random.default_rng(args.seed)
    rows = [
        check_nn_distance(lib, rng, 1, 1, 1, args.reps),
        check_nn_distance(lib, rng, 3, 7, 1025, args.reps),
        check_nn_distance(lib, rng, 8, 1024, 1024, args.reps),
        check_nn_distance(lib, rng, 8, 4096, 1024, args.reps),
        check_approx_match(lib, rng, 2, 7, 5, args.reps),
        check_approx_match(lib, rng, 2, 1000, 1025, args.reps),
        check_approx_match(lib, rng, 8, 1024, 1024, args.reps),
        check_auction_match(lib, rng, 1, 1, args.reps),
        check_auction_match(lib, rng, 2, 7, args.reps),
        check_auction_match(lib, rng, 8, 1024, args.reps),
        check_projection(lib, rng, 1, 1, 1, 1, 3, args.reps),
        check_projection(lib, rng, 3, 57, 13, 29, 5, args.reps),
        check_projection(lib, rng, 32, 1024, 64, 64, 3, args.reps),
        check_projection(lib, rng, 2, 16384, 128, 128, 3, args.reps),
        check_pixel_nearest(lib, rng, 1, 1, 1, 1, args.reps),
        check_pixel_nearest(lib, rng, 3, 37, 17, 53, args.reps),
        check_pixel_nearest(lib, rng, 32, 1024, 64, 64, args.reps),
        check_pixel_nearest(lib, rng, 2, 16384, 128, 128, args.reps),
    ]
    print("\n| check | result | max error | GPU time (ms) |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['op']} | {'ok' if r['ok'] else 'FAIL'} | {r['error']} | {r['gpu_ms']} |")
    bad = [r["op"] for r in rows if not r["ok"]]
    print("\nall checks passed" if not bad else f"\nFAILED: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
