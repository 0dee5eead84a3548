//! GetImages: still images of a stream at a sampling interval, decoded by ffmpeg.
//!
//! No H.264/H.265 decoder installs as a Rust library here without a C toolchain of its own, and
//! ffmpeg does this best: each image is one fragment (the producer's header and its Cluster, a
//! complete MKV) piped into `ffmpeg`, which seeks to the sampled time within the fragment and
//! encodes one JPEG or PNG frame. ffmpeg runs as a child process on a thread of its own, so no
//! executor blocks on it. Without ffmpeg (not on PATH, or not the `--ffmpeg` given) GetImages
//! answers a clear error; everything else works without it.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The image format GetImages asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

/// What one image should look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub format: ImageFormat,
    /// JPEGQuality, 1–100 (80 when not given).
    pub jpeg_quality: u8,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// Why ffmpeg produced no image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("ffmpeg ({path}) could not be started: {reason}")]
    NoDecoder { path: String, reason: String },
    #[error("the frame could not be decoded: {0}")]
    Decode(String),
}

/// The ffmpeg scale filter for the requested size: both sides, or one side with the aspect ratio
/// kept (`-2`: the other side rounded to an even number, which every encoder takes).
fn scale_filter(width: Option<u32>, height: Option<u32>) -> Option<String> {
    match (width, height) {
        (None, None) => None,
        (Some(w), Some(h)) => Some(format!("scale={w}:{h}")),
        (Some(w), None) => Some(format!("scale={w}:-2")),
        (None, Some(h)) => Some(format!("scale=-2:{h}")),
    }
}

/// JPEGQuality 1–100 to ffmpeg's mjpeg `-q:v` 31 (worst) – 2 (best).
fn mjpeg_qscale(quality: u8) -> u32 {
    let quality = u32::from(quality.clamp(1, 100));
    31 - (quality - 1) * 29 / 99
}

/// Decodes the frame `offset_ms` into the MKV `fragment` (header + Cluster) into one image.
/// Blocking: run it off the executor (see [`decode_image_off_thread`]).
pub fn decode_image(
    ffmpeg: &PathBuf,
    fragment: Vec<u8>,
    offset_ms: u64,
    spec: ImageSpec,
) -> Result<Vec<u8>, ImageError> {
    let mut command = Command::new(ffmpeg);
    command
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "matroska",
            "-i",
            "pipe:0",
        ])
        .args([
            "-ss",
            &format!("{}.{:03}", offset_ms / 1000, offset_ms % 1000),
        ])
        .args(["-frames:v", "1", "-an"]);
    if let Some(filter) = scale_filter(spec.width, spec.height) {
        command.args(["-vf", &filter]);
    }
    match spec.format {
        ImageFormat::Jpeg => {
            command.args([
                "-c:v",
                "mjpeg",
                "-q:v",
                &mjpeg_qscale(spec.jpeg_quality).to_string(),
            ]);
        }
        ImageFormat::Png => {
            command.args(["-c:v", "png"]);
        }
    }
    command
        .args(["-f", "image2pipe", "pipe:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| ImageError::NoDecoder {
        path: ffmpeg.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| ImageError::Decode("no stdin".into()))?;
    // ffmpeg may stop reading early (it has its frame); a broken pipe then is no error.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&fragment);
    });
    let mut image = Vec::new();
    let mut errors = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_end(&mut image)
            .map_err(|e| ImageError::Decode(e.to_string()))?;
    }
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut errors);
    }
    let status = child
        .wait()
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    let _ = writer.join();
    if !status.success() || image.is_empty() {
        return Err(ImageError::Decode(if errors.trim().is_empty() {
            format!("ffmpeg exited with {status} and no image")
        } else {
            errors.trim().to_owned()
        }));
    }
    Ok(image)
}

/// [`decode_image`] on a thread of its own; the future resolves when ffmpeg is done. A time past
/// the fragment's last video frame (its audio may run on) gets the fragment's first frame.
pub async fn decode_image_off_thread(
    ffmpeg: PathBuf,
    fragment: Vec<u8>,
    offset_ms: u64,
    spec: ImageSpec,
) -> Result<Vec<u8>, ImageError> {
    let (sender, receiver) = futures_channel::oneshot::channel();
    std::thread::spawn(move || {
        let first = decode_image(&ffmpeg, fragment.clone(), offset_ms, spec);
        let answer = match first {
            Err(ImageError::Decode(_)) if offset_ms > 0 => decode_image(&ffmpeg, fragment, 0, spec),
            other => other,
        };
        let _ = sender.send(answer);
    });
    receiver
        .await
        .unwrap_or_else(|_| Err(ImageError::Decode("the decoder thread ended".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_keeps_the_aspect_ratio_when_one_side_is_given() {
        assert_eq!(scale_filter(None, None), None);
        assert_eq!(
            scale_filter(Some(160), None).as_deref(),
            Some("scale=160:-2")
        );
        assert_eq!(scale_filter(None, Some(90)).as_deref(), Some("scale=-2:90"));
        assert_eq!(scale_filter(Some(4), Some(3)).as_deref(), Some("scale=4:3"));
    }

    #[test]
    fn jpeg_quality_maps_onto_the_mjpeg_scale_in_order() {
        assert_eq!(mjpeg_qscale(1), 31);
        assert_eq!(mjpeg_qscale(100), 2);
        assert!(mjpeg_qscale(80) < mjpeg_qscale(20));
    }
}
