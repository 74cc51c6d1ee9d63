//! Seeded parameter initialisation through candle-nn's `VarBuilder`.
//!
//! [`SeededInit`] is a `VarBuilder` backend over a `VarMap` that creates each missing variable
//! from our ChaCha generator instead of candle's unseedable one, honouring every
//! `candle_nn::Init` hint. Each variable is drawn from its own stream, derived from
//! (seed, full variable name), so its values do not depend on the order in which the model
//! creates its variables: adding a layer elsewhere in the model leaves the others' bits alone.

use crate::rng::SeededRng;
use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

/// A `VarBuilder` backend: existing variables come from the `VarMap`, new ones are drawn from
/// `SeededRng::new(seed, "init/<name>")` and stored in it.
#[derive(Clone)]
pub struct SeededInit {
    varmap: VarMap,
    seed: u64,
}

impl SeededInit {
    /// Variables created through it go into `varmap`, drawn from streams keyed by `seed`.
    pub fn new(varmap: &VarMap, seed: u64) -> Self {
        Self { varmap: varmap.clone(), seed }
    }
}

/// The values a hint asks for, drawn from the variable's own stream (f64, then cast).
pub fn draw_init(init: &Init, shape: &Shape, seed: u64, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
    let mut rng = SeededRng::new(seed, &format!("init/{name}"));
    match *init {
        Init::Const(v) => Tensor::full(v, shape, &Device::Cpu)?.to_dtype(dtype)?.to_device(device),
        Init::Uniform { lo, up } => rng.uniform_tensor(shape.clone(), lo, up, dtype, device),
        Init::Randn { mean, stdev } => rng.normal_tensor(shape.clone(), mean, stdev, dtype, device),
        Init::Kaiming { dist, fan, non_linearity } => {
            let fan = match fan {
                FanInOut::FanIn => FanInOut::FanIn.for_shape(shape),
                FanInOut::FanOut => FanInOut::FanOut.for_shape(shape),
            };
            let std = non_linearity.gain() / (fan as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    rng.uniform_tensor(shape.clone(), -bound, bound, dtype, device)
                }
                NormalOrUniform::Normal => rng.normal_tensor(shape.clone(), 0.0, std, dtype, device),
            }
        }
    }
}

impl SimpleBackend for SeededInit {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.varmap.data().lock().unwrap();
        if let Some(var) = data.get(name) {
            if var.shape() != &s {
                candle_core::bail!("shape mismatch on {name}: asked {s:?}, stored {:?}", var.shape())
            }
            return Ok(var.as_tensor().clone());
        }
        let var = Var::from_tensor(&draw_init(&h, &s, self.seed, name, dtype, dev)?)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        match self.varmap.data().lock().unwrap().get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("no variable `{name}` in the VarMap and no shape to create it"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.data().lock().unwrap().contains_key(name)
    }
}

/// A `VarBuilder` whose new variables are seeded: same seed ⇒ same bits, whatever the
/// creation order. Anything built through it (our `Lstm`, candle-nn's `embedding`, `linear`)
/// is reproducible.
pub fn seeded_var_builder(varmap: &VarMap, seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(SeededInit::new(varmap, seed)), dtype, device.clone())
}

/// Makes each `n × n` block of `w` (shape `(blocks·n, n)`) orthogonal: modified Gram–Schmidt
/// on the rows of the block, sign-corrected like QR with a positive diagonal
/// (Saxe et al. 2014; Keras' `orthogonal` recurrent initialiser, per gate). `w` holds the
/// normal draws that seed the orthogonalisation.
pub fn orthogonalize_blocks(w: &[f64], n: usize) -> Vec<f64> {
    let mut out = w.to_vec();
    for block in out.chunks_mut(n * n) {
        for i in 0..n {
            for j in 0..i {
                let dot: f64 = (0..n).map(|k| block[i * n + k] * block[j * n + k]).sum();
                for k in 0..n {
                    block[i * n + k] -= dot * block[j * n + k];
                }
            }
            let norm: f64 = (0..n).map(|k| block[i * n + k].powi(2)).sum::<f64>().sqrt();
            let norm = if norm > 1e-12 { norm } else { 1.0 };
            for k in 0..n {
                block[i * n + k] /= norm;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bits_regardless_of_order() {
        let dev = Device::Cpu;
        let (m1, m2) = (VarMap::new(), VarMap::new());
        let vb1 = seeded_var_builder(&m1, 42, DType::F32, &dev);
        let vb2 = seeded_var_builder(&m2, 42, DType::F32, &dev);
        let a1 = candle_nn::linear(4, 3, vb1.pp("a")).unwrap();
        let e1 = candle_nn::embedding(10, 4, vb1.pp("emb")).unwrap();
        // Reverse creation order in the second model.
        let e2 = candle_nn::embedding(10, 4, vb2.pp("emb")).unwrap();
        let a2 = candle_nn::linear(4, 3, vb2.pp("a")).unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(a1.weight()), v(a2.weight()));
        assert_eq!(v(e1.embeddings()), v(e2.embeddings()));
        let m3 = VarMap::new();
        let a3 = candle_nn::linear(4, 3, seeded_var_builder(&m3, 43, DType::F32, &dev).pp("a")).unwrap();
        assert_ne!(v(a1.weight()), v(a3.weight()));
        // Honours the hint: linear's bias asks U(−1/√fan_in, 1/√fan_in) = U(−0.5, 0.5).
        assert!(v(a1.bias().unwrap()).iter().all(|x| x.abs() <= 0.5));
        // ... and its weight Kaiming-normal, std √2/√4: the exact bits of our normal stream.
        let expect: Vec<f32> = SeededRng::new(42, "init/a.weight")
            .normal_vec(12, 0.0, 2f64.sqrt() / 2.0)
            .iter()
            .map(|&x| x as f32)
            .collect();
        assert_eq!(v(a1.weight()), expect);
        // Vars are registered for training.
        assert_eq!(m1.all_vars().len(), 3);
    }

    #[test]
    fn orthogonal_blocks() {
        let n = 5;
        let mut r = SeededRng::new(0, "t");
        let w = orthogonalize_blocks(&r.normal_vec(2 * n * n, 0.0, 1.0), n);
        for b in 0..2 {
            for i in 0..n {
                for j in 0..n {
                    let d: f64 = (0..n).map(|k| w[b * n * n + i * n + k] * w[b * n * n + j * n + k]).sum();
                    assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
                }
            }
        }
    }
}
