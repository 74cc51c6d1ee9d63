//! CPU ops with their own backward for the layers around the LSTM, where candle's generic
//! graph costs more than the LSTM itself on short sentences.
//!
//! - [`embed`]: embedding lookup times an optional dropout mask. candle's `index_select`
//!   backward builds a zero tensor the size of the vocabulary, copies it once more in
//!   `index_add`, and the dropout `mul` adds a node with its own pass each way; here the
//!   forward is one gather-and-scale and the backward one zeroed table with the used rows
//!   scatter-added.
//! - [`masked_max_pool`]: max over each sequence's real steps. candle's `max` backward
//!   compares the whole (batch, time, features) input against the result and multiplies a
//!   broadcast gradient by it; here the backward sends each gradient to its arg-max step.
//!
//! Both are checked against the candle-op formulation they replace (`tests`) and fall back to
//! it off the CPU.
//!
//! Also the crate's one dtype dispatch for custom ops (these two, the fused LSTM ops and
//! seq2seq's cell and loss ops): an op writes its CPU forward and backward once, generic over
//! the element type (`FloatFwd`, `FloatBwd`), and `dispatch_fwd` / `dispatch_bwd` run them at
//! f32 or f64, refusing any other dtype in one place; `contiguous` and `cpu_slices` open the
//! storages.

use crate::Result;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Module, Shape, Tensor, WithDType};
use std::sync::Mutex;

/// A contiguous CPU storage's values where they lie; `what` names it in the error.
pub(crate) fn contiguous<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(s)?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// Runs `f` on the values of CPU tensors, each contiguous, where they lie (no copy): what a
/// custom op's backward reads its inputs and the output gradient with. `what` names each tensor
/// in the error when one is elsewhere, strided or of another dtype.
pub(crate) fn cpu_slices<T: WithDType, R, const N: usize>(
    tensors: [(&Tensor, &str); N],
    f: impl FnOnce([&[T]; N]) -> R,
) -> candle_core::Result<R> {
    // The read guards live until `f` has returned: the slices borrow from them.
    let guards = tensors.map(|(t, _)| t.storage_and_layout());
    let mut slices: [&[T]; N] = [&[]; N];
    for ((slot, (storage, layout)), (_, what)) in slices.iter_mut().zip(&guards).zip(tensors) {
        *slot = match &**storage {
            candle_core::Storage::Cpu(s) => contiguous::<T>(s, layout, what)?,
            _ => candle_core::bail!("{what} must be on the CPU"),
        };
    }
    Ok(f(slices))
}

/// A custom op's CPU forward written once, generic over the element type `T`: an op
/// implements it for f32 and f64 at once (`impl<T: Real> FloatFwd<T, 3> for MyOp`, with the
/// bound its code needs) and its `cpu_fwd` hands candle's arguments to [`dispatch_fwd`], which
/// picks the implementation for the data's dtype. `N` is the op's number of inputs.
pub(crate) trait FloatFwd<T, const N: usize> {
    /// The output's values and shape from the inputs' storages and layouts as candle gives
    /// them (read them with [`contiguous`]).
    fn forward(&self, inputs: [(&CpuStorage, &Layout); N]) -> candle_core::Result<(Vec<T>, Shape)>;
}

/// A custom op's backward written once, generic over the element type `T`, like [`FloatFwd`];
/// its `bwd` calls [`dispatch_bwd`].
pub(crate) trait FloatBwd<T, const N: usize> {
    /// The gradients of the op's `N` inputs, given the output's gradient `grad` (contiguous;
    /// read the tensors with [`cpu_slices`]).
    fn backward(&self, inputs: [&Tensor; N], grad: &Tensor) -> candle_core::Result<[Option<Tensor>; N]>;
}

