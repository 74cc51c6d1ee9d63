//! Micro-benchmark: the fused LSTM direction vs candle-nn's `LSTM`, same shapes, same process.
//!
//! `cargo run --release -p model --example fused_bench -- [--iters N] [--nn-iters N] [--only A|B] [--skip-nn] [--split] [--train-only] [--infer-only]`
//!
//! Also prints the kernel alone on raw slices (what the candle wrapping and graph cost on top),
//! and with `--split` the training step's forward and backward parts. PyTorch's figures for
//! the same shapes: `scripts/bench_pytorch.py`. The machine's cores are shared: rerun when
//! quiet (`uptime`) before trusting a number.
//!
//! Times inference (forward, no graph) and training (forward + backward of
//! `sum(output * r)` to every weight and the input) and prints medians with spread, tokens/s
//! and achieved GFLOP/s (forward = 2·B·T·4H·(I+H) FLOPs, training = 3x that).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{rnn::LSTMConfig, VarBuilder, VarMap, RNN};
use std::time::Instant;

struct Shape {
    name: &'static str,
    batch: usize,
    seq: usize,
    input: usize,
    hidden: usize,
}

fn median_and_spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    (v[n / 2], v[n / 10], v[(n * 9) / 10])
}

fn time<F: FnMut()>(warmup: usize, iters: usize, mut f: F) -> (f64, f64, f64) {
    for _ in 0..warmup {
        f();
    }
    let mut v = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64());
    }
    median_and_spread(v)
}

fn report(what: &str, s: &Shape, flops: f64, (med, p10, p90): (f64, f64, f64)) {
    let tokens = (s.batch * s.seq) as f64;
    println!(
        "  {what:<22} {:>8.2} ms (p10 {:.2}, p90 {:.2})  {:>9.0} tokens/s  {:>6.1} GFLOP/s",
        med * 1e3,
        p10 * 1e3,
        p90 * 1e3,
        tokens / med,
        flops / med / 1e9
    );
}

