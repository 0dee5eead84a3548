//! A check of what a publisher sends after the handshake, run over every byte before rml_rtmp's
//! server session sees it: rml_rtmp 0.8 panics on some malformed input, and a release build
//! aborts on a panic, so the bytes that would reach one of those panics are refused here and the
//! connection ends with an error instead. Pure: bytes in, `Ok` or the first problem out.
//!
//! It follows the RTMP chunk stream (RTMP 1.0, 5.3) as rml_rtmp's `ChunkDeserializer` reads it:
//! - a basic header of 1 to 3 bytes: `fmt` (2 bits) and the chunk stream id (6 bits; 0: 64 +
//!   the next byte; 1: 64 + the next two bytes, little-endian);
//! - a message header of 11 (fmt 0: timestamp, length, type id, stream id), 7 (fmt 1: delta,
//!   length, type id), 3 (fmt 2: delta) or 0 bytes (fmt 3), fields the shorter forms leave out
//!   taken from the chunk stream's previous header;
//! - a 4-byte extended timestamp when the 3-byte timestamp field (this header's, or for fmt 3 the
//!   previous one's) is 0xFFFFFF;
//! - up to the chunk size of payload (128 until the peer's SetChunkSize).
//!
//! What it refuses, and the panic each would reach in rml_rtmp:
//! - a chunk of another chunk stream, or with a new header, while a message is incomplete: its
//!   deserializer keeps one payload buffer for every chunk stream, and a shorter length than the
//!   bytes it holds underflows in `get_message_data`;
//! - an extended timestamp below 0xFFFFFF on the first chunk of a message of fmt 1, 2 or 3 (an
//!   underflow in `get_extended_timestamp`);
//! - an AMF0 command of fewer than three values (`drain(..3)`), a `publish` of fewer than five
//!   and a `play` of fewer than four (`remove(0)` in their handlers), an AMF0 data message
//!   `@setDataFrame` of fewer than three values (`data[0]`, `remove(1)`), and AMF0 nested deeper
//!   than [`AMF0_DEPTH_MAX`] (rml_amf0 recurses);
//! - a window acknowledgement size past 2^31 (the server's count of unacknowledged bytes, a u32,
//!   would overflow before it reached it), a chunk size of 0 or past 2^31 - 1;
//! - AMF3 messages (types 15 to 17), which ffmpeg and OBS do not send.
//!
//! It also bounds memory: at most [`CHUNK_STREAMS_MAX`] chunk streams, and the control and AMF0
//! messages it reads whole at most [`CONTROL_BYTES_MAX`] each (media payloads are only counted).

use std::collections::HashMap;

/// How many chunk streams a publisher may use (ffmpeg uses 4: control, commands, audio, video).
pub const CHUNK_STREAMS_MAX: usize = 64;
/// The largest control or AMF0 message read whole.
pub const CONTROL_BYTES_MAX: u32 = 64 * 1024;
/// How deep AMF0 objects and arrays may nest (a publisher's metadata nests one level).
pub const AMF0_DEPTH_MAX: usize = 16;

/// The chunk size every RTMP peer starts with.
const CHUNK_SIZE_INITIAL: u32 = 128;
/// The largest chunk size RTMP allows (the top bit of SetChunkSize must be 0).
const CHUNK_SIZE_MAX: u32 = 0x7FFF_FFFF;
/// A 3-byte timestamp field of this value means a 4-byte extended timestamp follows.
const TIMESTAMP_EXTENDED: u32 = 0xFF_FFFF;

/// Why the bytes are refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    #[error("a chunk of fmt {fmt} on chunk stream {csid}, which has no previous header")]
    NoPreviousHeader { fmt: u8, csid: u32 },
    #[error(
        "a chunk of fmt {fmt} on chunk stream {csid} while a message on chunk stream {open_csid} is incomplete"
    )]
    Interleaved { fmt: u8, csid: u32, open_csid: u32 },
    #[error("an extended timestamp of {value} on a chunk that adds it as a delta")]
    ExtendedTimestamp { value: u32 },
    #[error("more than {CHUNK_STREAMS_MAX} chunk streams")]
    TooManyChunkStreams,
    #[error("a message of type {type_id} and {length} bytes (at most {CONTROL_BYTES_MAX})")]
    ControlTooLarge { type_id: u8, length: u32 },
    #[error("a message of type {type_id} is malformed: {reason}")]
    Malformed { type_id: u8, reason: &'static str },
    #[error("AMF3 (message type {type_id}) is not taken")]
    Amf3 { type_id: u8 },
}

