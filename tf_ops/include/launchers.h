/* C interface of the CUDA kernels (nn_distance.cu, approx_match.cu,
 * auction_match.cu, projection.cu, pixel_nearest.cu). Framework-free: used by the TensorFlow GPU kernels in the
 * *_op.cc files (built only when TensorFlow has CUDA) and, through
 * check_gpu_host.cu, by tf_ops/check_gpu.py via ctypes.
 *
 * All array pointers are DEVICE pointers with the layouts of the TF ops
 * (clouds (b, n, 3) row-major, match (b, m, n)); `stream` is a cudaStream_t
 * (NULL = default stream). The launchers only enqueue work; each returns NULL
 * on success or a static error message of the CUDA runtime. Inputs are assumed
 * checked by the caller (b >= 1, n >= 1, m >= 1).
 */
#ifndef DIFFER_TF_OPS_LAUNCHERS_H_
#define DIFFER_TF_OPS_LAUNCHERS_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dist1[b,i] = min_j |xyz1[b,i] - xyz2[b,j]|^2, idx1 its argmin; dist2/idx2 the other way. */
const char* differ_nn_distance_launcher(int b, int n, const float* xyz1, int m, const float* xyz2,
                                        float* dist1, int* idx1, float* dist2, int* idx2, void* stream);

/* Gradients of sum(grad_dist1 * dist1) + sum(grad_dist2 * dist2) w.r.t. xyz1 and xyz2. */
const char* differ_nn_distance_grad_launcher(int b, int n, const float* xyz1, int m, const float* xyz2,
                                             const float* grad_dist1, const int* idx1,
                                             const float* grad_dist2, const int* idx2,
                                             float* grad_xyz1, float* grad_xyz2, void* stream);

/* Floats of device scratch memory differ_approx_match_launcher needs. */
size_t differ_approx_match_temp_floats(int b, int n, int m);

/* match (b, m, n): PSGN-style multi-level approximate matching (see README.md). */
const char* differ_approx_match_launcher(int b, int n, int m, const float* xyz1, const float* xyz2,
                                         float* match, float* temp, void* stream);

/* cost[b] = sum_{j,i} match[b,j,i] * |xyz1[b,i] - xyz2[b,j]|. */
const char* differ_match_cost_launcher(int b, int n, int m, const float* xyz1, const float* xyz2,
                                       const float* match, float* cost, void* stream);

/* grad_xyz1, grad_xyz2 = grad_cost[b] * d cost[b] / d xyz1, d xyz2 (grad_cost is a device array (b,)). */
const char* differ_match_cost_grad_launcher(int b, int n, int m, const float* xyz1, const float* xyz2,
                                            const float* match, const float* grad_cost,
                                            float* grad_xyz1, float* grad_xyz2, void* stream);

/* Bytes of device scratch memory differ_auction_match_launcher needs. */
size_t differ_auction_match_temp_bytes(int b, int n);

/* One-to-one assignment minimising the summed Euclidean distance (auction with
 * epsilon scaling, parallel "Jacobi" bidding, one thread block per cloud pair):
 * matchl[b,i] = j, matchr[b,j] = i. rel_tol as in the CPU kernel. */
const char* differ_auction_match_launcher(int b, int n, const float* xyz1, const float* xyz2, float rel_tol,
                                          int* matchl, int* matchr, void* temp, void* stream);

/* Fused projections (float; pix (b, n, 3) = row px, column px, depth; see
 * kernels_cpu.h for the definitions). Sums are scattered with atomicAdd, so on
 * the GPU the order of a pixel's sum (and its last bits) may vary run to run. */
/* mask (b, h, w) = tanh(sum of Gaussian splats over each point's (2*half+1)^2 window). */
const char* differ_mask_projection_launcher(int b, int n, const float* pix, int h, int w, float sigma_sq, int half,
                                            float* mask, void* stream);

/* grad_pix (b, n, 3) = d sum(grad_mask * mask) / d pix (depth column 0). */
const char* differ_mask_projection_grad_launcher(int b, int n, const float* pix, int h, int w, float sigma_sq,
                                                 int half, const float* mask, const float* grad_mask,
                                                 float* grad_pix, void* stream);

/* feat (b, n, c) -> feat_map (b, h, w, c), coverage (b, h, w), stats (b, h, w, 2) = (max logit, 1 / denominator). */
const char* differ_feature_projection_launcher(int b, int n, int c, const float* pix, const float* feat, int h,
                                               int w, float radius, int half, float beta, float* feat_map,
                                               float* coverage, float* stats, void* stream);

/* grad_pix (b, n, 3) (depth only), grad_feat (b, n, c) of sum(grad_map * feat_map). */
const char* differ_feature_projection_grad_launcher(int b, int n, int c, const float* pix, const float* feat, int h,
                                                    int w, float radius, int half, float beta,
                                                    const float* feat_map, const float* stats,
                                                    const float* grad_map, float* grad_pix, float* grad_feat,
                                                    void* stream);

/* Bytes of device scratch memory differ_pixel_nearest_launcher needs. */
size_t differ_pixel_nearest_temp_bytes(int b, int n, int h, int w);

/* idx (b, h, w): nearest of the points (b, n, dim), dim >= 2 (row, col, ...), to each pixel
 * centre with query != 0 (smallest index on exact ties), -1 where query == 0 or no point is
 * within sqrt(max_dist_sq) px; dist (b, h, w) its squared distance (+inf where idx = -1).
 * Same algorithm as the CPU kernel (raster_common.h). */
const char* differ_pixel_nearest_launcher(int b, int n, int dim, const float* pts, int h, int w,
                                          const float* query, double max_dist_sq, int* idx, float* dist,
                                          void* temp, void* stream);

/* grad_pts (b, n, dim) = d sum(grad_dist * dist) / d pts (row and column; other columns 0). */
const char* differ_pixel_nearest_grad_launcher(int b, int n, int dim, const float* pts, int h, int w, const int* idx,
                                               const float* grad_dist, float* grad_pts, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* DIFFER_TF_OPS_LAUNCHERS_H_ */
