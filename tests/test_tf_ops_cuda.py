"""tf_ops CUDA sources: compile checks that need nvcc but no GPU (skipped without nvcc),
and the full GPU comparison of tf_ops/check_gpu.py when a GPU is usable."""

import ctypes
import glob
import os
import shutil
import subprocess
import sys

import pytest

from tf_ops import build, check_gpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NVCC = build.find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found")


def _gpu_visible():
    """Whether this machine shows an NVIDIA GPU, asked without the code under test: a driver
    device node, or a GPU listed by nvidia-smi."""
    if glob.glob("/dev/nvidia[0-9]*"):
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    out = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return out.returncode == 0 and "GPU" in out.stdout


@pytest.fixture(scope="module")
def cuda_check_lib(tmp_path_factory):
    """All .cu files (kernels + ctypes host wrappers) in one nvcc call -> standalone .so."""
    return check_gpu.compile_library(str(tmp_path_factory.mktemp("cuda")), nvcc=NVCC)


@needs_nvcc
def test_cuda_sources_compile_and_export_the_c_launchers(cuda_check_lib):
    lib = ctypes.CDLL(cuda_check_lib)
    for name in [
        "differ_nn_distance_launcher",
        "differ_nn_distance_grad_launcher",
        "differ_approx_match_launcher",
        "differ_approx_match_temp_floats",
        "differ_match_cost_launcher",
        "differ_match_cost_grad_launcher",
        "differ_auction_match_launcher",
        "differ_auction_match_temp_bytes",
        "differ_mask_projection_launcher",
        "differ_mask_projection_grad_launcher",
        "differ_feature_projection_launcher",
        "differ_feature_projection_grad_launcher",
        "differ_pixel_nearest_launcher",
        "differ_pixel_nearest_temp_bytes",
        "differ_host_projection",
        "differ_host_pixel_nearest",
    ]:
        assert hasattr(lib, name), name
    lib.differ_approx_match_temp_floats.restype = ctypes.c_size_t
    assert lib.differ_approx_match_temp_floats(2, 3, 5) == 2 * 2 * (3 + 5)
    lib.differ_pixel_nearest_temp_bytes.restype = ctypes.c_size_t
    assert lib.differ_pixel_nearest_temp_bytes(2, 100, 64, 64) > 2 * (68 * 68 * 8 + 100 * 8)


@needs_nvcc
def test_ctypes_bindings_report_a_missing_gpu_cleanly(cuda_check_lib):
    """Without a GPU (or its driver) the bindings raise a RuntimeError naming CUDA, not a crash."""
    if _gpu_visible():
        pytest.skip(
            "a GPU is visible here, so the no-GPU path cannot be exercised "
            "(test_gpu_results_match_the_cpu_reference runs instead)"
        )
    lib = check_gpu.load(cuda_check_lib)
    with pytest.raises(RuntimeError, match="CUDA"):
        check_gpu.gpu_name(lib)


@pytest.mark.slow
@needs_nvcc
def test_gpu_build_path_compiles_links_and_loads(tmp_path):
    """The build with CUDA kernels: nvcc objects, the ops' `#if GOOGLE_CUDA` registration compiled
    against TF's and CUDA's headers, the static CUDA runtime linked, the library loaded into TF.

    Normally only done when TensorFlow itself has CUDA (the tensorflow-cpu wheel has not), so
    --assume-tf-cuda forces it, into a scratch folder; the GPU kernels stay unused on this machine.
    """
    if build.find_cuda_home(NVCC) is None:
        pytest.skip("no CUDA headers next to nvcc")
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tf_ops", "build.py"), "--assume-tf-cuda", "--build-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "CUDA kernels: built" in out.stdout
    assert (tmp_path / "libdiffer_ops.so").is_file()


@needs_nvcc
def test_gpu_results_match_the_cpu_reference(cuda_check_lib):
    """Runs tf_ops/check_gpu.py's comparisons; only where a GPU is usable."""
    try:
        check_gpu.gpu_name(check_gpu.load(cuda_check_lib))
    except RuntimeError as e:
        pytest.skip(f"no usable GPU: {e}")
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tf_ops", "check_gpu.py"), "--reps", "2"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
