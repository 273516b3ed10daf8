//! Voice messages and greetings through the real `umws` binary and a real data directory:
//! WAVs of every accepted format are deposited and arrive as voice mails whose attachment
//! (parsed by Python's `email` and `wave` modules) is the 8 kHz audio; bad files are refused;
//! entry ids name the messages and bad ones are refused; greetings round-trip.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{maildir_mails, python, run_umws};
use umws::audio::{linear_to_alaw, linear_to_ulaw, MAX_WAV_BYTES};

const NUMBER: &str = "+14255550100";

/// A data directory with the mailboxes alice and bob.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for user in ["alice", "bob"] {
        let out = umws(
            dir.path(),
            &["mailbox", "add"],
            &["--user", user, "--password", "a long password"],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    dir
}

fn umws(data: &Path, words: &[&str], rest: &[&str]) -> Output {
    let mut args: Vec<&str> = words.to_vec();
    args.extend(["--data", data.to_str().unwrap()]);
    args.extend(rest);
    run_umws(&args)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A 440 Hz tone of `seconds` at `rate`, amplitude `peak`.
fn tone(rate: u32, seconds: f64, peak: f64) -> Vec<f64> {
    let n = (f64::from(rate) * seconds).round() as usize;
    (0..n)
        .map(|i| peak * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(rate)).sin())
        .collect()
}

fn pcm_wav(rate: u32, bits: u16, channels: u16, samples: &[i32]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for &s in samples {
        for _ in 0..channels {
            w.write_sample(s).unwrap();
        }
    }
    w.finalize().unwrap();
    out.into_inner()
}

/// A G.711 WAV (format tag 6 A-law, 7 µ-law), written by hand.
fn g711_wav(tag: u16, rate: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(4 + 26 + 8 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&18u32.to_le_bytes());
    for v in [tag, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    for v in [1u16, 8, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    b
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The five accepted kinds of WAV, each a 3-second 440 Hz tone: (name, bytes).
fn accepted_wavs() -> Vec<(&'static str, Vec<u8>)> {
    let ints = |rate, peak| -> Vec<i32> {
        tone(rate, 3.0, peak)
            .iter()
            .map(|&s| s.round() as i32)
            .collect()
    };
    let g711 = |f: fn(i16) -> u8| -> Vec<u8> {
        tone(8000, 3.0, 12_000.0)
            .iter()
            .map(|&s| f(s as i16))
            .collect()
    };
    vec![
        ("pcm16-8k", pcm_wav(8000, 16, 1, &ints(8000, 12_000.0))),
        (
            "pcm16-44k-stereo",
            pcm_wav(44_100, 16, 2, &ints(44_100, 12_000.0)),
        ),
        ("pcm8-22k", pcm_wav(22_050, 8, 1, &ints(22_050, 60.0))),
        ("alaw-8k", g711_wav(6, 8000, &g711(linear_to_alaw))),
        ("ulaw-8k", g711_wav(7, 8000, &g711(linear_to_ulaw))),
    ]
}

/// Parses a voice mail with Python's `email` package and its attachment with `wave`; prints
/// one line a field.
const INSPECT_MAIL: &str = r#"
import email, email.policy, io, sys, wave
msg = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)
print('subject=' + msg['Subject'])
print('number=' + msg['X-CallingTelephoneNumber'])
print('duration=' + msg['X-VoiceMessageDuration'])
print('entry_id=' + msg['X-VoiceMessageEntryId'])
parts = [p for p in msg.iter_attachments()]
assert len(parts) == 1, parts
part = parts[0]
print('type=' + part.get_content_type())
print('filename=' + part.get_filename())
w = wave.open(io.BytesIO(part.get_content()))
print('rate=%d' % w.getframerate())
print('channels=%d' % w.getnchannels())
print('width=%d' % w.getsampwidth())
print('frames=%d' % w.getnframes())
frames = w.readframes(w.getnframes())
samples = [int.from_bytes(frames[i:i + 2], 'little', signed=True) for i in range(0, len(frames), 2)]
crossings = sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))
print('crossings=%d' % crossings)
print('peak=%d' % max(abs(s) for s in samples))
"#;

