/* data/augment.h -- random image transforms for training batches (data.augment).
 *
 * Shapes: an image is (C, H, W) row-major floats, every channel transformed alike; a batch
 * is (B, D = C*H*W), one image per row. Pixel (i, j) is row i (down) and column j (right);
 * the image's centre is (cy, cx) = ((H - 1) / 2, (W - 1) / 2). Positions outside the image
 * read 0, the background of IDX images unscaled or min-max scaled (with data.scale
 * standardize it is each pixel's mean -- see docs/job-file.md "Data augmentation").
 *
 * The transforms of one sample, in this order, each off at its parameter's 0:
 *   flip    with probability `flip`: x'(i, j) = x(i, W-1-j), a horizontal mirror
 *           (torchvision RandomHorizontalFlip(p)). Meaningful where a mirrored object is
 *           still of its class (clothes, animals), not for digits or text.
 *   rotate  an angle a uniform in [-rotate, rotate] degrees, counter-clockwise as the
 *           image is shown (rows down), about the centre, bilinear:
 *             x'(i, j) = x~(cy + sin a (j - cx) + cos a (i - cy),
 *                           cx + cos a (j - cx) - sin a (i - cy))
 *           where x~ interpolates the four neighbours, 0 outside (torchvision
 *           rotate(..., InterpolationMode.BILINEAR, fill=0) up to its sign convention).
 *   shift   (dy, dx) uniform integers in [-shift, shift]: x'(i, j) = x(i - dy, j - dx),
 *           0 where that falls outside -- exactly a random H x W crop of the image padded
 *           by `shift` zeros on every side (torchvision RandomCrop(size, padding=shift)).
 *   noise   x' = x + noise * z, z ~ N(0, 1) independent per value (no clamping).
 *
 * Randomness: the draws of a sample come from its own stream, seeded by (the epoch seed of
 * ds_aug_epoch_seed, the sample's row in the dataset), so a row is transformed the same
 * whatever batch it falls in, a run is reproducible from the job seed, and workers
 * (ranks) and epochs differ. Nothing here allocates or keeps state. */
#ifndef PSTRAIN_DATA_AUGMENT_H
#define PSTRAIN_DATA_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/rng.h"

/* The parameters (job file: data.augment). All 0: no augmentation. */
typedef struct {
    int shift;    /* pixels, >= 0 and below the image's height and width */
    float flip;   /* probability in [0, 1] */
    float rotate; /* degrees in [0, DS_AUG_MAX_ROTATE] */
    float noise;  /* standard deviation >= 0, in the units of the (scaled) features */
} ds_aug_config;

#define DS_AUG_MAX_ROTATE 45.0f

/* 1 when any transform is on. */
int ds_aug_active(const ds_aug_config *a);

/* PST_ERR_CONFIG naming the key ("data.augment.flip: must be a probability in [0, 1], got
 * -0.5") when a parameter is out of range. chw (the images' (C, H, W)) may be NULL to check
 * the ranges alone; with it, the shift must also be smaller than H and W. */
int ds_aug_check(const ds_aug_config *a, const int chw[3], pst_err *err);

/* The seed of one worker's epoch: a hash of (job seed, rank, epoch), each of them
 * changing it. */
uint64_t ds_aug_epoch_seed(uint64_t seed, int rank, int epoch);

/* Augments batch x (B, C*H*W) in place: row b of x is dataset row rows[b]; its draws come
 * from the stream of (epoch_seed, rows[b]). scratch: (C*H*W) floats, caller-owned. */
void ds_aug_batch(const ds_aug_config *a, float *x, const uint32_t *rows, int b, const int chw[3],
                  uint64_t epoch_seed, float *scratch);

/* ---- The transforms, for ds_aug_batch and tests (img, dst, src: (C, H, W)) ----------- */

void ds_aug_flip(float *img, int c, int h, int w); /* in place */
/* dst(i, j) = src(i - dy, j - dx), 0 outside; dst and src must not overlap. */
void ds_aug_shift(float *dst, const float *src, int c, int h, int w, int dy, int dx);
/* Rotation by `degrees` as above; dst and src must not overlap. 0 degrees copies exactly. */
void ds_aug_rotate(float *dst, const float *src, int c, int h, int w, float degrees);
/* x[0..n) += std * N(0, 1) draws of r. */
void ds_aug_noise(float *x, size_t n, float std, rng_state *r);

#endif
