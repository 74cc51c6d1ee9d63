//! Compressed inference: int8 weights with dynamic int8 activations (`int8`), bf16 weights
//! (`bf16`) and block-sparse weights (`sparse`), each with its product kernel; the LSTM and
//! linear layers that run on them at inference (`layers`); and their checkpoint form
//! (`store`, read by [`crate::checkpoint::read`]).
//!
//! A model is compressed by name: [`Compressed::from_tensors`] turns the chosen tensors of a
//! checkpoint (or a live model's variables) into [`Weights`], and the model's
//! `attach_compressed` hands them to its layers, which then use them whenever they run in
//! evaluation mode on the CPU. The f32 variables hold the dequantised values at the same time
//! ([`Compressed::dequantized`]), so every other path (training, gate traces, GPU, the tasks
//! without a compressed kernel) computes with exactly the weights the file holds.

pub mod bf16;
pub mod int8;
pub mod layers;
pub mod sparse;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

/// How a checkpoint's weights are stored (`train export --format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Per-output-channel symmetric int8 weights, f32 scales; int8 dynamic activations.
    Int8,
    /// bf16 weights, f32 arithmetic.
    Bf16,
    /// Recurrent matrices as kept blocks (index + values), f32.
    Sparse,
}

impl Format {
    /// The name used on the command line and in checkpoint metadata.
    pub fn name(self) -> &'static str {
        match self {
            Format::Int8 => "int8",
            Format::Bf16 => "bf16",
            Format::Sparse => "sparse",
        }
    }

    /// Parses `int8`, `bf16`, `sparse`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "int8" => Ok(Format::Int8),
            "bf16" => Ok(Format::Bf16),
            "sparse" => Ok(Format::Sparse),
            other => Err(crate::Error::Input(format!(
                "compression format `{other}` is not supported (expected int8, bf16 or sparse)"
            ))),
        }
    }

    /// Whether this format stores tensor `name` of shape `dims` compressed. int8 and bf16: every
    /// 2-D weight matrix (recurrent, heads, embeddings); sparse: the recurrent matrices
    /// (`weight_ih_l*`, `weight_hh_l*`), the ones `train prune` prunes.
    pub fn applies_to(self, name: &str, dims: &[usize]) -> bool {
        let base = name.rsplit('.').next().unwrap_or(name);
        dims.len() == 2
            && match self {
                Format::Int8 | Format::Bf16 => base.starts_with("weight"),
                Format::Sparse => base.starts_with("weight_ih_l") || base.starts_with("weight_hh_l"),
            }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One weight matrix (rows = output channels) in the form its product kernel reads.
#[derive(Debug, Clone)]
pub enum Weights {
    /// Plain f32 (a layer's tensors that were not compressed).
    F32 {
        /// Output channels.
        rows: usize,
        /// Inputs.
        cols: usize,
        /// Row-major values.
        w: Vec<f32>,
    },
    /// int8 with per-channel scales.
    Int8(int8::QMatrix),
    /// bf16.
    Bf16(bf16::BMatrix),
    /// Block-sparse f32, with the block shape it was stored with.
    Sparse(sparse::SparseMatrix, sparse::Block),
}

/// Reused buffers of the products.
#[derive(Debug, Default)]
pub struct Scratch {
    int8: int8::Scratch,
}

impl Weights {
    /// Compresses a row-major f32 matrix; `block` is the sparse format's stored block shape.
    pub fn compress(format: Format, w: &[f32], rows: usize, cols: usize, block: sparse::Block) -> Self {
        match format {
            Format::Int8 => Weights::Int8(int8::QMatrix::quantize(w, rows, cols)),
            Format::Bf16 => Weights::Bf16(bf16::BMatrix::from_f32(w, rows, cols)),
            Format::Sparse => Weights::Sparse(sparse::SparseMatrix::from_dense(w, rows, cols), block),
        }
    }

    /// Output channels.
    pub fn rows(&self) -> usize {
        match self {
            Weights::F32 { rows, .. } => *rows,
            Weights::Int8(q) => q.rows(),
            Weights::Bf16(b) => b.rows(),
            Weights::Sparse(s, _) => s.rows(),
        }
    }

    /// Inputs per channel.
    pub fn cols(&self) -> usize {
        match self {
            Weights::F32 { cols, .. } => *cols,
            Weights::Int8(q) => q.cols(),
            Weights::Bf16(b) => b.cols(),
            Weights::Sparse(s, _) => s.cols(),
        }
    }

    /// `out[m][n] += Σ_k x[m][k] w[n][k]` for `m < rows` (strides `ldx`, `ldo`).
    pub fn add_product(&self, x: &[f32], ldx: usize, rows: usize, out: &mut [f32], ldo: usize, s: &mut Scratch) {
        match self {
            Weights::F32 { rows: n, cols: k, w } => {
                // Reference path (weights that were not compressed); the classifier's heads and
                // tests are its users, so a plain loop is enough.
                for m in 0..rows {
                    for j in 0..*n {
                        let row = &w[j * k..(j + 1) * k];
                        let v: f32 = x[m * ldx..m * ldx + k].iter().zip(row).map(|(a, b)| a * b).sum();
                        out[m * ldo + j] += v;
                    }
                }
            }
            Weights::Int8(q) => q.add_product(x, ldx, rows, out, ldo, &mut s.int8),
            Weights::Bf16(b) => b.add_product(x, ldx, rows, out, ldo),
            Weights::Sparse(sp, _) => sp.add_product(x, ldx, rows, out, ldo),
        }
    }
}

/// A model's compressed matrices by tensor name.
#[derive(Debug, Clone)]
pub struct Compressed {
    /// How they are stored.
    pub format: Format,
    /// Tensor name → weights.
    pub matrices: BTreeMap<String, Arc<Weights>>,
}

impl Compressed {
    /// Compresses every tensor of `tensors` (name, row-major f32 values, dims) that `format`
    /// applies to. Sparse matrices are stored with whichever of the usual block shapes holds
    /// them in the fewest bytes (so a run pruned by 8×1 blocks is stored as 8×1 blocks).
    pub fn from_tensors<'a>(
        format: Format,
        tensors: impl IntoIterator<Item = (&'a str, &'a [f32], &'a [usize])>,
    ) -> Self {
        let mut matrices = BTreeMap::new();
        for (name, w, dims) in tensors {
            if !format.applies_to(name, dims) {
                continue;
            }
            let (rows, cols) = (dims[0], dims[1]);
            let block = if format == Format::Sparse {
                store::best_block(w, rows, cols)
            } else {
                sparse::Block { rows: 1, cols: 1 }
            };
            matrices.insert(name.to_string(), Arc::new(Weights::compress(format, w, rows, cols, block)));
        }
        Self { format, matrices }
    }

    /// The f32 values each compressed matrix stands for (dequantised int8, widened bf16, the
    /// dense form of a sparse one), by name: what the model's variables should hold.
    pub fn dequantized(&self) -> BTreeMap<String, Vec<f32>> {
        self.matrices.iter().map(|(k, w)| (k.clone(), dense(w))).collect()
    }
}

/// Compresses a live model's variables in memory (the "in-memory quantised model"): every
/// variable `format` applies to is compressed, and set to the values the compressed form
/// stands for, so that the f32 paths compute with the same weights. An exported checkpoint of
/// the same model loads to the same state.
pub fn compress_varmap(varmap: &candle_nn::VarMap, format: Format) -> crate::Result<Compressed> {
    let data = varmap.data().lock().map_err(|_| crate::Error::Input("varmap lock poisoned".into()))?;
    let mut owned = Vec::new();
    for (name, var) in data.iter() {
        if format.applies_to(name, var.dims()) {
            let v = var.as_tensor().to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            owned.push((name.clone(), v, var.dims().to_vec()));
        }
    }
    let c = Compressed::from_tensors(format, owned.iter().map(|(n, v, d)| (n.as_str(), &v[..], &d[..])));
    for (name, values) in c.dequantized() {
        let var = &data[&name];
        let t = candle_core::Tensor::from_vec(values, var.dims(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(c)
}

/// The dense f32 values of `w`, row-major.
pub fn dense(w: &Weights) -> Vec<f32> {
    match w {
        Weights::F32 { w, .. } => w.clone(),
        Weights::Int8(q) => q.dequantize(),
        Weights::Bf16(b) => b.to_f32(),
        Weights::Sparse(s, _) => s.to_dense(),
    }
}

#[cfg(test)]
mod tests;
