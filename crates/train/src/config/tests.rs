//! Loading, overrides, error locations and validation of the config.

use super::*;
use crate::overrides::Override;
use std::path::Path;

fn err(text: &str, sets: &[&str]) -> String {
    let sets: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
    format!("{:#}", parse(text, Path::new("c.toml"), &sets).unwrap_err())
}

#[test]
fn defaults_parse_and_validate() {
    let c = parse("", Path::new("c.toml"), &[]).unwrap();
    assert_eq!(c.train.batch_size, 32);
}

#[test]
fn unknown_key_names_file_line_and_hint() {
    let e = err("[model]\nhidden = 3\nhiden = 4\n", &[]);
    assert!(e.starts_with("c.toml:3:"), "{e}");
    assert!(e.contains("did you mean `hidden`"), "{e}");
}

#[test]
fn unknown_section_is_refused() {
    let e = err("[modle]\nhidden = 3\n", &[]);
    assert!(e.contains("did you mean `model`"), "{e}");
}

#[test]
fn wrong_type_names_line() {
    let e = err("[train]\nepochs = \"ten\"\n", &[]);
    assert!(e.starts_with("c.toml:2:"), "{e}");
}

#[test]
fn range_error_names_line_and_key() {
    let e = err("[model]\n\ndropout = 1.5\n", &[]);
    assert!(e.starts_with("c.toml:3: key `model.dropout`"), "{e}");
}

#[test]
fn range_error_from_set_names_the_flag() {
    let e = err("", &["train.lr=-1"]);
    assert!(e.starts_with("--set train.lr"), "{e}");
}

#[test]
fn set_overrides_and_unknown_set_key() {
    let sets = vec![Override::parse("train.epochs=3").unwrap(), Override::parse("model.variant=nog").unwrap()];
    let c = parse("[train]\nepochs = 9\n", Path::new("c.toml"), &sets).unwrap();
    assert_eq!(c.train.epochs, 3);
    assert_eq!(c.model.variant, model::config::Variant::Nog);
    let e = err("", &["model.hiden=3"]);
    assert!(e.contains("did you mean `hidden`"), "{e}");
}

#[test]
fn data_section_errors_are_located() {
    let e = err("[data]\ncorpus = \"ett\"\n\nhorizon = 0\n", &[]);
    assert!(e.starts_with("c.toml:4: key `data.horizon`"), "{e}");
    let e = err("[tokenizer]\nvocab_size = 2\n", &[]);
    assert!(e.starts_with("c.toml:2: key `tokenizer.vocab_size`"), "{e}");
}

#[test]
fn weight_decay_needs_decoupled_optimizer() {
    let e = err("[train]\noptimizer = \"adam\"\nweight_decay = 0.01\n", &[]);
    assert!(e.contains("train.weight_decay"), "{e}");
}

#[test]
fn resolved_config_round_trips() {
    let c = parse("[train]\nepochs = 2\n", Path::new("c.toml"), &[]).unwrap();
    let again = parse(&c.to_toml().unwrap(), Path::new("r.toml"), &[]).unwrap();
    assert_eq!(again.to_toml().unwrap(), c.to_toml().unwrap());
}

// The [audio] section.

fn parse_audio(extra: &str) -> Result<Config> {
    let text = format!("task = \"audio\"\n[data]\ncorpus = \"fsdd\"\ndir = \"rec\"\n{extra}");
    parse(&text, Path::new("a.toml"), &[])
}

#[test]
fn speaker_split_round_trips_through_the_resolved_config() {
    let c = parse_audio("[audio]\nsplit = { speaker = \"theo\" }\n[audio.mfcc]\ndelta_order = 2\n").unwrap();
    assert_eq!(c.audio.split, data::audio::FsddSplit::Speaker("theo".into()));
    let again = parse(&c.to_toml().unwrap(), Path::new("r.toml"), &[]).unwrap();
    assert_eq!(again.audio, c.audio);
    let sets = [Override::parse("audio.split={speaker=\"lucas\"}").unwrap()];
    let c = parse("task = \"audio\"\n[data]\ncorpus = \"fsdd\"\ndir = \"rec\"\n", Path::new("a.toml"), &sets).unwrap();
    assert_eq!(c.audio.split, data::audio::FsddSplit::Speaker("lucas".into()));
    // Other tasks leave the section out of their resolved config.
    assert!(!Config::default().to_toml().unwrap().contains("[audio"));
}

