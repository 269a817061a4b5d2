"""auction_match: the compiled op (epsilon-scaling auction) and the fallback switch."""

from tf_ops import _common, fallback
from tf_ops.params import AUCTION_REL_TOL


def auction_match(xyz1, xyz2, rel_tol=AUCTION_REL_TOL):
    """One-to-one assignment between two clouds of equal size minimising the summed distance.

    Args:
        xyz1, xyz2: float32 (B, N, 3), the same N (>= 1), finite.
        rel_tol: the auction stops once its assignment is certified (by a dual bound)
            to cost at most (1 + rel_tol) times the optimum; 0 runs to float precision.
    Returns:
        idx1: int32 (B, N), xyz1[b, i] is matched to xyz2[b, idx1[b, i]];
        idx2: int32 (B, N), the inverse permutation. Not differentiable; the EMD is
        mean_i |xyz1[b, i] - xyz2[b, idx1[b, i]]|, which is (gather the points with idx1).
    The fallback (no compiled library) solves the assignment exactly with scipy.
    """
    lib = _common.library()
    if lib is None:
        return fallback.auction_match(xyz1, xyz2)
    a, b = _common.pair(xyz1, xyz2, "auction_match", same_points=True)
    return tuple(lib.differ_auction_match(a, b, rel_tol=float(rel_tol)))


_common.register_gradient("DifferAuctionMatch", None)
