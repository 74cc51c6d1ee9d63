//! The LSTM cell, op by op: one time step from candle tensor ops, under the paper's names.
//! **This is where the output gate lives** on the op-by-op path ([`step`]); the fused CPU
//! kernel computes the same step on raw slices in `fused/cell.rs`.
//!
//! ```text
//! i_t = σ(W_i·x_t + U_i·h_{t-1} + b_i)          input gate
//! f_t = σ(W_f·x_t + U_f·h_{t-1} + b_f)          forget gate
//! g_t = tanh(W_g·x_t + U_g·h_{t-1} + b_g)       cell candidate
//! o_t = σ(W_o·x_t + U_o·h_{t-1} + b_o)          output gate
//! c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t               cell
//! h_t = o_t ⊙ tanh(c_t)                         hidden
//! ```
//! with b = `bias_ih` + `bias_hh`. The gate variants ([`Variant`], Greff et al. 2017) change
//! single terms, as their [`CellSpec`] says: `peephole` adds p_i⊙c_{t-1}, p_f⊙c_{t-1} to i, f
//! and p_o⊙c_t to o; `cifg` sets i = 1 − f; `nog` o ≡ 1; `noaf` h = o⊙c; `nig` i ≡ 1; `nfg`
//! f ≡ 1; `niaf` g without tanh.
//!
//! One step of a vanilla cell (the layer, [`crate::Lstm`], runs this over time, layers and
//! directions):
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use model::cell::{DirectionWeights, LstmCell};
//! use model::Variant;
//!
//! let dev = Device::Cpu;
//! let (batch, input, hidden) = (1, 3, 2);
//! // PyTorch's layout: the i, f, g, o blocks stacked, `hidden` rows each.
//! let w = DirectionWeights {
//!     w_ih: Tensor::full(0.1f32, (4 * hidden, input), &dev)?,
//!     w_hh: Tensor::full(-0.2f32, (4 * hidden, hidden), &dev)?,
//!     b_ih: Tensor::zeros(4 * hidden, DType::F32, &dev)?,
//!     b_hh: Tensor::zeros(4 * hidden, DType::F32, &dev)?,
//!     peephole: None,
//! };
//! let cell = LstmCell::new(Variant::Vanilla, &w)?;
//! let x = Tensor::ones((batch, input), DType::F32, &dev)?; // x_t (batch, input)
//! let h0 = Tensor::zeros((batch, hidden), DType::F32, &dev)?; // h_{t-1} (batch, hidden)
//! let c0 = h0.clone(); // c_{t-1}
//! let step = cell.step(&x, &h0, &c0)?;
//! // Every pre-activation is 3 · 0.1 = 0.3: i = f = o = σ(0.3), g = tanh(0.3), c = i·g.
//! let o = step.output_gate.as_ref().expect("a vanilla cell has an output gate");
//! assert_eq!(step.hidden.to_vec2::<f32>()?, (o * step.cell.tanh()?)?.to_vec2::<f32>()?);
//! let h = step.hidden.to_vec2::<f32>()?[0][0];
//! assert!((h - 0.0952).abs() < 1e-4, "{h}");
//! # Ok::<(), model::Error>(())
//! ```

use crate::config::{CellSpec, Variant};
use crate::{Error, Result};
use candle_core::Tensor;

/// The parameters of one layer and direction of [`crate::Lstm`] (for the LSTM, one cell's
/// weights), under PyTorch's layout: G row blocks of H rows each, G the gate blocks of the
/// variant ([`Variant::gates`]; 3 for GRU, 1 for RNN).
#[derive(Debug, Clone)]
pub struct DirectionWeights {
    /// (G·H, in)
    pub w_ih: Tensor,
    /// (G·H, H)
    pub w_hh: Tensor,
    /// (G·H)
    pub b_ih: Tensor,
    /// (G·H)
    pub b_hh: Tensor,
    /// Peephole diagonals p_i, p_f, p_o stacked: (3·H) (peephole variant only).
    pub peephole: Option<Tensor>,
}

/// The peephole variant's diagonal weights, (H) each.
#[derive(Debug, Clone)]
pub struct Peepholes {
    /// p_i: c_{t-1} into the input gate.
    pub input: Tensor,
    /// p_f: c_{t-1} into the forget gate.
    pub forget: Tensor,
    /// p_o: c_t into the output gate.
    pub output: Tensor,
}

