/* data/text.c -- numbers in text, for the CSV and libsvm loaders. */
#include "data_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* ---- Numbers in text ------------------------------------------------------------------ */

/* The whole of s, less surrounding blanks, must be one finite float. strtof (not strtod and
 * a cast) so that the value is correctly rounded once; overflow (ERANGE, +-HUGE_VALF) is
 * reported as not finite, underflow to a subnormal or zero is accepted. */
num_status ds_parse_float(const char *s, float *out)
{
    while (is_space_tab(*s))
        s++;
    if (*s == '\0')
        return NUM_EMPTY;
    char *end;
    float v = strtof(s, &end);
    if (end == s)
        return NUM_BAD;
    while (is_space_tab(*end))
        end++;
    if (*end != '\0')
        return NUM_BAD;
    if (!isfinite(v))
        return NUM_NONFINITE;
    *out = v;
    return NUM_OK;
}

/* As ds_parse_float, in double, and the value must be an integer that fits in int32 ("3",
 * "3.0", "+1" and "-1" all pass: files written by numpy often carry "1.0" class ids). */
num_status ds_parse_int(const char *s, int32_t *out)
{
    while (is_space_tab(*s))
        s++;
    if (*s == '\0')
        return NUM_EMPTY;
    char *end;
    double v = strtod(s, &end);
    if (end == s)
        return NUM_BAD;
    while (is_space_tab(*end))
        end++;
    if (*end != '\0')
        return NUM_BAD;
    if (!isfinite(v))
        return NUM_NONFINITE;
    if (v != floor(v) || v < INT32_MIN || v > INT32_MAX)
        return NUM_BAD;
    *out = (int32_t)v;
    return NUM_OK;
}