/// The one dtype dispatch of the custom ops' forward: runs `op`'s f32 or f64 [`FloatFwd`] by
/// the dtype of its first input, and refuses any other dtype naming the op (`name`).
pub(crate) fn dispatch_fwd<Op, const N: usize>(
    op: &Op,
    name: &str,
    inputs: [(&CpuStorage, &Layout); N],
) -> candle_core::Result<(CpuStorage, Shape)>
where
    Op: FloatFwd<f32, N> + FloatFwd<f64, N>,
{
    match inputs[0].0.dtype() {
        DType::F32 => FloatFwd::<f32, N>::forward(op, inputs).map(|(v, shape)| (CpuStorage::F32(v), shape)),
        DType::F64 => FloatFwd::<f64, N>::forward(op, inputs).map(|(v, shape)| (CpuStorage::F64(v), shape)),
        dt => Err(unsupported(name, dt)),
    }
}

/// The backward's counterpart of [`dispatch_fwd`]: runs `op`'s [`FloatBwd`] by the dtype of
/// its first input, with `grad` made contiguous.
pub(crate) fn dispatch_bwd<Op, const N: usize>(
    op: &Op,
    name: &str,
    inputs: [&Tensor; N],
    grad: &Tensor,
) -> candle_core::Result<[Option<Tensor>; N]>
where
    Op: FloatBwd<f32, N> + FloatBwd<f64, N>,
{
    let grad = grad.contiguous()?;
    match inputs[0].dtype() {
        DType::F32 => FloatBwd::<f32, N>::backward(op, inputs, &grad),
        DType::F64 => FloatBwd::<f64, N>::backward(op, inputs, &grad),
        dt => Err(unsupported(name, dt)),
    }
}

fn unsupported(name: &str, dt: DType) -> candle_core::Error {
    candle_core::Error::Msg(format!("{name}: dtype {dt:?} not supported (f32, f64)")).bt()
}

/// `table[ids] * mask`: `table` (vocab, dim), `ids` (batch, time) u32, `mask` (batch, time,
/// dim) or (batch, 1, dim) (one mask per sequence, shared over time). Returns (batch, time,
/// dim). An id outside the table is an error naming it.
///
/// With `sparse`, an f32 table's gradient is not returned to candle's gradient store: the
/// backward leaves the used rows in the slot ([`SparseRows`]) for an optimizer that reads them
/// (`train`'s does), saving a vocabulary-sized zero fill, scatter and read every step.
pub fn embed(table: &Tensor, ids: &Tensor, mask: Option<&Tensor>, sparse: Option<&SparseGradSlot>) -> Result<Tensor> {
    let (vocab, dim) = table.dims2()?;
    let (batch, time) = ids.dims2()?;
    if let Some(m) = mask {
        let ok = m.dims() == [batch, time, dim] || m.dims() == [batch, 1, dim];
        if !ok {
            return Err(crate::Error::Input(format!(
                "embedding mask: expected ({batch}, {time}, {dim}) or ({batch}, 1, {dim}), got {:?}",
                m.dims()
            )));
        }
    }
    let cpu = table.device().is_cpu() && matches!(table.dtype(), DType::F32 | DType::F64) && ids.dtype() == DType::U32;
    if !cpu {
        let x = candle_nn::Embedding::new(table.clone(), dim).forward(ids)?;
        return Ok(match mask {
            Some(m) => x.broadcast_mul(m)?,
            None => x,
        });
    }
    let ids = ids.contiguous()?;
    let id_vec: Vec<u32> = ids.flatten_all()?.to_vec1()?;
    if let Some((i, &bad)) = id_vec.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
        return Err(crate::Error::Input(format!(
            "token id {bad} at (row {}, position {}) is outside the embedding table ({vocab} rows)",
            i / time.max(1),
            i % time.max(1)
        )));
    }
    let shared = mask.is_some_and(|m| m.dim(1).ok() == Some(1) && time != 1);
    let sparse = sparse.filter(|_| table.dtype() == DType::F32).cloned();
    let op = Embed { ids: id_vec, batch, time, dim, shared, has_mask: mask.is_some(), sparse };
    let mask = match mask {
        Some(m) => m.contiguous()?,
        // A 1-element placeholder: the op reads no mask.
        None => Tensor::zeros(1, table.dtype(), table.device())?,
    };
    Ok(table.contiguous()?.apply_op3(&ids, &mask, op)?)
}

