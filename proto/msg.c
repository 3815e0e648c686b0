/* proto/msg.c -- see msg.h. */
#include "msg.h"

#include "proto/dlv.h"

#include <stdio.h>
#include <string.h>

int msg_send(net_sock *s, const void *route, size_t route_len, wire_env *h, const wire_body *b,
             const net_frame *payload, int npayload, int timeout_ms, pst_err *err)
{
    uint8_t meta[WIRE_MAX_META];
    size_t mlen = 0;
    net_frame frames[NET_MAX_FRAMES];
    int n = 0, rc;
    if (npayload > WIRE_MAX_FRAMES || npayload + 2 > NET_MAX_FRAMES) {
        rc = pst_err_set(err, PST_ERR_ARG, "msg: %d payload frames", npayload);
        goto release;
    }
    h->nframes = npayload;
    for (int i = 0; i < npayload; i++)
        h->frame_bytes[i] = payload[i].len;
    if ((rc = wire_pack(h, b, meta, sizeof meta, &mlen, err)))
        goto release;
    if (route)
        frames[n++] = (net_frame){.data = route, .len = route_len};
    frames[n++] = (net_frame){.data = meta, .len = mlen};
    for (int i = 0; i < npayload; i++)
        frames[n++] = payload[i];
    return net_send(s, frames, n, timeout_ms, err); /* releases payload on failure */
release:
    for (int i = 0; i < npayload; i++)
        if (payload[i].release)
            payload[i].release((void *)payload[i].data, payload[i].hint);
    return rc;
}

/* A malformed message is the peer's fault: keep the message, change the code. */
static int as_peer_error(pst_err *err)
{
    if (err)
        err->code = PST_ERR_PEER;
    return PST_ERR_PEER;
}

int msg_recv(net_sock *s, net_msg *m, int is_router, msg_in *in, int timeout_ms, pst_err *err)
{
    in->route = NULL;
    in->route_len = 0;
    in->msg = m;
    int rc = net_recv(s, m, timeout_ms, err);
    if (rc)
        return rc;
    int n = net_msg_count(m), first = 0;
    if (is_router) {
        in->route = net_msg_data(m, 0, &in->route_len);
        first = 1;
    }
    if (n <= first)
        return pst_err_set(err, PST_ERR_PEER, "message without an envelope frame");
    size_t mlen;
    const void *meta = net_msg_data(m, first, &mlen);
    if (wire_unpack(&in->h, &in->b, &in->store, meta, mlen, err))
        return as_peer_error(err);
    in->npayload = n - first - 1;
    if (in->npayload > WIRE_MAX_FRAMES)
        return pst_err_set(err, PST_ERR_PEER, "message with %d payload frames", in->npayload);
    for (int i = 0; i < in->npayload; i++)
        in->payload[i] = net_msg_data(m, first + 1 + i, &in->payload_len[i]);
    if (wire_check_frames(&in->h, in->npayload, in->payload_len, err)) {
        pst_err_prefix(err, "%s", wire_type_name(in->h.type));
        return as_peer_error(err);
    }
    return PST_OK;
}

void msg_peer(const msg_in *in, int is_router, char *key, char *name)
{
    char addr[NET_PEER_ADDR] = "", id[NET_PEER_ID] = "";
    if (in->msg)
        net_msg_peer(in->msg, is_router, addr, sizeof addr, id, sizeof id);
    snprintf(key, MSG_PEER, "%s", addr[0] ? addr : id[0] ? id : "unknown peer");
    if (addr[0] && id[0])
        snprintf(name, MSG_PEER, "%s, id %s", addr, id);
    else
        snprintf(name, MSG_PEER, "%s", key);
}

int msg_refuse_version(net_sock *s, const msg_in *in, const char *role, int rank)
{
    if (in->h.version == WIRE_VERSION || in->h.version == 0 || !in->route || in->route_len == 0)
        return 0;
    char text[160];
    snprintf(text, sizeof text,
             "refused a message of wire version %u: this %s speaks wire "
             "version %u (are all processes of the job the same pstrain build?)",
             in->h.version, role, WIRE_VERSION);
    pst_err e = {0};
    return msg_send_error(s, in->route, in->route_len, role, rank, 0, PST_ERR_CONFIG, text, &e) ==
           PST_OK;
}

