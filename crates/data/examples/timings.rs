//! Times loading + tokenizing the SST-2 phrase-level training set (67,349 phrases) and
//! building one epoch of its batches.
//!
//! ```sh
//! RAYON_NUM_THREADS=1 taskset -c 0 cargo run --release -p data --example timings -- \
//!     [../shared/data/sst2/train_phrases.jsonl] [batch_size]
//! ```

use data::batch::{BatchOptions, Batcher};
use data::config::TokenizerConfig;
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/sst2/train_phrases.jsonl")
    });
    let batch_size: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(32);

    let t0 = Instant::now();
    let examples = data::sst2::read_file(&path, "train")?;
    let t_load = t0.elapsed();

    let t1 = Instant::now();
    let tok = data::tokenizer::build_tokenizer(&TokenizerConfig::default(), examples.iter().map(|e| e.text.as_str()))?;
    let t_train = t1.elapsed();

    let t2 = Instant::now();
    let ids = examples.iter().map(|e| tok.encode(&e.text)).collect::<Result<Vec<_>, _>>()?;
    let t_encode = t2.elapsed();

    let t3 = Instant::now();
    let labels = examples.iter().map(|e| e.label as u32).collect();
    let batcher = Batcher::new(ids, labels, tok.pad_id(), &BatchOptions::train(batch_size, 42))?;
    let batches = batcher.batches_for_epoch(0);
    let t_batch = t3.elapsed();

    let tokens: usize = batches.iter().map(|b| b.lengths.iter().sum::<usize>()).sum();
    let padded: usize = batches.iter().map(|b| b.batch_size * b.max_len).sum();
    let total = t0.elapsed();
    println!("file            {}", path.display());
    println!("examples        {}", examples.len());
    println!("vocab           {}", tok.vocab_size());
    println!(
        "batches         {} of {batch_size} ({tokens} tokens, {:.1}% padding)",
        batches.len(),
        100.0 * (padded - tokens) as f64 / padded as f64
    );
    println!("load            {:>8.3} s", t_load.as_secs_f64());
    println!("train tokenizer {:>8.3} s", t_train.as_secs_f64());
    println!("encode          {:>8.3} s", t_encode.as_secs_f64());
    println!("batch epoch 0   {:>8.3} s", t_batch.as_secs_f64());
    println!("total           {:>8.3} s", total.as_secs_f64());
    Ok(())
}
