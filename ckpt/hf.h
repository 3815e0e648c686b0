/* ckpt/hf.h -- Hugging Face GPT-2 checkpoints: a folder as transformers' save_pretrained
 * writes one for GPT2LMHeadModel, so that real GPT-2 weights fine-tune in pstrain and what
 * pstrain trains loads in PyTorch code written for that layout.
 *
 *   DIR/model.safetensors  one tensor per parameter, named and shaped as HF's GPT-2
 *                          (core/gpt2.h gives the mapping): wte.weight (V, C), wpe.weight
 *                          (P, C), h.I.ln_1.weight/.bias (C), h.I.attn.c_attn.weight
 *                          (C, 3C)/.bias (3C), h.I.attn.c_proj (C, C)/(C), h.I.ln_2,
 *                          h.I.mlp.c_fc (C, 4C)/(4C), h.I.mlp.c_proj (4C, C)/(C), ln_f (C);
 *                          Conv1D weights (in, out), exactly as pstrain keeps them
 *   DIR/config.json        GPT2Config: model_type gpt2, n_layer, n_head, n_embd,
 *                          n_positions, vocab_size, ...
 *
 * Writing: tensor names without the "transformer." prefix and no lm_head.weight (it is
 * wte: transformers ties it on loading), as the hub's own gpt2 checkpoint is; F32, the
 * pstrain metadata (format "pt", producer, CRC-32s) in "__metadata__". config.json holds
 * GPT2Config's keys for this model: activation_function gelu_new, layer_norm_epsilon
 * 1e-5, n_inner null (4C), tie_word_embeddings true, architectures [GPT2LMHeadModel],
 * n_ctx = n_positions, dropouts 0.0 (pstrain's GPT-2 has no dropout: set attn_pdrop,
 * embd_pdrop and resid_pdrop to GPT-2's 0.1 to train it on as OpenAI did), and
 * bos/eos_token_id 50256 when the vocabulary is GPT-2's 50257. The tokenizer files are
 * not written (the checkpoint does not record them): copy vocab.json and merges.txt
 * beside them when the model used GPT-2's tokenizer.
 *
 * Reading: tensor names with or without "transformer."; F32, F16 or BF16 (converted to
 * float); the attn.bias / attn.masked_bias buffers (the causal mask) and a tied
 * lm_head.weight are ignored. config.json must describe what pstrain computes: model_type
 * gpt2, activation gelu_new (or gelu_pytorch_tanh, the same formula), layer_norm_epsilon
 * 1e-5, n_inner null or 4 * n_embd, scale_attn_weights true, tie_word_embeddings true,
 * no scale_attn_by_inverse_layer_idx, no cross-attention. Failures are one line,
 * PST_ERR_DATA, naming the file and the key or tensor:
 *   DIR/config.json: activation_function 'relu': pstrain's GPT-2 computes gelu_new
 *   DIR/model.safetensors: tensor 'h.0.attn.c_attn.weight': shape [8, 16] but config.json
 *     needs [8, 24]
 *   DIR/model.safetensors: 2 tensors the config needs are missing: h.1.ln_2.weight, ...
 * and nothing is loaded then. */
#ifndef PSTRAIN_CKPT_HF_H
#define PSTRAIN_CKPT_HF_H

#include "base/err.h"
#include "ckpt/ckpt.h"
#include "core/gpt2.h"
#include "core/model.h"

#define CKPT_HF_WEIGHTS "model.safetensors"
#define CKPT_HF_CONFIG "config.json"

/* 1 when path is a folder holding config.json: a Hugging Face model folder. ckpt_load,
 * ckpt_load_into and ckpt_init_from read such a folder through this file's functions. */
int ckpt_hf_is_folder(const char *path);

/* DIR/config.json as a configuration (context 0: n_positions). */
int ckpt_hf_read_config(const char *dir, ml_gpt2_config *c, pst_err *err);

/* Writes DIR/model.safetensors and then DIR/config.json (DIR created when missing; each
 * file atomic) for m, which must be a GPT-2 (ml_gpt2_config_of of its spec, else
 * PST_ERR_ARG). A non-finite weight is PST_ERR_NUMERIC and nothing is written. */
int ckpt_hf_save(const char *dir, ml_model *m, pst_err *err);

/* Writes values (ml_model_nparams(m) floats in m's flat layout: its weights, or its
 * gradients) to the safetensors file path under the Hugging Face names, as ckpt_hf_save
 * does the weights. */
int ckpt_hf_write_tensors(const char *path, ml_model *m, const float *values, pst_err *err);

/* Loads the folder's weights into m, a GPT-2 of the configuration config.json gives (its
 * context may be shorter than n_positions). m is unchanged on failure. */
int ckpt_hf_load_into(const char *dir, ml_model *m, pst_err *err);

/* Builds the GPT-2 that DIR/config.json describes, for samples of `context` tokens (0:
 * n_positions) and batches of at most max_batch, and loads its weights. *out as from
 * ckpt_load: task regress (the (N, T) next-id targets, as pstrain's own GPT-2 checkpoints
 * say), identity scaler. */
int ckpt_hf_load(const char *dir, int context, int max_batch, ckpt_model **out, pst_err *err);

/* The GPT-2 of the pstrain checkpoint file ckpt (one with pstrain.model) written as the
 * Hugging Face folder dir (ckpt_hf_save). A model of other layers is PST_ERR_DATA. */
int ckpt_hf_export(const char *ckpt, const char *dir, pst_err *err);

#endif
