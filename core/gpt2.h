/* core/gpt2.h -- a GPT-2 configuration expanded into a model spec of layers.
 *
 * Legend: L = n_layer, H = n_head, C = n_embd, P = n_positions, V = vocab_size, T = the
 * context a sample holds (tokens, <= P). The model reads (N, T) token ids as floats and
 * gives logits (N, T*V); its loss is sequence_crossentropy over labels (N, T).
 *
 * The layers, in order (names as given; "hI_" for block I):
 *   wte       token_embedding  vocab V, dim C                (input: the ids)
 *   wpe       pos_embedding    tokens T, positions P
 *   drop      dropout          rate p            (only with dropout p > 0: embd_pdrop)
 *   per block I (x = drop or wpe for I = 0, else h(I-1)_res2):
 *   hI_ln_1   layernorm        (x)
 *   hI_attn   attention        heads H, dropout p (on the probabilities: attn_pdrop)
 *   hI_attn_drop dropout       rate p            (only with p > 0: resid_pdrop)
 *   hI_res1   add              x + hI_attn (or hI_attn_drop)
 *   hI_ln_2   layernorm
 *   hI_mlp_fc token_dense      units 4C, activation gelu
 *   hI_mlp_proj token_dense    units C
 *   hI_mlp_drop dropout        rate p            (only with p > 0: resid_pdrop)
 *   hI_res2   add              hI_res1 + hI_mlp_proj (or hI_mlp_drop)
 *   ln_f      layernorm
 *   head      lm_head          vocab V, tie: wte
 *
 * The flat vector then holds, in this order, tensors named like Hugging Face's GPT-2
 * (model.safetensors, with or without the "transformer." prefix), each stored exactly as
 * HF stores it (Conv1D weights (in, out)), so a checkpoint maps by copying:
 *   wte.weight (V, C)                 wte.weight
 *   wpe.weight (P, C)                 wpe.weight
 *   hI_ln_1.weight, .bias (C)         h.I.ln_1.weight, .bias
 *   hI_attn.attn_w (C, 3C), attn_b    h.I.attn.c_attn.weight, .bias   (q | k | v columns)
 *   hI_attn.proj_w (C, C), proj_b     h.I.attn.c_proj.weight, .bias
 *   hI_ln_2.weight, .bias (C)         h.I.ln_2.weight, .bias
 *   hI_mlp_fc.weight (C, 4C), .bias   h.I.mlp.c_fc.weight, .bias
 *   hI_mlp_proj.weight (4C, C), .bias h.I.mlp.c_proj.weight, .bias
 *   ln_f.weight, .bias (C)            ln_f.weight, .bias
 * (dropout layers have no tensors, so p does not change the layout or the names;
 * with p = 0 the model is the one without dropout, layer for layer.)
 * (the head has no tensor of its own: lm_head.weight is wte). HF's attn.bias / masked_bias
 * buffers are the causal mask, not parameters. ml_gpt2_hf_name gives the mapping. */
#ifndef PSTRAIN_CORE_GPT2_H
#define PSTRAIN_CORE_GPT2_H

#include <stddef.h>

#include "base/err.h"
#include "layer.h"

typedef struct {
    int n_layer, n_head, n_embd, n_positions, vocab_size;
    int context;    /* T, tokens per sample; 0: n_positions */
    double dropout; /* p, GPT-2's embd/attn/resid_pdrop alike, in [0, 0.95]; 0: none */
} ml_gpt2_config;

/* Fills s (malloc'd: ml_model_spec_fini frees it) with the layers above and loss
 * sequence_crossentropy. Refuses (PST_ERR_CONFIG, one line) sizes out of range, n_embd
 * not divisible by n_head and a context longer than n_positions. */
int ml_gpt2_spec(ml_model_spec *s, const ml_gpt2_config *c, pst_err *err);

/* The Hugging Face name ("h.0.attn.c_attn.weight", no prefix) of one of the segments
 * above ("h0_attn.attn_w"), written into buf; -1 when seg is not a GPT-2 tensor name. */
int ml_gpt2_hf_name(const char *seg, char *buf, size_t n);

/* The configuration s was made from: 0 and *c when s is exactly what ml_gpt2_spec(c)
 * gives (layer names, keys and inputs; trainable and lr_mult aside), else PST_ERR_CONFIG
 * with one line saying why it is not a GPT-2 (ckpt/hf.h writes only those). */
int ml_gpt2_config_of(const ml_model_spec *s, ml_gpt2_config *c, pst_err *err);

#endif
