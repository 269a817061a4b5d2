"""Numbers and rules that define the ops, in one place (plain Python: no TensorFlow, numpy or scipy).

Used by the op wrappers, the pure-TF fallbacks, the numpy references, ``check_gpu.py`` (which
loads this file without importing TensorFlow) and ``utils/render/projection.py`` (its ``local``
renderer uses the same windows as the fused kernels). The C++/CUDA kernels restate
:data:`APPROX_MATCH_LEVELS` and receive the window half-widths from the Python wrappers.
"""

import math

# approx_match: the sharpness of each of its ten levels, exp(level * squared distance), from
# very sharp (-4^7) to flat (0), as in PSGN's kernel (approx_match_cpu.cc and approx_match.cu
# compute the same values as -2^(2 (7 - t))).
APPROX_MATCH_LEVELS = [-(4.0**p) for p in range(7, -2, -1)] + [0.0]

# auction_match: stop once the assignment is certified within (1 + rel_tol) of the optimum.
AUCTION_REL_TOL = 1e-4

# mask projection: the Gaussian window drops pixels where a 1D factor is below this.
GAUSS_CUTOFF = 1e-6


def gaussian_half_width(sigma_sq, cutoff=GAUSS_CUTOFF):
    """Half-width K (px) of the Gaussian window of the mask projection (fused and ``local``).

    The window of a point at (r, c) is rows round(r)-K .. round(r)+K (columns likewise).
    A pixel left out is at least K + 0.5 px away along one axis, so with
    ``K = ceil(t - 0.5)``, ``t = sqrt(2 sigma_sq ln(1/cutoff))`` the dropped 1D factor
    ``exp(-d^2 / (2 sigma_sq))`` is below ``cutoff`` times the peak: K = 3 (7x7 window)
    for sigma_sq = 0.4 and 0.5.
    """
    t = math.sqrt(2.0 * sigma_sq * math.log(1.0 / cutoff))
    return max(0, int(math.ceil(t - 0.5)))


def well_half_width(well_radius):
    """Half-width K (px) of the window that holds a point's well in the feature projection.

    Rows floor(r)-K .. floor(r)+K hold every pixel row p with |p - r| <= well_radius when
    K = ceil(well_radius): K = 1 (3x3 window) at radius 1.
    """
    return int(math.ceil(well_radius))
