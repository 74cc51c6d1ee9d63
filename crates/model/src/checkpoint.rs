//! Safetensors checkpoints with PyTorch's tensor names and the config in the metadata.
//!
//! Metadata written: `{"format": "sluice", "format_version": "1", "config": "<json>"}`
//! (safetensors metadata values are strings, so `config` holds JSON text). Files without a
//! `format` key — e.g. a PyTorch `state_dict` written by `safetensors.torch.save_file` —
//! load too, with `config = None`.

use crate::error::MisShaped;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The `format` metadata value of our checkpoints (a foreign safetensors file has none).
pub const FORMAT: &str = "sluice";
/// The `format_version` metadata value written; readers refuse other versions.
pub const FORMAT_VERSION: &str = "1";

/// Anything that can be saved as a set of named tensors.
pub trait NamedTensors {
    /// (name, tensor) pairs to write; the order does not matter (the file is sorted by name).
    fn named_tensors(&self) -> Vec<(String, Tensor)>;
}

impl NamedTensors for VarMap {
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let data = self.data().lock().unwrap();
        data.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    }
}

impl NamedTensors for HashMap<String, Tensor> {
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl NamedTensors for [(String, Tensor)] {
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.to_vec()
    }
}

impl NamedTensors for Vec<(String, Tensor)> {
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.clone()
    }
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// The file it was read from.
    pub path: PathBuf,
    /// Every tensor by its stored name, on the device `read` was given.
    pub tensors: HashMap<String, Tensor>,
    /// The `config` metadata parsed as JSON (None for foreign files).
    pub config: Option<serde_json::Value>,
    /// `format_version` metadata (None for foreign files).
    pub format_version: Option<String>,
    /// All metadata entries as stored.
    pub metadata: HashMap<String, String>,
    /// The compressed matrices of an exported checkpoint (`compression` metadata; see
    /// [`crate::compress::store`]); their dense f32 values are in `tensors` as well.
    pub compressed: Option<crate::compress::Compressed>,
}

impl Checkpoint {
    /// The tensors whose names start with `prefix.`, with the prefix removed (e.g. "lstm").
    pub fn with_prefix(&self, prefix: &str) -> HashMap<String, Tensor> {
        let p = format!("{prefix}.");
        self.tensors.iter().filter_map(|(k, v)| k.strip_prefix(&p).map(|s| (s.to_string(), v.clone()))).collect()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Writes `tensors` and `config` (any JSON value, usually the model config) to `path`
/// atomically (temporary file, fsync, rename, folder fsync): a crash leaves either the old
/// file or the new one. Same tensors ⇒ same bytes.
pub fn save<T: NamedTensors + ?Sized>(
    path: impl AsRef<Path>,
    tensors: &T,
    config: Option<&serde_json::Value>,
) -> Result<()> {
    let path = path.as_ref();
    // Sorted, so the file's bytes do not depend on HashMap order.
    let tensors: BTreeMap<String, Tensor> = tensors
        .named_tensors()
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<candle_core::Result<_>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
    if let Some(c) = config {
        meta.insert("config".to_string(), c.to_string());
    }
    let bytes = safetensors::tensor::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), Some(meta))
        .map_err(|e| Error::Checkpoint { path: path.to_path_buf(), msg: format!("serialising: {e}") })?;
    let bytes = canonical_header(bytes).map_err(|msg| Error::Checkpoint { path: path.to_path_buf(), msg })?;
    write_atomic(path, &bytes).map_err(io_err(path))
}