/// A row-sparse gradient of a (vocab, dim) table: the rows one backward pass used, ascending
/// and each once, and their gradient rows (`values`, rows.len() × dim).
#[derive(Debug, Clone, PartialEq)]
pub struct SparseRows {
    /// Width of a row (the table's second dimension).
    pub dim: usize,
    /// The used rows' indices, ascending, each once.
    pub rows: Vec<u32>,
    /// Their gradients, `rows.len()` × `dim`, row-major.
    pub values: Vec<f32>,
}

impl SparseRows {
    /// The dense (vocab × dim) gradient.
    pub fn to_dense(&self, vocab: usize) -> Vec<f32> {
        let mut g = vec![0.0; vocab * self.dim];
        for (k, &r) in self.rows.iter().enumerate() {
            g[r as usize * self.dim..][..self.dim].copy_from_slice(&self.values[k * self.dim..][..self.dim]);
        }
        g
    }

    /// Sum of two gradients of the same table (a table used twice in one graph).
    fn merge(self, other: SparseRows) -> SparseRows {
        let d = self.dim;
        let (mut rows, mut values) = (Vec::new(), Vec::new());
        let (mut i, mut j) = (0, 0);
        while i < self.rows.len() || j < other.rows.len() {
            let a = self.rows.get(i).copied().unwrap_or(u32::MAX);
            let b = other.rows.get(j).copied().unwrap_or(u32::MAX);
            let r = a.min(b);
            let mut v = vec![0.0f32; d];
            if a == r {
                v.copy_from_slice(&self.values[i * d..][..d]);
                i += 1;
            }
            if b == r {
                for (x, &y) in v.iter_mut().zip(&other.values[j * d..][..d]) {
                    *x += y;
                }
                j += 1;
            }
            rows.push(r);
            values.extend(v);
        }
        SparseRows { dim: d, rows, values }
    }
}

/// Where [`embed`] leaves its table's gradient (see there). Clones share the slot.
#[derive(Clone, Default, Debug)]
pub struct SparseGradSlot(std::sync::Arc<Mutex<Option<SparseRows>>>);

impl SparseGradSlot {
    /// The gradient left since the last `take` or `clear`, if any.
    pub fn take(&self) -> Option<SparseRows> {
        self.0.lock().unwrap().take()
    }

    /// Drops any gradient left in the slot.
    pub fn clear(&self) {
        *self.0.lock().unwrap() = None;
    }

    fn add(&self, rows: SparseRows) {
        let mut slot = self.0.lock().unwrap();
        *slot = Some(match slot.take() {
            Some(prev) => prev.merge(rows),
            None => rows,
        });
    }
}

struct Embed {
    ids: Vec<u32>,
    batch: usize,
    time: usize,
    dim: usize,
    /// The mask is (batch, 1, dim).
    shared: bool,
    has_mask: bool,
    sparse: Option<SparseGradSlot>,
}

impl Embed {
    fn mask_row(&self, i: usize) -> usize {
        if self.shared {
            (i / self.time) * self.dim
        } else {
            i * self.dim
        }
    }

    fn fwd<T: WithDType>(&self, table: &[T], mask: &[T]) -> Vec<T> {
        let d = self.dim;
        let mut out = Vec::with_capacity(self.ids.len() * d);
        for (i, &id) in self.ids.iter().enumerate() {
            let row = &table[id as usize * d..][..d];
            if self.has_mask {
                let m = &mask[self.mask_row(i)..][..d];
                out.extend(row.iter().zip(m).map(|(&a, &b)| a * b));
            } else {
                out.extend_from_slice(row);
            }
        }
        out
    }

