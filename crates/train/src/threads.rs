//! Thread count: `run.threads` governs candle's CPU ops, gemm and rayon alike. gemm, candle's
//! matmul and our fused LSTM size themselves from rayon's global pool; candle's matmul also
//! reads `RAYON_NUM_THREADS`, and its element-wise barrier pool reads `CANDLE_NUM_THREADS`
//! when first used. Those variables are the binary's business: changing the environment is
//! only sound while no other thread runs, which a library cannot know, so the `train` binary
//! sets [`candle_env`] in `main` and library code only builds rayon's pool ([`init`]).

use std::sync::OnceLock;

static THREADS: OnceLock<usize> = OnceLock::new();

/// The thread count `run.threads = requested` stands for: 0 = the CPUs Slurm gave the job
/// (`SLURM_CPUS_PER_TASK`, inside `sbatch --cpus-per-task`), else every core.
pub fn resolve(requested: usize) -> usize {
    let cores = || std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    resolve_with(requested, std::env::var("SLURM_CPUS_PER_TASK").ok().as_deref(), cores)
}

/// [`resolve`] with the environment passed in. A job step sees the whole node's cores
/// unless its cluster confines it with cgroups, so Slurm's allocation is the better guide;
/// a value that is not a positive number is ignored.
fn resolve_with(requested: usize, slurm_cpus: Option<&str>, cores: impl FnOnce() -> usize) -> usize {
    if requested > 0 {
        return requested;
    }
    match slurm_cpus.and_then(|s| s.trim().parse::<usize>().ok()) {
        Some(n) if n > 0 => n,
        _ => cores(),
    }
}

/// The environment variables that make candle use `n` threads, for the binary to set before
/// any thread starts. candle's barrier pool gets the same count as rayon's; its idle workers
/// spin 25 000 times before parking, which steals the core from rayon's workers (the fused
/// LSTM, gemm) when the pools take turns, so they park at once unless the user asked
/// otherwise (`CANDLE_BARRIER_POOL_SPIN_LIMIT` already set).
pub fn candle_env(n: usize) -> Vec<(&'static str, String)> {
    let mut vars = vec![("RAYON_NUM_THREADS", n.to_string()), ("CANDLE_NUM_THREADS", n.to_string())];
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        vars.push(("CANDLE_BARRIER_POOL_SPIN_LIMIT", "1".to_string()));
    }
    vars
}

/// Builds rayon's global pool with `n` threads and records `n` for `summary.json`. Later
/// calls change nothing (a pool cannot be resized once built) and return the first count.
pub fn init(n: usize) -> usize {
    *THREADS.get_or_init(|| {
        // Fails only when the pool already exists (built by an earlier rayon call): it then
        // keeps its size, which `RAYON_NUM_THREADS` gave it in the binary.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
        n
    })
}

/// The thread count in effect.
pub fn effective() -> usize {
    *THREADS.get().unwrap_or(&candle_core::utils::get_num_threads())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_every_core_and_the_env_names_both_pools() {
        assert_eq!(resolve(3), 3);
        assert!(resolve(0) >= 1);
        let env = candle_env(4);
        assert!(env.contains(&("RAYON_NUM_THREADS", "4".to_string())));
        assert!(env.contains(&("CANDLE_NUM_THREADS", "4".to_string())));
    }

    #[test]
    fn zero_follows_slurms_allocation_when_there_is_one() {
        assert_eq!(resolve_with(0, Some("3"), || 64), 3);
        assert_eq!(resolve_with(0, None, || 64), 64);
        assert_eq!(resolve_with(0, Some("0"), || 64), 64);
        assert_eq!(resolve_with(0, Some("lots"), || 64), 64);
        assert_eq!(resolve_with(5, Some("3"), || 64), 5, "an explicit run.threads wins");
    }
}