int msg_send_error(net_sock *s, const void *route, size_t route_len, const char *role, int rank,
                   uint64_t request_id, int code, const char *text, pst_err *err)
{
    wire_env h;
    wire_env_init(&h, WIRE_MSG_ERROR, role, rank);
    h.request_id = request_id;
    wire_error e = {.code = (uint32_t)code};
    snprintf(e.text, sizeof e.text, "%s", text);
    return msg_send(s, route, route_len, &h, &(wire_body){.error = &e}, NULL, 0, 0, err);
}

int msg_call(net_sock *s, net_msg *m, msg_in *in, wire_env *h, const wire_body *b, wire_type want,
             int same_clock, int timeout_ms, const volatile sig_atomic_t *stop, pst_err *err)
{
    int64_t clock = h->clock;
    int rc = msg_send(s, NULL, 0, h, b, NULL, 0, timeout_ms, err);
    if (rc)
        return rc;
    int64_t deadline = net_now_ms() + timeout_ms;
    dlv_rto rto;
    dlv_rto_init(&rto, &DLV_RTO_CALL);
    dlv_rto_arm(&rto, net_now_ms());
    for (;;) {
        if (stop && *stop)
            return PST_OK;
        int64_t now = net_now_ms();
        int left = (int)(deadline - now);
        if (left <= 0)
            return pst_err_set(err, PST_ERR_TIMEOUT, "no %s within %d s", wire_type_name(want),
                               timeout_ms / 1000);
        /* The request or its answer may be lost: ask again (the receiver answers a repeat
         * again and does not act on it twice; see dlv.h). */
        if (dlv_rto_due(&rto, now)) {
            if ((rc = msg_send(s, NULL, 0, h, b, NULL, 0, left, err)))
                return rc;
            dlv_rto_expired(&rto, 0);
            dlv_rto_arm(&rto, now);
        }
        int wait = dlv_rto_wait_ms(&rto, now);
        rc = msg_recv(s, m, 0, in, left < wait ? left : wait, err);
        if (rc == PST_ERR_TIMEOUT)
            continue;
        if (rc == PST_ERR_PEER && in->b.error) /* a peer of another version refused ours */
            return pst_err_set(err, PST_ERR_PEER, "%s", in->b.error->text);
        if (rc)
            return rc;
        if (in->h.type == WIRE_MSG_ERROR)
            return pst_err_set(err, PST_ERR_PEER, "%s", in->b.error->text);
        if (in->h.type == want && (!same_clock || in->h.clock == clock))
            return PST_OK;
    }
}

int msg_register(net_sock *s, net_msg *m, msg_in *in, wire_env *h, const wire_hello *hello,
                 const char *coordinator, int timeout_s, int nservers, int nworkers,
                 const volatile sig_atomic_t *stop, pst_err *err)
{
    wire_body b = {.hello = hello};
    int rc = msg_call(s, m, in, h, &b, WIRE_MSG_WELCOME, 0, timeout_s * 1000, stop, err);
    if (rc == PST_ERR_PEER) { /* the coordinator said no */
        pst_err_prefix(err, "coordinator refused registration");
        err->code = PST_ERR_CONFIG;
        return PST_ERR_CONFIG;
    }
    if (rc == PST_ERR_TIMEOUT)
        return pst_err_set(err, PST_ERR_TIMEOUT,
                           "no WELCOME from coordinator %s after %d s (are all %d servers and %d "
                           "workers started? do this process's security.* settings match the "
                           "coordinator's? a plaintext process gets no answer from a CURVE "
                           "job, nor one whose key it does not allow)",
                           coordinator, timeout_s, nservers, nworkers);
    if (rc)
        return pst_err_prefix(err, "coordinator %s", coordinator);
    return PST_OK;
}