/// A chunk stream's last header, as later chunks inherit it.
#[derive(Clone, Copy, Debug)]
struct Header {
    timestamp_field: u32,
    length: u32,
    type_id: u8,
}

/// The message being received.
#[derive(Debug)]
struct Open {
    csid: u32,
    length: u32,
    received: u32,
    type_id: u8,
    /// The payload, for the control and AMF0 messages that are checked whole.
    body: Option<Vec<u8>>,
}

/// One connection's check, fed every byte the publisher sends after the handshake.
#[derive(Debug)]
pub struct ChunkGuard {
    chunk_size: u32,
    headers: HashMap<u32, Header>,
    /// The bytes of the chunk header being read (at most 3 + 11 + 4).
    pending: Vec<u8>,
    /// Payload bytes left in the current chunk.
    chunk_left: u32,
    open: Option<Open>,
}

impl Default for ChunkGuard {
    fn default() -> Self {
        Self {
            chunk_size: CHUNK_SIZE_INITIAL,
            headers: HashMap::new(),
            pending: Vec::with_capacity(18),
            chunk_left: 0,
            open: None,
        }
    }
}

/// A chunk header read whole.
struct Chunk {
    fmt: u8,
    csid: u32,
    header: Header,
    extended: Option<u32>,
}

impl ChunkGuard {
    /// Takes the next bytes; an error is final (the connection must end).
    pub fn check(&mut self, mut bytes: &[u8]) -> Result<(), ChunkError> {
        while !bytes.is_empty() {
            if self.chunk_left > 0 {
                let take = (self.chunk_left as usize).min(bytes.len());
                let open = self
                    .open
                    .as_mut()
                    .expect("a chunk's payload belongs to an open message");
                if let Some(body) = &mut open.body {
                    body.extend_from_slice(&bytes[..take]);
                }
                open.received += take as u32;
                self.chunk_left -= take as u32;
                bytes = &bytes[take..];
                self.end_of_chunk()?;
                continue;
            }
            self.pending.push(bytes[0]);
            bytes = &bytes[1..];
            if let Some(chunk) = self.parse_header()? {
                self.pending.clear();
                self.start_chunk(chunk)?;
            }
        }
        Ok(())
    }