/// Deterministic pseudo-random data (splitmix64), so runs compare like with like.
fn data(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut st = seed;
    (0..n)
        .map(|_| {
            st = st.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = st;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

// The train binary's allocator and setting (crates/train/src/main.rs): freed memory is kept
// for reuse instead of being faulted in again every step.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let iters: usize = arg("--iters").map_or(20, |v| v.parse().unwrap());
    let nn_iters: usize = arg("--nn-iters").map_or(iters, |v| v.parse().unwrap());
    let only = arg("--only");
    let skip_nn = args.iter().any(|a| a == "--skip-nn");
    let dev = Device::Cpu;
    println!(
        "fused LSTM micro-benchmark: {} threads (rayon's global pool), medians over {iters} iterations (candle-nn {nn_iters}) after warm-up",
        model::fused::kernel::pool_threads()
    );
    let shapes = [
        Shape { name: "A", batch: 64, seq: 64, input: 128, hidden: 256 },
        Shape { name: "B", batch: 32, seq: 128, input: 256, hidden: 512 },
    ];
    for s in shapes.iter().filter(|s| only.as_deref().is_none_or(|o| o == s.name)) {
        let (b, t, i, h) = (s.batch, s.seq, s.input, s.hidden);
        println!("config {}: batch {b}, seq {t}, input {i}, hidden {h}", s.name);
        let fwd_flops = 2.0 * (b * t * 4 * h * (i + h)) as f64;
        let x = Var::from_tensor(&Tensor::from_vec(data(b * t * i, 1, 1.0), (b, t, i), &dev)?)?;
        let r = Tensor::from_vec(data(b * t * h, 2, 1.0), (b, t, h), &dev)?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let nn = candle_nn::rnn::lstm(i, h, LSTMConfig::default(), vb.pp("lstm"))?;
        // Same weights for both paths.
        let get = |name: &str| -> Tensor {
            varmap.data().lock().unwrap().get(&format!("lstm.{name}")).unwrap().as_tensor().clone()
        };
        let (w_ih, w_hh, b_ih, b_hh) = (get("weight_ih_l0"), get("weight_hh_l0"), get("bias_ih_l0"), get("bias_hh_l0"));
        let lengths = vec![t; b];

        let fused_fwd = || {
            let (out, _, _) = model::fused::lstm_direction(
                &x.as_tensor().detach(),
                &w_ih.detach(),
                &w_hh.detach(),
                Some(&b_ih.detach()),
                Some(&b_hh.detach()),
                None,
                None,
                &lengths,
                false,
            )
            .unwrap();
            out
        };
        let fused_train = || {
            let (out, _, _) = model::fused::lstm_direction(
                x.as_tensor(),
                &w_ih,
                &w_hh,
                Some(&b_ih),
                Some(&b_hh),
                None,
                None,
                &lengths,
                false,
            )
            .unwrap();
            let g = (out * &r).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(g.get(&w_hh).is_some());
        };
        if args.iter().any(|a| a == "--train-only") {
            report("fused training", s, 3.0 * fwd_flops, time(3, iters, fused_train));
            continue;
        }
        if args.iter().any(|a| a == "--infer-only") {
            report("fused inference", s, fwd_flops, time(3, iters, || drop(fused_fwd())));
            continue;
        }
        {
            // The kernel alone on raw slices: what the candle wrapping costs on top.
            use model::fused::kernel;
            let wpk = Tensor::cat(&[&w_ih, &w_hh, &(&b_ih + &b_hh)?.reshape((4 * h, 1))?], 1)?;
            let wv = wpk.flatten_all()?.to_vec1::<f32>()?;
            let xv = x.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let st = vec![0f32; 2 * b * h];
            let g = vec![1e-3f32; b * (t + 2) * h];
            let nt = model::fused::kernel::pool_threads();
            let plan = || kernel::Plan::new(b, t, i, h, &lengths, false, kernel::CellSpec::VANILLA, nt);
            report(
                "kernel forward",
                s,
                fwd_flops,
                time(3, iters, || {
                    let p = plan();
                    let w = kernel::Weights::packed(&wv, &p);
                    drop(kernel::forward(p, &xv, w, &st, nt, false))
                }),
            );
            let saved = {
                let p = plan();
                let w = kernel::Weights::packed(&wv, &p);
                kernel::forward(p, &xv, w, &st, nt, true).1.unwrap()
            };
            report(
                "kernel backward",
                s,
                2.0 * fwd_flops,
                time(3, iters, || drop(kernel::backward(&saved, &g, true, nt))),
            );
        }
        report("fused inference", s, fwd_flops, time(3, iters, || drop(fused_fwd())));
        report("fused training", s, 3.0 * fwd_flops, time(3, iters, fused_train));
        if args.iter().any(|a| a == "--split") {
            let (mut tf, mut tb) = (vec![], vec![]);
            for _ in 0..iters {
                let t0 = Instant::now();
                let (out, _, _) = model::fused::lstm_direction(
                    x.as_tensor(),
                    &w_ih,
                    &w_hh,
                    Some(&b_ih),
                    Some(&b_hh),
                    None,
                    None,
                    &lengths,
                    false,
                )?;
                let loss = (out * &r)?.sum_all()?;
                let t1 = Instant::now();
                let g = loss.backward()?;
                tb.push(t1.elapsed().as_secs_f64());
                tf.push((t1 - t0).as_secs_f64());
                drop(g);
            }
            report("  of which forward", s, fwd_flops, median_and_spread(tf));
            report("  of which backward", s, 2.0 * fwd_flops, median_and_spread(tb));
        }
        if !skip_nn {
            let xd = x.as_tensor().detach();
            let nn_fwd = || {
                let states = nn.seq(&xd).unwrap();
                nn.states_to_tensor(&states).unwrap()
            };
            // candle-nn's weights are Vars: detach the input only, as a frozen model would not.
            report("candle-nn inference", s, fwd_flops, time(1, nn_iters, || drop(nn_fwd())));
            let nn_train = || {
                let states = nn.seq(x.as_tensor()).unwrap();
                let out = nn.states_to_tensor(&states).unwrap();
                let g = (out * &r).unwrap().sum_all().unwrap().backward().unwrap();
                assert!(g.get(&w_hh).is_some());
            };
            report("candle-nn training", s, 3.0 * fwd_flops, time(1, nn_iters, nn_train));
            // The two paths compute the same function.
            let d = (fused_fwd() - nn_fwd())?.abs()?.max_all()?.to_scalar::<f32>()?;
            println!("  max |fused - candle-nn| on the outputs: {d:.2e}");
        }
    }
    Ok(())
}
