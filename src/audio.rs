//! The audio of voice messages and greetings: reading WAV files, G.711, resampling to the
//! telephone rate, silence detection, and writing WAV files.
//!
//! Everything stored is [`Audio`]: mono 16-bit PCM at [`SAMPLE_RATE`] (8 kHz), the rate the
//! call side sends as G.711. [`decode_wav`] accepts:
//!
//! - PCM (format tag 1, or WAVE_FORMAT_EXTENSIBLE with the PCM subformat), 8-bit unsigned or
//!   16-bit signed, read with `hound`;
//! - G.711 A-law (tag 6) and µ-law (tag 7), 8 bits a sample, decoded with the
//!   `audio-codec-algorithms` crate ([`alaw_to_linear`], [`ulaw_to_linear`]; hound does not
//!   read these tags);
//!
//! at any sample rate from [`MIN_INPUT_RATE`] to [`MAX_INPUT_RATE`] and with any number of
//! channels (mixed down to mono). Other rates are resampled with `rubato`'s sinc resampler.
//! Anything else (24- or 32-bit PCM, floating point, ADPCM, a file that is not a WAV) is
//! refused with an [`AudioError`] that says what was found, and so are files over
//! [`MAX_WAV_BYTES`], audio over [`MAX_SECONDS`], empty audio and audio that is silence only
//! ([`is_silent`]).

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

/// The sample rate of stored audio: 8 kHz, the G.711 rate.
pub const SAMPLE_RATE: u32 = 8000;

/// The largest WAV file accepted: 32 MiB (over six minutes of 44.1 kHz 16-bit stereo, more
/// than half an hour of 8 kHz 16-bit mono).
pub const MAX_WAV_BYTES: u64 = 32 * 1024 * 1024;

/// The longest audio accepted: 10 minutes (Exchange's longest voice message by default is 5
/// minutes; greetings are shorter).
pub const MAX_SECONDS: u32 = 600;

/// The lowest input sample rate accepted.
pub const MIN_INPUT_RATE: u32 = 4000;

/// The highest input sample rate accepted.
pub const MAX_INPUT_RATE: u32 = 192_000;

/// The level under which audio counts as silence: every 20 ms frame's RMS under this (in
/// 16-bit sample units, about -50 dBFS).
pub const SILENCE_RMS: f64 = 100.0;

/// Why a WAV file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_WAV_BYTES`].
    #[error("the WAV file is {size} bytes; the limit is {limit} bytes (32 MiB)")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file is not a RIFF/WAVE file, or its structure is broken.
    #[error("not a valid WAV file: {0}")]
    NotWav(String),
    /// A WAV file in a format that is not accepted.
    #[error(
        "unsupported audio format: {0} (accepted: PCM 8- or 16-bit, G.711 A-law or µ-law, \
         mono or stereo, 4 to 192 kHz)"
    )]
    Unsupported(String),
    /// The file holds no samples.
    #[error("the WAV file holds no audio")]
    Empty,
    /// The audio is silence only.
    #[error("the audio is silence only")]
    Silent,
    /// The audio is longer than [`MAX_SECONDS`].
    #[error("the audio is {seconds} seconds long; the limit is {limit} seconds")]
    TooLong {
        /// Its length, rounded up.
        seconds: u64,
        /// The limit.
        limit: u32,
    },
    /// Resampling failed.
    #[error("cannot resample the audio")]
    Resample(String),
    /// Writing a WAV file failed.
    #[error("cannot write the WAV data")]
    Write(#[source] hound::Error),
}

/// Mono 16-bit PCM at [`SAMPLE_RATE`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audio {
    samples: Vec<i16>,
}

impl Audio {
    /// Audio of these 8 kHz samples.
    pub fn from_samples(samples: Vec<i16>) -> Audio {
        Audio { samples }
    }

    /// The samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// The length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(SAMPLE_RATE)
    }

    /// The length in whole seconds, rounded to the nearest and at least 1 for any audio.
    pub fn duration_secs(&self) -> u64 {
        if self.samples.is_empty() {
            0
        } else {
            ((self.duration_ms() + 500) / 1000).max(1)
        }
    }

    /// The samples as little-endian bytes (the stored form).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    /// Audio from little-endian 16-bit bytes (the stored form); an odd last byte is dropped.
    pub fn from_le_bytes(bytes: &[u8]) -> Audio {
        Audio {
            samples: bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect(),
        }
    }

    /// A WAV file of this audio: PCM, 16-bit, mono, 8 kHz.
    pub fn to_wav(&self) -> Result<Vec<u8>, AudioError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Cursor::new(Vec::with_capacity(44 + self.samples.len() * 2));
        let mut writer = hound::WavWriter::new(&mut out, spec).map_err(AudioError::Write)?;
        for &s in &self.samples {
            writer.write_sample(s).map_err(AudioError::Write)?;
        }
        writer.finalize().map_err(AudioError::Write)?;
        Ok(out.into_inner())
    }
}

