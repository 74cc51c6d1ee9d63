#![warn(missing_docs)]
//! sluice model crate: the LSTM built from candle tensor ops.
//!
//! From the bottom up: [`config`] (the layer's configuration and gate variants), [`cell`]
//! (one LSTM step, op by op: where the output gate lives), [`fused`] (the fused CPU kernel:
//! the same cell in `fused/cell.rs`, run over whole sequences), [`lstm`] (the layer, which
//! chooses between the two), then the task models on top ([`classifier`], [`forecaster`],
//! [`tagger`], [`frames`], [`seq2seq`]).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use model::{config::LstmConfig, init::seeded_var_builder, Lstm, LstmInput};
//!
//! let mut cfg = LstmConfig::new(8, 16);
//! cfg.num_layers = 2;
//! cfg.bidirectional = true;
//! let varmap = candle_nn::VarMap::new();
//! let vb = seeded_var_builder(&varmap, 42, DType::F32, &Device::Cpu);
//! let lstm = Lstm::new(&cfg, vb.pp("lstm"))?;
//! let x = Tensor::zeros((4, 10, 8), DType::F32, &Device::Cpu)?; // (batch, time, input)
//! let out = lstm.forward(&x, &LstmInput::new().lengths(&[10, 7, 3, 1]))?;
//! assert_eq!(out.output.dims(), &[4, 10, 32]); // (batch, time, 2 directions × 16)
//! assert_eq!(out.final_states.len(), 4); // layer × direction
//! # Ok::<(), model::Error>(())
//! ```

#[macro_use]
mod multiversion;
pub mod cell;
pub mod checkpoint;
pub mod classifier;
pub mod compress;
pub mod config;
pub mod crf;
pub mod ctc;
pub mod ctc_decode;
pub mod device;
mod error;
pub mod forecaster;
pub mod frames;
pub mod fused;
pub mod init;
pub mod labeler;
pub mod lstm;
pub mod ops;
pub mod par;
pub mod rng;
pub mod seq2seq;
pub mod speech;
pub mod tagger;

pub use cell::{CellStep, LstmCell};
pub use config::{CellKind, CellSpec, LstmConfig, Variant};
pub use error::{Error, MisShaped, Result};
pub use lstm::{DirectionTrace, GateTrace, Lstm, LstmInput, LstmOutput, LstmState};
pub use rng::{SeededRng, SeededRngState};
