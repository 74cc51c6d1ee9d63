//! `train inspect`: what the gates do on given sentences.
//!
//! Runs a finished classifier run's best checkpoint with the gate trace on and reports, per
//! token and hidden unit, one gate's value (the output gate o_t by default; i_t, f_t, c_t or
//! h_t on request) of one layer (the top one by default). For a bidirectional model the
//! units are the forward direction's (`fw0..`) followed by the backward direction's (`bw0..`),
//! each read at the token it is computed at.
//!
//! Three views of the same numbers:
//! * a heatmap tokens × units,
//! * a strip of each token's mean over units (for o_t: how open the output gate is on
//!   average when the model reads that token),
//! * the units ordered by **selectivity**: the variance of the unit's value over every token
//!   of the given sentences (population variance). A unit whose gate stays equally open on
//!   every token scores 0; one that opens on some tokens and shuts on others scores high (at
//!   most 0.25 for a gate in [0, 1]). The heatmap's columns are in this order, most selective
//!   first, so the units that react to the words sit on the left.

use crate::config::{Config, TaskKind};
use crate::plot::{diverging, hex, viridis, Anchor, Canvas};
use crate::rundir::RunDir;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Tensor};
use data::tokenizer::Tok;
use model::classifier::Classifier;
use serde::Serialize;
use std::path::PathBuf;

/// Which trace to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    /// Output gate o_t.
    O,
    /// Input gate i_t.
    I,
    /// Forget gate f_t.
    F,
    /// Cell state c_t.
    C,
    /// Hidden state h_t.
    H,
}

impl Gate {
    /// Reads `--gate` (o, i, f, c, h or their long names).
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "o" | "output" | "output_gate" => Gate::O,
            "i" | "input" | "input_gate" => Gate::I,
            "f" | "forget" | "forget_gate" => Gate::F,
            "c" | "cell" => Gate::C,
            "h" | "hidden" => Gate::H,
            other => bail!("--gate {other:?}: expected o, i, f, c or h"),
        })
    }

    /// The trace's name for titles.
    pub fn describe(self) -> &'static str {
        match self {
            Gate::O => "output gate o_t",
            Gate::I => "input gate i_t",
            Gate::F => "forget gate f_t",
            Gate::C => "cell state c_t",
            Gate::H => "hidden state h_t",
        }
    }

    /// Gates live in [0, 1]; c and h are signed.
    fn bounded(self) -> bool {
        matches!(self, Gate::O | Gate::I | Gate::F)
    }
}

/// One sentence's trace.
#[derive(Debug, Clone, Serialize)]
pub struct SentenceTrace {
    /// The sentence as given.
    pub text: String,
    /// Its tokens as the tokenizer split them.
    pub tokens: Vec<String>,
    /// Predicted label and its probability.
    pub label: String,
    /// Probability of the predicted label.
    pub probability: f32,
    /// values[token][unit], units in `Inspection::units` order (not sorted).
    pub values: Vec<Vec<f32>>,
    /// Each token's mean over units.
    pub token_mean: Vec<f64>,
}

/// Everything `train inspect` shows, serialisable as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The run directory.
    pub run: String,
    /// The traced gate.
    pub gate: Gate,
    /// The traced layer (0-based).
    pub layer: usize,
    /// The run's LSTM variant.
    pub variant: String,
    /// Unit names: `fw<k>` (forward direction), `bw<k>` (backward direction).
    pub units: Vec<String>,
    /// Per unit: population variance of its value over all tokens of all sentences.
    pub selectivity: Vec<f64>,
    /// Per unit: mean value over all tokens.
    pub unit_mean: Vec<f64>,
    /// Unit indices, most selective first.
    pub order: Vec<usize>,
    /// Each sentence's trace.
    pub sentences: Vec<SentenceTrace>,
}

