//! The checkpoint form of compressed weights, inside an ordinary safetensors file.
//!
//! Metadata: `compression` = `int8` | `bf16` | `sparse`, and `compressed_tensors`, JSON text
//! mapping each compressed tensor's name to `{"shape": [rows, cols]}` (sparse: also
//! `"block": "8x1"`). Tensors, for a compressed matrix `W`:
//! - int8: `W` as I8 `[rows, cols]` and `W.q_scale` as F32 `[rows]` (one scale per row);
//! - bf16: `W` as BF16 `[rows, cols]`;
//! - sparse: `W.sp_index` as U32 `[blocks]` (kept blocks, row-major over the block grid) and
//!   `W.sp_values` as F32 `[blocks, block rows · block cols]`.
//!
//! Every other tensor is stored as it was (f32). Reading checks every dtype and shape and
//! names the tensor (and the caller the file) when one is wrong.

use super::sparse::{self, Block};
use super::{bf16, int8, Compressed, Format, Weights};
use safetensors::Dtype;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Metadata key naming the format.
pub const META_FORMAT: &str = "compression";
/// Metadata key of the per-tensor shapes (and sparse block shapes).
pub const META_TENSORS: &str = "compressed_tensors";
/// Suffix of an int8 matrix's scales.
pub const SCALE: &str = ".q_scale";
/// Suffix of a sparse matrix's block indices.
pub const INDEX: &str = ".sp_index";
/// Suffix of a sparse matrix's block values.
pub const VALUES: &str = ".sp_values";

/// Block shapes tried when a sparse matrix is stored.
const BLOCKS: [Block; 6] = [
    Block { rows: 8, cols: 1 },
    Block { rows: 16, cols: 1 },
    Block { rows: 1, cols: 8 },
    Block { rows: 1, cols: 16 },
    Block { rows: 4, cols: 4 },
    Block { rows: 1, cols: 1 },
];

/// The block shape among the usual ones that stores `w` in the fewest bytes (4 per index, 4
/// per value).
pub fn best_block(w: &[f32], rows: usize, cols: usize) -> Block {
    let bytes = |b: Block| {
        let s = sparse::store(w, rows, cols, b);
        s.index.len() * 4 + s.values.len() * 4
    };
    BLOCKS.into_iter().min_by_key(|b| bytes(*b)).expect("non-empty")
}

