//! The inference layers over compressed [`Weights`]: a vanilla LSTM (every layer and
//! direction, per-sequence lengths, zero initial state) and a linear layer. Gate math is the
//! fused kernel's f32 code (`fused::cell`), so only the products differ from the f32 path.
//!
//! Threads: rows (sequences) are independent, so the rows are sorted by length and dealt out
//! to the threads in turn (as the fused kernel does); each thread runs its rows through every
//! layer and direction with no synchronisation until the end. Within a thread, the rows still
//! running at a step are a prefix (sorted by length), so the recurrent product covers only them.

use super::{Scratch, Weights};
use std::sync::Arc;

/// One direction of one layer.
#[derive(Debug, Clone)]
pub struct Direction {
    /// W_ih (4H × input), gates in PyTorch's order i, f, g, o.
    pub w_ih: Arc<Weights>,
    /// W_hh (4H × H).
    pub w_hh: Arc<Weights>,
    /// b_ih + b_hh (4H).
    pub bias: Vec<f32>,
}

/// A vanilla LSTM stack on compressed weights (index layer·dirs + dir).
#[derive(Debug, Clone)]
pub struct CompressedLstm {
    /// Hidden units per direction.
    pub hidden: usize,
    /// Layers.
    pub layers: usize,
    /// 1 or 2.
    pub dirs: usize,
    /// Weights, index layer·dirs + dir.
    pub weights: Vec<Direction>,
}

/// [`CompressedLstm::forward`]'s result.
#[derive(Debug)]
pub struct Output {
    /// (batch, time, dirs·hidden), zeros at padded steps.
    pub output: Vec<f32>,
    /// Final h per layer·dirs + dir, each (batch, hidden).
    pub h: Vec<Vec<f32>>,
    /// Final c, same layout.
    pub c: Vec<Vec<f32>>,
}

impl CompressedLstm {
    /// Runs `x` (batch, time, input) row-major with `lengths` (each 1..=time) from a zero state.
    pub fn forward(&self, x: &[f32], batch: usize, time: usize, lengths: &[usize], threads: usize) -> Output {
        let width = self.dirs * self.hidden;
        let input = x.len().checked_div(batch * time).unwrap_or(0);
        let mut order: Vec<usize> = (0..batch).collect();
        order.sort_by_key(|&r| std::cmp::Reverse(lengths[r]));
        let nt = threads.clamp(1, batch.max(1));
        let shares: Vec<Vec<usize>> = (0..nt).map(|k| order.iter().skip(k).step_by(nt).copied().collect()).collect();
        let run = |rows: &Vec<usize>| {
            let mut xs = Vec::with_capacity(rows.len() * time * input);
            for &r in rows {
                xs.extend_from_slice(&x[r * time * input..(r + 1) * time * input]);
            }
            let lens: Vec<usize> = rows.iter().map(|&r| lengths[r]).collect();
            self.rows_forward(xs, input, time, &lens)
        };
        let parts: Vec<Output> = if nt == 1 {
            vec![run(&shares[0])]
        } else {
            // The caller runs the first share; scoped threads the others.
            std::thread::scope(|s| {
                let handles: Vec<_> = shares[1..].iter().map(|sh| s.spawn(|| run(sh))).collect();
                let mut v = vec![run(&shares[0])];
                v.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))));
                v
            })
        };
        let (h_sz, states) = (self.hidden, self.layers * self.dirs);
        let mut out = Output {
            output: vec![0f32; batch * time * width],
            h: vec![vec![0f32; batch * h_sz]; states],
            c: vec![vec![0f32; batch * h_sz]; states],
        };
        for (rows, part) in shares.iter().zip(parts) {
            for (i, &r) in rows.iter().enumerate() {
                out.output[r * time * width..(r + 1) * time * width]
                    .copy_from_slice(&part.output[i * time * width..(i + 1) * time * width]);
                for s in 0..states {
                    out.h[s][r * h_sz..(r + 1) * h_sz].copy_from_slice(&part.h[s][i * h_sz..(i + 1) * h_sz]);
                    out.c[s][r * h_sz..(r + 1) * h_sz].copy_from_slice(&part.c[s][i * h_sz..(i + 1) * h_sz]);
                }
            }
        }
        out
    }

    /// One thread's rows (sorted by length, longest first) through every layer.
    fn rows_forward(&self, mut inp: Vec<f32>, mut width_in: usize, time: usize, lens: &[usize]) -> Output {
        let (nb, hs) = (lens.len(), self.hidden);
        let g = 4 * hs;
        let width = self.dirs * hs;
        let gate_math = crate::fused::cell::fwd_vanilla_fn::<f32>();
        let mut scratch = Scratch::default();
        let (mut hf, mut cf) = (Vec::new(), Vec::new());
        for layer in 0..self.layers {
            let mut out = vec![0f32; nb * time * width];
            for dir in 0..self.dirs {
                let w = &self.weights[layer * self.dirs + dir];
                // Every step's input projection in one product.
                let mut gin = vec![0f32; nb * time * g];
                w.w_ih.add_product(&inp, width_in, nb * time, &mut gin, g, &mut scratch);
                let (mut h, mut c) = (vec![0f32; nb * hs], vec![0f32; nb * hs]);
                let mut pre = vec![0f32; nb * g];
                let (mut cp, mut tc) = (vec![0f32; hs], vec![0f32; hs]);
                let steps = lens.first().copied().unwrap_or(0);
                for j in 0..steps {
                    let active = lens.iter().take_while(|&&l| l > j).count();
                    let t_of = |m: usize| if dir == 0 { j } else { lens[m] - 1 - j };
                    for m in 0..active {
                        let t = t_of(m);
                        pre[m * g..(m + 1) * g].copy_from_slice(&gin[(m * time + t) * g..(m * time + t + 1) * g]);
                    }
                    if j > 0 {
                        // Zero initial state: step 0 has no recurrent term.
                        w.w_hh.add_product(&h, hs, active, &mut pre, g, &mut scratch);
                    }
                    for m in 0..active {
                        cp.copy_from_slice(&c[m * hs..(m + 1) * hs]);
                        gate_math(
                            hs,
                            &mut pre[m * g..(m + 1) * g],
                            &w.bias,
                            &cp,
                            &mut c[m * hs..(m + 1) * hs],
                            &mut tc,
                            &mut h[m * hs..(m + 1) * hs],
                        );
                        let t = t_of(m);
                        let o = (m * time + t) * width + dir * hs;
                        out[o..o + hs].copy_from_slice(&h[m * hs..(m + 1) * hs]);
                    }
                }
                hf.push(h);
                cf.push(c);
            }
            inp = out;
            width_in = width;
        }
        Output { output: inp, h: hf, c: cf }
    }
}

/// A linear layer `y = x Wᵀ + b` on compressed weights.
#[derive(Debug, Clone)]
pub struct CompressedLinear {
    /// W (out × in).
    pub w: Arc<Weights>,
    /// b (out).
    pub bias: Vec<f32>,
}

impl CompressedLinear {
    /// `x` (rows × in) row-major → (rows × out).
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let n = self.w.rows();
        let mut out: Vec<f32> = (0..rows).flat_map(|_| self.bias.iter().copied()).collect();
        self.w.add_product(x, self.w.cols(), rows, &mut out, n, &mut Scratch::default());
        out
    }
}