/// Traces `texts` through the run's best checkpoint. `layer` defaults to the top layer.
pub fn inspect(dir: &RunDir, texts: &[String], gate: Gate, layer: Option<usize>) -> Result<Inspection> {
    let cfg: Config = dir.load_config()?;
    if cfg.task != TaskKind::Classify {
        bail!("train inspect reads classifier runs (task = \"classify\"); {} is another task", dir.root.display());
    }
    if texts.is_empty() {
        bail!("no sentences to inspect: give them as arguments or on stdin");
    }
    let device = cfg.run.device()?;
    let tok_path = dir.tokenizer();
    let tokenizer = Tok::load(&tok_path).with_context(|| format!("loading {}", tok_path.display()))?;
    let (meta, class_names) = crate::task::classify::read_model_config(&dir.best())?;
    let lstm_cfg = &meta.lstm;
    if lstm_cfg.cell != model::config::CellKind::Lstm && !matches!(gate, Gate::H) {
        bail!("the run's cell is {:?}: only --gate h is traced for it", lstm_cfg.cell);
    }
    let layers = lstm_cfg.num_layers;
    let layer = layer.unwrap_or(layers - 1);
    if layer >= layers {
        bail!("--layer {layer}: the model has {layers} layer(s) (0..{})", layers - 1);
    }
    let varmap = candle_nn::VarMap::new();
    let vb = model::init::seeded_var_builder(&varmap, 0, DType::F32, &device);
    let net = Classifier::new(&meta, vb)?;
    model::checkpoint::load_into_varmap(dir.best(), &varmap)?;
    let dirs = lstm_cfg.num_directions();
    let hidden = lstm_cfg.hidden_size;
    let variant = format!("{:?}", lstm_cfg.variant).to_lowercase();

    let mut sentences = Vec::new();
    for text in texts {
        let ids = encode_for_classifier(&tokenizer, cfg.data.max_len, text)?;
        sentences.push(trace_sentence(&net, &device, &tokenizer, &class_names, text, ids, gate, layer)?.0);
    }
    let units = unit_names(dirs, hidden);
    let (unit_mean, selectivity) = unit_stats(&sentences, units.len());
    let order = selectivity_order(&selectivity);
    Ok(Inspection {
        run: dir.root.display().to_string(),
        gate,
        layer,
        variant,
        units,
        selectivity,
        unit_mean,
        order,
        sentences,
    })
}

/// A text's ids as `train predict` and `train inspect` feed them to a classifier: truncated to
/// `data.max_len` when the run sets it, one unknown token when nothing is left.
pub fn encode_for_classifier(tokenizer: &Tok, max_len: Option<usize>, text: &str) -> Result<Vec<u32>> {
    let mut ids = tokenizer.encode(text)?;
    if let Some(m) = max_len {
        ids.truncate(m);
    }
    if ids.is_empty() {
        ids.push(tokenizer.unk_id());
    }
    Ok(ids)
}

/// One sentence (already encoded) through `net` with the gate trace on: its trace of `gate` at
/// `layer`, and every class's probability. Shared by `train inspect` and `train serve`.
#[allow(clippy::too_many_arguments)]
pub fn trace_sentence(
    net: &Classifier,
    device: &candle_core::Device,
    tokenizer: &Tok,
    class_names: &[String],
    text: &str,
    ids: Vec<u32>,
    gate: Gate,
    layer: usize,
) -> Result<(SentenceTrace, Vec<f32>)> {
    let lstm_cfg = &net.config().lstm;
    let dirs = lstm_cfg.num_directions();
    let hidden = lstm_cfg.hidden_size;
    let variant = format!("{:?}", lstm_cfg.variant).to_lowercase();
    let t = ids.len();
    let tokens: Vec<String> =
        ids.iter().map(|&i| tokenizer.id_to_token(i).unwrap_or_else(|| format!("#{i}"))).collect();
    let x = Tensor::from_vec(ids, (1, t), device)?;
    let out = net.forward(&x, &[t], false, None, true)?;
    let probs = model::classifier::probabilities(&out.logits)?.to_dtype(DType::F32)?.to_vec2::<f32>()?.remove(0);
    let (best, p) = probs.iter().enumerate().fold((0, f32::MIN), |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc });
    let trace = out.trace.ok_or_else(|| anyhow!("the model returned no gate trace"))?;
    let mut values = vec![Vec::with_capacity(dirs * hidden); t];
    for d in 0..dirs {
        let dt = &trace.directions[layer * dirs + d];
        let tensor = match gate {
            Gate::O => dt.output_gate.as_ref(),
            Gate::I => dt.input_gate.as_ref(),
            Gate::F => dt.forget_gate.as_ref(),
            Gate::C => dt.cell.as_ref(),
            Gate::H => Some(&dt.hidden),
        }
        .ok_or_else(|| {
            anyhow!(
                "the run's LSTM variant `{variant}` has no {}; choose another --gate (o, i, f, c or h)",
                gate.describe()
            )
        })?;
        let v = tensor.to_dtype(DType::F32)?.squeeze(0)?.to_vec2::<f32>()?; // (time, hidden)
        for (row, vals) in values.iter_mut().zip(v) {
            row.extend(vals);
        }
    }
    let token_mean = values.iter().map(|r| r.iter().map(|&v| v as f64).sum::<f64>() / r.len() as f64).collect();
    let trace = SentenceTrace {
        text: text.to_string(),
        tokens,
        label: class_names.get(best).cloned().unwrap_or_else(|| best.to_string()),
        probability: p,
        values,
        token_mean,
    };
    Ok((trace, probs))
}

