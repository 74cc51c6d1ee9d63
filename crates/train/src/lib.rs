//! sluice training library.
