"""Build the compiled point-cloud ops into ``tf_ops/build/libdiffer_ops.so``.

The one build entry point, called by ``scripts/setup_env.sh`` on every start::

    python tf_ops/build.py            # incremental: a no-op when nothing changed
    python tf_ops/build.py --force    # rebuild everything
    python tf_ops/build.py --no-cuda  # CPU kernels only
    python tf_ops/build.py --build-dir /tmp/x --assume-tf-cuda  # check the GPU build path

What it does:

* CPU kernels always, compiled with exactly the flags TensorFlow reports
  (``tf.sysconfig.get_compile_flags()`` / ``get_link_flags()``: ``-std=c++17``,
  ``-D_GLIBCXX_USE_CXX11_ABI=...``) plus optimisation flags.
* CUDA kernels (``*.cu``) only when ``nvcc`` is found AND
  ``tf.test.is_built_with_cuda()``; the op files are then compiled with
  ``-DGOOGLE_CUDA=1`` so they register GPU kernels. (The tensorflow-cpu wheel
  has no CUDA, so there the .cu files are left out and the reason is printed.)
* Incremental: a stamp records a hash of the sources, this script, the
  interpreter, the installed TensorFlow (location, size and mtime of its
  framework library), the compilers, the CPU flags (``-march=native``) and the
  build options. When they match and the library exists the script returns in
  a few tens of milliseconds without importing TensorFlow. Object files are
  cached by content hash, so editing one source recompiles only that file.
* Outputs go to ``tf_ops/build/`` (git-ignored) and appear atomically: the
  library is linked to a temporary name, test-loaded with
  ``tf.load_op_library`` (in a separate interpreter) and only then renamed into place. A lock file
  serialises concurrent builds.
* Any compile, link or load error prints the command and the compiler's
  message and exits with status 1.

Environment: ``CXX`` (default ``g++``), ``NVCC`` (default: ``nvcc`` on PATH or
in ``$CUDA_HOME/bin``), ``DIFFER_TF_OPS_MARCH`` (default ``native``; set e.g.
``x86-64-v3`` for a library shared between machines, or empty to omit),
``DIFFER_TF_OPS_CXXFLAGS`` (extra flags), ``DIFFER_CUDA_ARCH`` (nvcc ``-arch``
value; default ``native`` when ``nvidia-smi`` lists a GPU, else ``all-major``),
``DIFFER_TF_OPS_NO_CUDA=1`` (same as ``--no-cuda``).
"""

import argparse
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_DIR = os.path.join(HERE, "build")
LIB_NAME = "libdiffer_ops.so"
LIB_PATH = os.path.join(BUILD_DIR, LIB_NAME)
STAMP_PATH = os.path.join(BUILD_DIR, "stamp.json")
# One folder per op family; each op has <family>/<op>_cpu.cc, <op>_op.cc and <op>.cu.
FAMILIES = {
    "nn_distance": "chamfer",
    "approx_match": "emd",
    "auction_match": "emd",
    "projection": "projection",
    "pixel_nearest": "projection",
}
OPS = tuple(FAMILIES)
CPU_SOURCES = [f"{FAMILIES[op]}/{op}_cpu.cc" for op in OPS] + [f"{FAMILIES[op]}/{op}_op.cc" for op in OPS]
CUDA_SOURCES = [f"{FAMILIES[op]}/{op}.cu" for op in OPS]
INCLUDE_DIR = os.path.join(HERE, "include")  # the headers shared by every family
HEADERS = [f"include/{h}" for h in ("kernels_cpu.h", "simd.h", "op_util.h", "launchers.h", "raster_common.h")]
OPT_FLAGS = [
    "-O3",
    "-fPIC",
    "-ffp-contract=fast",
    "-fno-math-errno",
    "-Wall",
    "-Wno-deprecated-declarations",
    "-Wno-sign-compare",
    "-Wno-unused-function",
]


class BuildError(RuntimeError):
    """A compile, link or load step failed; the message holds the tool output."""


def _log(msg, quiet=False):
    if not quiet:
        print(f"tf_ops: {msg}", flush=True)


