//! One teacher-forced training step of the Multi30k translation model (encoder, decoder
//! loop, generator + label-smoothed cross-entropy, backward) on a synthetic batch: time and
//! peak memory, the long-batch case that used to take 3.5 GB.
//!
//! `cargo run --release -p model --example seq2seq_bench -- [--batch 128] [--src 46] [--tgt 40] [--iters 3] [--composed]`
//!
//! `--composed` computes the loss as `logits` + `label_smoothed_cross_entropy` (the (B·T, V)
//! logits in candle's graph) instead of `generator_loss`. Peak RSS is the process's VmHWM
//! (Linux), so run one configuration per process.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use model::config::LstmConfig;
use model::seq2seq::{label_smoothed_cross_entropy, AttentionKind, Seq2Seq, Seq2SeqConfig};
use std::time::Instant;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let (b, s, t, iters) = (arg("--batch", 128), arg("--src", 46), arg("--tgt", 40), arg("--iters", 3));
    let composed = args.iter().any(|a| a == "--composed");
    let dev = Device::Cpu;
    // configs/multi30k_de_en.toml's model: BPE 8000, embedding 256, 256 units per encoder
    // direction, decoder 512, general attention, input feeding, tied generator.
    let encoder = LstmConfig { bidirectional: true, ..LstmConfig::new(256, 256) };
    let cfg = Seq2SeqConfig {
        src_vocab_size: 8000,
        tgt_vocab_size: 8000,
        embedding_dim: 256,
        encoder,
        attention: AttentionKind::General,
        input_feeding: true,
        tie_embeddings: true,
        embedding_dropout: 0.0,
        dropout: 0.0,
        output_dropout: 0.0,
        copy: false,
        coverage: false,
        pad_id: 0,
        bos_id: 1,
        eos_id: 2,
    };
    let vm = VarMap::new();
    let net = Seq2Seq::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    let ids = |n: usize, k: usize| -> Vec<u32> { (0..n).map(|i| ((i * k) % 7990 + 5) as u32).collect() };
    let src = Tensor::from_vec(ids(b * s, 7919), (b, s), &dev)?;
    let dec = Tensor::from_vec(ids(b * t, 104_729), (b, t), &dev)?;
    let targets = ids(b * t, 1_299_709);
    let weights = vec![1f32; b * t];
    let lengths = vec![s; b];
    println!(
        "batch {b}, source {s}, target {t} steps; loss {}",
        if composed { "logits + label_smoothed_cross_entropy" } else { "generator_loss" }
    );
    for it in 0..iters {
        let t0 = Instant::now();
        let out = net.forward(&src, &lengths, &dec, false, None, false)?;
        let loss = if composed {
            label_smoothed_cross_entropy(&net.logits(&out.hidden)?.flatten_to(1)?, &targets, &weights, 0.1)?
        } else {
            net.generator_loss(&out.hidden, &targets, &weights, 0.1)?
        };
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        drop(grads);
        println!(
            "  step {it}: forward {:.0} ms, backward {:.0} ms; peak RSS so far {:.0} MB",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            peak_rss_mb()
        );
    }
    Ok(())
}
