//! The contract between the training loop and a model with its data: implement [`Task`] for
//! your own model and [`crate::trainer::Trainer`] trains it with our optimizer, schedules,
//! clipping, early stopping, `metrics.jsonl`, checkpoints and exact resume.

use anyhow::Result;
use candle_core::Tensor;
use candle_nn::VarMap;
use model::rng::SeededRng;
use serde_json::{Map, Value};

/// What one training batch produced.
pub struct StepOutput {
    /// Scalar loss to minimise (data loss only; the optimizer adds the penalties).
    pub loss: Tensor,
    /// Examples in the batch (weights the running loss).
    pub examples: usize,
    /// Real tokens / time steps processed, for throughput.
    pub tokens: usize,
    /// Correct predictions, for tasks with an accuracy (running train accuracy).
    pub correct: Option<usize>,
}

/// Which split to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitName {
    /// The training split.
    Train,
    /// The validation split: evaluated at every epoch end, drives early stopping and `best`.
    Validation,
    /// The test split: evaluated once at the end, from the best checkpoint.
    Test,
}

impl SplitName {
    /// The split's name in `metrics.jsonl`, `summary.json` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Validation => "validation",
            SplitName::Test => "test",
        }
    }

    /// Parses `train`, `validation` or `test`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(SplitName::Train),
            "validation" => Ok(SplitName::Validation),
            "test" => Ok(SplitName::Test),
            other => anyhow::bail!("split {other:?}: expected train, validation or test"),
        }
    }
}

/// A model with its data, its loss and its evaluation: what the trainer needs to train it.
///
/// The trainer owns the loop (steps, learning-rate schedule, penalties, clipping, optimizer),
/// the evaluation cadence, early stopping and every file of the run directory. A task owns
/// its parameters (in a [`VarMap`], whose names become the checkpoint's tensor names) and its
/// batches, which must come in an order that is a pure function of the seed and the epoch:
/// that is what makes a resumed run identical to an uninterrupted one.
pub trait Task {
    /// The model's parameters. Names are the checkpoint's tensor names.
    fn varmap(&self) -> &VarMap;
    /// Whether a parameter receives the L2/L1 penalties (weight matrices, not biases).
    fn penalised(&self, name: &str) -> bool;
    /// Fixes the batch order of `epoch` (a pure function of the seed and the epoch) and
    /// returns how many batches it has.
    fn start_epoch(&mut self, epoch: usize) -> Result<usize>;
    /// Forward pass and loss of batch `index` of the current epoch, in training mode with
    /// dropout masks from `rng` (the trainer saves and restores its state across a resume).
    fn train_step(&self, index: usize, rng: &mut SeededRng) -> Result<StepOutput>;
    /// Metrics over a split with the current weights; must contain `loss`, and the metric
    /// named by `train.early_stopping_metric` for the validation split.
    fn evaluate(&self, split: SplitName) -> Result<Map<String, Value>>;
    /// JSON stored in checkpoint metadata: what `predict` needs to rebuild the model.
    fn checkpoint_meta(&self) -> Value;
    /// Gradients the last backward left row-sparse instead of in its gradient store (an
    /// embedding table's used rows, `model::ops::embed`), by parameter name; taken, so a
    /// second call returns nothing.
    fn sparse_grads(&self) -> Vec<(String, model::ops::SparseRows)> {
        Vec::new()
    }
    /// Hands an exported checkpoint's compressed matrices to the model's inference kernels
    /// (the variables already hold their dequantised values); returns whether any layer runs
    /// on them. The default runs every layer in f32 on the dequantised values.
    fn attach_compressed(&mut self, _c: &model::compress::Compressed) -> Result<bool> {
        Ok(false)
    }
}
