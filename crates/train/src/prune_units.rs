//! Structured pruning: whole hidden units out of a classifier's LSTM, so that every matrix
//! shrinks (`train prune --structured`). Unit j of layer k, direction d is scored by the L2
//! norm of everything that reads or writes it: its rows in W_ih and W_hh (one per gate), its
//! column in W_hh, and its columns in the next layer's W_ih or in the head. The `keep`
//! highest-scoring units of each layer and direction are kept, in their original order;
//! the result is a smaller model (`model.hidden = keep`) with the same function up to the
//! dropped units' contributions.

use anyhow::{anyhow, bail, Result};
use candle_core::{DType, Tensor};
use std::collections::HashMap;

/// The classifier's LSTM shape as the slicing needs it.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Hidden units per direction (before).
    pub hidden: usize,
    /// Layers.
    pub layers: usize,
    /// 1 or 2.
    pub dirs: usize,
    /// Gate blocks per matrix (4 for the LSTM).
    pub gates: usize,
}

fn suffix(layer: usize, dir: usize) -> String {
    format!("_l{layer}{}", if dir == 1 { "_reverse" } else { "" })
}

fn rows_of(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

/// The kept units (ascending) of each layer·dirs + dir.
pub fn choose_units(t: &HashMap<String, Tensor>, s: Shape, keep: usize) -> Result<Vec<Vec<usize>>> {
    let get = |n: &str| t.get(n).ok_or_else(|| anyhow!("checkpoint has no tensor `{n}`"));
    let h = s.hidden;
    let mut out = Vec::new();
    for layer in 0..s.layers {
        for dir in 0..s.dirs {
            let sf = suffix(layer, dir);
            let (wih, whh) =
                (rows_of(get(&format!("lstm.weight_ih{sf}"))?)?, rows_of(get(&format!("lstm.weight_hh{sf}"))?)?);
            let mut score = vec![0f64; h];
            for (j, sc) in score.iter_mut().enumerate() {
                for g in 0..s.gates {
                    *sc += wih[g * h + j].iter().chain(&whh[g * h + j]).map(|v| (*v as f64).powi(2)).sum::<f64>();
                }
                *sc += whh.iter().map(|r| (r[j] as f64).powi(2)).sum::<f64>();
            }
            // Readers of the output: the next layer's W_ih (both directions) or the head.
            let readers: Vec<String> = if layer + 1 < s.layers {
                (0..s.dirs).map(|d| format!("lstm.weight_ih{}", suffix(layer + 1, d))).collect()
            } else {
                vec!["head.weight".to_string()]
            };
            for r in readers {
                for row in rows_of(get(&r)?)? {
                    for (j, sc) in score.iter_mut().enumerate() {
                        *sc += (row[dir * h + j] as f64).powi(2);
                    }
                }
            }
            let mut idx: Vec<usize> = (0..h).collect();
            idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
            let mut kept = idx[..keep].to_vec();
            kept.sort();
            out.push(kept);
        }
    }
    Ok(out)
}

fn pick_rows(t: &Tensor, rows: &[usize]) -> Result<Tensor> {
    let idx = Tensor::from_vec(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), rows.len(), t.device())?;
    Ok(t.index_select(&idx, 0)?)
}

fn pick_cols(t: &Tensor, cols: &[usize]) -> Result<Tensor> {
    let idx = Tensor::from_vec(cols.iter().map(|&c| c as u32).collect::<Vec<_>>(), cols.len(), t.device())?;
    Ok(t.index_select(&idx, 1)?)
}

