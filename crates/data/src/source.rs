//! Where files come from: a Hugging Face hub repo (through `hf-hub`'s blocking client,
//! cache first) or a local folder.
//!
//! hf-hub 0.4 reads `HF_HOME` and `HF_ENDPOINT` but not `HF_HUB_OFFLINE` or `HF_HUB_CACHE`,
//! so [`HubOptions::from_env`] resolves them the way the Python client does, and offline
//! lookups go through `Cache::repo(..).get(..)` only, never the network.

use crate::config::DataConfig;
use crate::error::{Error, Result};
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

/// How to reach the hub: where its cache lives and whether the network may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub cache folder (`$HF_HOME/hub`), holding `datasets--owner--name/...`.
    pub cache_dir: PathBuf,
    /// Only look in the cache (HF_HUB_OFFLINE).
    pub offline: bool,
    /// Hub endpoint (HF_ENDPOINT); `None` = <https://huggingface.co>.
    pub endpoint: Option<String>,
}

impl HubOptions {
    /// Reads the environment like `huggingface_hub` does: the cache is `HF_HUB_CACHE`, else
    /// `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`;
    /// `HF_HUB_OFFLINE` = 1/true/yes/on (any case) turns the network off; `HF_ENDPOINT`
    /// replaces the endpoint.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let cache_dir = if let Some(c) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
            PathBuf::from(c)
        } else if let Some(home) = var("HF_HOME") {
            PathBuf::from(home).join("hub")
        } else if let Some(xdg) = var("XDG_CACHE_HOME") {
            PathBuf::from(xdg).join("huggingface").join("hub")
        } else {
            let home = var("HOME").or_else(|| var("USERPROFILE")).unwrap_or_else(|| ".".into());
            PathBuf::from(home).join(".cache").join("huggingface").join("hub")
        };
        let offline = std::env::var("HF_HUB_OFFLINE").map(|v| is_truthy(&v)).unwrap_or(false);
        let endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty());
        Self { cache_dir, offline, endpoint }
    }

    /// Offline use of the cache under `hf_home` (what `HF_HOME=hf_home HF_HUB_OFFLINE=1` gives).
    pub fn offline_at(hf_home: impl AsRef<Path>) -> Self {
        Self { cache_dir: hf_home.as_ref().join("hub"), offline: true, endpoint: None }
    }
}

fn is_truthy(v: &str) -> bool {
    matches!(v.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE")
}

/// Hub repo kinds we fetch from: datasets for corpora, models for pretrained tokenizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A dataset repo (cached under `datasets--owner--name`): `data.hub`.
    Dataset,
    /// A model repo (cached under `models--owner--name`): `tokenizer.hub`.
    Model,
}

/// A place files are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A hub repo "owner/name" at a revision (default "main").
    Hub {
        /// The repo id, `owner/name`.
        repo: String,
        /// A branch, tag or 40-hex commit (`revision` in the config); `None` = `main`.
        revision: Option<String>,
        /// Dataset or model repo.
        kind: RepoKind,
    },
    /// A local folder.
    Dir(PathBuf),
}

impl Source {
    /// Local path of `file`: the folder's copy, or the hub cache's copy (downloading it first
    /// when online and not cached).
    ///
    /// Errors: [`Error::MissingFile`] when the folder lacks `file` (the hint says whether the
    /// folder itself exists), [`Error::NotCached`] when offline and the cache has no copy,
    /// [`Error::Hub`] when the download fails.
    pub fn fetch(&self, file: &str, opts: &HubOptions) -> Result<PathBuf> {
        match self {
            Source::Dir(dir) => {
                let path = dir.join(file);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(Error::MissingFile {
                        path,
                        hint: Some(if dir.is_dir() {
                            "the folder exists but has no such file; per-split names are set with \
                             train_file / validation_file / test_file"
                                .into()
                        } else {
                            "the folder named by `dir` does not exist".into()
                        }),
                    })
                }
            }
            Source::Hub { repo, revision, kind } => {
                fetch_hub(repo, revision.as_deref().unwrap_or("main"), *kind, file, opts)
            }
        }
    }

    /// A short description for messages and run summaries.
    pub fn describe(&self) -> String {
        match self {
            Source::Hub { repo, revision, .. } => {
                format!("hub:{repo}@{}", revision.as_deref().unwrap_or("main"))
            }
            Source::Dir(d) => format!("dir:{}", d.display()),
        }
    }
}

/// Where `cfg` reads from: `dir`, `hub`, or the corpus' default hub repo.
pub fn source_of(cfg: &DataConfig) -> Option<Source> {
    if let Some(d) = &cfg.dir {
        return Some(Source::Dir(d.clone()));
    }
    let repo = cfg.hub.clone().or_else(|| cfg.corpus.default_hub().map(String::from))?;
    Some(Source::Hub { repo, revision: cfg.revision.clone(), kind: RepoKind::Dataset })
}

fn fetch_hub(repo: &str, revision: &str, kind: RepoKind, file: &str, opts: &HubOptions) -> Result<PathBuf> {
    let repo_type = match kind {
        RepoKind::Dataset => RepoType::Dataset,
        RepoKind::Model => RepoType::Model,
    };
    let hub_repo = Repo::with_revision(repo.to_string(), repo_type, revision.to_string());
    if let Some(p) = cached(&opts.cache_dir, &hub_repo, repo_type, repo, revision, file) {
        return Ok(p);
    }
    if opts.offline {
        return Err(Error::NotCached {
            repo: repo.into(),
            revision: revision.into(),
            file: file.into(),
            cache: opts.cache_dir.clone(),
        });
    }
    let hub_err = |msg: String| Error::Hub { repo: repo.into(), revision: revision.into(), file: file.into(), msg };
    let mut builder =
        hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(opts.cache_dir.clone())).with_progress(false);
    if let Some(e) = &opts.endpoint {
        builder = builder.with_endpoint(e.clone());
    }
    let api = builder.build().map_err(|e| hub_err(e.to_string()))?;
    api.repo(hub_repo).get(file).map_err(|e| hub_err(e.to_string()))
}