impl Peepholes {
    /// Views of the stacked (3·H) weights `p_i, p_f, p_o` ([`DirectionWeights::peephole`]).
    pub fn split(stacked: &Tensor, hidden: usize) -> Result<Peepholes> {
        Ok(Peepholes {
            input: stacked.narrow(0, 0, hidden)?,
            forget: stacked.narrow(0, hidden, hidden)?,
            output: stacked.narrow(0, 2 * hidden, hidden)?,
        })
    }
}

/// One step's gates and new state, each (batch, H). A gate the variant does not have is
/// `None` (it reads as 1), except cifg's input gate, which is reported as 1 − f.
#[derive(Debug, Clone)]
pub struct CellStep {
    /// i_t.
    pub input_gate: Option<Tensor>,
    /// f_t.
    pub forget_gate: Option<Tensor>,
    /// g_t.
    pub cell_candidate: Tensor,
    /// o_t.
    pub output_gate: Option<Tensor>,
    /// c_t.
    pub cell: Tensor,
    /// h_t.
    pub hidden: Tensor,
}

/// An LSTM cell: a gate variant and one layer-direction's weights.
#[derive(Debug, Clone)]
pub struct LstmCell<'a> {
    spec: CellSpec,
    weights: &'a DirectionWeights,
    peepholes: Option<Peepholes>,
}

impl<'a> LstmCell<'a> {
    /// Checks that `weights` have the variant's shapes (G·H rows, a peephole vector exactly
    /// for the peephole variant).
    pub fn new(variant: Variant, weights: &'a DirectionWeights) -> Result<Self> {
        let spec = variant.spec();
        let (rows, hidden) = weights.w_hh.dims2()?;
        let want = variant.gates().len() * hidden;
        if rows != want
            || weights.w_ih.dim(0)? != want
            || weights.b_ih.dims() != [want]
            || weights.b_hh.dims() != [want]
        {
            return Err(Error::Input(format!(
                "lstm cell ({}): expected {want} rows in w_ih, w_hh, b_ih, b_hh for hidden {hidden}; got {:?}, {:?}, {:?}, {:?}",
                variant.name(),
                weights.w_ih.dims(),
                weights.w_hh.dims(),
                weights.b_ih.dims(),
                weights.b_hh.dims()
            )));
        }
        let peepholes = match (&weights.peephole, spec.peephole) {
            (Some(p), true) if p.dims() == [3 * hidden] => Some(Peepholes::split(p, hidden)?),
            (None, false) => None,
            (p, _) => {
                return Err(Error::Input(format!(
                    "lstm cell ({}): expected {}, got peephole weights {:?}",
                    variant.name(),
                    if spec.peephole { format!("peephole weights ({})", 3 * hidden) } else { "none".into() },
                    p.as_ref().map(|p| p.dims().to_vec())
                )))
            }
        };
        Ok(Self { spec, weights, peepholes })
    }

    /// One step from x_t (batch, input), h_{t-1} and c_{t-1} (batch, H).
    pub fn step(&self, x: &Tensor, h_prev: &Tensor, c_prev: &Tensor) -> Result<CellStep> {
        let w = self.weights;
        // (batch, G·H): W·x_t + b.
        let xw = x.matmul(&w.w_ih.t()?)?.broadcast_add(&(&w.b_ih + &w.b_hh)?)?;
        self.step_projected(&xw, h_prev, c_prev)
    }

    /// One step from the input's share of the pre-activations, `xw` = W·x_t + b (batch, G·H):
    /// the layer projects every step's input in one product before its time loop.
    pub fn step_projected(&self, xw: &Tensor, h_prev: &Tensor, c_prev: &Tensor) -> Result<CellStep> {
        // (batch, G·H): every gate's pre-activation W·x_t + U·h_{t-1} + b.
        let z = (xw + h_prev.matmul(&per_use(&self.weights.w_hh)?.t()?)?)?;
        step(self.spec, &z, c_prev, self.peepholes.as_ref())
    }
}