/// Writes an exported checkpoint: the matrices of `compressed` in their compact form
/// ([`crate::compress::store`]), every other tensor of `tensors` as it is, and the usual
/// metadata plus `compression` and `compressed_tensors`. Atomic like [`save`]; same inputs ⇒
/// same bytes.
pub fn save_compressed<T: NamedTensors + ?Sized>(
    path: impl AsRef<Path>,
    tensors: &T,
    config: Option<&serde_json::Value>,
    compressed: &crate::compress::Compressed,
) -> Result<()> {
    use safetensors::tensor::TensorView;
    let path = path.as_ref();
    let bad = |msg: String| Error::Checkpoint { path: path.to_path_buf(), msg };
    let (raw, extra) = crate::compress::store::encode(compressed);
    let mut plain: BTreeMap<String, Tensor> = BTreeMap::new();
    for (k, t) in tensors.named_tensors() {
        if !compressed.matrices.contains_key(&k) {
            plain.insert(k, t.to_device(&Device::Cpu)?.contiguous()?);
        }
    }
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
    if let Some(c) = config {
        meta.insert("config".to_string(), c.to_string());
    }
    meta.extend(extra);
    // Every tensor as raw bytes: candle has no I8 dtype, so the plain ones go the same way.
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> =
        raw.into_iter().map(|r| (r.name, r.dtype, r.shape, r.data)).collect();
    for (k, t) in plain {
        let dtype = match t.dtype() {
            DType::F32 => safetensors::Dtype::F32,
            DType::F64 => safetensors::Dtype::F64,
            DType::U32 => safetensors::Dtype::U32,
            DType::I64 => safetensors::Dtype::I64,
            DType::U8 => safetensors::Dtype::U8,
            other => return Err(bad(format!("tensor `{k}`: dtype {other:?} is not exported"))),
        };
        let data = match t.dtype() {
            DType::F32 => t.flatten_all()?.to_vec1::<f32>()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
            DType::F64 => t.flatten_all()?.to_vec1::<f64>()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
            DType::U32 => t.flatten_all()?.to_vec1::<u32>()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
            DType::I64 => t.flatten_all()?.to_vec1::<i64>()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
            _ => t.flatten_all()?.to_vec1::<u8>()?,
        };
        owned.push((k, dtype, t.dims().to_vec(), data));
    }
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    let views = owned
        .iter()
        .map(|(k, d, s, b)| {
            Ok((k.as_str(), TensorView::new(*d, s.clone(), b).map_err(|e| bad(format!("tensor `{k}`: {e}")))?))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| bad(format!("serialising: {e}")))?;
    let bytes = canonical_header(bytes).map_err(bad)?;
    write_atomic(path, &bytes).map_err(io_err(path))
}

/// Replaces `path` with `bytes` atomically (the `atomic-write-file` crate: a temporary file in
/// the same folder, fsynced, renamed over `path`, then the folder fsynced so the rename survives
/// a crash; the temporary is removed if anything fails). A run killed at any instant leaves the
/// old checkpoint or the new one, never a torn one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = atomic_write_file::AtomicWriteFile::open(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// The safetensors crate writes its JSON header from HashMaps, so key order (and thus the
/// file's bytes) would change from run to run. Rewrites the header with keys sorted; the
/// length is unchanged (same entries, compact JSON, same space padding), so the data offsets
/// stay valid.
fn canonical_header(mut bytes: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&m[k.as_str()], out);
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| format!("re-reading own header: {e}"))?;
    let mut text = String::new();
    write(&header, &mut text);
    if text.len() > n {
        return Err(format!("canonical header longer than the original ({} > {n})", text.len()));
    }
    let padded = format!("{text:<n$}");
    bytes[8..8 + n].copy_from_slice(padded.as_bytes());
    Ok(bytes)
}

/// Reads every tensor of a safetensors file onto `device` without checking names. Truncated
/// or non-safetensors files, an unknown `format` or a newer `format_version` are
/// [`Error::Checkpoint`] naming the file.
pub fn read(path: impl AsRef<Path>, device: &Device) -> Result<Checkpoint> {
    let path = path.as_ref();
    let bad = |msg: String| Error::Checkpoint { path: path.to_path_buf(), msg };
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a valid safetensors file (truncated or another format?): {e}")))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("unreadable safetensors header: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let format_version = match metadata.get("format").map(String::as_str) {
        None => None,
        Some(FORMAT) => {
            let v =
                metadata.get("format_version").cloned().ok_or_else(|| bad("no format_version in metadata".into()))?;
            if v != FORMAT_VERSION {
                return Err(bad(format!("format_version {v} is not supported (this build reads {FORMAT_VERSION})")));
            }
            Some(v)
        }
        Some(other) => return Err(bad(format!("metadata format is `{other}`, expected `{FORMAT}`"))),
    };
    let config = match metadata.get("config") {
        Some(s) => Some(serde_json::from_str(s).map_err(|e| bad(format!("config metadata is not JSON: {e}")))?),
        None => None,
    };
    let decoded = crate::compress::store::decode(&st, &metadata).map_err(bad)?;
    let mut tensors = HashMap::new();
    let consumed: std::collections::HashSet<&str> =
        decoded.iter().flat_map(|d| d.consumed.iter().map(String::as_str)).collect();
    for (name, view) in st.tensors() {
        if consumed.contains(name.as_str()) {
            continue;
        }
        let t =
            candle_core::safetensors::Load::load(&view, device).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        tensors.insert(name, t);
    }
    let compressed = match decoded {
        Some(d) => {
            for (name, (dims, values)) in d.dense {
                tensors.insert(name, Tensor::from_vec(values, dims, device)?);
            }
            Some(d.compressed)
        }
        None => None,
    };
    Ok(Checkpoint { path: path.to_path_buf(), tensors, config, format_version, metadata, compressed })
}