    /// The used rows, ascending, each row's gradient summed over its uses in position order
    /// (the order of the dense scatter in `bwd`, so the values are the same bits).
    fn bwd_sparse(&self, grad: &[f32], mask: &[f32]) -> SparseRows {
        let d = self.dim;
        let mut order: Vec<u32> = (0..self.ids.len() as u32).collect();
        order.sort_by_key(|&i| self.ids[i as usize]);
        let mut rows: Vec<u32> = Vec::new();
        let mut values: Vec<f32> = Vec::new();
        for &i in &order {
            let i = i as usize;
            let id = self.ids[i];
            if rows.last() != Some(&id) {
                rows.push(id);
                values.resize(values.len() + d, 0.0);
            }
            let dst = values.len() - d;
            self.add_grad_row(&mut values[dst..], i, grad, mask);
        }
        SparseRows { dim: d, rows, values }
    }

    fn bwd<T: WithDType>(&self, vocab: usize, grad: &[T], mask: &[T]) -> Vec<T> {
        let d = self.dim;
        let mut g = vec![T::zero(); vocab * d];
        for (i, &id) in self.ids.iter().enumerate() {
            self.add_grad_row(&mut g[id as usize * d..][..d], i, grad, mask);
        }
        g
    }

    /// `dst += grad[position i] (× its mask)`: position i's share of its token's row.
    #[inline]
    fn add_grad_row<T: WithDType>(&self, dst: &mut [T], i: usize, grad: &[T], mask: &[T]) {
        let d = self.dim;
        let src = &grad[i * d..][..d];
        if self.has_mask {
            let m = &mask[self.mask_row(i)..][..d];
            for ((a, &b), &c) in dst.iter_mut().zip(src).zip(m) {
                *a += b * c;
            }
        } else {
            for (a, &b) in dst.iter_mut().zip(src) {
                *a += b;
            }
        }
    }
}

impl<T: WithDType> FloatFwd<T, 3> for Embed {
    fn forward(
        &self,
        [(table, lt), _, (mask, lm)]: [(&CpuStorage, &Layout); 3],
    ) -> candle_core::Result<(Vec<T>, Shape)> {
        let out = self.fwd(contiguous::<T>(table, lt, "embedding table")?, contiguous::<T>(mask, lm, "mask")?);
        Ok((out, Shape::from((self.batch, self.time, self.dim))))
    }
}

impl<T: WithDType> FloatBwd<T, 3> for Embed {
    fn backward(&self, [table, _, mask]: [&Tensor; 3], grad: &Tensor) -> candle_core::Result<[Option<Tensor>; 3]> {
        let vocab = table.dim(0)?;
        let g = cpu_slices::<T, _, 2>([(grad, "gradient"), (mask, "mask")], |[g, m]| self.bwd(vocab, g, m))?;
        Ok([Some(Tensor::from_vec(g, table.shape(), table.device())?), None, None])
    }
}

impl CustomOp3 for Embed {
    fn name(&self) -> &'static str {
        "sluice-embed"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch_fwd(self, "embedding", [(s1, l1), (s2, l2), (s3, l3)])
    }

    fn bwd(
        &self,
        table: &Tensor,
        ids: &Tensor,
        mask: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if let (Some(slot), DType::F32) = (&self.sparse, table.dtype()) {
            let grad = grad.contiguous()?;
            let rows = cpu_slices::<f32, _, 2>([(&grad, "gradient"), (mask, "mask")], |[g, m]| self.bwd_sparse(g, m))?;
            slot.add(rows);
            return Ok((None, None, None));
        }
        let [dt, di, dm] = dispatch_bwd(self, "embedding", [table, ids, mask], grad)?;
        Ok((dt, di, dm))
    }
}