/// Unit names of a layer: `fw<k>` for the forward direction, then `bw<k>` for the backward one.
pub fn unit_names(dirs: usize, hidden: usize) -> Vec<String> {
    (0..dirs).flat_map(|d| (0..hidden).map(move |k| format!("{}{k}", if d == 0 { "fw" } else { "bw" }))).collect()
}

/// Per unit: mean and population variance over every token of every sentence.
pub fn unit_stats(sentences: &[SentenceTrace], n_units: usize) -> (Vec<f64>, Vec<f64>) {
    let rows: Vec<&Vec<f32>> = sentences.iter().flat_map(|s| s.values.iter()).collect();
    let n = rows.len().max(1) as f64;
    let mean: Vec<f64> = (0..n_units).map(|u| rows.iter().map(|r| r[u] as f64).sum::<f64>() / n).collect();
    let var = (0..n_units).map(|u| rows.iter().map(|r| (r[u] as f64 - mean[u]).powi(2)).sum::<f64>() / n).collect();
    (mean, var)
}

/// Unit indices by descending selectivity; ties by index, so the order is deterministic.
pub fn selectivity_order(sel: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..sel.len()).collect();
    idx.sort_by(|&a, &b| sel[b].partial_cmp(&sel[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
    idx
}

/// Colour of a value: viridis over [0, 1] for gates, blue–white–red over [-m, m] for c and h.
fn colour(gate: Gate, v: f64, m: f64) -> String {
    if gate.bounded() {
        hex(viridis(v))
    } else {
        hex(diverging(0.5 + v / (2.0 * m.max(1e-9))))
    }
}

/// The heatmap, token-mean strip and selectivity bars as one SVG. `top` keeps only the most
/// selective units.
pub fn render_svg(ins: &Inspection, top: Option<usize>) -> String {
    let order: Vec<usize> = ins.order.iter().copied().take(top.unwrap_or(usize::MAX)).collect();
    let n = order.len().max(1);
    let cw = (900.0 / n as f64).clamp(3.0, 16.0);
    let ch = 16.0;
    let longest = ins.sentences.iter().flat_map(|s| s.tokens.iter()).map(|t| t.chars().count()).max().unwrap_or(4);
    let left = 20.0 + 7.0 * longest.min(24) as f64;
    let strip_x = left;
    let strip_w = 18.0;
    let heat_x = strip_x + strip_w + 12.0;
    let bars_h = 70.0;
    let top_y = 48.0;
    let heat_y0 = top_y + bars_h + 14.0;
    let rows: f64 = ins.sentences.iter().map(|s| s.tokens.len() as f64 * ch + 22.0).sum();
    let width = (heat_x + n as f64 * cw + 30.0).max(560.0);
    let height = heat_y0 + rows + 80.0;
    let m = ins.sentences.iter().flat_map(|s| s.values.iter().flatten()).fold(0.0f64, |a, &v| a.max((v as f64).abs()));
    let mut c = Canvas::new(width, height);
    c.text(
        10.0,
        18.0,
        14.0,
        Anchor::Start,
        &format!("{} — layer {}, variant {}, {} units", ins.gate.describe(), ins.layer, ins.variant, ins.units.len()),
    );
    c.text(
        10.0,
        36.0,
        11.0,
        Anchor::Start,
        &format!(
            "columns: units sorted by selectivity (variance over tokens), most selective left{}; left strip: mean over units per token",
            if order.len() < ins.units.len() { format!(", top {} shown", order.len()) } else { String::new() }
        ),
    );
    // Selectivity bars, aligned with the heatmap columns.
    let smax = order.iter().map(|&u| ins.selectivity[u]).fold(0.0f64, f64::max).max(1e-12);
    c.text(heat_x - 4.0, top_y + 10.0, 10.0, Anchor::End, "selectivity");
    c.text(heat_x - 4.0, top_y + 22.0, 9.0, Anchor::End, &format!("max {:.3}", smax));
    for (j, &u) in order.iter().enumerate() {
        let h = bars_h * ins.selectivity[u] / smax;
        c.rect(
            heat_x + j as f64 * cw,
            top_y + bars_h - h,
            (cw - 0.5).max(1.0),
            h,
            "#0072B2",
            Some(&format!("{}: selectivity {:.4}, mean {:.3}", ins.units[u], ins.selectivity[u], ins.unit_mean[u])),
        );
    }
    c.line(heat_x, top_y + bars_h, heat_x + n as f64 * cw, top_y + bars_h, "#444");
    let mut y = heat_y0;
    for s in &ins.sentences {
        c.text(
            10.0,
            y + 12.0,
            11.0,
            Anchor::Start,
            &format!("\u{201c}{}\u{201d} → {} ({:.2})", s.text, s.label, s.probability),
        );
        y += 20.0;
        for (t, tok) in s.tokens.iter().enumerate() {
            let shown: String = tok.chars().take(24).collect();
            c.text(strip_x - 6.0, y + ch - 4.0, 11.0, Anchor::End, &shown);
            let mean = s.token_mean[t];
            c.rect(strip_x, y, strip_w, ch - 1.0, &colour(ins.gate, mean, m), Some(&format!("{tok}: mean {mean:.3}")));
            for (j, &u) in order.iter().enumerate() {
                let v = s.values[t][u] as f64;
                c.rect(
                    heat_x + j as f64 * cw,
                    y,
                    cw,
                    ch - 1.0,
                    &colour(ins.gate, v, m),
                    Some(&format!("{tok} / {}: {v:.3}", ins.units[u])),
                );
            }
            y += ch;
        }
        y += 2.0;
    }
    // Column labels when they fit, then the colour bar.
    if cw >= 9.0 {
        for (j, &u) in order.iter().enumerate() {
            c.text_vertical(heat_x + j as f64 * cw + cw * 0.7, y + 4.0, 8.0, Anchor::End, &ins.units[u]);
        }
    }
    let cb_y = y + 40.0;
    c.text(10.0, cb_y + 8.0, 10.0, Anchor::Start, ins.gate.describe());
    if ins.gate.bounded() {
        c.colorbar(heat_x, cb_y, 200.0, 10.0, 0.0, 1.0, viridis);
    } else {
        c.colorbar(heat_x, cb_y, 200.0, 10.0, -m, m, diverging);
    }
    c.to_svg()
}

/// A compact terminal view: per token its mean (as a number and a bar) and the `top` most
/// selective units as shades.
pub fn render_text(ins: &Inspection, top: usize) -> String {
    const SHADES: [char; 10] = [' ', '.', ':', '-', '=', '+', '*', '#', '%', '@'];
    let order: Vec<usize> = ins.order.iter().copied().take(top).collect();
    let m = ins.sentences.iter().flat_map(|s| s.values.iter().flatten()).fold(0.0f64, |a, &v| a.max((v as f64).abs()));
    let level = |v: f64| -> usize {
        let t = if ins.gate.bounded() { v } else { 0.5 + v / (2.0 * m.max(1e-9)) };
        ((t.clamp(0.0, 1.0) * 9.0).round()) as usize
    };
    let mut out = format!(
        "{} (layer {}, variant {}): shade = value ({}), units most selective first\nunits: {}\n",
        ins.gate.describe(),
        ins.layer,
        ins.variant,
        if ins.gate.bounded() { "' ' 0 … '@' 1".to_string() } else { format!("' ' {:.2} … '@' {:.2}", -m, m) },
        order.iter().map(|&u| ins.units[u].as_str()).collect::<Vec<_>>().join(" ")
    );
    for s in &ins.sentences {
        out.push_str(&format!("\n\"{}\" → {} ({:.2})\n", s.text, s.label, s.probability));
        for (t, tok) in s.tokens.iter().enumerate() {
            let shown: String = tok.chars().take(14).collect();
            let mean = s.token_mean[t];
            let bar = "#".repeat(level(mean));
            let cells: String = order.iter().map(|&u| SHADES[level(s.values[t][u] as f64)]).collect();
            out.push_str(&format!("{shown:>14} {mean:>6.3} {bar:<9} |{cells}|\n"));
        }
    }
    out
}

/// Arguments of `train inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// A finished classifier run.
    #[arg(long)]
    pub run: PathBuf,
    /// Write the drawing here (.svg); without it a compact view is printed.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print all the numbers as JSON.
    #[arg(long)]
    pub json: bool,
    /// o (output gate, default), i, f (input, forget gate), c (cell), h (hidden state).
    #[arg(long, default_value = "o")]
    pub gate: String,
    /// Layer to show (default: the top layer).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Show only this many of the most selective units (terminal view default: 48).
    #[arg(long)]
    pub top: Option<usize>,
    /// Sentences (stdin lines when none are given).
    pub texts: Vec<String>,
}

/// `train inspect`.
pub fn cli(a: &InspectArgs) -> Result<()> {
    let dir = RunDir::open(&a.run)?;
    // A folder that is not a run is refused before stdin is read.
    dir.load_config()?;
    let gate = Gate::parse(&a.gate)?;
    if let Some(out) = &a.out {
        match out.extension().and_then(|e| e.to_str()) {
            Some("svg") | Some("png") => {}
            _ => bail!("--out {}: expected a .svg or .png file", out.display()),
        }
    }
    let texts = crate::task::inputs_or_stdin(&a.texts)?;
    let ins = inspect(&dir, &texts, gate, a.layer)?;
    if let Some(out) = &a.out {
        let svg = render_svg(&ins, a.top);
        let bytes = if out.extension().and_then(|e| e.to_str()) == Some("png") {
            crate::plot::svg_to_png(&svg).with_context(|| format!("--out {}", out.display()))?
        } else {
            svg.into_bytes()
        };
        crate::atomic::write(out, &bytes)?;
        eprintln!("wrote {}", out.display());
    }
    if a.json {
        println!("{}", serde_json::to_string(&ins)?);
    } else if a.out.is_none() {
        print!("{}", render_text(&ins, a.top.unwrap_or(48)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Inspection {
        let s = SentenceTrace {
            text: "a <b>".into(),
            tokens: vec!["a".into(), "<b>".into()],
            label: "positive".into(),
            probability: 0.9,
            values: vec![vec![0.5, 0.0, 0.9], vec![0.5, 1.0, 0.7]],
            token_mean: vec![1.4 / 3.0, 2.2 / 3.0],
        };
        let (unit_mean, selectivity) = unit_stats(std::slice::from_ref(&s), 3);
        let order = selectivity_order(&selectivity);
        Inspection {
            run: "r".into(),
            gate: Gate::O,
            layer: 0,
            variant: "vanilla".into(),
            units: vec!["fw0".into(), "fw1".into(), "bw0".into()],
            selectivity,
            unit_mean,
            order,
            sentences: vec![s],
        }
    }

    #[test]
    fn selectivity_is_variance_over_tokens() {
        let ins = toy();
        // unit 0 constant → 0; unit 1: values 0, 1 → 0.25; unit 2: 0.9, 0.7 → 0.01.
        assert!(ins.selectivity[0].abs() < 1e-12);
        assert!((ins.selectivity[1] - 0.25).abs() < 1e-12);
        assert!((ins.selectivity[2] - 0.01).abs() < 1e-7);
        assert_eq!(ins.order, vec![1, 2, 0]);
        assert!((ins.unit_mean[1] - 0.5).abs() < 1e-12);
    }

    #[test]
    fn views_render() {
        let ins = toy();
        let svg = render_svg(&ins, None);
        assert!(svg.starts_with("<svg") && svg.contains("&lt;b&gt;") && svg.contains("selectivity"));
        assert_eq!(svg, render_svg(&ins, None));
        // 2 tokens × (3 units + 1 strip) cells, 3 bars.
        assert!(svg.matches("<rect").count() >= 2 * 4 + 3);
        let top1 = render_svg(&ins, Some(1));
        assert!(top1.contains("top 1 shown"));
        let text = render_text(&ins, 2);
        assert!(text.contains("units: fw1 bw0\n"), "{text}");
        assert!(text.contains("|@%|") || text.contains("|@*|") || text.contains("|@#|"), "{text}");
        assert!(Gate::parse("x").is_err());
        assert_eq!(Gate::parse("output").unwrap(), Gate::O);
    }
}