    /// The chunk header in `pending`, once it is complete.
    fn parse_header(&self) -> Result<Option<Chunk>, ChunkError> {
        let bytes = &self.pending;
        let fmt = bytes[0] >> 6;
        let (csid, basic) = match bytes[0] & 0x3F {
            0 => match bytes.get(1) {
                Some(&b) => (64 + u32::from(b), 2),
                None => return Ok(None),
            },
            1 => match bytes.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let previous = self.headers.get(&csid).copied();
        let Some(previous) = previous.or((fmt == 0).then_some(Header {
            timestamp_field: 0,
            length: 0,
            type_id: 0,
        })) else {
            return Err(ChunkError::NoPreviousHeader { fmt, csid });
        };
        let message_bytes = [11, 7, 3, 0][usize::from(fmt)];
        let Some(message) = bytes.get(basic..basic + message_bytes) else {
            return Ok(None);
        };
        let u24 =
            |at: usize| u32::from_be_bytes([0, message[at], message[at + 1], message[at + 2]]);
        let header = match fmt {
            0 | 1 => Header {
                timestamp_field: u24(0),
                length: u24(3),
                type_id: message[6],
            },
            2 => Header {
                timestamp_field: u24(0),
                ..previous
            },
            _ => previous,
        };
        let extended = if header.timestamp_field == TIMESTAMP_EXTENDED {
            let at = basic + message_bytes;
            match bytes.get(at..at + 4) {
                Some(b) => Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some(Chunk {
            fmt,
            csid,
            header,
            extended,
        }))
    }

    fn start_chunk(&mut self, chunk: Chunk) -> Result<(), ChunkError> {
        let Chunk {
            fmt,
            csid,
            header,
            extended,
        } = chunk;
        if let Some(open) = &self.open
            && (open.csid != csid || fmt != 3)
        {
            return Err(ChunkError::Interleaved {
                fmt,
                csid,
                open_csid: open.csid,
            });
        }
        if let Some(value) = extended
            && fmt != 0
            && self.open.is_none()
            && value < TIMESTAMP_EXTENDED
        {
            return Err(ChunkError::ExtendedTimestamp { value });
        }
        if !self.headers.contains_key(&csid) && self.headers.len() >= CHUNK_STREAMS_MAX {
            return Err(ChunkError::TooManyChunkStreams);
        }
        self.headers.insert(csid, header);
        let open = match self.open.take() {
            Some(open) => open,
            None => {
                let whole = !matches!(header.type_id, 8 | 9);
                if whole && header.length > CONTROL_BYTES_MAX {
                    return Err(ChunkError::ControlTooLarge {
                        type_id: header.type_id,
                        length: header.length,
                    });
                }
                Open {
                    csid,
                    length: header.length,
                    received: 0,
                    type_id: header.type_id,
                    body: whole.then(Vec::new),
                }
            }
        };
        // As rml_rtmp sizes a chunk: the whole message when it fits the chunk size.
        let left = open.length - open.received;
        self.chunk_left = if open.length > self.chunk_size {
            left.min(self.chunk_size)
        } else {
            open.length
        };
        assert!(
            self.chunk_left <= left,
            "a chunk never runs past its message"
        );
        self.open = Some(open);
        self.end_of_chunk()
    }

    /// After a chunk's payload, or a header whose chunk has none: a complete message is checked.
    fn end_of_chunk(&mut self) -> Result<(), ChunkError> {
        if self.chunk_left > 0 {
            return Ok(());
        }
        let complete = self
            .open
            .as_ref()
            .is_some_and(|open| open.received == open.length);
        if complete {
            let open = self.open.take().expect("checked above");
            self.check_message(open.type_id, open.body.as_deref().unwrap_or_default())?;
        }
        Ok(())
    }

    fn check_message(&mut self, type_id: u8, body: &[u8]) -> Result<(), ChunkError> {
        let malformed = |reason| ChunkError::Malformed { type_id, reason };
        let u32_at_0 = || {
            body.get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| malformed("shorter than 4 bytes"))
        };
        match type_id {
            1 => {
                let size = u32_at_0()?;
                if size == 0 || size > CHUNK_SIZE_MAX {
                    return Err(malformed("a chunk size of 0 or past 2^31 - 1"));
                }
                self.chunk_size = size;
            }
            5 if u32_at_0()? > CHUNK_SIZE_MAX => {
                return Err(malformed("a window acknowledgement size past 2^31 - 1"));
            }
            15..=17 => return Err(ChunkError::Amf3 { type_id }),
            18 => {
                let values = amf0_values(body).map_err(malformed)?;
                let set_data_frame =
                    matches!(values.first(), Some(Amf0::String(name)) if name == "@setDataFrame");
                if set_data_frame && values.len() < 3 {
                    return Err(malformed("@setDataFrame with fewer than 3 values"));
                }
            }
            20 => {
                let values = amf0_values(body).map_err(malformed)?;
                let needed = match values.first() {
                    Some(Amf0::String(name)) if name == "publish" => 5,
                    Some(Amf0::String(name)) if name == "play" => 4,
                    _ => 3,
                };
                if values.len() < needed {
                    return Err(malformed("a command with too few values"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// What the checks need of a top-level AMF0 value.
#[derive(Debug, PartialEq)]
enum Amf0 {
    String(String),
    Other,
}

/// The top-level values of an AMF0 body, read as rml_amf0 reads them (a top-level object-end
/// marker ends the list), but strictly: every value whole, strings UTF-8, nesting bounded.
fn amf0_values(body: &[u8]) -> Result<Vec<Amf0>, &'static str> {
    let mut reader = Amf0Reader { body, at: 0 };
    let mut values = Vec::new();
    while let Some(&marker) = body.get(reader.at) {
        reader.at += 1;
        if marker == AMF0_OBJECT_END {
            break;
        }
        values.push(reader.value(marker, 0)?);
    }
    Ok(values)
}

const AMF0_NUMBER: u8 = 0x00;
const AMF0_BOOLEAN: u8 = 0x01;
const AMF0_STRING: u8 = 0x02;
const AMF0_OBJECT: u8 = 0x03;
const AMF0_NULL: u8 = 0x05;
const AMF0_UNDEFINED: u8 = 0x06;
const AMF0_ECMA_ARRAY: u8 = 0x08;
const AMF0_OBJECT_END: u8 = 0x09;
const AMF0_STRICT_ARRAY: u8 = 0x0A;

struct Amf0Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl Amf0Reader<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], &'static str> {
        let bytes = self
            .body
            .get(self.at..self.at + count)
            .ok_or("AMF0 ends inside a value")?;
        self.at += count;
        Ok(bytes)
    }

    fn string(&mut self) -> Result<String, &'static str> {
        let length = self.take(2)?;
        let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "an AMF0 string that is not UTF-8")
    }

    /// An object's properties up to and including its end marker.
    fn properties(&mut self, depth: usize) -> Result<(), &'static str> {
        loop {
            if self.string()?.is_empty() {
                return match self.take(1)? {
                    [AMF0_OBJECT_END] => Ok(()),
                    _ => Err("an AMF0 property without a name"),
                };
            }
            let marker = self.take(1)?[0];
            if marker == AMF0_OBJECT_END {
                return Err("an AMF0 property without a value");
            }
            self.value(marker, depth + 1)?;
        }
    }

    fn value(&mut self, marker: u8, depth: usize) -> Result<Amf0, &'static str> {
        if depth > AMF0_DEPTH_MAX {
            return Err("AMF0 nested too deep");
        }
        match marker {
            AMF0_NUMBER => self.take(8).map(|_| Amf0::Other),
            AMF0_BOOLEAN => self.take(1).map(|_| Amf0::Other),
            AMF0_STRING => self.string().map(Amf0::String),
            AMF0_NULL | AMF0_UNDEFINED => Ok(Amf0::Other),
            AMF0_OBJECT => self.properties(depth).map(|()| Amf0::Other),
            AMF0_ECMA_ARRAY => {
                self.take(4)?;
                self.properties(depth).map(|()| Amf0::Other)
            }
            AMF0_STRICT_ARRAY => {
                let count = self.take(4)?;
                let count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]);
                for _ in 0..count {
                    // As rml_amf0: the body's end or an end marker ends the array early.
                    let Some(&marker) = self.body.get(self.at) else {
                        break;
                    };
                    self.at += 1;
                    if marker == AMF0_OBJECT_END {
                        break;
                    }
                    self.value(marker, depth + 1)?;
                }
                Ok(Amf0::Other)
            }
            _ => Err("an AMF0 marker rml_amf0 does not read"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One chunk of fmt 0 on `csid` (< 64) holding a whole message of `type_id`.
    fn message(csid: u8, type_id: u8, body: &[u8]) -> Vec<u8> {
        let length = (body.len() as u32).to_be_bytes();
        let mut out = vec![
            csid, 0, 0, 0, length[1], length[2], length[3], type_id, 1, 0, 0, 0,
        ];
        out.extend_from_slice(body);
        out
    }

    fn amf0_string(text: &str) -> Vec<u8> {
        let mut out = vec![AMF0_STRING];
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    }

    fn command(values: &[Vec<u8>]) -> Vec<u8> {
        message(3, 20, &values.concat())
    }

    #[test]
    fn well_formed_commands_and_media_pass_in_any_pieces() {
        let mut bytes = message(2, 1, &4096u32.to_be_bytes());
        let number = [AMF0_NUMBER, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0];
        let object = [
            vec![AMF0_OBJECT],
            vec![0, 3],
            b"app".to_vec(),
            amf0_string("live"),
            vec![0, 0, AMF0_OBJECT_END],
        ]
        .concat();
        bytes.extend(command(&[amf0_string("connect"), number.to_vec(), object]));
        bytes.extend(command(&[
            amf0_string("publish"),
            number.to_vec(),
            vec![AMF0_NULL],
            amf0_string("cam"),
            amf0_string("live"),
        ]));
        // A 5000-byte video message: one chunk at the 4096-byte chunk size, then fmt 3.
        let video = vec![0x17; 5000];
        let mut media = message(6, 9, &video[..4096]);
        media[4..7].copy_from_slice(&5000u32.to_be_bytes()[1..]);
        media.push(0xC6);
        media.extend_from_slice(&video[4096..]);
        bytes.extend(media);
        for piece in [1, 7, 100, bytes.len()] {
            let mut guard = ChunkGuard::default();
            for part in bytes.chunks(piece) {
                guard.check(part).expect("a well-formed publish passes");
            }
            assert!(guard.open.is_none());
            assert_eq!(guard.chunk_size, 4096);
        }
    }

    #[test]
    fn commands_rml_rtmp_would_panic_on_are_refused() {
        let refused = |bytes: Vec<u8>| ChunkGuard::default().check(&bytes).expect_err("refused");
        let number = vec![AMF0_NUMBER, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            refused(command(&[amf0_string("connect")])),
            ChunkError::Malformed { type_id: 20, .. }
        ));
        assert!(matches!(
            refused(command(&[
                amf0_string("publish"),
                number.clone(),
                vec![AMF0_NULL]
            ])),
            ChunkError::Malformed { .. }
        ));
        assert!(matches!(
            refused(message(4, 18, &amf0_string("@setDataFrame"))),
            ChunkError::Malformed { type_id: 18, .. }
        ));
        let mut deep = [AMF0_STRICT_ARRAY, 0, 0, 0, 1].repeat(AMF0_DEPTH_MAX + 2);
        deep.push(AMF0_NULL);
        assert!(matches!(
            refused(command(&[amf0_string("x"), number, deep])),
            ChunkError::Malformed { .. }
        ));
        assert!(matches!(
            refused(message(2, 1, &0u32.to_be_bytes())),
            ChunkError::Malformed { type_id: 1, .. }
        ));
        assert!(matches!(
            refused(message(2, 5, &u32::MAX.to_be_bytes())),
            ChunkError::Malformed { type_id: 5, .. }
        ));
        assert_eq!(
            refused(message(3, 17, &[0])),
            ChunkError::Amf3 { type_id: 17 }
        );
    }

