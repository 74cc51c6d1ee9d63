//! Learning-rate schedules as a pure function of the step, so a resumed run needs no
//! schedule state.

use crate::config::{Schedule, TrainConfig};

/// Learning rate for optimizer step `step` (0-based) of `total` steps.
pub fn lr_at(cfg: &TrainConfig, step: usize, total: usize) -> f64 {
    let warm = cfg.warmup_steps;
    if warm > 0 && step < warm {
        return cfg.lr * (step + 1) as f64 / warm as f64;
    }
    match cfg.schedule {
        Schedule::Constant => cfg.lr,
        Schedule::Cosine => {
            let span = total.saturating_sub(warm).max(1) as f64;
            let progress = ((step - warm) as f64 / span).min(1.0);
            cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        Schedule::Step => {
            let k = (step - warm) / cfg.step_size.max(1);
            (cfg.lr * cfg.gamma.powi(k as i32)).max(cfg.min_lr)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(schedule: Schedule, warmup: usize) -> TrainConfig {
        TrainConfig {
            schedule,
            warmup_steps: warmup,
            lr: 1.0,
            min_lr: 0.0,
            step_size: 10,
            gamma: 0.5,
            ..Default::default()
        }
    }

    #[test]
    fn warmup_then_cosine() {
        let c = cfg(Schedule::Cosine, 10);
        assert!((lr_at(&c, 0, 110) - 0.1).abs() < 1e-12);
        assert!((lr_at(&c, 9, 110) - 1.0).abs() < 1e-12);
        assert!((lr_at(&c, 10, 110) - 1.0).abs() < 1e-12);
        assert!((lr_at(&c, 60, 110) - 0.5).abs() < 1e-12);
        assert!(lr_at(&c, 110, 110).abs() < 1e-12);
    }

    #[test]
    fn step_decay() {
        let c = cfg(Schedule::Step, 0);
        assert_eq!(lr_at(&c, 9, 100), 1.0);
        assert_eq!(lr_at(&c, 10, 100), 0.5);
        assert_eq!(lr_at(&c, 25, 100), 0.25);
        assert_eq!(lr_at(&cfg(Schedule::Constant, 0), 99, 100), 1.0);
    }
}
