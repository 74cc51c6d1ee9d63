//! sluice model crate: the LSTM built from candle tensor ops.
