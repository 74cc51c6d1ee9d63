//! Reading a config: the file, `--set` overrides, serde, validation, and error messages that
//! name the file, the line and the key (with a "did you mean" for a misspelt one).

use super::Config;
use crate::overrides::{self, Override};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// A config plus where it came from, for error messages.
pub struct Loaded {
    /// The resolved, validated config.
    pub config: Config,
    /// The file it was read from.
    pub source: PathBuf,
}

/// Reads, overrides, deserialises and validates a config file.
pub fn load(path: &Path, sets: &[Override]) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    let config = parse(&text, path, sets)?;
    Ok(Loaded { config, source: path.to_path_buf() })
}

/// [`load`] on a text already read; `path` names it in error messages.
pub fn parse(text: &str, path: &Path, sets: &[Override]) -> Result<Config> {
    let file = path.display();
    // First pass on the text itself, so syntax and unknown-key errors carry line numbers.
    if let Err(e) = toml::from_str::<Config>(text) {
        return Err(anyhow!("{file}:{}", describe(&e, text)));
    }
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| anyhow!("{file}:{}", describe(&e, text)))?;
    overrides::apply(&mut table, sets)?;
    let config: Config = table.clone().try_into().map_err(|e: toml::de::Error| {
        let keys: Vec<String> = sets.iter().map(|s| s.raw.clone()).collect();
        anyhow!("{file} with --set {}: {}", keys.join(" --set "), describe(&e, ""))
    })?;
    config.validate().map_err(|e| {
        let line =
            e.key.as_deref().and_then(|k| if sets.iter().any(|s| s.key() == k) { None } else { locate(text, k) });
        let from_set = e.key.as_deref().is_some_and(|k| sets.iter().any(|s| s.key() == k));
        match (line, &e.key) {
            (Some(l), Some(k)) => anyhow!("{file}:{l}: key `{k}`: {}", e.message),
            (None, Some(k)) if from_set => anyhow!("--set {k}: {}", e.message),
            (None, Some(k)) => anyhow!("{file}: key `{k}`: {}", e.message),
            _ => anyhow!("{file}: {}", e.message),
        }
    })?;
    Ok(config)
}

/// The config a run directory recorded (`<run>/config.toml`), for the subcommands that read
/// a finished or interrupted run.
pub fn load_recorded(run_dir: &Path) -> Result<Config> {
    let path = run_dir.join("config.toml");
    if !path.exists() {
        bail!("{} is not a run directory: it has no config.toml", run_dir.display());
    }
    Ok(load(&path, &[])?.config)
}

/// Turns a toml error into "LINE: message (did you mean ...)". `text` may be empty when the
/// error came from an in-memory table.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let mut msg = e.message().trim().to_string();
    if let Some(hint) = did_you_mean(&msg) {
        msg.push_str(&format!(" (did you mean `{hint}`?)"));
    }
    match e.span() {
        Some(span) if !text.is_empty() => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{line}: {msg}")
        }
        _ => format!(" {msg}"),
    }
}

/// serde's unknown-field message is "unknown field `x`, expected one of `a`, `b`" (or
/// "expected `a`"); pick the closest candidate by edit distance.
fn did_you_mean(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `").or_else(|| msg.strip_prefix("unknown variant `"))?;
    let (name, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3))
        .min()
        .map(|(_, c)| c.to_string())
}

/// Finds the 1-based line where `section.key` is set in a TOML text.
pub fn locate(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(h) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            current = h.trim().to_string();
            continue;
        }
        if current == section {
            if let Some((k, _)) = l.split_once('=') {
                if k.trim() == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}
