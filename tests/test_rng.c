/* tests/test_rng.c -- the seeded PRNG: reproducible streams, ranges, unbiased bounds,
 * shuffles that are permutations. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/rng.h"

static void test_same_seed_same_stream(void **state)
{
    (void)state;
    rng_state a, b, c;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rng_next(&a);
        assert_true(x == rng_next(&b));
        differ += x != rng_next(&c);
    }
    assert_true(differ > 990);
}

static void test_uniform_and_normal_moments(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 1);
    double s = 0, s2 = 0, n1 = 0, n2 = 0;
    const int N = 200000;
    for (int i = 0; i < N; i++) {
        float u = rng_uniform(&r);
        assert_true(u >= 0.0f && u < 1.0f);
        s += u;
        s2 += (double)u * u;
        float z = rng_normal(&r);
        assert_true(isfinite(z));
        n1 += z;
        n2 += (double)z * z;
    }
    assert_float_equal(s / N, 0.5, 0.005); /* mean of U(0,1) */
    assert_float_equal(s2 / N - (s / N) * (s / N), 1.0 / 12, 0.002);
    assert_float_equal(n1 / N, 0.0, 0.01); /* standard normal */
    assert_float_equal(n2 / N, 1.0, 0.02);
}

static void test_below_is_in_range_and_even(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 7);
    int count[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint64_t v = rng_below(&r, 7);
        assert_true(v < 7);
        count[v]++;
    }
    for (int k = 0; k < 7; k++)
        assert_true(count[k] > 9500 && count[k] < 10500);
    assert_true(rng_below(&r, 1) == 0);
}

static void test_shuffle_is_a_seeded_permutation(void **state)
{
    (void)state;
    enum { N = 1000 };
    uint32_t a[N], b[N];
    unsigned char seen[N];
    for (uint32_t i = 0; i < N; i++)
        a[i] = b[i] = i;
    rng_state r1, r2;
    rng_seed(&r1, 5);
    rng_seed(&r2, 5);
    rng_shuffle_u32(&r1, a, N);
    rng_shuffle_u32(&r2, b, N);
    assert_memory_equal(a, b, sizeof a);
    memset(seen, 0, sizeof seen);
    int moved = 0;
    for (uint32_t i = 0; i < N; i++) {
        assert_true(a[i] < N && !seen[a[i]]);
        seen[a[i]] = 1;
        moved += a[i] != i;
    }
    assert_true(moved > N * 9 / 10);
    rng_shuffle_u32(&r1, a, 0); /* empty and single-element shuffles are no-ops */
    rng_shuffle_u32(&r1, a, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_stream),
        cmocka_unit_test(test_uniform_and_normal_moments),
        cmocka_unit_test(test_below_is_in_range_and_even),
        cmocka_unit_test(test_shuffle_is_a_seeded_permutation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