/// The cache's copy: `refs/<revision>` names the snapshot. A revision that is itself a
/// commit hash has no ref file, so its snapshot folder is looked up directly (as the
/// Python client does).
fn cached(
    cache_dir: &Path,
    hub_repo: &Repo,
    repo_type: RepoType,
    repo: &str,
    revision: &str,
    file: &str,
) -> Option<PathBuf> {
    if let Some(p) = Cache::new(cache_dir.to_path_buf()).repo(hub_repo.clone()).get(file) {
        return Some(p);
    }
    let prefix = match repo_type {
        RepoType::Dataset => "datasets",
        RepoType::Model => "models",
        RepoType::Space => "spaces",
    };
    let repo_dir = cache_dir.join(format!("{prefix}--{}", repo.replace('/', "--")));
    // A ref file written with a trailing newline (by hand or another tool) defeats hf-hub's
    // exact read; trimming is what the Python client effectively tolerates.
    let snapshot = match std::fs::read_to_string(repo_dir.join("refs").join(revision)) {
        Ok(hash) => hash.trim().to_string(),
        Err(_) if revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()) => revision.to_string(),
        Err(_) => return None,
    };
    let p = repo_dir.join("snapshots").join(snapshot).join(file);
    p.is_file().then_some(p)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds `<hf_home>/hub/datasets--owner--name/{refs/<rev_name>, snapshots/<hash>/<file>}`.
    pub(crate) fn make_cache(hf_home: &Path, repo: &str, files: &[(&str, &str)]) {
        let repo_dir = hf_home.join("hub").join(format!("datasets--{}", repo.replace('/', "--")));
        let hash = "0123456789abcdef0123456789abcdef01234567";
        std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
        std::fs::write(repo_dir.join("refs/main"), hash).unwrap();
        let snap = repo_dir.join("snapshots").join(hash);
        std::fs::create_dir_all(&snap).unwrap();
        for (name, text) in files {
            std::fs::write(snap.join(name), text).unwrap();
        }
    }

    fn hub(repo: &str, revision: Option<&str>) -> Source {
        Source::Hub { repo: repo.into(), revision: revision.map(Into::into), kind: RepoKind::Dataset }
    }

    #[test]
    fn hub_cache_hit_offline_and_by_commit() {
        let tmp = tempfile::tempdir().unwrap();
        make_cache(tmp.path(), "me/tiny", &[("train.jsonl", "x")]);
        let opts = HubOptions::offline_at(tmp.path());
        let p = hub("me/tiny", None).fetch("train.jsonl", &opts).unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), "x");
        let p = hub("me/tiny", Some("0123456789abcdef0123456789abcdef01234567")).fetch("train.jsonl", &opts).unwrap();
        assert!(p.ends_with("train.jsonl"));
    }

    #[test]
    fn offline_not_cached_names_repo_file_and_dir() {
        let tmp = tempfile::tempdir().unwrap();
        make_cache(tmp.path(), "me/tiny", &[("train.jsonl", "x")]);
        let opts = HubOptions::offline_at(tmp.path());
        for (src, file) in [
            (hub("me/tiny", None), "dev.jsonl"),
            (hub("me/other", None), "train.jsonl"),
            (hub("me/tiny", Some("v2")), "train.jsonl"),
        ] {
            let e = src.fetch(file, &opts).unwrap_err();
            assert!(matches!(e, Error::NotCached { .. }), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(file) && msg.contains("me/") && msg.contains("dir = "), "{msg}");
        }
    }

    #[test]
    fn online_uses_cache_first_and_reports_network_errors() {
        let tmp = tempfile::tempdir().unwrap();
        make_cache(tmp.path(), "me/tiny", &[("train.jsonl", "x")]);
        // An endpoint nothing listens on: a cache hit must not touch it, a miss must fail cleanly.
        let opts = HubOptions {
            cache_dir: tmp.path().join("hub"),
            offline: false,
            endpoint: Some("http://127.0.0.1:9".into()),
        };
        hub("me/tiny", None).fetch("train.jsonl", &opts).unwrap();
        let e = hub("me/tiny", None).fetch("nope.jsonl", &opts).unwrap_err();
        assert!(matches!(e, Error::Hub { .. }), "{e}");
        assert!(e.to_string().contains("me/tiny") && e.to_string().contains("nope.jsonl"));
    }

    #[test]
    fn dir_source() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.jsonl"), "x").unwrap();
        let src = Source::Dir(tmp.path().into());
        let opts = HubOptions::offline_at(tmp.path());
        assert!(src.fetch("a.jsonl", &opts).is_ok());
        let e = src.fetch("b.jsonl", &opts).unwrap_err();
        assert!(matches!(e, Error::MissingFile { .. }));
        assert!(e.to_string().contains("b.jsonl"));
    }

    #[test]
    fn truthy_values() {
        for v in ["1", "true", "YES", "On"] {
            assert!(is_truthy(v));
        }
        for v in ["0", "", "false", "no"] {
            assert!(!is_truthy(v));
        }
    }
}
