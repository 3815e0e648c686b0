/* core/simd.h -- ML_SIMD_CLONES for the elementwise kernels (nn.c, layers/activation.c).
 *
 * The elementwise loops of a training step (ReLU both ways, bias gradients) stay in cache
 * and are bound by instruction throughput at SSE2, all a generic x86-64 build may assume;
 * with AVX2 the ReLU backward of a 128 x (256 + 128) batch takes 3.5 instead of 6.7 us.
 * target_clones builds such a function for both and picks one when the program loads
 * (an ifunc), so the binary still runs on any x86-64. Elsewhere the attribute is empty. */
#ifndef PSTRAIN_CORE_SIMD_H
#define PSTRAIN_CORE_SIMD_H

#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define ML_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef ML_SIMD_CLONES
#define ML_SIMD_CLONES
#endif

#endif
