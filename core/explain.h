/* core/explain.h -- model interpretability figures (pstrain explain).
 *
 * Permutation feature importance (Breiman 2001): for each input column j, the accuracy of
 * the model on the rows with column j's values shuffled among the rows (a seeded
 * Fisher-Yates per repeat), against the accuracy on the rows as given:
 *   drop_j = acc(x) - mean_r acc(x with column j permuted by permutation r)
 * A column the model ignores has drop 0; one it relies on, a large drop. Shuffling keeps
 * the column's distribution, so the model is never fed values it has not seen.
 *
 * Saliency needs only the model: ml_model_set_input_grad (core/model.h). */
#ifndef PSTRAIN_CORE_EXPLAIN_H
#define PSTRAIN_CORE_EXPLAIN_H

#include <stdint.h>

#include "base/err.h"
#include "model.h"

/* Accuracy of m's classification (argmax of the output; one sigmoid unit: > 0.5) on x
 * (n, D = ml_model_in_dim) against label (n), in batches of ml_model_max_batch. */
double ml_accuracy(ml_model *m, const float *x, const int32_t *label, int64_t n);

/* base = the accuracy on x as given; drop[j] (D floats) per column as above, over
 * `repeats` permutations seeded from seed and j. x is not changed. */
int ml_permutation_importance(ml_model *m, const float *x, const int32_t *label, int64_t n,
                              int repeats, uint64_t seed, double *base, double *drop, pst_err *err);

#endif
