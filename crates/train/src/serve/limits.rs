//! What one request may ask for. Refused before any work is queued, each with its own status:
//! an oversized body 413, too many texts or tokens 422, a request that outlives its timeout 504.

use std::time::Duration;

/// Request limits of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest JSON body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest WAV body (audio runs), in bytes.
    pub max_audio_bytes: usize,
    /// Most texts (or series) in one request (422 beyond).
    pub max_texts: usize,
    /// Most characters in one text (422 beyond): refused before tokenizing.
    pub max_chars: usize,
    /// Most tokens per text when the run sets no `data.max_len` (422 beyond). A run with
    /// `data.max_len` truncates to it instead, exactly as `train predict` does.
    pub max_tokens: usize,
    /// Longest wait for a result (504 beyond); the batch itself still completes.
    pub timeout: Duration,
    /// Largest beam width for translation.
    pub max_beam: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_audio_bytes: 16 << 20,
            max_texts: 256,
            max_chars: 20_000,
            max_tokens: 2048,
            timeout: Duration::from_secs(60),
            max_beam: 16,
        }
    }
}