fn inspect(mail: &Path) -> std::collections::HashMap<String, String> {
    let out = python()
        .arg("-c")
        .arg(INSPECT_MAIL)
        .arg(mail)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mail_files(data: &Path, user: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("mail").join(user).join("new"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_format_is_deposited_and_delivered_as_an_8k_voice_mail() {
    let data = data_dir();
    let wavs = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for (name, bytes) in accepted_wavs() {
        let path = write(wavs.path(), &format!("{name}.wav"), &bytes);
        let out = umws(
            data.path(),
            &["voicemail", "deposit"],
            &[
                "--user",
                "alice",
                "--wav",
                path.to_str().unwrap(),
                "--from",
                NUMBER,
            ],
        );
        assert!(out.status.success(), "{name}: {}", text(&out));
        let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert_eq!(id.len(), 96, "{name}: base64 of 70 bytes: {id}");
        ids.push((name, id));
    }
    let mails = mail_files(data.path(), "alice");
    assert_eq!(mails.len(), ids.len());
    let mut seen = Vec::new();
    for mail in &mails {
        let m = inspect(mail);
        let (name, _) = ids
            .iter()
            .find(|(_, id)| *id == m["entry_id"])
            .unwrap_or_else(|| panic!("mail with an unknown entry id: {m:?}"));
        seen.push(*name);
        assert_eq!(
            m["subject"], "Voice Mail from +14255550100 (3 seconds)",
            "{name}"
        );
        assert_eq!(m["number"], NUMBER);
        assert_eq!(m["duration"], "3");
        assert_eq!(m["type"], "audio/wav");
        assert_eq!(
            (&*m["rate"], &*m["channels"], &*m["width"]),
            ("8000", "1", "2")
        );
        let frames: i64 = m["frames"].parse().unwrap();
        assert!((frames - 24_000).abs() <= 8, "{name}: {frames} frames");
        // The tone survives decoding and resampling: 2 crossings a period, 440 Hz, 3 s.
        let crossings: i64 = m["crossings"].parse().unwrap();
        assert!(
            (crossings - 2640).abs() <= 4,
            "{name}: {crossings} crossings"
        );
        let peak: i64 = m["peak"].parse().unwrap();
        let expected = if *name == "pcm8-22k" {
            60 * 256
        } else {
            12_000
        };
        assert!(
            (peak - expected).abs() <= expected / 20,
            "{name}: peak {peak}, expected {expected}"
        );
    }
    seen.sort();
    let mut names: Vec<_> = ids.iter().map(|(n, _)| *n).collect();
    names.sort();
    assert_eq!(seen, names);

    // The listing shows every deposit, oldest first, with number and duration.
    let out = umws(data.path(), &["voicemail", "list"], &["--user", "alice"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), ids.len(), "{listing}");
    for (line, (_, id)) in lines.iter().zip(&ids) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields[0], id);
        assert_eq!(fields[1], "from=+14255550100");
        assert!(
            fields[2].starts_with("seconds=3.00") || fields[2].starts_with("seconds=2.99"),
            "{line}"
        );
        assert!(
            fields[3].starts_with("received=20") && fields[3].ends_with('Z'),
            "{line}"
        );
        assert_eq!(fields[4], "new", "{line}");
    }
    // Bob has none.
    let out = umws(data.path(), &["voicemail", "list"], &["--user", "bob"]);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );
}