/// The gate math of one step: from the pre-activations `z` (batch, G·H), the variant's gate
/// blocks side by side in PyTorch's order i, f, g, o ([`Variant::gates`]), and c_{t-1}
/// (batch, H) to the gates, c_t and h_t.
pub fn step(spec: CellSpec, z: &Tensor, c_prev: &Tensor, peepholes: Option<&Peepholes>) -> Result<CellStep> {
    let hidden = c_prev.dim(1)?;
    let mut blocks = [None, None, None, None];
    for (k, &gate) in spec.gates().iter().enumerate() {
        blocks[gate] = Some(z.narrow(1, k * hidden, hidden)?);
    }
    let [zi, zf, zg, zo] = blocks;
    let zg = zg.expect("every variant has a cell candidate");
    let peep = |pick: fn(&Peepholes) -> &Tensor| peepholes.map(pick);
    // f first: cifg's input gate is 1 − f.
    let forget_gate = match zf {
        Some(zf) => Some(sigmoid(&with_peephole(zf, peep(|p| &p.forget), c_prev)?)?),
        None => None, // nfg: f ≡ 1
    };
    let input_gate = match (zi, &forget_gate) {
        (Some(zi), _) => Some(sigmoid(&with_peephole(zi, peep(|p| &p.input), c_prev)?)?),
        (None, Some(f)) if spec.coupled => Some(f.affine(-1.0, 1.0)?), // cifg: i = 1 − f
        (None, _) => None,                                             // nig: i ≡ 1
    };
    let cell_candidate = if spec.input_activation { zg.tanh()? } else { zg };
    // c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    let kept = match &forget_gate {
        Some(f) => (f * c_prev)?,
        None => c_prev.clone(),
    };
    let written = match &input_gate {
        Some(i) => (i * &cell_candidate)?,
        None => cell_candidate.clone(),
    };
    let cell = (kept + written)?;
    // The output gate o_t = σ(W_o·x_t + U_o·h_{t-1} + b_o [+ p_o ⊙ c_t]) decides how much of
    // the squashed cell reaches h_t = o_t ⊙ tanh(c_t).
    let output_gate = match zo {
        Some(zo) => Some(sigmoid(&with_peephole(zo, peep(|p| &p.output), &cell)?)?),
        None => None, // nog: o ≡ 1
    };
    let squashed = if spec.output_activation { cell.tanh()? } else { cell.clone() };
    let hidden = match &output_gate {
        Some(o) => (o * squashed)?,
        None => squashed,
    };
    Ok(CellStep { input_gate, forget_gate, cell_candidate, output_gate, cell, hidden })
}

/// `pre` + p ⊙ c for a peephole gate, `pre` otherwise.
fn with_peephole(pre: Tensor, p: Option<&Tensor>, c: &Tensor) -> Result<Tensor> {
    Ok(match p {
        // A per-step view, as `per_use` (p is a contiguous slice).
        Some(p) => (pre + c.broadcast_mul(&p.reshape(p.shape())?)?)?,
        None => pre,
    })
}

fn sigmoid(x: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::sigmoid(x)
}