def _sha(*chunks):
    h = hashlib.sha256()
    for c in chunks:
        h.update(c if isinstance(c, bytes) else str(c).encode())
        h.update(b"\0")
    return h.hexdigest()


def _read(name):
    try:
        with open(os.path.join(HERE, name), "rb") as f:
            return f.read()
    except OSError as e:
        raise BuildError(f"missing source file: {e}") from e


def find_nvcc():
    """Path of nvcc (``$NVCC``, PATH, ``$CUDA_HOME/bin``, /usr/local/cuda/bin), or None."""
    cands = [os.environ.get("NVCC"), shutil.which("nvcc")]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            cands.append(os.path.join(home, "bin", "nvcc"))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.realpath(c)
    return None


def find_cuda_home(nvcc):
    """The CUDA toolkit directory (with include/cuda_runtime.h) belonging to nvcc, or None."""
    cands = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    if nvcc:
        cands.append(os.path.dirname(os.path.dirname(nvcc)))
        try:  # nvcc may be a wrapper script: ask it where its toolkit is
            out = subprocess.run(
                [nvcc, "--dryrun", "-E", "-x", "cu", os.devnull], capture_output=True, text=True
            ).stderr
            for line in out.splitlines():
                if "TOP=" in line:
                    cands.append(os.path.normpath(line.split("TOP=", 1)[1].strip()))
        except OSError:
            pass
    cands.append("/usr/local/cuda")
    for c in cands:
        if c and os.path.isfile(os.path.join(c, "include", "cuda_runtime.h")):
            return os.path.realpath(c)
    return None


def _cpu_signature():
    """What -march=native depends on: the CPU's feature flags (Linux), else the platform."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.strip()
    except OSError:
        pass
    import platform

    return platform.machine() + platform.processor()


def _tensorflow_signature():
    """Identify the installed TensorFlow without importing it."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.origin:
        raise BuildError(f"tensorflow is not installed in this interpreter ({sys.executable})")
    tf_dir = os.path.dirname(spec.origin)
    parts = [tf_dir]
    for name in sorted(os.listdir(tf_dir)):
        if name.startswith(("libtensorflow_framework", "libtensorflow_cc")) or name == "__init__.py":
            st = os.stat(os.path.join(tf_dir, name))
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return parts


def _options(no_cuda, assume_tf_cuda=False):
    return {
        "assume_tf_cuda": bool(assume_tf_cuda),
        "cxx": os.environ.get("CXX", "g++"),
        "march": os.environ.get("DIFFER_TF_OPS_MARCH", "native"),
        "cxxflags": os.environ.get("DIFFER_TF_OPS_CXXFLAGS", ""),
        "cuda_arch": os.environ.get("DIFFER_CUDA_ARCH", ""),
        "no_cuda": bool(no_cuda or os.environ.get("DIFFER_TF_OPS_NO_CUDA", "") not in ("", "0")),
    }


def stamp_key(opts):
    """Cheap fingerprint of everything the library depends on (no TensorFlow import)."""
    srcs = [(n, _read(n)) for n in sorted(CPU_SOURCES + CUDA_SOURCES + HEADERS)]
    cxx = shutil.which(opts["cxx"]) or opts["cxx"]
    nvcc = None if opts["no_cuda"] else find_nvcc()
    return _sha(
        *[x for n, c in srcs for x in (n, c)],
        _read("build.py"),
        sys.executable,
        sys.version,
        *_tensorflow_signature(),
        json.dumps(opts, sort_keys=True),
        cxx,
        _mtime(cxx),
        nvcc,
        _mtime(nvcc),
        _cpu_signature() if opts["march"] == "native" else "",
    )


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None


def _paths(build_dir):
    """(build dir, library, stamp) for ``build_dir`` (default tf_ops/build)."""
    d = os.path.abspath(build_dir) if build_dir else BUILD_DIR
    return d, os.path.join(d, LIB_NAME), os.path.join(d, "stamp.json")


def _shown(path):
    """A path as printed: relative to the repository when inside it."""
    rel = os.path.relpath(path, os.path.dirname(HERE))
    return path if rel.startswith("..") else rel