/// Reads the WAV file at `path` (at most [`MAX_WAV_BYTES`]) and decodes it with
/// [`decode_wav`].
pub fn read_wav_file(path: &Path) -> Result<Audio, AudioError> {
    let read_error = |source| AudioError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    if size > MAX_WAV_BYTES {
        return Err(AudioError::TooLarge {
            size,
            limit: MAX_WAV_BYTES,
        });
    }
    let mut bytes = Vec::new();
    // The limit holds even if the file grows while it is read.
    file.take(MAX_WAV_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_WAV_BYTES {
        return Err(AudioError::TooLarge {
            size: bytes.len() as u64,
            limit: MAX_WAV_BYTES,
        });
    }
    decode_wav(&bytes)
}

/// The format chunk of a WAV file, as far as it matters here.
#[derive(Clone, Copy, Debug)]
struct Format {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
}

const TAG_PCM: u16 = 1;
const TAG_FLOAT: u16 = 3;
const TAG_ALAW: u16 = 6;
const TAG_MULAW: u16 = 7;
const TAG_EXTENSIBLE: u16 = 0xFFFE;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Finds the `fmt ` chunk and the `data` chunk's bytes of a RIFF/WAVE file.
fn chunks(bytes: &[u8]) -> Result<(Format, &[u8]), AudioError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(AudioError::NotWav("no RIFF/WAVE header".into()));
    }
    let mut at = 12;
    let mut format = None;
    let mut data = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = le32(bytes, at + 4) as usize;
        let body = at + 8;
        // A data chunk cut short (a recording that was not finished) is read as far as it goes.
        let end = body.saturating_add(len).min(bytes.len());
        match id {
            b"fmt " => {
                if end - body < 16 {
                    return Err(AudioError::NotWav("the fmt chunk is too short".into()));
                }
                let mut tag = le16(bytes, body);
                if tag == TAG_EXTENSIBLE && end - body >= 26 {
                    // WAVE_FORMAT_EXTENSIBLE: the subformat GUID starts with the format tag.
                    tag = le16(bytes, body + 24);
                }
                format = Some(Format {
                    tag,
                    channels: le16(bytes, body + 2),
                    rate: le32(bytes, body + 4),
                    bits: le16(bytes, body + 14),
                });
            }
            b"data" => {
                data = Some(&bytes[body..end]);
                break;
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body.saturating_add(len).saturating_add(len & 1);
    }
    let format = format.ok_or_else(|| AudioError::NotWav("no fmt chunk".into()))?;
    let data = data.ok_or_else(|| AudioError::NotWav("no data chunk".into()))?;
    Ok((format, data))
}

