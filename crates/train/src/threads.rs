//! Thread count: `run.threads` governs candle's CPU ops, gemm and rayon alike. They all
//! size themselves from rayon's global pool (or `RAYON_NUM_THREADS`), so it is set once,
//! before any tensor op runs.

use std::sync::OnceLock;

static THREADS: OnceLock<usize> = OnceLock::new();

/// Sets the thread count for the process (0 = all cores). Later calls are ignored: the pool
/// cannot be resized once built.
pub fn init(requested: usize) -> usize {
    *THREADS.get_or_init(|| {
        let n = if requested == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            requested
        };
        // Safe here: called at start-up, before other threads exist.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
        n
    })
}

/// The thread count in effect.
pub fn effective() -> usize {
    *THREADS.get().unwrap_or(&candle_core::utils::get_num_threads())
}