def _read_stamp(build_dir=None):
    try:
        with open(_paths(build_dir)[2]) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def is_up_to_date(opts=None, build_dir=None):
    """True when the library exists and was built from the current inputs."""
    opts = opts or _options(False)
    return os.path.isfile(_paths(build_dir)[1]) and _read_stamp(build_dir).get("key") == stamp_key(opts)


def _run(cmd, what):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n  {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return proc


def _atomic_write(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _lock(build_dir):
    os.makedirs(build_dir, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(os.path.join(build_dir, ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _compile_all(jobs, verbose):
    """jobs: list of (cmd, obj, src). Compiles the missing objects in parallel."""
    todo = [j for j in jobs if not os.path.isfile(j[1])]
    workers = max(1, min(len(todo), os.cpu_count() or 1))

    def one(job):
        cmd, obj, src = job
        tmp = f"{obj}.tmp{os.getpid()}"
        if verbose:
            print("  " + " ".join(cmd + ["-o", tmp]), flush=True)
        proc = _run(cmd + ["-o", tmp], f"compiling {src}")
        if verbose and proc.stderr.strip():  # warnings
            print(proc.stderr, flush=True)
        os.replace(tmp, obj)

    if todo:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            errors = []
            for fut in [pool.submit(one, j) for j in todo]:
                try:
                    fut.result()
                except BuildError as e:
                    errors.append(str(e))
            if errors:
                raise BuildError("\n".join(errors))
    return len(todo)


def _tf_python(code, what):
    """Runs ``code`` in a fresh interpreter with TensorFlow (never in this process: loading a
    second copy of the op library into a process that uses the first would clash)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def _tensorflow_info():
    """Compile/link flags, version and CUDA support of the installed TensorFlow."""
    out = _tf_python(
        "import json, tensorflow as tf; print(json.dumps({'cflags': tf.sysconfig.get_compile_flags(), "
        "'lflags': tf.sysconfig.get_link_flags(), 'version': tf.__version__, "
        "'cuda': bool(tf.test.is_built_with_cuda())}))",
        "asking TensorFlow for its build flags",
    )
    return json.loads(out.strip().splitlines()[-1])


def _check_loads(lib_path):
    """The linked library must load into TensorFlow (catches ABI and undefined-symbol errors)."""
    try:
        _tf_python(
            f"import tensorflow as tf; tf.load_op_library({lib_path!r})", "loading the linked library into TensorFlow"
        )
    except BuildError as e:
        raise BuildError(f"the linked library does not load into TensorFlow: {e}") from e


@dataclasses.dataclass
class _Cuda:
    """Whether the CUDA kernels are built (``use``), why not (``reason``), and with which toolkit."""

    use: bool
    reason: str = ""
    nvcc: str = None
    home: str = None  # the toolkit folder (include/, lib64/)


def _cuda_plan(opts, tf_info):
    """CUDA kernels only with nvcc AND a TensorFlow built with CUDA (or --assume-tf-cuda)."""
    nvcc = None if opts["no_cuda"] else find_nvcc()
    if opts["no_cuda"]:
        return _Cuda(False, "disabled (--no-cuda / DIFFER_TF_OPS_NO_CUDA)")
    if not (tf_info["cuda"] or opts["assume_tf_cuda"]):
        reason = f"not built: TensorFlow {tf_info['version']} is not built with CUDA"
        if nvcc:
            reason += " (nvcc found, used only by check_gpu.py and the compile-check test)"
        return _Cuda(False, reason)
    if not nvcc:
        return _Cuda(False, "not built: nvcc not found (set NVCC or CUDA_HOME)")
    home = find_cuda_home(nvcc)
    if home is None:
        raise BuildError(f"found {nvcc} but no CUDA headers (include/cuda_runtime.h); set CUDA_HOME")
    return _Cuda(True, nvcc=nvcc, home=home)


def _cxx_flags(opts, tf_info, cuda):
    """TensorFlow's compile flags, ours, -march, the user's; with CUDA, the ops' GPU registration."""
    cflags = tf_info["cflags"] + OPT_FLAGS + [f"-I{INCLUDE_DIR}"]
    if opts["march"]:
        cflags.append(f"-march={opts['march']}")
    cflags += opts["cxxflags"].split()
    if cuda.use:
        cflags += ["-DGOOGLE_CUDA=1", f"-I{os.path.join(cuda.home, 'include')}"]
    return cflags


def _compile_jobs(opts, cflags, cuda, obj_dir):
    """(command, object file, source) for every source: the C++ ones, then the CUDA ones. An object
    is named by a hash of its source, the headers, the compiler and its flags (the cache key)."""
    headers = b"".join(_read(h) for h in HEADERS)
    cxx = opts["cxx"]
    jobs = []
    for src in CPU_SOURCES:
        obj = os.path.join(obj_dir, f"{os.path.basename(src)}-{_sha(_read(src), headers, cxx, cflags)[:16]}.o")
        jobs.append(([cxx, "-c", os.path.join(HERE, src)] + cflags, obj, src))
    if cuda.use:
        arch = opts["cuda_arch"] or ("native" if shutil.which("nvidia-smi") else "all-major")
        nv_flags = ["-O3", "-std=c++17", "-Xcompiler", "-fPIC", f"-arch={arch}", f"-I{INCLUDE_DIR}"]
        for src in CUDA_SOURCES:
            obj = os.path.join(
                obj_dir, f"{os.path.basename(src)}-{_sha(_read(src), headers, cuda.nvcc, nv_flags)[:16]}.o"
            )
            jobs.append(([cuda.nvcc, "-c", os.path.join(HERE, src)] + nv_flags, obj, src))
    return jobs


def _link_flags(tf_info, cuda):
    """TensorFlow's link flags; with CUDA, the static CUDA runtime."""
    if not cuda.use:
        return list(tf_info["lflags"])
    lib_dirs = [os.path.join(cuda.home, d) for d in ("lib64", "lib", "targets/x86_64-linux/lib")]
    return (
        tf_info["lflags"]
        + [f"-L{d}" for d in lib_dirs if os.path.isdir(d)]
        + ["-lcudart_static", "-ldl", "-lrt", "-lpthread"]
    )


def _link_checked(cxx, objects, lflags, build_dir, lib_path, verbose):
    """Links to a temporary name, loads that into TensorFlow (another interpreter), and only then
    moves it to ``lib_path``: a failed build leaves the working library in place."""
    tmp_lib = os.path.join(build_dir, f".{LIB_NAME}.tmp{os.getpid()}")
    link = [cxx, "-shared", "-o", tmp_lib] + objects + lflags
    if verbose:
        print("  " + " ".join(link), flush=True)
    try:
        _run(link, "linking")
        _check_loads(tmp_lib)
        os.replace(tmp_lib, lib_path)
    finally:
        if os.path.exists(tmp_lib):
            os.remove(tmp_lib)


def _drop_unused_objects(obj_dir, jobs):
    """Removes cached objects no job refers to any more (sources or flags changed)."""
    keep = {os.path.basename(j[1]) for j in jobs}
    for name in os.listdir(obj_dir):
        if name not in keep and ".tmp" not in name:
            with contextlib.suppress(OSError):  # a concurrent cleaner got there first
                os.remove(os.path.join(obj_dir, name))


def _summary(lib_path, seconds, cxx, cflags, cuda, tf_info):
    """What was built, with which compiler and main flags, and whether CUDA kernels are in it."""
    shown_flags = " ".join(f for f in cflags if f.startswith(("-O", "-march", "-std", "--std", "-D_GLIBCXX")))
    cuda_line = f"built (nvcc {cuda.nvcc})" if cuda.use else cuda.reason
    if cuda.use and not tf_info["cuda"]:
        cuda_line += " -- --assume-tf-cuda: TensorFlow has no CUDA, so unused"
    return (
        f"built {_shown(lib_path)} in {seconds:.1f} s\n"
        f"  CPU kernels:  nn_distance, approx_match, match_cost, auction_match, mask/feature_projection, "
        f"pixel_nearest ({cxx} {shown_flags})\n"
        f"  CUDA kernels: {cuda_line}"
    )


def _build(opts, verbose, quiet, build_dir):
    """Compiles what is missing, links, test-loads, installs the library and writes the stamp."""
    t0 = time.time()
    build_dir, lib_path, stamp_path = _paths(build_dir)
    tf_info = _tensorflow_info()
    cuda = _cuda_plan(opts, tf_info)
    cflags = _cxx_flags(opts, tf_info, cuda)
    obj_dir = os.path.join(build_dir, "obj")
    os.makedirs(obj_dir, exist_ok=True)
    jobs = _compile_jobs(opts, cflags, cuda, obj_dir)
    cxx = opts["cxx"]
    _log(
        f"compiling {len([j for j in jobs if not os.path.isfile(j[1])])} of {len(jobs)} sources "
        f"({cxx}{', nvcc' if cuda.use else ''}) ...",
        quiet,
    )
    _compile_all(jobs, verbose)
    _link_checked(cxx, [j[1] for j in jobs], _link_flags(tf_info, cuda), build_dir, lib_path, verbose)
    _drop_unused_objects(obj_dir, jobs)
    info = {
        "key": stamp_key(opts),
        "tensorflow": tf_info["version"],
        "cuda": cuda.use,
        "cuda_note": cuda.reason,
        "cxx": cxx,
        "cflags": cflags,
        "built": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _atomic_write(stamp_path, json.dumps(info, indent=1))
    _log(_summary(lib_path, time.time() - t0, cxx, cflags, cuda, tf_info), quiet)
    return info


def build(force=False, no_cuda=False, verbose=False, quiet=False, build_dir=None, assume_tf_cuda=False):
    """Build if needed; returns the stamp dict. Raises BuildError on failure.

    ``build_dir``: another output folder (default tf_ops/build, where tf_ops loads from).
    ``assume_tf_cuda``: compile the CUDA kernels (with nvcc) and the ops' GPU registration into
    the library even though TensorFlow is not built with CUDA -- a compile/link/load check of
    the GPU build path on machines without CUDA TensorFlow (the GPU kernels are never used there).
    """
    opts = _options(no_cuda, assume_tf_cuda)
    build_dir, lib_path, _ = _paths(build_dir)
    if not force and is_up_to_date(opts, build_dir):
        info = _read_stamp(build_dir)
        _log(f"up to date ({_shown(lib_path)}, CUDA kernels: {'yes' if info.get('cuda') else 'no'})", quiet)
        return info
    with _lock(build_dir):
        if not force and is_up_to_date(opts, build_dir):  # another process built it while we waited
            _log(f"up to date ({_shown(lib_path)}, built by a concurrent run)", quiet)
            return _read_stamp(build_dir)
        return _build(opts, verbose, quiet, build_dir)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    p.add_argument("--no-cuda", action="store_true", help="build the CPU kernels only")
    p.add_argument("--verbose", "-v", action="store_true", help="print the compiler commands")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing unless there is an error")
    p.add_argument("--check", action="store_true", help="exit 0 if up to date, 1 if a build is needed")
    p.add_argument("--build-dir", default=None, help="output folder (default: tf_ops/build, where tf_ops loads from)")
    p.add_argument(
        "--assume-tf-cuda",
        action="store_true",
        help="build the CUDA kernels and GPU registration even if TensorFlow has no CUDA "
        "(a compile/link/load check; the GPU kernels are unused then)",
    )
    args = p.parse_args(argv)
    try:
        if args.check:
            ok = is_up_to_date(_options(args.no_cuda, args.assume_tf_cuda), args.build_dir)
            _log("up to date" if ok else "needs a build", args.quiet)
            return 0 if ok else 1
        build(
            force=args.force,
            no_cuda=args.no_cuda,
            verbose=args.verbose,
            quiet=args.quiet,
            build_dir=args.build_dir,
            assume_tf_cuda=args.assume_tf_cuda,
        )
    except BuildError as e:
        print(f"tf_ops: BUILD FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
