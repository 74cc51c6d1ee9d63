//! sluice data crate: corpora, tokenizers, batches.
