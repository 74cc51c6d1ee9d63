//! Thread count: `run.threads` governs candle's CPU ops, gemm and rayon alike. gemm, candle's
//! matmul and our fused LSTM size themselves from rayon's global pool (`RAYON_NUM_THREADS`);
//! candle's element-wise barrier pool from `CANDLE_NUM_THREADS`. Both are set once, before
//! any tensor op runs, and the barrier pool's workers park as soon as they are idle.

use std::sync::OnceLock;

static THREADS: OnceLock<usize> = OnceLock::new();

/// Sets the thread count for the process (0 = all cores). Later calls are ignored: the pool
/// cannot be resized once built.
pub fn init(requested: usize) -> usize {
    *THREADS.get_or_init(|| {
        let n =
            if requested == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { requested };
        // Safe here: called at start-up, before other threads exist.
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            // candle's element-wise ops run on a separate barrier pool sized by
            // CANDLE_NUM_THREADS (default: rayon's count); its idle workers spin 25 000 times
            // before parking, which steals the core from rayon's workers (the fused LSTM, gemm)
            // when the pools take turns. Same count, and park at once.
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
            if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
                std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "1");
            }
        }
        n
    })
}

/// The thread count in effect.
pub fn effective() -> usize {
    *THREADS.get().unwrap_or(&candle_core::utils::get_num_threads())
}
