/* proto/wire.c -- see wire.h. */
#include "wire.h"

#include <stdio.h>
#include <string.h>

#include "pstrain.pb-c.h"

static int type_known(int t) { return t == PSTRAIN__MSG_TYPE__MSG_ERROR; }

int wire_pack(const wire_header *h, uint8_t *buf, size_t cap, size_t *len, pst_err *err)
{
    if (h->nframes < 0 || h->nframes > WIRE_MAX_FRAMES)
        return pst_err_set(err, PST_ERR_ARG, "wire: %d frames (max %d)", h->nframes,
                           WIRE_MAX_FRAMES);
    Pstrain__Envelope env = PSTRAIN__ENVELOPE__INIT;
    Pstrain__Error perr = PSTRAIN__ERROR__INIT;
    env.version = h->version;
    env.type = (Pstrain__MsgType)h->type;
    env.request_id = h->request_id;
    env.role = (char *)h->role;
    env.rank = h->rank;
    env.n_payload_bytes = (size_t)h->nframes;
    env.payload_bytes = (uint64_t *)h->frame_bytes;
    if (h->type == WIRE_MSG_ERROR) {
        perr.code = h->error_code;
        perr.text = (char *)h->error_text;
        env.error = &perr;
    }
    size_t need = pstrain__envelope__get_packed_size(&env);
    if (need > cap)
        return pst_err_set(err, PST_ERR_ARG, "wire: envelope needs %zu bytes, buffer has %zu",
                           need, cap);
    *len = pstrain__envelope__pack(&env, buf);
    return PST_OK;
}

int wire_unpack(wire_header *h, const uint8_t *buf, size_t len, pst_err *err)
{
    if (len > WIRE_MAX_META)
        return pst_err_set(err, PST_ERR_DATA, "wire: envelope of %zu bytes exceeds %d", len,
                           WIRE_MAX_META);
    Pstrain__Envelope *env = pstrain__envelope__unpack(NULL, len, buf);
    if (!env)
        return pst_err_set(err, PST_ERR_DATA, "wire: envelope of %zu bytes does not parse", len);
    int rc = PST_OK;
    memset(h, 0, sizeof *h);
    if (env->version != WIRE_VERSION) {
        rc = pst_err_set(err, PST_ERR_DATA, "wire: version %u, this build speaks %u",
                         env->version, WIRE_VERSION);
        goto done;
    }
    if (!type_known(env->type)) {
        rc = pst_err_set(err, PST_ERR_DATA, "wire: unknown message type %d", (int)env->type);
        goto done;
    }
    if (env->n_payload_bytes > WIRE_MAX_FRAMES) {
        rc = pst_err_set(err, PST_ERR_DATA, "wire: %zu payload frames (max %d)",
                         env->n_payload_bytes, WIRE_MAX_FRAMES);
        goto done;
    }
    if (env->role && strlen(env->role) >= sizeof h->role) {
        rc = pst_err_set(err, PST_ERR_DATA, "wire: role name of %zu bytes is too long",
                         strlen(env->role));
        goto done;
    }
    h->version = env->version;
    h->type = (wire_type)env->type;
    h->request_id = env->request_id;
    if (env->role)
        memcpy(h->role, env->role, strlen(env->role) + 1);
    h->rank = env->rank;
    h->nframes = (int)env->n_payload_bytes;
    for (size_t i = 0; i < env->n_payload_bytes; i++)
        h->frame_bytes[i] = env->payload_bytes[i];
    if (h->type == WIRE_MSG_ERROR) {
        if (!env->error) {
            rc = pst_err_set(err, PST_ERR_DATA, "wire: error message without error fields");
            goto done;
        }
        h->error_code = env->error->code;
        snprintf(h->error_text, sizeof h->error_text, "%s",
                 env->error->text ? env->error->text : "");
    }
done:
    pstrain__envelope__free_unpacked(env, NULL);
    return rc;
}

int wire_check_frames(const wire_header *h, int nframes, const size_t *sizes, pst_err *err)
{
    if (nframes != h->nframes)
        return pst_err_set(err, PST_ERR_DATA, "wire: %d payload frames arrived, header says %d",
                           nframes, h->nframes);
    for (int i = 0; i < nframes; i++)
        if ((uint64_t)sizes[i] != h->frame_bytes[i])
            return pst_err_set(err, PST_ERR_DATA,
                               "wire: frame %d has %zu bytes, header says %llu", i + 1,
                               sizes[i], (unsigned long long)h->frame_bytes[i]);
    return PST_OK;
}
