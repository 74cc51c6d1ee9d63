//! Attention encoder–decoder for translation and summarisation (with the pointer-generator's
//! copy switch and coverage, See et al. 2017).
//!
//! ```text
//! source ids ─► embedding ─► bidirectional Lstm (our layer, lengths) ─► memory (B, S, M)
//!                                                 └─ final states ─► decoder initial states
//! target ids ─► embedding ─┐
//!                          ├─► decoder LSTM (stacked cells) ─► h_t ─► attention over memory
//!   h̃_{t−1} (input feeding) ┘                                            │
//!                       h̃_t = tanh(W_out [c_t ; h_t]) ◄── context c_t ◄──┘
//!                       logits_t = W_gen h̃_t + b   (W_gen = target embedding when tied)
//! ```
//! This is the "global attention" decoder of Luong et al. (2015) with input feeding; the
//! score function is selectable: `dot` (h_tᵀ h̄_s), `general` (h_tᵀ W_a h̄_s) or `bahdanau`
//! (additive, vᵀ tanh(W_q h_t + W_k h̄_s), Bahdanau et al. 2015), as OpenNMT-py arranges them.
//! Padded source positions get a score of −1e9 before the softmax, so their weight is
//! exactly 0 in f32 and f64 (exp underflows), and the padded memory rows are zero anyway.
//!
//! # Speed
//!
//! Input feeding makes the decoder sequential, so it runs step by step on candle ops with
//! autograd. What is computed once per batch instead of once per step: the embedding part
//! of the first layer's input projection (one matmul for all steps, cut with
//! [`crate::lstm::split_steps`]), the concatenated recurrent weights `[W_ih_feed W_hh]ᵀ`
//! (one matmul per layer per step), the attention keys (`W_a h̄_s`, `W_k h̄_s`) and the
//! padding bias. The vocabulary projection is not in the loop: [`Seq2Seq::forward`] returns
//! the stacked h̃ (B, T, D) and the caller projects all steps at once and takes the loss with
//! [`label_smoothed_cross_entropy`], one fused pass over the logits forward and one backward.
//!
//! # Parameter names
//!
//! `src_embedding.weight`, `tgt_embedding.weight`, `encoder.*` and `decoder.*` (PyTorch
//! `nn.LSTM` names, gate order i, f, g, o; decoder layer 0's `weight_ih_l0` columns are
//! [embedding ; h̃_{t−1}]), `attention.linear_in.weight` (general), `attention.linear_query.*`,
//! `attention.linear_context.weight`, `attention.v.weight` (bahdanau),
//! `attention.linear_out.weight`, `generator.weight` (absent when tied), `generator.bias`.

mod cell_op;
mod config;
mod decode;
mod loss;
mod model;
mod summary;

pub use config::{AttentionKind, Seq2SeqConfig};
pub use decode::{length_penalty, DecodeOptions, Hypothesis};
pub use loss::label_smoothed_cross_entropy;
pub use model::{DecodeParts, DecoderState, Encoded, Seq2Seq, Seq2SeqOutput};
pub use summary::{repeats_ngram, CopySource, Summary, SummaryOptions};

#[cfg(test)]
mod copy_tests;
#[cfg(test)]
mod tests;
