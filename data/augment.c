/* data/augment.c -- see augment.h. */
#include "augment.h"

#include <math.h>
#include <string.h>

#include "base/rng.h"

int ds_aug_active(const ds_aug_config *a)
{
    return a->shift != 0 || a->flip != 0.0f || a->rotate != 0.0f || a->noise != 0.0f;
}

int ds_aug_check(const ds_aug_config *a, const int chw[3], pst_err *err)
{
    const int E = PST_ERR_CONFIG;
    if (a->shift < 0)
        return pst_err_set(err, E, "data.augment.shift: must be >= 0 pixels, got %d", a->shift);
    if (!(a->flip >= 0.0f && a->flip <= 1.0f))
        return pst_err_set(err, E, "data.augment.flip: must be a probability in [0, 1], got %g",
                           (double)a->flip);
    if (!(a->rotate >= 0.0f && a->rotate <= DS_AUG_MAX_ROTATE))
        return pst_err_set(err, E,
                           "data.augment.rotate: must be in [0, %g] degrees (small rotations), "
                           "got %g",
                           (double)DS_AUG_MAX_ROTATE, (double)a->rotate);
    if (!(a->noise >= 0.0f && isfinite(a->noise)))
        return pst_err_set(err, E, "data.augment.noise: must be a standard deviation >= 0, got %g",
                           (double)a->noise);
    if (chw && (a->shift >= chw[1] || a->shift >= chw[2]))
        return pst_err_set(err, E,
                           "data.augment.shift: %d pixels is not smaller than the %d x %d "
                           "images",
                           a->shift, chw[1], chw[2]);
    return PST_OK;
}

/* splitmix64's step: its finaliser after the golden-ratio increment. Chaining it keeps
 * (seed, rank, epoch, row) from colliding the way a plain XOR of them could. */
static uint64_t mix64(uint64_t z) { return rng_mix64(z + 0x9e3779b97f4a7c15ULL); }

uint64_t ds_aug_epoch_seed(uint64_t seed, int rank, int epoch)
{
    /* A constant of its own, so these streams differ from the shuffle's and dropout's. */
    uint64_t h = mix64(seed ^ 0x61756732ULL /* "aug2" */);
    h = mix64(h ^ (uint64_t)(uint32_t)rank);
    return mix64(h ^ (uint64_t)(uint32_t)epoch);
}

void ds_aug_flip(float *img, int c, int h, int w)
{
    for (int p = 0; p < c * h; p++) {
        float *row = img + (size_t)p * w;
        for (int j = 0; j < w / 2; j++) {
            float t = row[j];
            row[j] = row[w - 1 - j];
            row[w - 1 - j] = t;
        }
    }
}

void ds_aug_shift(float *dst, const float *src, int c, int h, int w, int dy, int dx)
{
    /* Columns j with 0 <= j - dx < w: [j0, j1). */
    int j0 = dx > 0 ? dx : 0, j1 = dx < 0 ? w + dx : w;
    for (int k = 0; k < c; k++)
        for (int i = 0; i < h; i++) {
            float *d = dst + ((size_t)k * h + i) * w;
            int si = i - dy;
            if (si < 0 || si >= h || j0 >= j1) {
                memset(d, 0, sizeof *d * (size_t)w);
                continue;
            }
            const float *s = src + ((size_t)k * h + si) * w;
            memset(d, 0, sizeof *d * (size_t)j0);
            memcpy(d + j0, s + j0 - dx, sizeof *d * (size_t)(j1 - j0));
            memset(d + j1, 0, sizeof *d * (size_t)(w - j1));
        }
}

/* src(y, x) of one plane (H, W), 0 outside. */
static float at(const float *p, int h, int w, int y, int x)
{
    return y >= 0 && y < h && x >= 0 && x < w ? p[(size_t)y * w + x] : 0.0f;
}

void ds_aug_rotate(float *dst, const float *src, int c, int h, int w, float degrees)
{
    if (degrees == 0.0f) {
        memcpy(dst, src, sizeof *dst * (size_t)c * h * w);
        return;
    }
    double a = (double)degrees * (3.14159265358979323846 / 180.0);
    float ca = (float)cos(a), sa = (float)sin(a);
    float cy = 0.5f * (float)(h - 1), cx = 0.5f * (float)(w - 1);
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            float u = (float)j - cx, v = (float)i - cy;
            float sy = cy + sa * u + ca * v, sx = cx + ca * u - sa * v;
            float fy = floorf(sy), fx = floorf(sx);
            int y0 = (int)fy, x0 = (int)fx;
            float wy = sy - fy, wx = sx - fx;
            for (int k = 0; k < c; k++) {
                const float *p = src + (size_t)k * h * w;
                float top = (1.0f - wx) * at(p, h, w, y0, x0) + wx * at(p, h, w, y0, x0 + 1);
                float bot =
                    (1.0f - wx) * at(p, h, w, y0 + 1, x0) + wx * at(p, h, w, y0 + 1, x0 + 1);
                dst[((size_t)k * h + i) * w + j] = (1.0f - wy) * top + wy * bot;
            }
        }
}

void ds_aug_noise(float *x, size_t n, float std, rng_state *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] += std * rng_normal(r);
}

/* One sample in place; the draws in a fixed order (flip, angle, dy, dx, noise), each only
 * when its transform is on, so a job's stream depends on its own parameters alone. */
static void augment_one(const ds_aug_config *a, float *img, const int chw[3], rng_state *r,
                        float *scratch)
{
    int c = chw[0], h = chw[1], w = chw[2];
    size_t d = (size_t)c * h * w;
    if (a->flip > 0.0f && rng_uniform(r) < a->flip)
        ds_aug_flip(img, c, h, w);
    if (a->rotate > 0.0f) {
        float deg = (2.0f * rng_uniform(r) - 1.0f) * a->rotate;
        ds_aug_rotate(scratch, img, c, h, w, deg);
        memcpy(img, scratch, sizeof *img * d);
    }
    if (a->shift > 0) {
        uint64_t span = 2 * (uint64_t)a->shift + 1;
        int dy = (int)rng_below(r, span) - a->shift;
        int dx = (int)rng_below(r, span) - a->shift;
        if (dy || dx) {
            ds_aug_shift(scratch, img, c, h, w, dy, dx);
            memcpy(img, scratch, sizeof *img * d);
        }
    }
    if (a->noise > 0.0f)
        ds_aug_noise(img, d, a->noise, r);
}

void ds_aug_batch(const ds_aug_config *a, float *x, const uint32_t *rows, int b, const int chw[3],
                  uint64_t epoch_seed, float *scratch)
{
    size_t d = (size_t)chw[0] * chw[1] * chw[2];
    for (int i = 0; i < b; i++) {
        rng_state r;
        rng_seed(&r, mix64(epoch_seed ^ rows[i]));
        augment_one(a, x + (size_t)i * d, chw, &r, scratch);
    }
}