    #[test]
    fn chunk_streams_that_would_corrupt_the_shared_payload_are_refused() {
        // 200 bytes of video at the 128-byte chunk size, then a chunk of another stream.
        let mut bytes = message(6, 9, &[0; 128]);
        bytes[6] = 200;
        bytes.extend(message(4, 8, &[0xAF, 1]));
        assert!(matches!(
            ChunkGuard::default().check(&bytes),
            Err(ChunkError::Interleaved {
                csid: 4,
                open_csid: 6,
                ..
            })
        ));
        // A fmt 1 header on the same stream, shrinking the message in progress.
        let mut shrink = message(6, 9, &[0; 128]);
        shrink[6] = 200;
        shrink.extend([0x46, 0, 0, 0, 0, 0, 10, 9]);
        assert!(matches!(
            ChunkGuard::default().check(&shrink),
            Err(ChunkError::Interleaved { fmt: 1, .. })
        ));
        assert!(matches!(
            ChunkGuard::default().check(&[0xC5]),
            Err(ChunkError::NoPreviousHeader { fmt: 3, csid: 5 })
        ));
        // An extended timestamp below 0xFFFFFF as a delta at a message's start.
        let mut extended = message(6, 9, &[1]);
        extended.extend([0x86, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 0x17]);
        assert!(matches!(
            ChunkGuard::default().check(&extended),
            Err(ChunkError::ExtendedTimestamp { value: 1 })
        ));
        // Empty messages of fmt 0 on chunk streams 64, 65, … (2-byte basic headers).
        let many: Vec<u8> = (0..=CHUNK_STREAMS_MAX as u8)
            .flat_map(|csid| [0, csid, 0, 0, 0, 0, 0, 0, 9, 1, 0, 0, 0])
            .collect();
        assert_eq!(
            ChunkGuard::default().check(&many),
            Err(ChunkError::TooManyChunkStreams)
        );
    }
}