/// Max over time of `x` (batch, time, features) taking each row's first `lengths[b]` steps
/// only; returns (batch, features). A row of length 0 pools to zeros (and passes no gradient).
/// The gradient goes to the first step holding the maximum.
pub fn masked_max_pool(x: &Tensor, lengths: &[usize]) -> Result<Tensor> {
    let (batch, time, _) = x.dims3()?;
    if lengths.len() != batch || lengths.iter().any(|&l| l > time) {
        return Err(crate::Error::Input(format!(
            "max pooling: {} lengths for a batch of {batch} (each at most {time})",
            lengths.len()
        )));
    }
    if !(x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)) {
        return masked_max_pool_ops(x, lengths);
    }
    let op = MaxPool { lengths: lengths.to_vec(), argmax: Mutex::new(Vec::new()) };
    Ok(x.contiguous()?.apply_op1(op)?)
}

/// The candle-op formulation: padded steps pushed 1e4 below any tanh-bounded activation.
pub fn masked_max_pool_ops(x: &Tensor, lengths: &[usize]) -> Result<Tensor> {
    let (batch, time, _) = x.dims3()?;
    let v: Vec<f32> = lengths.iter().flat_map(|&l| (0..time).map(move |t| if t < l { 0.0 } else { -1e4 })).collect();
    let shift = Tensor::from_vec(v, (batch, time, 1), x.device())?.to_dtype(x.dtype())?;
    Ok(x.broadcast_add(&shift)?.max(1)?)
}

struct MaxPool {
    lengths: Vec<usize>,
    /// Per (batch, feature): the arg-max step, or u32::MAX for an empty row.
    argmax: Mutex<Vec<u32>>,
}

impl MaxPool {
    fn fwd<T: WithDType>(&self, x: &[T], time: usize, feats: usize) -> Vec<T> {
        let max_step = max_step_fn::<T>();
        let batch = self.lengths.len();
        let mut out = vec![T::zero(); batch * feats];
        let mut arg = vec![u32::MAX; batch * feats];
        for (b, &len) in self.lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let o = &mut out[b * feats..][..feats];
            let a = &mut arg[b * feats..][..feats];
            o.copy_from_slice(&x[b * time * feats..][..feats]);
            a.fill(0);
            for t in 1..len {
                max_step(o, a, &x[(b * time + t) * feats..][..feats], t as u32);
            }
        }
        *self.argmax.lock().unwrap() = arg;
        out
    }
}

/// One step of the running max: where `row` beats `o`, take its value and step `t`.
/// Branch-free selects, so the loop vectorises.
#[inline(always)]
fn max_step<T: WithDType>(o: &mut [T], a: &mut [u32], row: &[T], t: u32) {
    for ((ov, av), &v) in o.iter_mut().zip(a.iter_mut()).zip(row) {
        let gt = v > *ov;
        *ov = if gt { v } else { *ov };
        *av = if gt { t } else { *av };
    }
}

type MaxStep<T> = fn(&mut [T], &mut [u32], &[T], u32);
multiversion!(max_step_fn, max_step, WithDType, MaxStep<T>, (o: &mut [T], a: &mut [u32], row: &[T], t: u32));

/// Each (batch, feature)'s gradient to its arg-max step; zeros elsewhere.
fn scatter_to_argmax<T: WithDType>(g: &[T], arg: &[u32], batch: usize, time: usize, feats: usize) -> Vec<T> {
    let mut dx = vec![T::zero(); batch * time * feats];
    for b in 0..batch {
        for f in 0..feats {
            let t = arg[b * feats + f];
            if t != u32::MAX {
                dx[(b * time + t as usize) * feats + f] = g[b * feats + f];
            }
        }
    }
    dx
}

impl<T: WithDType> FloatFwd<T, 1> for MaxPool {
    fn forward(&self, [(s, l)]: [(&CpuStorage, &Layout); 1]) -> candle_core::Result<(Vec<T>, Shape)> {
        let (batch, time, feats) = l.shape().dims3()?;
        Ok((self.fwd(contiguous::<T>(s, l, "x")?, time, feats), Shape::from((batch, feats))))
    }
}

