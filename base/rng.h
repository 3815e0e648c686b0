/* base/rng.h -- small deterministic PRNG (xoshiro256** seeded through splitmix64).
 *
 * Every random choice in pstrain (initial weights, shuffles, splits) draws from an
 * rng_state the caller owns and seeds, so a run is reproducible from its seed and two
 * processes given the same seed draw the same numbers. */
#ifndef PSTRAIN_BASE_RNG_H
#define PSTRAIN_BASE_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rng_state;

void rng_seed(rng_state *r, uint64_t seed);
uint64_t rng_next(rng_state *r);
/* Uniform in [0, 1) with 24 random bits (exact in float). */
float rng_uniform(rng_state *r);
/* Uniform integer in [0, bound), bound > 0, without modulo bias. */
uint64_t rng_below(rng_state *r, uint64_t bound);
/* Standard normal (Box-Muller). */
float rng_normal(rng_state *r);
/* Fisher-Yates shuffle of idx[0..n). */
void rng_shuffle_u32(rng_state *r, uint32_t *idx, size_t n);

/* splitmix64's finaliser (Steele, Lea & Flood, "Fast splittable pseudorandom number
 * generators", 2014): a bijection on 64 bits that spreads every input bit. The one mix
 * behind seeding, hashed keys, owners of sparse rows, dropout masks and augmentation
 * draws; chaining it (mix(mix(a) ^ b)) keeps combined seeds from colliding the way a plain
 * XOR of their parts can. */
static inline uint64_t rng_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#endif