/// Decodes a WAV file (see the module docs) into 8 kHz mono audio; refuses empty, silent and
/// too long audio.
pub fn decode_wav(bytes: &[u8]) -> Result<Audio, AudioError> {
    let (format, data) = chunks(bytes)?;
    if format.channels == 0 {
        return Err(AudioError::NotWav("zero channels".into()));
    }
    if !(MIN_INPUT_RATE..=MAX_INPUT_RATE).contains(&format.rate) {
        return Err(AudioError::Unsupported(format!(
            "a sample rate of {} Hz",
            format.rate
        )));
    }
    // The length is known before decoding: refuse long audio without decoding it.
    let frame_bytes = u64::from(format.bits.div_ceil(8).max(1)) * u64::from(format.channels);
    let seconds = (data.len() as u64 / frame_bytes).div_ceil(u64::from(format.rate));
    if seconds > u64::from(MAX_SECONDS) {
        return Err(AudioError::TooLong {
            seconds,
            limit: MAX_SECONDS,
        });
    }
    let interleaved: Vec<f32> = match (format.tag, format.bits) {
        (TAG_ALAW, 8) => data.iter().map(|&b| f32::from(alaw_to_linear(b))).collect(),
        (TAG_MULAW, 8) => data.iter().map(|&b| f32::from(ulaw_to_linear(b))).collect(),
        (TAG_ALAW | TAG_MULAW, bits) => {
            return Err(AudioError::Unsupported(format!("{bits}-bit G.711")))
        }
        (TAG_PCM, 8 | 16) => read_pcm(bytes, data.len(), format)?,
        (TAG_PCM, bits) => return Err(AudioError::Unsupported(format!("{bits}-bit PCM"))),
        (TAG_FLOAT, bits) => {
            return Err(AudioError::Unsupported(format!(
                "{bits}-bit floating point"
            )))
        }
        (tag, _) => {
            return Err(AudioError::Unsupported(format!(
                "WAV format tag 0x{tag:04X}"
            )))
        }
    };
    let channels = usize::from(format.channels);
    let mono: Vec<f32> = interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    if mono.is_empty() {
        return Err(AudioError::Empty);
    }
    let seconds = (mono.len() as u64).div_ceil(u64::from(format.rate));
    if seconds > u64::from(MAX_SECONDS) {
        return Err(AudioError::TooLong {
            seconds,
            limit: MAX_SECONDS,
        });
    }
    let resampled = resample(&mono, format.rate)?;
    let audio = Audio::from_samples(resampled.iter().map(|&s| to_i16(s)).collect());
    if audio.samples.is_empty() {
        return Err(AudioError::Empty);
    }
    if is_silent(&audio.samples) {
        return Err(AudioError::Silent);
    }
    Ok(audio)
}

fn to_i16(s: f32) -> i16 {
    // `as` saturates; the clamp documents it.
    s.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

/// The PCM samples of a WAV file through hound, scaled to the 16-bit range.
/// `data_len` is the length of the data present (the header's may claim more).
fn read_pcm(bytes: &[u8], data_len: usize, format: Format) -> Result<Vec<f32>, AudioError> {
    let reader =
        hound::WavReader::new(Cursor::new(bytes)).map_err(|e| AudioError::NotWav(e.to_string()))?;
    let scale = if format.bits == 8 { 256.0 } else { 1.0 };
    let most = data_len / usize::from(format.bits / 8);
    let mut out = Vec::with_capacity((reader.len() as usize).min(most));
    for sample in reader.into_samples::<i16>() {
        match sample {
            Ok(s) => out.push(f32::from(s) * scale),
            // Every byte sequence is valid 8- or 16-bit PCM, so an error in the stream of
            // samples means that the data chunk is cut short: the audio ends there.
            Err(hound::Error::IoError(_) | hound::Error::FormatError(_)) => break,
            Err(e) => return Err(AudioError::NotWav(e.to_string())),
        }
    }
    Ok(out)
}

/// `samples` at `rate` resampled to [`SAMPLE_RATE`] (copied when the rate is that already).
pub fn resample(samples: &[f32], rate: u32) -> Result<Vec<f32>, AudioError> {
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::{
        Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType,
        WindowFunction,
    };
    if rate == SAMPLE_RATE || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut params = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2);
    params.interpolation = SincInterpolationType::Linear;
    params.oversampling_factor = 256;
    let ratio = f64::from(SAMPLE_RATE) / f64::from(rate);
    let resample_error = |e: &dyn std::fmt::Display| AudioError::Resample(e.to_string());
    let mut resampler = Async::<f32>::new_sinc(ratio, 1.0, &params, 1024, 1, FixedAsync::Input)
        .map_err(|e| resample_error(&e))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| resample_error(&e))?;
    let out = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| resample_error(&e))?;
    Ok(out.take_data())
}

/// Whether `samples` (8 kHz) are silence: no 20 ms frame has an RMS of [`SILENCE_RMS`] or
/// more. Empty audio is silent.
pub fn is_silent(samples: &[i16]) -> bool {
    let frame = (SAMPLE_RATE / 50) as usize;
    !samples.chunks(frame).any(|chunk| {
        let energy: f64 = chunk.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (energy / chunk.len() as f64).sqrt() >= SILENCE_RMS
    })
}

// G.711 (ITU-T G.711, as in the reference code of Sun's g711.c): 13-bit (A-law) and 14-bit
// (µ-law) segments, here scaled to 16-bit samples.

/// The 16-bit linear value of an A-law byte (ITU-T G.711).
pub fn alaw_to_linear(byte: u8) -> i16 {
    audio_codec_algorithms::decode_alaw(byte)
}