/// One tensor to write: name, dtype, shape, little-endian bytes.
pub struct RawTensor {
    /// Stored name.
    pub name: String,
    /// Stored dtype.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian data.
    pub data: Vec<u8>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The stored tensors and the two metadata entries for `c`.
pub fn encode(c: &Compressed) -> (Vec<RawTensor>, Vec<(String, String)>) {
    let mut out = Vec::new();
    let mut shapes = Map::new();
    for (name, w) in &c.matrices {
        let (rows, cols) = (w.rows(), w.cols());
        let mut entry = json!({"shape": [rows, cols]});
        match &**w {
            Weights::Int8(q) => {
                out.push(RawTensor {
                    name: name.clone(),
                    dtype: Dtype::I8,
                    shape: vec![rows, cols],
                    data: q.values().iter().map(|&v| v as u8).collect(),
                });
                out.push(RawTensor {
                    name: format!("{name}{SCALE}"),
                    dtype: Dtype::F32,
                    shape: vec![rows],
                    data: f32_bytes(q.scales()),
                });
            }
            Weights::Bf16(b) => out.push(RawTensor {
                name: name.clone(),
                dtype: Dtype::BF16,
                shape: vec![rows, cols],
                data: b.bits().iter().flat_map(|h| h.to_le_bytes()).collect(),
            }),
            Weights::Sparse(s, block) => {
                let stored = sparse::store(&s.to_dense(), rows, cols, *block);
                entry["block"] = json!(block.to_string());
                out.push(RawTensor {
                    name: format!("{name}{INDEX}"),
                    dtype: Dtype::U32,
                    shape: vec![stored.index.len()],
                    data: stored.index.iter().flat_map(|i| i.to_le_bytes()).collect(),
                });
                out.push(RawTensor {
                    name: format!("{name}{VALUES}"),
                    dtype: Dtype::F32,
                    shape: vec![stored.index.len(), block.rows * block.cols],
                    data: f32_bytes(&stored.values),
                });
            }
            Weights::F32 { w, .. } => out.push(RawTensor {
                name: name.clone(),
                dtype: Dtype::F32,
                shape: vec![rows, cols],
                data: f32_bytes(w),
            }),
        }
        shapes.insert(name.clone(), entry);
    }
    let meta = vec![
        (META_FORMAT.to_string(), c.format.name().to_string()),
        (META_TENSORS.to_string(), Value::Object(shapes).to_string()),
    ];
    (out, meta)
}

/// What [`decode`] found: the compressed matrices, their dense f32 values by name, and the
/// stored names it consumed (the caller loads every other tensor as usual).
pub struct Decoded {
    /// The matrices in kernel form.
    pub compressed: Compressed,
    /// name → (dims, dense row-major values).
    pub dense: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// Stored tensor names that belong to compressed matrices.
    pub consumed: Vec<String>,
}

/// Reads the compressed matrices named in `metadata` from `st`. Errors name the tensor key
/// and what is wrong (the caller adds the file).
pub fn decode(st: &safetensors::SafeTensors, metadata: &HashMap<String, String>) -> Result<Option<Decoded>, String> {
    let Some(fmt) = metadata.get(META_FORMAT) else { return Ok(None) };
    let format = Format::parse(fmt).map_err(|_| {
        format!("metadata `{META_FORMAT}` = `{fmt}` is not a format this build reads (int8, bf16, sparse)")
    })?;
    let spec: Map<String, Value> = match metadata.get(META_TENSORS) {
        Some(s) => {
            serde_json::from_str(s).map_err(|e| format!("metadata `{META_TENSORS}` is not a JSON object: {e}"))?
        }
        None => return Err(format!("metadata `{META_FORMAT}` = `{fmt}` but no `{META_TENSORS}` entry")),
    };
    let view = |key: &str, dtype: Dtype, shape: &[usize]| -> Result<Vec<u8>, String> {
        let v = st.tensor(key).map_err(|_| format!("tensor `{key}` is missing ({fmt} checkpoint)"))?;
        if v.dtype() != dtype || v.shape() != shape {
            return Err(format!(
                "tensor `{key}`: expected {dtype:?} of shape {shape:?}, found {:?} of shape {:?}",
                v.dtype(),
                v.shape()
            ));
        }
        Ok(v.data().to_vec())
    };
    let f32s = |b: &[u8]| b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<f32>>();
    let mut matrices = BTreeMap::new();
    let mut dense = BTreeMap::new();
    let mut consumed = Vec::new();
    for (name, entry) in &spec {
        let shape: Vec<usize> = entry
            .get("shape")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .filter(|s: &Vec<usize>| s.len() == 2)
            .ok_or_else(|| format!("metadata `{META_TENSORS}`: `{name}` has no [rows, cols] shape"))?;
        let (rows, cols) = (shape[0], shape[1]);
        let w = match format {
            Format::Int8 => {
                let q: Vec<i8> = view(name, Dtype::I8, &shape)?.into_iter().map(|b| b as i8).collect();
                let key = format!("{name}{SCALE}");
                let scales = f32s(&view(&key, Dtype::F32, &[rows])?);
                if let Some(s) = scales.iter().find(|s| !s.is_finite() || **s < 0.0) {
                    return Err(format!("tensor `{key}`: scale {s} is not a finite non-negative number"));
                }
                consumed.extend([name.clone(), key]);
                Weights::Int8(int8::QMatrix::from_parts(q, scales, rows, cols))
            }
            Format::Bf16 => {
                let bits = view(name, Dtype::BF16, &shape)?
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                consumed.push(name.clone());
                Weights::Bf16(bf16::BMatrix::from_bits(bits, rows, cols))
            }
            Format::Sparse => {
                let block = entry
                    .get("block")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("metadata `{META_TENSORS}`: `{name}` has no block shape"))
                    .and_then(|b| Block::parse(b).map_err(|e| format!("metadata `{META_TENSORS}`: `{name}`: {e}")))?;
                let ik = format!("{name}{INDEX}");
                let n = st
                    .tensor(&ik)
                    .map_err(|_| format!("tensor `{ik}` is missing (sparse checkpoint)"))?
                    .shape()
                    .to_vec();
                let nb = *n.first().ok_or_else(|| format!("tensor `{ik}`: expected one dimension, found {n:?}"))?;
                let index = view(&ik, Dtype::U32, &[nb])?
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                let vk = format!("{name}{VALUES}");
                let values = f32s(&view(&vk, Dtype::F32, &[nb, block.rows * block.cols])?);
                let d = sparse::unstore(&sparse::Stored { index, values }, rows, cols, block)
                    .map_err(|e| format!("tensor `{ik}`: {e}"))?;
                consumed.extend([ik, vk]);
                Weights::Sparse(sparse::SparseMatrix::from_dense(&d, rows, cols), block)
            }
        };
        dense.insert(name.clone(), (shape.clone(), super::dense(&w)));
        matrices.insert(name.clone(), Arc::new(w));
    }
    Ok(Some(Decoded { compressed: Compressed { format, matrices }, dense, consumed }))
}
