//! Failure injection for the test suite, read once when a [`super::Trainer`] is made (not on
//! every step): `SLUICE_TEST_NAN_AT_STEP=N` makes the loss of step N NaN, to check that a run
//! stops cleanly with its last good state; `SLUICE_TEST_KILL_AT_STEP=N` SIGKILLs the process
//! right after step N, as an out-of-memory killer or a pulled plug would.

/// The hooks in force for one trainer (both off unless the environment sets them).
#[derive(Debug, Clone, Copy, Default)]
pub struct TestHooks {
    /// The step whose loss is replaced by NaN.
    pub nan_at_step: Option<u64>,
    /// The step after which the process kills itself.
    pub kill_at_step: Option<u64>,
}

impl TestHooks {
    /// Reads `SLUICE_TEST_NAN_AT_STEP` and `SLUICE_TEST_KILL_AT_STEP`.
    pub fn from_env() -> Self {
        let step = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
        Self { nan_at_step: step("SLUICE_TEST_NAN_AT_STEP"), kill_at_step: step("SLUICE_TEST_KILL_AT_STEP") }
    }

    /// Whether step `step`'s loss is to be replaced by NaN.
    pub fn nan_at(&self, step: u64) -> bool {
        self.nan_at_step == Some(step)
    }

    /// SIGKILLs this process if `step` is the one asked for.
    pub fn maybe_kill_after(&self, step: u64) {
        if self.kill_at_step == Some(step) {
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
            std::process::abort()
        }
    }
}