#[test]
fn bad_files_are_refused_with_a_clear_message() {
    let data = data_dir();
    let wavs = tempfile::tempdir().unwrap();
    let oversize = write(wavs.path(), "big.wav", &pcm_wav(8000, 16, 1, &[1000; 8000]));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&oversize)
        .unwrap()
        .set_len(MAX_WAV_BYTES + 1)
        .unwrap();
    let float = {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut out = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for s in tone(8000, 1.0, 0.5) {
            w.write_sample(s as f32).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    };
    let loud: Vec<i32> = tone(8000, 1.0, 1_000_000.0)
        .iter()
        .map(|&s| s as i32)
        .collect();
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "silence",
            write(
                wavs.path(),
                "silence.wav",
                &pcm_wav(8000, 16, 1, &[0; 16_000]),
            ),
            "the audio is silence only",
        ),
        (
            "empty",
            write(wavs.path(), "empty.wav", &pcm_wav(8000, 16, 1, &[])),
            "the WAV file holds no audio",
        ),
        (
            "oversize",
            oversize,
            "the WAV file is 33554433 bytes; the limit is 33554432 bytes (32 MiB)",
        ),
        (
            "24-bit",
            write(wavs.path(), "24.wav", &pcm_wav(8000, 24, 1, &loud)),
            "unsupported audio format: 24-bit PCM",
        ),
        (
            "float",
            write(wavs.path(), "float.wav", &float),
            "unsupported audio format: 32-bit floating point",
        ),
        (
            "text",
            write(
                wavs.path(),
                "notes.txt",
                b"these are not the samples you want\n",
            ),
            "not a valid WAV file: no RIFF/WAVE header",
        ),
        ("missing", wavs.path().join("nowhere.wav"), "cannot read"),
    ];
    for (name, path, message) in cases {
        let out = umws(
            data.path(),
            &["voicemail", "deposit"],
            &["--user", "alice", "--wav", path.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(out.stdout.is_empty(), "{name}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(message),
            "{name}: expected {message:?} in {err}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
        // Greetings take the same checks.
        let out = umws(
            data.path(),
            &["greeting", "set"],
            &[
                "--user",
                "alice",
                "--type",
                "normal",
                "--wav",
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(message));
    }
    // Nothing was stored or delivered.
    assert!(mail_files(data.path(), "alice").is_empty());
    assert!(maildir_mails(data.path(), "alice").is_empty());
    let out = umws(data.path(), &["voicemail", "list"], &["--user", "alice"]);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );
    // An unknown user.
    let good = write(wavs.path(), "good.wav", &accepted_wavs()[0].1);
    let out = umws(
        data.path(),
        &["voicemail", "deposit"],
        &["--user", "carol", "--wav", good.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no mailbox named \"carol\""),
        "{}",
        text(&out)
    );
}

fn read_wav(path: &Path) -> (hound::WavSpec, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let samples = r.samples::<i16>().map(Result::unwrap).collect();
    (r.spec(), samples)
}

#[test]
fn entry_ids_name_the_message_and_bad_ones_are_refused() {
    let data = data_dir();
    let wavs = tempfile::tempdir().unwrap();
    // An 8 kHz 16-bit file is stored as it is, so the audio read back is the same.
    let samples: Vec<i32> = tone(8000, 2.0, 9000.0).iter().map(|&s| s as i32).collect();
    let wav = write(wavs.path(), "in.wav", &pcm_wav(8000, 16, 1, &samples));
    let out = umws(
        data.path(),
        &["voicemail", "deposit"],
        &["--user", "alice", "--wav", wav.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let m = inspect(&mail_files(data.path(), "alice")[0]);
    assert_eq!(m["subject"], "Voice Mail from Unknown (2 seconds)");
    assert_eq!(m["number"], "Unknown");

    let got = wavs.path().join("got.wav");
    let get = |user: &str, entry_id: &str| {
        umws(
            data.path(),
            &["voicemail", "get"],
            &[
                "--user",
                user,
                "--entry-id",
                entry_id,
                "--out",
                got.to_str().unwrap(),
            ],
        )
    };
    let out = get("alice", &id);
    assert!(out.status.success(), "{}", text(&out));
    let (spec, back) = read_wav(&got);
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16)
    );
    assert_eq!(back, samples.iter().map(|&s| s as i16).collect::<Vec<_>>());

    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw = b64.decode(&id).unwrap();
    let mut other_provider = raw.clone();
    other_provider[4] ^= 0xFF;
    let mut unknown = raw.clone();
    unknown[67] ^= 0x40;
    let mut other_store = raw.clone();
    other_store[22] ^= 1;
    other_store[46] ^= 1;
    let cases = [
        (
            "alice",
            "this is not base64!".to_string(),
            "the entry id is not base64",
        ),
        (
            "alice",
            b64.encode(&raw[..64]),
            "the entry id is 64 bytes long, not 70",
        ),
        (
            "alice",
            b64.encode(&other_provider),
            "the entry id is of another store provider",
        ),
        (
            "alice",
            b64.encode(&unknown),
            "no voice message has this entry id",
        ),
        (
            "alice",
            b64.encode(&other_store),
            "no voice message has this entry id",
        ),
        ("bob", id.clone(), "the voice message is another mailbox's"),
    ];
    for (user, entry_id, message) in cases {
        let out = get(user, &entry_id);
        assert_eq!(out.status.code(), Some(2), "{entry_id}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("invalid entry id: {message}")),
            "{entry_id}: expected {message:?} in {err}"
        );
    }
}

#[test]
fn greetings_round_trip_per_type() {
    let data = data_dir();
    let wavs = tempfile::tempdir().unwrap();
    let normal_in: Vec<i32> = tone(8000, 1.0, 7000.0).iter().map(|&s| s as i32).collect();
    let normal = write(wavs.path(), "normal.wav", &pcm_wav(8000, 16, 1, &normal_in));
    let oof = write(wavs.path(), "oof.wav", &accepted_wavs()[1].1);
    let out_path = wavs.path().join("out.wav");
    let get = |kind: &str| {
        umws(
            data.path(),
            &["greeting", "get"],
            &[
                "--user",
                "alice",
                "--type",
                kind,
                "--out",
                out_path.to_str().unwrap(),
            ],
        )
    };
    let out = get("normal");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("mailbox alice has no NormalCustom greeting"),
        "{}",
        text(&out)
    );
    for (kind, wav) in [("normal", &normal), ("oof", &oof)] {
        let out = umws(
            data.path(),
            &["greeting", "set"],
            &[
                "--user",
                "alice",
                "--type",
                kind,
                "--wav",
                wav.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = get("normal");
    assert!(out.status.success(), "{}", text(&out));
    let (spec, samples) = read_wav(&out_path);
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16)
    );
    assert_eq!(
        samples,
        normal_in.iter().map(|&s| s as i16).collect::<Vec<_>>()
    );
    let out = get("oof");
    assert!(out.status.success(), "{}", text(&out));
    let (spec, samples) = read_wav(&out_path);
    assert_eq!(spec.sample_rate, 8000);
    assert!(
        (samples.len() as i64 - 24_000).abs() <= 8,
        "{}",
        samples.len()
    );
    // Setting a type again replaces it; the other type stays.
    let out = umws(
        data.path(),
        &["greeting", "set"],
        &[
            "--user",
            "alice",
            "--type",
            "oof",
            "--wav",
            normal.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = get("oof");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(read_wav(&out_path).1.len(), 8000);
    // Bob's greetings are his own.
    let out = umws(
        data.path(),
        &["greeting", "get"],
        &[
            "--user",
            "bob",
            "--type",
            "oof",
            "--out",
            out_path.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = umws(
        data.path(),
        &["greeting", "set"],
        &[
            "--user",
            "alice",
            "--type",
            "busy",
            "--wav",
            normal.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_deposit_whose_mail_cannot_be_delivered_keeps_no_message() {
    let data = data_dir();
    let wavs = tempfile::tempdir().unwrap();
    let good = write(wavs.path(), "good.wav", &accepted_wavs()[0].1);
    // A file where alice's Maildir should be: the delivery fails.
    std::fs::create_dir_all(data.path().join("mail")).unwrap();
    std::fs::write(data.path().join("mail").join("alice"), b"in the way").unwrap();
    let out = umws(
        data.path(),
        &["voicemail", "deposit"],
        &["--user", "alice", "--wav", good.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let out = umws(data.path(), &["voicemail", "list"], &["--user", "alice"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        out.stdout.is_empty(),
        "a message without its mail: {}",
        text(&out)
    );
}