/// Compares a checkpoint's tensors with the expected names and shapes; every missing, extra
/// and mis-shaped tensor is listed in one [`Error::CheckpointMismatch`].
pub fn check(ckpt: &Checkpoint, expected: &[(String, Vec<usize>)]) -> Result<()> {
    let mut missing = Vec::new();
    let mut mis_shaped = Vec::new();
    for (name, shape) in expected {
        match ckpt.tensors.get(name) {
            None => missing.push(name.clone()),
            Some(t) if t.dims() != shape.as_slice() => {
                mis_shaped.push(MisShaped { name: name.clone(), expected: shape.clone(), found: t.dims().to_vec() })
            }
            Some(_) => {}
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut extra: Vec<String> = ckpt.tensors.keys().filter(|k| !known.contains(k.as_str())).cloned().collect();
    missing.sort();
    extra.sort();
    mis_shaped.sort_by(|a, b| a.name.cmp(&b.name));
    if missing.is_empty() && extra.is_empty() && mis_shaped.is_empty() {
        Ok(())
    } else {
        Err(Error::CheckpointMismatch { path: ckpt.path.clone(), missing, extra, mis_shaped })
    }
}

/// [`read`] then [`check`] against `expected` (names with any prefix, shapes), converting
/// tensors to `dtype`.
pub fn load(
    path: impl AsRef<Path>,
    expected: &[(String, Vec<usize>)],
    dtype: DType,
    device: &Device,
) -> Result<Checkpoint> {
    let mut ckpt = read(path, device)?;
    check(&ckpt, expected)?;
    for t in ckpt.tensors.values_mut() {
        if t.dtype() != dtype {
            *t = t.to_dtype(dtype)?;
        }
    }
    Ok(ckpt)
}

/// Loads a checkpoint into the variables of `varmap` (e.g. a freshly built model), which must
/// match it exactly in names and shapes; values are converted to each variable's dtype.
pub fn load_into_varmap(path: impl AsRef<Path>, varmap: &VarMap) -> Result<Checkpoint> {
    let data = varmap.data().lock().unwrap();
    let device = data.values().next().map(|v| v.device().clone()).unwrap_or(Device::Cpu);
    let expected: Vec<(String, Vec<usize>)> = data.iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect();
    let ckpt = read(path, &device)?;
    check(&ckpt, &expected)?;
    for (name, var) in data.iter() {
        var.set(&ckpt.tensors[name].to_dtype(var.dtype())?)?;
    }
    drop(data);
    Ok(ckpt)
}

/// Expected names and shapes of an `Lstm` under `prefix` ("" for a bare PyTorch state_dict).
pub fn lstm_expected(cfg: &crate::LstmConfig, prefix: &str) -> Vec<(String, Vec<usize>)> {
    crate::lstm::param_shapes(cfg)
        .into_iter()
        .map(|(n, s)| (if prefix.is_empty() { n } else { format!("{prefix}.{n}") }, s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::seeded_var_builder;
    use crate::{Lstm, LstmConfig, LstmInput};

    fn model(varmap: &VarMap, seed: u64) -> (LstmConfig, Lstm, candle_nn::Linear) {
        let mut cfg = LstmConfig::new(3, 4);
        cfg.num_layers = 2;
        cfg.bidirectional = true;
        cfg.variant = crate::Variant::Peephole;
        let vb = seeded_var_builder(varmap, seed, DType::F32, &Device::Cpu);
        let lstm = Lstm::new(&cfg, vb.pp("lstm")).unwrap();
        let head = candle_nn::linear(8, 2, vb.pp("head")).unwrap();
        (cfg, lstm, head)
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn save_load_round_trip_is_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let a = VarMap::new();
        let (cfg, lstm_a, _) = model(&a, 1);
        save(&path, &a, Some(&serde_json::to_value(&cfg).unwrap())).unwrap();
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let b = VarMap::new();
        let (_, lstm_b, _) = model(&b, 2);
        let ck = load_into_varmap(&path, &b).unwrap();
        assert_eq!(ck.format_version.as_deref(), Some(FORMAT_VERSION));
        assert_eq!(ck.metadata["format"], FORMAT);
        let back: LstmConfig = serde_json::from_value(ck.config.clone().unwrap()).unwrap();
        assert_eq!(back, cfg);
        for (name, var) in a.data().lock().unwrap().iter() {
            assert_eq!(bits(var.as_tensor()), bits(b.data().lock().unwrap()[name].as_tensor()), "{name}");
        }
        let x = Tensor::ones((2, 3, 3), DType::F32, &Device::Cpu).unwrap();
        let (oa, ob) = (lstm_a.forward(&x, &LstmInput::new()).unwrap(), lstm_b.forward(&x, &LstmInput::new()).unwrap());
        assert_eq!(bits(&oa.output), bits(&ob.output));
        // Same tensors ⇒ same bytes.
        let path2 = dir.path().join("again.safetensors");
        save(&path2, &b, Some(&serde_json::to_value(&cfg).unwrap())).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&path2).unwrap());
        // Prefix helpers: the lstm part alone matches the layer's expected names.
        let ck = load(
            &path,
            &{
                let mut e = lstm_expected(&cfg, "lstm");
                e.push(("head.weight".into(), vec![2, 8]));
                e.push(("head.bias".into(), vec![2]));
                e
            },
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(ck.with_prefix("lstm").len(), lstm_expected(&cfg, "").len());
        assert!(ck.with_prefix("lstm").contains_key("weight_ch_l1_reverse"));
    }

    #[test]
    fn mismatches_name_every_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let a = VarMap::new();
        let (cfg, _, _) = model(&a, 1);
        save(&path, &a, None).unwrap();
        let mut other = cfg.clone();
        other.hidden_size = 5;
        other.num_layers = 3;
        let mut exp = lstm_expected(&other, "lstm");
        exp.push(("head.weight".into(), vec![2, 8]));
        let e = load(&path, &exp, DType::F32, &Device::Cpu).unwrap_err();
        match &e {
            Error::CheckpointMismatch { path: p, missing, extra, mis_shaped } => {
                assert_eq!(p, &path);
                assert!(missing.contains(&"lstm.weight_ih_l2".to_string()));
                assert!(missing.contains(&"lstm.weight_ch_l2_reverse".to_string()));
                assert_eq!(extra, &vec!["head.bias".to_string()]);
                assert!(mis_shaped
                    .iter()
                    .any(|m| m.name == "lstm.weight_hh_l0" && m.expected == [20, 5] && m.found == [16, 4]));
                assert_eq!(mis_shaped.len(), 5 * 4); // every lstm tensor of layers 0-1, both directions
            }
            other => panic!("wrong error {other}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains("m.safetensors")
                && msg.contains("missing tensors [")
                && msg.contains("unexpected tensors [head.bias]"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_and_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let a = VarMap::new();
        model(&a, 1);
        save(&path, &a, None).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for (name, content) in [
            ("truncated.safetensors", bytes[..bytes.len() - 10].to_vec()),
            ("header-cut.safetensors", bytes[..20].to_vec()),
            ("text.safetensors", b"this is not a checkpoint\n".to_vec()),
            ("empty.safetensors", vec![]),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, content).unwrap();
            let e = read(&p, &Device::Cpu).unwrap_err();
            assert!(matches!(e, Error::Checkpoint { .. }), "{name}: {e}");
            let msg = e.to_string();
            assert!(msg.contains(name) && msg.contains("not a valid safetensors file"), "{msg}");
        }
        let e = read(dir.path().join("absent.safetensors"), &Device::Cpu).unwrap_err();
        assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("absent.safetensors"));
        // A sluice file from a newer format version is refused, not misread.
        let t: Vec<(String, Tensor)> = vec![("w".into(), Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap())];
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("format_version".to_string(), "99".to_string());
        let bytes = safetensors::tensor::serialize(t.iter().map(|(k, v)| (k.as_str(), v)), Some(meta)).unwrap();
        let p = dir.path().join("future.safetensors");
        std::fs::write(&p, bytes).unwrap();
        assert!(read(&p, &Device::Cpu).unwrap_err().to_string().contains("format_version 99"));
    }
}
