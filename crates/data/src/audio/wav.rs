//! WAV decoding: mono 16-bit integer PCM only, everything else is a typed error naming the file.

use super::AudioError;
use std::path::Path;

/// A decoded mono 16-bit WAV.
#[derive(Debug, Clone, PartialEq)]
pub struct Wav {
    /// Samples per second, from the header.
    pub sample_rate: u32,
    /// The samples in file order (never empty).
    pub samples: Vec<i16>,
}

/// Reads a mono 16-bit integer PCM WAV file.
///
/// Errors: [`AudioError::Wav`] when the file is missing or its header is not WAV,
/// [`AudioError::UnsupportedFormat`] for other channel counts / sample formats,
/// [`AudioError::Empty`] for zero samples and [`AudioError::Truncated`] when the data chunk ends
/// before the length its header declares.
pub fn read_wav(path: &Path) -> Result<Wav, AudioError> {
    let reader = hound::WavReader::open(path).map_err(|source| AudioError::Wav { path: path.into(), source })?;
    wav_of(reader, path)
}

/// [`read_wav`] on a WAV file already in memory (a request to `train serve`); errors name
/// `name` where they would name the file.
pub fn parse_wav(bytes: &[u8], name: &Path) -> Result<Wav, AudioError> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|source| AudioError::Wav { path: name.into(), source })?;
    wav_of(reader, name)
}

fn wav_of<R: std::io::Read>(mut reader: hound::WavReader<R>, path: &Path) -> Result<Wav, AudioError> {
    let wav_err = |source| AudioError::Wav { path: path.to_path_buf(), source };
    let spec = reader.spec();
    if spec.channels != 1 || spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        return Err(AudioError::UnsupportedFormat {
            path: path.to_path_buf(),
            channels: spec.channels,
            bits: spec.bits_per_sample,
            format: match spec.sample_format {
                hound::SampleFormat::Int => "integer PCM",
                hound::SampleFormat::Float => "float",
            },
        });
    }
    let expected = reader.len() as u64;
    if expected == 0 {
        return Err(AudioError::Empty { path: path.to_path_buf() });
    }
    let mut samples = Vec::with_capacity(expected as usize);
    for s in reader.samples::<i16>() {
        match s {
            Ok(v) => samples.push(v),
            // hound reads the data chunk sample by sample; running out of bytes before the
            // header's length is the signature of a cut-off file (hound 3.5 reports the short
            // read as an `Other` io error with this message, std as `UnexpectedEof`).
            Err(hound::Error::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof
                    || e.to_string().contains("Failed to read enough bytes") =>
            {
                return Err(AudioError::Truncated { path: path.to_path_buf(), expected, got: samples.len() as u64 })
            }
            Err(e) => return Err(wav_err(e)),
        }
    }
    Ok(Wav { sample_rate: spec.sample_rate, samples })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, channels: u16, bits: u16, format: hound::SampleFormat, n: usize) {
        let spec = hound::WavSpec { channels, sample_rate: 8000, bits_per_sample: bits, sample_format: format };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..n * channels as usize {
            match (format, bits) {
                (hound::SampleFormat::Float, _) => w.write_sample(i as f32 * 1e-3).unwrap(),
                (_, 16) => w.write_sample((i as i16).wrapping_mul(37)).unwrap(),
                _ => w.write_sample(i as i32).unwrap(),
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn reads_mono_16_bit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ok.wav");
        write(&p, 1, 16, hound::SampleFormat::Int, 100);
        let wav = read_wav(&p).unwrap();
        assert_eq!(wav.sample_rate, 8000);
        assert_eq!(wav.samples.len(), 100);
        assert_eq!(wav.samples[3], 3 * 37);
    }

    #[test]
    fn rejects_other_formats_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for (name, ch, bits, fmt) in [
            ("stereo.wav", 2, 16, hound::SampleFormat::Int),
            ("24bit.wav", 1, 24, hound::SampleFormat::Int),
            ("float.wav", 1, 32, hound::SampleFormat::Float),
        ] {
            let p = dir.path().join(name);
            write(&p, ch, bits, fmt, 10);
            let err = read_wav(&p).unwrap_err();
            assert!(matches!(err, AudioError::UnsupportedFormat { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(name) && msg.contains("mono 16-bit"), "{msg}");
        }
    }

    #[test]
    fn empty_truncated_and_garbage_files() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.wav");
        write(&empty, 1, 16, hound::SampleFormat::Int, 0);
        let err = read_wav(&empty).unwrap_err();
        assert!(matches!(err, AudioError::Empty { .. }), "{err}");
        assert!(err.to_string().contains("empty.wav"));

        let cut = dir.path().join("cut.wav");
        write(&cut, 1, 16, hound::SampleFormat::Int, 100);
        let bytes = std::fs::read(&cut).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() - 51]).unwrap(); // 25.5 samples short
        let err = read_wav(&cut).unwrap_err();
        match &err {
            AudioError::Truncated { expected, got, .. } => assert_eq!((*expected, *got), (100, 74)),
            _ => panic!("expected Truncated, got {err}"),
        }
        assert!(err.to_string().contains("cut.wav"));

        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"this is not a RIFF file at all").unwrap();
        let err = read_wav(&junk).unwrap_err();
        assert!(matches!(err, AudioError::Wav { .. }), "{err}");
        assert!(err.to_string().contains("junk.wav"));

        let missing = dir.path().join("missing.wav");
        assert!(read_wav(&missing).unwrap_err().to_string().contains("missing.wav"));
    }
}