#[test]
fn audio_errors_name_the_key() {
    let e = format!("{:#}", parse_audio("[audio]\nval_fraction = 1.0\n").unwrap_err());
    assert!(e.starts_with("a.toml:6: key `audio.val_fraction`"), "{e}");
    let e = format!("{:#}", parse_audio("[audio.mfcc]\nnum_filters = 10\nnum_ceps = 13\n").unwrap_err());
    assert!(e.starts_with("a.toml:7: key `audio.mfcc.num_ceps`"), "{e}");
    let e = format!("{:#}", parse_audio("[data]\n").unwrap_err());
    assert!(e.contains("duplicate") || e.contains("data"), "{e}");
    let e = format!("{:#}", parse("task = \"audio\"\n", Path::new("a.toml"), &[]).unwrap_err());
    assert!(e.contains("key `data.corpus`"), "{e}");
    let e = format!("{:#}", parse("[data]\ncorpus = \"fsdd\"\ndir = \"rec\"\n", Path::new("a.toml"), &[]).unwrap_err());
    assert!(e.starts_with("a.toml:1: key `task`") || e.contains("key `task`"), "{e}");
    let e = format!("{:#}", parse("[audio]\nval_fraction = 0.2\n", Path::new("a.toml"), &[]).unwrap_err());
    assert!(e.contains("key `audio`"), "{e}");
    let e = format!("{:#}", parse_audio("[audio]\nsplit = \"speakers\"\n").unwrap_err());
    assert!(e.starts_with("a.toml:6:"), "{e}");
}

#[test]
fn own_audio_clips_keys() {
    let clips = |extra: &str| {
        let text = format!(
            "task = \"audio\"\n[data]\ncorpus = \"audio\"\ndir = \"clips\"\nvalidation_split = 0.1\n\
             test_split = 0.1\n{extra}"
        );
        parse(&text, Path::new("a.toml"), &[])
    };
    let c = clips("[audio]\nsample_rate = 16000\nstereo = \"downmix\"\n").unwrap();
    assert_eq!((c.audio.sample_rate, c.audio.stereo), (Some(16_000), data::audio::an4::Stereo::Downmix));
    let again = parse(&c.to_toml().unwrap(), Path::new("r.toml"), &[]).unwrap();
    assert_eq!(again.audio, c.audio);
    // Unset, the new keys stay out of a resolved config (FSDD's reads as before).
    let fsdd = parse_audio("[audio.mfcc]\ndelta_order = 2\n").unwrap().to_toml().unwrap();
    assert!(!fsdd.contains("sample_rate") && !fsdd.contains("stereo"), "{fsdd}");
    for (text, key) in [
        (clips("[audio]\nsample_rate = 100\n").unwrap_err(), "audio.sample_rate"),
        (clips("[audio]\nsplit = { speaker = \"theo\" }\n").unwrap_err(), "audio.split"),
        (parse_audio("[audio]\nsample_rate = 16000\n").unwrap_err(), "audio.sample_rate"),
        (parse_audio("[audio]\nstereo = \"downmix\"\n").unwrap_err(), "audio.stereo"),
    ] {
        let e = format!("{text:#}");
        assert!(e.contains(&format!("key `{key}")) || e.contains(key), "{e} should name {key}");
    }
    let e = format!(
        "{:#}",
        parse(
            "task = \"classify\"\n[data]\ncorpus = \"audio\"\ndir = \"c\"\nvalidation_split = 0.1\ntest_split = 0.1\n",
            Path::new("a.toml"),
            &[]
        )
        .unwrap_err()
    );
    assert!(e.contains("key `task`") && e.contains("task = \"audio\""), "{e}");
}

// The [translate] section.

#[test]
fn translate_defaults_and_errors() {
    let c = TranslateConfig::default();
    assert!(c.validate().is_ok() && c.is_default());
    let e = TranslateConfig { beam: 0, ..c.clone() }.validate().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("translate.beam"));
    let e = TranslateConfig { label_smoothing: 1.0, ..c.clone() }.validate().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("translate.label_smoothing"));
    let t: TranslateConfig = toml::from_str("attention = \"bahdanau\"\nbeam = 3\n").unwrap();
    assert_eq!((t.attention, t.beam), (model::seq2seq::AttentionKind::Bahdanau, 3));
    assert!(toml::from_str::<TranslateConfig>("beams = 3\n").is_err());
}

#[test]
fn did_you_mean_picks_the_closest_candidate() {
    let e = format!("{:#}", parse("[train]\noptimiser = \"adam\"\n", Path::new("c.toml"), &[]).unwrap_err());
    assert!(e.contains("did you mean `optimizer`"), "{e}");
    let e = format!("{:#}", parse("[train]\noptimizer = \"adamm\"\n", Path::new("c.toml"), &[]).unwrap_err());
    assert!(e.contains("did you mean `adam`"), "{e}");
    let e = format!("{:#}", parse("[train]\nzzzzzzzzzzzz = 1\n", Path::new("c.toml"), &[]).unwrap_err());
    assert!(!e.contains("did you mean"), "{e}");
}

#[test]
fn toml_values_of_the_renamed_enums_are_unchanged() {
    let c =
        parse("task = \"copy\"\n[data]\ncorpus = \"copy\"\n[train]\noptimizer = \"adamw\"\n", Path::new("c.toml"), &[])
            .unwrap();
    assert_eq!((c.task, c.train.optimizer), (TaskKind::Copy, OptimizerKind::Adamw));
    assert!(c.to_toml().unwrap().starts_with("task = \"copy\""));
    assert_eq!(TaskKind::Translate.name(), "translate");
}

#[test]
fn device_error_names_the_key() {
    let run = RunConfig { device: "tpu".into(), ..RunConfig::default() };
    assert!(format!("{:#}", run.device().unwrap_err()).contains("run.device"));
    assert!(RunConfig::default().device().unwrap().is_cpu());
}