/// Every tensor of the classifier checkpoint `t` cut down to the `kept` units; tensors that
/// do not depend on the hidden size (embedding, head bias) are returned as they are.
pub fn slice(t: &HashMap<String, Tensor>, s: Shape, kept: &[Vec<usize>]) -> Result<HashMap<String, Tensor>> {
    let h = s.hidden;
    let gate_rows = |k: &[usize], blocks: usize| -> Vec<usize> {
        (0..blocks).flat_map(|g| k.iter().map(move |&j| g * h + j)).collect()
    };
    // Columns of a layer's output (dirs·H wide) that survive.
    let out_cols = |layer: usize| -> Vec<usize> {
        (0..s.dirs).flat_map(|d| kept[layer * s.dirs + d].iter().map(move |&j| d * h + j)).collect()
    };
    let mut out = HashMap::new();
    for name in t.keys() {
        let known =
            name.starts_with("lstm.") || name == "head.weight" || name == "head.bias" || name == "embedding.weight";
        if !known {
            bail!("structured pruning covers classifier checkpoints (embedding, lstm, head); `{name}` is not one of theirs");
        }
    }
    for layer in 0..s.layers {
        for dir in 0..s.dirs {
            let sf = suffix(layer, dir);
            let k = &kept[layer * s.dirs + dir];
            let rows = gate_rows(k, s.gates);
            let get = |n: &str| t.get(n).ok_or_else(|| anyhow!("checkpoint has no tensor `{n}`"));
            let mut wih = pick_rows(get(&format!("lstm.weight_ih{sf}"))?, &rows)?;
            if layer > 0 {
                wih = pick_cols(&wih, &out_cols(layer - 1))?;
            }
            out.insert(format!("lstm.weight_ih{sf}"), wih);
            out.insert(
                format!("lstm.weight_hh{sf}"),
                pick_cols(&pick_rows(get(&format!("lstm.weight_hh{sf}"))?, &rows)?, k)?,
            );
            for b in ["bias_ih", "bias_hh"] {
                out.insert(format!("lstm.{b}{sf}"), pick_rows(get(&format!("lstm.{b}{sf}"))?, &rows)?);
            }
            let peep = format!("lstm.weight_ch{sf}");
            if let Some(p) = t.get(&peep) {
                out.insert(peep, pick_rows(p, &gate_rows(k, 3))?);
            }
        }
    }
    let head = t.get("head.weight").ok_or_else(|| anyhow!("checkpoint has no tensor `head.weight`"))?;
    out.insert("head.weight".into(), pick_cols(head, &out_cols(s.layers - 1))?);
    for n in ["head.bias", "embedding.weight"] {
        if let Some(v) = t.get(n) {
            out.insert(n.into(), v.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use model::classifier::{Classifier, ClassifierConfig, Pooling};

    /// Dropping units whose every weight is zero changes no logit: the slicing keeps each
    /// remaining weight in its place.
    #[test]
    fn slicing_dead_units_keeps_the_function() {
        let mut lstm = model::LstmConfig::new(6, 8);
        lstm.num_layers = 2;
        lstm.bidirectional = true;
        let cfg = ClassifierConfig {
            vocab_size: 20,
            embedding_dim: 6,
            num_classes: 3,
            lstm,
            embedding_dropout: 0.0,
            head_dropout: 0.0,
            variational: false,
            pooling: Pooling::Last,
        };
        let vm = candle_nn::VarMap::new();
        let net = Classifier::new(&cfg, model::init::seeded_var_builder(&vm, 3, DType::F32, &Device::Cpu)).unwrap();
        let s = Shape { hidden: 8, layers: 2, dirs: 2, gates: 4 };
        // Kill units 1, 4, 6 of every layer and direction (rows, columns and readers).
        let dead = [1usize, 4, 6];
        {
            let data = vm.data().lock().unwrap();
            for (name, var) in data.iter() {
                let mut v = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let dims = var.dims().to_vec();
                let cols = if dims.len() == 2 { dims[1] } else { 1 };
                for (i, x) in v.iter_mut().enumerate() {
                    let (r, c) = (i / cols, i % cols);
                    let row_dead = name.starts_with("lstm.") && dead.contains(&(r % 8));
                    let col_dead = dims.len() == 2
                        && (name.contains("weight_hh")
                            || name == "head.weight"
                            || (name.contains("_l1") && name.contains("weight_ih")))
                        && dead.contains(&(c % 8));
                    if row_dead || col_dead {
                        *x = 0.0;
                    }
                }
                var.set(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap();
            }
        }
        let tensors: HashMap<String, Tensor> =
            vm.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        let kept = choose_units(&tensors, s, 5).unwrap();
        assert!(kept.iter().all(|k| k == &vec![0, 2, 3, 5, 7]), "{kept:?}");
        let small = slice(&tensors, s, &kept).unwrap();
        let mut cfg2 = cfg.clone();
        cfg2.lstm.hidden_size = 5;
        let net2 =
            Classifier::new(&cfg2, candle_nn::VarBuilder::from_tensors(small, DType::F32, &Device::Cpu)).unwrap();
        let ids = Tensor::new(&[[1u32, 5, 7, 2], [3, 4, 0, 0]], &Device::Cpu).unwrap();
        let a = net.forward(&ids, &[4, 2], false, None, false).unwrap().logits.to_vec2::<f32>().unwrap();
        let b = net2.forward(&ids, &[4, 2], false, None, false).unwrap().logits.to_vec2::<f32>().unwrap();
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }
}