/// The A-law byte of a 16-bit linear value (ITU-T G.711).
pub fn linear_to_alaw(sample: i16) -> u8 {
    audio_codec_algorithms::encode_alaw(sample)
}

/// The 16-bit linear value of a µ-law byte (ITU-T G.711).
pub fn ulaw_to_linear(byte: u8) -> i16 {
    audio_codec_algorithms::decode_ulaw(byte)
}

/// The µ-law byte of a 16-bit linear value (ITU-T G.711).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    audio_codec_algorithms::encode_ulaw(sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tone(rate: u32, seconds: f32, amplitude: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| {
                amplitude * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin()
            })
            .collect()
    }

    fn wav(spec: hound::WavSpec, samples: &[i32]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    fn spec(rate: u32, bits: u16, channels: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    /// A G.711 WAV (`tag` 6 or 7) written by hand: hound does not write these.
    fn g711_wav(tag: u16, rate: u32, data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(4 + 26 + 8 + data.len() as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&18u32.to_le_bytes());
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&8u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    proptest! {
        #[test]
        fn alaw_round_trips_every_code(code: u8) {
            prop_assert_eq!(linear_to_alaw(alaw_to_linear(code)), code);
        }

        #[test]
        fn ulaw_round_trips_every_code(code: u8) {
            let back = linear_to_ulaw(ulaw_to_linear(code));
            // 0x7F and 0xFF are both zero (+0 and -0); zero encodes as 0xFF.
            if code == 0x7F {
                prop_assert_eq!(back, 0xFF);
            } else {
                prop_assert_eq!(back, code);
            }
        }

        #[test]
        fn g711_error_is_within_the_segment_step(sample: i16) {
            let a = i32::from(alaw_to_linear(linear_to_alaw(sample)));
            let u = i32::from(ulaw_to_linear(linear_to_ulaw(sample)));
            let s = i32::from(sample);
            // The quantisation step is at most 1/16 of the magnitude (plus the small-segment
            // step near zero).
            let bound = s.abs() / 16 + 64;
            prop_assert!((a - s).abs() <= bound, "A-law {} -> {}", s, a);
            prop_assert!((u - s).abs() <= bound.max(s.abs() / 16 + 256), "µ-law {} -> {}", s, u);
        }

        #[test]
        fn any_bytes_after_a_wav_header_never_panic(
            tag in prop_oneof![Just(1u16), Just(3), Just(6), Just(7), Just(0xFFFE), any::<u16>()],
            channels in 0u16..4,
            rate in prop_oneof![Just(8000u32), Just(44_100), any::<u32>()],
            bits in prop_oneof![Just(8u16), Just(16), Just(24), any::<u16>()],
            block_align: u16,
            rest in proptest::collection::vec(any::<u8>(), 0..200),
            data_len: u32,
        ) {
            let mut b = Vec::new();
            b.extend_from_slice(b"RIFF");
            b.extend_from_slice(&1000u32.to_le_bytes());
            b.extend_from_slice(b"WAVEfmt ");
            b.extend_from_slice(&16u32.to_le_bytes());
            b.extend_from_slice(&tag.to_le_bytes());
            b.extend_from_slice(&channels.to_le_bytes());
            b.extend_from_slice(&rate.to_le_bytes());
            b.extend_from_slice(&rate.wrapping_mul(2).to_le_bytes());
            b.extend_from_slice(&block_align.to_le_bytes());
            b.extend_from_slice(&bits.to_le_bytes());
            b.extend_from_slice(b"data");
            b.extend_from_slice(&data_len.to_le_bytes());
            b.extend_from_slice(&rest);
            let _ = decode_wav(&b);
            let _ = decode_wav(&rest);
        }

        #[test]
        fn stored_bytes_round_trip(samples: Vec<i16>) {
            let audio = Audio::from_samples(samples);
            prop_assert_eq!(Audio::from_le_bytes(&audio.to_le_bytes()), audio);
        }
    }

    #[test]
    fn g711_known_values() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
    }

    #[test]
    fn pcm16_at_44k_is_resampled_to_8k() {
        let t: Vec<i32> = tone(44_100, 1.5, 10_000.0)
            .iter()
            .map(|&s| s as i32)
            .collect();
        let audio = decode_wav(&wav(spec(44_100, 16, 1), &t)).unwrap();
        let n = audio.samples().len() as i64;
        assert!((n - 12_000).abs() <= 8, "{n} samples");
        assert_eq!(audio.duration_secs(), 2);
        // The tone's level survives (RMS of a 10000 sine is ~7071).
        let mid = &audio.samples()[2000..10_000];
        let rms =
            (mid.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / mid.len() as f64).sqrt();
        assert!((rms - 7071.0).abs() < 350.0, "rms {rms}");
    }

    #[test]
    fn pcm8_stereo_and_8k_are_read() {
        let t: Vec<i32> = tone(8000, 1.0, 100.0)
            .iter()
            .flat_map(|&s| [s as i32, s as i32])
            .collect();
        let audio = decode_wav(&wav(spec(8000, 8, 2), &t)).unwrap();
        assert_eq!(audio.samples().len(), 8000);
        assert_eq!(audio.duration_ms(), 1000);
        let peak = audio
            .samples()
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!((25_000..=25_700).contains(&peak), "peak {peak}");
    }

    #[test]
    fn g711_wavs_are_read() {
        let t = tone(8000, 0.5, 8000.0);
        let alaw: Vec<u8> = t.iter().map(|&s| linear_to_alaw(s as i16)).collect();
        let ulaw: Vec<u8> = t.iter().map(|&s| linear_to_ulaw(s as i16)).collect();
        for (tag, data) in [(TAG_ALAW, alaw), (TAG_MULAW, ulaw)] {
            let audio = decode_wav(&g711_wav(tag, 8000, &data)).unwrap();
            assert_eq!(audio.samples().len(), 4000);
            for (a, b) in audio.samples().iter().zip(&t) {
                assert!((f32::from(*a) - b).abs() <= 8000.0 / 16.0 + 64.0);
            }
        }
    }

    #[test]
    fn bad_input_is_refused_with_its_reason() {
        let t: Vec<i32> = tone(8000, 0.5, 1_000_000.0)
            .iter()
            .map(|&s| s as i32)
            .collect();
        let err = decode_wav(&wav(spec(8000, 24, 1), &t)).unwrap_err();
        assert!(
            matches!(&err, AudioError::Unsupported(s) if s == "24-bit PCM"),
            "{err}"
        );
        assert!(matches!(
            decode_wav(b"hello, this is not audio"),
            Err(AudioError::NotWav(_))
        ));
        assert!(matches!(
            decode_wav(&wav(spec(8000, 16, 1), &[])),
            Err(AudioError::Empty)
        ));
        assert!(matches!(
            decode_wav(&wav(spec(16_000, 16, 1), &vec![3; 16_000])),
            Err(AudioError::Silent)
        ));
        assert!(matches!(
            decode_wav(&wav(spec(1000, 16, 1), &[1000; 100])),
            Err(AudioError::Unsupported(_))
        ));
        let long = vec![1000; 8000 * (MAX_SECONDS as usize + 1)];
        assert!(matches!(
            decode_wav(&wav(spec(8000, 16, 1), &long)),
            Err(AudioError::TooLong { .. })
        ));
        assert!(matches!(
            decode_wav(&g711_wav(0x11, 8000, &[1, 2, 3])),
            Err(AudioError::Unsupported(s)) if s.contains("0x0011")
        ));
    }

    #[test]
    fn a_data_chunk_cut_short_is_read_as_far_as_it_goes() {
        let t: Vec<i32> = tone(8000, 0.5, 5000.0).iter().map(|&s| s as i32).collect();
        let mut bytes = wav(spec(8000, 16, 1), &t);
        // The header claims 4 GiB of samples; 4000 are there.
        let at = bytes.len() - t.len() * 2 - 4;
        bytes[at..at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        assert_eq!(decode_wav(&bytes).unwrap().samples().len(), 4000);
    }

    #[test]
    fn written_wav_reads_back() {
        let audio = Audio::from_samples((0..800).map(|i| (i * 40 - 16_000) as i16).collect());
        let bytes = audio.to_wav().unwrap();
        let reader = hound::WavReader::new(Cursor::new(&bytes)).unwrap();
        assert_eq!(reader.spec(), spec(8000, 16, 1));
        assert_eq!(decode_wav(&bytes).unwrap(), audio);
    }

    #[test]
    fn quiet_speech_level_is_not_silence() {
        let quiet: Vec<i16> = tone(8000, 1.0, 200.0).iter().map(|&s| s as i16).collect();
        assert!(!is_silent(&quiet));
        assert!(is_silent(&[50; 8000]));
        assert!(is_silent(&[]));
    }
}