impl<T: WithDType> FloatBwd<T, 1> for MaxPool {
    fn backward(&self, [x]: [&Tensor; 1], grad: &Tensor) -> candle_core::Result<[Option<Tensor>; 1]> {
        let (batch, time, feats) = x.dims3()?;
        let arg = self.argmax.lock().unwrap();
        let dx = cpu_slices::<T, _, 1>([(grad, "gradient")], |[g]| scatter_to_argmax(g, &arg, batch, time, feats))?;
        Ok([Some(Tensor::from_vec(dx, x.shape(), x.device())?)])
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "sluice-masked-max-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch_fwd(self, "max pooling", [(s, l)])
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let [dx] = dispatch_bwd(self, "max pooling", [x], grad)?;
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;
    use candle_core::{Device, Var};

    fn rand(rng: &mut SeededRng, shape: &[usize], dtype: DType) -> Tensor {
        rng.normal_tensor(shape, 0.0, 1.0, dtype, &Device::Cpu).unwrap()
    }

    /// Forward and gradients against index_select · broadcast_mul, for full and shared masks,
    /// repeated ids and no mask, in f32 and f64.
    #[test]
    fn embed_matches_candle_ops() {
        let mut rng = SeededRng::new(3, "test");
        for dtype in [DType::F32, DType::F64] {
            for mask_kind in 0..3 {
                let table = Var::from_tensor(&rand(&mut rng, &[11, 5], dtype)).unwrap();
                let ids = Tensor::new(&[[1u32, 4, 4, 0], [10, 1, 3, 3]], &Device::Cpu).unwrap();
                let mask = match mask_kind {
                    0 => None,
                    1 => Some(rng.dropout_mask((2, 4, 5), 0.4, dtype, &Device::Cpu).unwrap()),
                    _ => Some(rng.dropout_mask((2, 1, 5), 0.4, dtype, &Device::Cpu).unwrap()),
                };
                let r = rand(&mut rng, &[2, 4, 5], dtype);
                let ours = embed(table.as_tensor(), &ids, mask.as_ref(), None).unwrap();
                let base =
                    table.as_tensor().index_select(&ids.flatten_all().unwrap(), 0).unwrap().reshape((2, 4, 5)).unwrap();
                let base = match &mask {
                    Some(m) => base.broadcast_mul(m).unwrap(),
                    None => base,
                };
                let d = (&ours - &base)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                assert_eq!(d, 0.0, "forward, mask kind {mask_kind}");
                let g1 = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (base * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let a = g1.get(table.as_tensor()).unwrap();
                let b = g2.get(table.as_tensor()).unwrap();
                let d = (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                assert!(d < 1e-6, "gradient differs by {d}, mask kind {mask_kind}");
            }
        }
    }

    /// The sparse gradient equals the dense one bit for bit (rows in order, repeated ids
    /// summed in position order), a table used twice sums both uses, and the table gets no
    /// dense gradient.
    #[test]
    fn sparse_gradient_equals_dense() {
        let mut rng = SeededRng::new(9, "test");
        let table = Var::from_tensor(&rand(&mut rng, &[13, 4], DType::F32)).unwrap();
        let ids = Tensor::new(&[[7u32, 2, 7, 0], [2, 2, 12, 7]], &Device::Cpu).unwrap();
        let ids2 = Tensor::new(&[[3u32, 7]], &Device::Cpu).unwrap();
        let mask = rng.dropout_mask((2, 4, 4), 0.3, DType::F32, &Device::Cpu).unwrap();
        let (r, r2) = (rand(&mut rng, &[2, 4, 4], DType::F32), rand(&mut rng, &[1, 2, 4], DType::F32));
        let loss = |sparse: Option<&SparseGradSlot>| {
            let a = embed(table.as_tensor(), &ids, Some(&mask), sparse).unwrap();
            let b = embed(table.as_tensor(), &ids2, None, sparse).unwrap();
            ((a * &r).unwrap().sum_all().unwrap() + (b * &r2).unwrap().sum_all().unwrap()).unwrap()
        };
        let dense = loss(None)
            .backward()
            .unwrap()
            .get(table.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let slot = SparseGradSlot::default();
        let g = loss(Some(&slot)).backward().unwrap();
        assert!(g.get(table.as_tensor()).is_none());
        let s = slot.take().unwrap();
        assert_eq!(s.rows, vec![0, 2, 3, 7, 12]);
        assert_eq!(s.to_dense(13), dense);
        assert!(slot.take().is_none());
    }

    #[test]
    fn embed_rejects_out_of_range_ids_and_bad_masks() {
        let table = Tensor::zeros((4, 3), DType::F32, &Device::Cpu).unwrap();
        let ids = Tensor::new(&[[0u32, 4]], &Device::Cpu).unwrap();
        let e = embed(&table, &ids, None, None).unwrap_err().to_string();
        assert!(e.contains("token id 4") && e.contains("position 1") && e.contains("4 rows"), "{e}");
        let ids = Tensor::new(&[[0u32, 1]], &Device::Cpu).unwrap();
        let mask = Tensor::ones((1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let e = embed(&table, &ids, Some(&mask), None).unwrap_err().to_string();
        assert!(e.contains("expected (1, 2, 3)"), "{e}");
    }

    /// Forward equals the shifted-max formulation; gradients equal where maxima are unique
    /// (random inputs), in f32 and f64, with lengths of 1, full and in between.
    #[test]
    fn max_pool_matches_candle_ops() {
        let mut rng = SeededRng::new(5, "test");
        for dtype in [DType::F32, DType::F64] {
            let x = Var::from_tensor(&rand(&mut rng, &[3, 6, 7], dtype).tanh().unwrap()).unwrap();
            let lengths = [6, 1, 4];
            let r = rand(&mut rng, &[3, 7], dtype);
            let ours = masked_max_pool(x.as_tensor(), &lengths).unwrap();
            let base = masked_max_pool_ops(x.as_tensor(), &lengths).unwrap();
            let d = (&ours - &base)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert_eq!(d, 0.0);
            let g1 = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (base * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let a = g1.get(x.as_tensor()).unwrap();
            let b = g2.get(x.as_tensor()).unwrap();
            let d = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert_eq!(d, 0.0);
        }
    }

    /// The one dispatch refuses other dtypes naming the op, and the backward's slices refuse a
    /// strided tensor naming it.
    #[test]
    fn dispatch_refuses_other_dtypes_and_strided_inputs() {
        let x = Tensor::zeros((2, 3, 4), DType::F16, &Device::Cpu).unwrap();
        let op = MaxPool { lengths: vec![3, 3], argmax: Mutex::new(Vec::new()) };
        let e = x.apply_op1(op).unwrap_err().to_string();
        assert!(e.contains("max pooling: dtype F16 not supported (f32, f64)"), "{e}");
        let t = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap().t().unwrap();
        let e = cpu_slices::<f32, _, 1>([(&t, "the table")], |_| ()).unwrap_err().to_string();
        assert!(e.contains("the table must be contiguous"), "{e}");
    }

    #[test]
    fn max_pool_empty_row_is_zero() {
        let x = Tensor::new(&[[[-3f32, -1.0], [-2.0, -5.0]], [[-1.0, -2.0], [-4.0, -0.5]]], &Device::Cpu).unwrap();
        let y = masked_max_pool(&x, &[0, 2]).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![0.0, 0.0], vec![-1.0, -0.5]]);
        assert!(masked_max_pool(&x, &[3, 1]).is_err());
    }
}