/// `x` as a fresh graph node (a zero-copy reshape of a contiguous tensor to its own shape),
/// for a tensor that every time step reads. candle's backward adds each use's gradient into
/// its store without detaching it (candle issue #1241), so a tensor read at every step
/// accumulates a chain of additions that keeps every step's contribution alive to the end of
/// the backward (2.6 GB for one 40-step Multi30k batch through the decoder's attention
/// memory alone). Through a node per step, each contribution is freed once that node is
/// processed: its gradient reaches `x` detached. A non-contiguous `x` is returned as is
/// (its reshape would be a copy per step).
pub(crate) fn per_use(x: &Tensor) -> Result<Tensor> {
    if !x.is_contiguous() {
        return Ok(x.clone());
    }
    Ok(x.reshape(x.shape())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// splitmix64 values in [-scale, scale].
    fn values(seed: u64, n: usize, scale: f64) -> Vec<f64> {
        let mut st = seed;
        (0..n)
            .map(|_| {
                st = st.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = st;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                ((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// The step written out from the paper, per variant by name (not through `CellSpec`), for
    /// one row: `z` the pre-activations of the variant's gate blocks, `p` the peepholes.
    fn reference(v: Variant, z: &[f64], cp: &[f64], p: Option<&[f64]>) -> (Vec<f64>, Vec<f64>) {
        use crate::config::Gate;
        let hsz = cp.len();
        let block = |g: Gate| v.gates().iter().position(|&x| x == g).map(|k| &z[k * hsz..(k + 1) * hsz]);
        let (mut h, mut c) = (vec![0.0; hsz], vec![0.0; hsz]);
        for j in 0..hsz {
            let peep = |q: usize, cell: f64| p.map_or(0.0, |p| p[q * hsz + j] * cell);
            let f = if v == Variant::Nfg { 1.0 } else { sig(block(Gate::Forget).unwrap()[j] + peep(1, cp[j])) };
            let i = match v {
                Variant::Cifg => 1.0 - f,
                Variant::Nig => 1.0,
                _ => sig(block(Gate::Input).unwrap()[j] + peep(0, cp[j])),
            };
            let zg = block(Gate::Cell).unwrap()[j];
            let g = if v == Variant::Niaf { zg } else { zg.tanh() };
            c[j] = f * cp[j] + i * g;
            let o = if v == Variant::Nog { 1.0 } else { sig(block(Gate::Output).unwrap()[j] + peep(2, c[j])) };
            h[j] = o * if v == Variant::Noaf { c[j] } else { c[j].tanh() };
        }
        (h, c)
    }

    /// One step of every variant from x, h, c and weights, in f64, against the paper's
    /// formulas evaluated element by element.
    #[test]
    fn one_step_of_every_variant_matches_the_formulas() {
        let dev = Device::Cpu;
        let (b, ni, nh) = (3, 4, 5);
        for (k, v) in Variant::ALL.into_iter().enumerate() {
            let seed = 100 * k as u64;
            let gh = v.gates().len() * nh;
            let t = |seed: u64, shape: &[usize], scale: f64| {
                let n = shape.iter().product();
                Tensor::from_vec(values(seed, n, scale), shape, &dev).unwrap()
            };
            let w = DirectionWeights {
                w_ih: t(seed + 1, &[gh, ni], 0.6),
                w_hh: t(seed + 2, &[gh, nh], 0.6),
                b_ih: t(seed + 3, &[gh], 0.5),
                b_hh: t(seed + 4, &[gh], 0.5),
                peephole: (v == Variant::Peephole).then(|| t(seed + 5, &[3 * nh], 0.8)),
            };
            let (x, h0, c0) = (t(seed + 6, &[b, ni], 1.0), t(seed + 7, &[b, nh], 1.0), t(seed + 8, &[b, nh], 1.0));
            let step = LstmCell::new(v, &w).unwrap().step(&x, &h0, &c0).unwrap();
            assert_eq!(step.input_gate.is_some(), v != Variant::Nig, "{v:?}");
            assert_eq!(step.forget_gate.is_some(), v != Variant::Nfg, "{v:?}");
            assert_eq!(step.output_gate.is_some(), v != Variant::Nog, "{v:?}");
            let rows = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
            let (xs, hs, cs) = (rows(&x), rows(&h0), rows(&c0));
            let (wi, wh) = (rows(&w.w_ih), rows(&w.w_hh));
            let bias: Vec<f64> = w
                .b_ih
                .to_vec1::<f64>()
                .unwrap()
                .iter()
                .zip(w.b_hh.to_vec1::<f64>().unwrap())
                .map(|(a, b)| a + b)
                .collect();
            let peep = w.peephole.as_ref().map(|p| p.to_vec1::<f64>().unwrap());
            let (got_h, got_c) = (rows(&step.hidden), rows(&step.cell));
            for r in 0..b {
                let z: Vec<f64> = (0..gh)
                    .map(|q| {
                        let xw: f64 = (0..ni).map(|m| wi[q][m] * xs[r][m]).sum();
                        let hw: f64 = (0..nh).map(|m| wh[q][m] * hs[r][m]).sum();
                        xw + hw + bias[q]
                    })
                    .collect();
                let (h, c) = reference(v, &z, &cs[r], peep.as_deref());
                for j in 0..nh {
                    assert!((got_h[r][j] - h[j]).abs() < 1e-12, "{v:?} h[{r}][{j}]: {} vs {}", got_h[r][j], h[j]);
                    assert!((got_c[r][j] - c[j]).abs() < 1e-12, "{v:?} c[{r}][{j}]: {} vs {}", got_c[r][j], c[j]);
                }
            }
        }
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let dev = Device::Cpu;
        let z = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &dev).unwrap();
        let w = DirectionWeights { w_ih: z(&[8, 3]), w_hh: z(&[8, 2]), b_ih: z(&[8]), b_hh: z(&[8]), peephole: None };
        assert!(LstmCell::new(Variant::Vanilla, &w).is_ok());
        // cifg has three blocks, and the peephole variant needs its diagonals.
        assert!(LstmCell::new(Variant::Cifg, &w).unwrap_err().to_string().contains("expected 6 rows"));
        assert!(LstmCell::new(Variant::Peephole, &w).unwrap_err().to_string().contains("peephole weights (6)"));
        let with_peep = DirectionWeights { peephole: Some(z(&[6])), ..w };
        assert!(LstmCell::new(Variant::Vanilla, &with_peep).is_err());
        assert!(LstmCell::new(Variant::Peephole, &with_peep).is_ok());
    }
}
