//! Adapter between the layer (`crate::lstm`) and the fused op: `Lstm::forward` asks
//! `try_run_direction` first and runs the op-by-op `run_direction` when it answers `None`.

use super::{lstm_bidirectional_variant, lstm_direction_variant, supports, DirectionParams, FusedVariant};
use crate::config::{CellKind, LstmConfig};
use crate::lstm::{DirectionOutput, DirectionWeights, LstmState};
use crate::Result;
use candle_core::Tensor;
use std::sync::Once;

static FALLBACK_LOGGED: Once = Once::new();

/// Runs one LSTM direction through the fused op when `cfg.fused` is on and the op covers the
/// case; `None` means "use the op-by-op path". A gate trace (per-step gate tensors) and
/// GRU/RNN cells always take the op-by-op path; a device/dtype the op does not cover is
/// reported once on stderr.
#[allow(clippy::too_many_arguments)]
pub fn try_run_direction(
    cfg: &LstmConfig,
    w: &DirectionWeights,
    x: &Tensor,
    lengths: Option<&[usize]>,
    reverse: bool,
    initial: Option<&LstmState>,
    trace: bool,
) -> Result<Option<DirectionOutput>> {
    if !cfg.fused || trace || cfg.cell != CellKind::Lstm {
        return Ok(None);
    }
    let variant = FusedVariant::from_name(cfg.variant.name()).expect("every LSTM variant has a fused spec");
    if !supports(x.device(), x.dtype(), variant) {
        FALLBACK_LOGGED.call_once(|| {
            eprintln!(
                "sluice: fused LSTM kernel not available for {:?} / {:?}; using the op-by-op path",
                x.device(),
                x.dtype()
            )
        });
        return Ok(None);
    }
    let params = DirectionParams {
        w_ih: &w.w_ih,
        w_hh: &w.w_hh,
        b_ih: Some(&w.b_ih),
        b_hh: Some(&w.b_hh),
        peephole: w.peephole.as_ref(),
    };
    let h0 = initial.map(|s| &s.h);
    let c0 = initial.and_then(|s| s.c.as_ref());
    let (output, h, c) = lstm_direction_variant(variant, &params, x, h0, c0, lengths.unwrap_or(&[]), reverse)?;
    Ok(Some(DirectionOutput { output, final_state: LstmState { h, c: Some(c) }, trace: None }))
}

/// Both directions of a bidirectional layer through the two-direction fused op, under the
/// same conditions as `try_run_direction`; returns the concatenated output (batch, time,
/// 2·hidden) and the forward and backward final states. `None`: use the per-direction path.
#[allow(clippy::too_many_arguments)]
pub fn try_run_bidirectional(
    cfg: &LstmConfig,
    w: [&DirectionWeights; 2],
    x: &Tensor,
    lengths: Option<&[usize]>,
    initial: [Option<&LstmState>; 2],
    trace: bool,
) -> Result<Option<(Tensor, [LstmState; 2])>> {
    if !cfg.fused || trace || cfg.cell != CellKind::Lstm {
        return Ok(None);
    }
    let variant = FusedVariant::from_name(cfg.variant.name()).expect("every LSTM variant has a fused spec");
    if !supports(x.device(), x.dtype(), variant) {
        return Ok(None);
    }
    let params = w.map(|w| DirectionParams {
        w_ih: &w.w_ih,
        w_hh: &w.w_hh,
        b_ih: Some(&w.b_ih),
        b_hh: Some(&w.b_hh),
        peephole: w.peephole.as_ref(),
    });
    let init = initial.map(|s| (s.map(|s| &s.h), s.and_then(|s| s.c.as_ref())));
    let (out, [(h0, c0), (h1, c1)]) =
        lstm_bidirectional_variant(variant, [&params[0], &params[1]], x, init, lengths.unwrap_or(&[]))?;
    Ok(Some((out, [LstmState { h: h0, c: Some(c0) }, LstmState { h: h1, c: Some(c1) }])))
}
