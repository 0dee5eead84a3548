//! AWS Signature Version 4 verification, server side: the header form
//! (`Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`) and the
//! presigned query form (`X-Amz-Algorithm=…&X-Amz-Credential=…&X-Amz-Date=…&…&X-Amz-Signature=…`).
//!
//! The verifier rebuilds what the client signed from the request as received:
//! 1. the **canonical request**: method, canonical URI (the raw path with dot segments and empty
//!    segments removed, then every byte outside `A-Za-z0-9-_.~/` percent-encoded, which encodes
//!    the client's own escapes a second time as every non-S3 SDK does), canonical query (pairs
//!    decoded, re-encoded strictly, sorted; the presigned form leaves out `X-Amz-Signature`),
//!    canonical headers (the headers named in `SignedHeaders`, values trimmed with inner
//!    whitespace runs collapsed, repeats joined by commas), the signed header list, and the
//!    payload hash, always the SHA-256 of the body received (an `x-amz-content-sha256` header
//!    must equal it; `UNSIGNED-PAYLOAD` is not honoured for Kinesis, so such a request only
//!    verifies if the client really signed the body);
//! 2. the **string to sign**: `AWS4-HMAC-SHA256`, the request date, the credential scope
//!    (`<yyyymmdd>/<region>/<service>/aws4_request`) and the hex SHA-256 of (1);
//! 3. the **signing key** `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
//!    "aws4_request")` and the signature `hex(HMAC(key, string to sign))`, compared with the
//!    given one in constant time.
//!
//! Checks run in this order, each answered with AWS's error: the request time against the clock
//! (15 minutes either way; a presigned request also until `X-Amz-Expires` runs out), the
//! credential scope (date, region, service, terminator), the access key, the body hash, and the
//! signature. Presence and completeness of the parts (`MissingAuthenticationToken`,
//! `IncompleteSignature`) are checked before, by the envelope in `kinesis`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::HttpRequest;
pub use crate::auth::{AuthConfig, AuthMode, NoCredentials};

type HmacSha256 = hmac::Hmac<Sha256>;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The signing name of Kinesis Data Streams.
pub const KINESIS_SERVICE: &str = "kinesis";
/// How far a request's date may be from the server's clock, either way.
pub const CLOCK_SKEW_MAX: Duration = Duration::from_secs(15 * 60);
/// The longest validity a presigned request may ask for (7 days), as AWS allows.
pub const PRESIGNED_EXPIRES_MAX_S: u64 = 7 * 24 * 3600;

pub const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
pub const UNRECOGNIZED_CLIENT: &str = "The security token included in the request is invalid.";

/// A refused request: the AWS error shape name and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthError {
    pub type_name: &'static str,
    pub message: String,
}

impl AuthError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            type_name: "InvalidSignatureException",
            message: message.into(),
        }
    }

    fn incomplete(message: impl Into<String>) -> Self {
        Self {
            type_name: "IncompleteSignatureException",
            message: message.into(),
        }
    }
}

/// The signature parts of a request, from its `Authorization` header or its query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureParts {
    pub access_key_id: String,
    /// `<yyyymmdd>/<region>/<service>/aws4_request`, exactly as sent.
    pub scope: String,
    /// The lowercase names, in the order sent.
    pub signed_headers: Vec<String>,
    pub signature: String,
    /// `X-Amz-Date` (or the `Date` header converted), `YYYYMMDDTHHMMSSZ`.
    pub amz_date: String,
    /// `X-Amz-Expires` of a presigned request.
    pub expires_s: Option<u64>,
    pub presigned: bool,
}

/// The parts of a SigV4 request, or why they cannot be read. `Ok(None)` means the request
/// carries no SigV4 authentication at all.
pub fn signature_parts(req: &HttpRequest<'_>) -> Result<Option<SignatureParts>, AuthError> {
    if let Some(authorization) = req.authorization {
        return header_parts(req, authorization).map(Some);
    }
    let params = query_pairs(req.query.unwrap_or(""));
    let get = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(algorithm) = get("X-Amz-Algorithm") else {
        return Ok(None);
    };
    if algorithm != ALGORITHM {
        return Err(AuthError::incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'."
        )));
    }
    let credential = get("X-Amz-Credential").unwrap_or("");
    let (access_key_id, scope) = credential.split_once('/').unwrap_or((credential, ""));
    let expires_s = match get("X-Amz-Expires") {
        None => None,
        Some(e) => Some(e.parse::<u64>().map_err(|_| {
            AuthError::incomplete(format!(
                "X-Amz-Expires must be a number of seconds, not '{e}'."
            ))
        })?),
    };
    Ok(Some(SignatureParts {
        access_key_id: access_key_id.to_owned(),
        scope: scope.to_owned(),
        signed_headers: get("X-Amz-SignedHeaders")
            .unwrap_or("")
            .split(';')
            .map(str::to_ascii_lowercase)
            .collect(),
        signature: get("X-Amz-Signature").unwrap_or("").to_owned(),
        amz_date: get("X-Amz-Date").unwrap_or("").to_owned(),
        expires_s,
        presigned: true,
    }))
}

fn header_parts(req: &HttpRequest<'_>, authorization: &str) -> Result<SignatureParts, AuthError> {
    let authorization = authorization.trim();
    let (algorithm, rest) = authorization
        .split_once([' ', ','])
        .unwrap_or((authorization, ""));
    if algorithm != ALGORITHM {
        return Err(AuthError::incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'."
        )));
    }
    let mut credential = "";
    let mut signed_headers = "";
    let mut signature = "";
    for part in rest.split([',', ' ']).filter(|p| !p.is_empty()) {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = v,
            Some(("SignedHeaders", v)) => signed_headers = v,
            Some(("Signature", v)) => signature = v,
            _ => {}
        }
    }
    let (access_key_id, scope) = credential.split_once('/').unwrap_or((credential, ""));
    let amz_date = match header_text(req, "x-amz-date") {
        Some(d) => d.trim().to_owned(),
        None => header_text(req, "date")
            .and_then(http_date_to_amz)
            .ok_or_else(|| {
                AuthError::incomplete(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
                )
            })?,
    };
    Ok(SignatureParts {
        access_key_id: access_key_id.to_owned(),
        scope: scope.to_owned(),
        signed_headers: signed_headers
            .split(';')
            .map(str::to_ascii_lowercase)
            .collect(),
        signature: signature.to_owned(),
        amz_date,
        expires_s: None,
        presigned: false,
    })
}

/// Verifies the SigV4 signature of `req` for `service` in `region` at time `now`.
pub fn verify(
    req: &HttpRequest<'_>,
    credentials: &HashMap<String, String>,
    service: &str,
    region: &str,
    now: SystemTime,
) -> Result<(), AuthError> {
    let Some(parts) = signature_parts(req)? else {
        return Err(AuthError {
            type_name: "MissingAuthenticationTokenException",
            message: "Missing Authentication Token".to_owned(),
        });
    };

    let Some(request_time) = parse_amz_date(&parts.amz_date) else {
        return Err(AuthError::incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{}'. See http://en.wikipedia.org/wiki/ISO_8601",
            parts.amz_date
        )));
    };
    check_time(&parts, request_time, now)?;
    check_scope(&parts, service, region)?;

    let Some(secret) = credentials.get(&parts.access_key_id) else {
        return Err(AuthError {
            type_name: "UnrecognizedClientException",
            message: UNRECOGNIZED_CLIENT.to_owned(),
        });
    };

    let body_hash = hex(&Sha256::digest(req.body));
    if let Some(claimed) = header_text(req, "x-amz-content-sha256")
        && claimed != "UNSIGNED-PAYLOAD"
        && !claimed.eq_ignore_ascii_case(&body_hash)
    {
        return Err(AuthError::invalid(
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }

    let canonical = canonical_request(req, &parts, &body_hash);
    let expected = signature(secret, &parts.amz_date, &parts.scope, &canonical);
    if constant_time_eq(expected.as_bytes(), parts.signature.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::invalid(SIGNATURE_MISMATCH))
    }
}

fn check_time(parts: &SignatureParts, request_time: u64, now: SystemTime) -> Result<(), AuthError> {
    let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let skew = CLOCK_SKEW_MAX.as_secs();
    if let Some(expires) = parts.expires_s {
        if expires > PRESIGNED_EXPIRES_MAX_S {
            return Err(AuthError::incomplete(format!(
                "X-Amz-Expires must be less than a week (in seconds) that is {PRESIGNED_EXPIRES_MAX_S}"
            )));
        }
        if now_s > request_time + expires {
            return Err(AuthError::invalid(format!(
                "Signature expired: {} is now earlier than {} ({} - {expires} sec.)",
                parts.amz_date,
                format_amz_date(now_s.saturating_sub(expires)),
                format_amz_date(now_s)
            )));
        }
    } else if request_time + skew < now_s {
        return Err(AuthError::invalid(format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            parts.amz_date,
            format_amz_date(now_s - skew),
            format_amz_date(now_s)
        )));
    }
    if request_time > now_s + skew {
        return Err(AuthError::invalid(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            parts.amz_date,
            format_amz_date(now_s + skew),
            format_amz_date(now_s)
        )));
    }
    Ok(())
}

fn check_scope(parts: &SignatureParts, service: &str, region: &str) -> Result<(), AuthError> {
    let pieces: Vec<&str> = parts.scope.split('/').collect();
    let [date, scope_region, scope_service, terminator] = pieces[..] else {
        return Err(AuthError::incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{}/{}'",
            parts.access_key_id, parts.scope
        )));
    };
    let mut message = String::new();
    let day = parts.amz_date.get(..8).unwrap_or("");
    if date != day {
        message.push_str(&format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != '{day}', from '{}'. ",
            parts.amz_date
        ));
    }
    if scope_region != region {
        message.push_str(&format!(
            "Credential should be scoped to a valid region, not '{scope_region}'. "
        ));
    }
    if scope_service != service {
        message.push_str(&format!(
            "Credential should be scoped to correct service: '{service}'. "
        ));
    }
    if terminator != "aws4_request" {
        message.push_str(&format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. "
        ));
    }
    if message.is_empty() {
        Ok(())
    } else {
        Err(AuthError::invalid(message))
    }
}

/// The canonical request the client should have signed, as text.
pub fn canonical_request(req: &HttpRequest<'_>, parts: &SignatureParts, body_hash: &str) -> String {
    let mut out = String::with_capacity(512);
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query.unwrap_or(""), parts.presigned));
    out.push('\n');
    for name in &parts.signed_headers {
        out.push_str(name);
        out.push(':');
        let mut first = true;
        for (_, value) in req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            if !first {
                out.push(',');
            }
            first = false;
            push_trimmed(&mut out, value);
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&parts.signed_headers.join(";"));
    out.push('\n');
    out.push_str(body_hash);
    out
}

/// A header value with leading and trailing whitespace removed and inner runs (including the
/// line breaks of folded headers) collapsed to one space. Bytes that are not UTF-8 are kept as
/// replacement characters; such a value cannot have been signed by an SDK anyway.
fn push_trimmed(out: &mut String, value: &[u8]) {
    let text = String::from_utf8_lossy(value);
    let mut first = true;
    for word in text.split_ascii_whitespace() {
        if !first {
            out.push(' ');
        }
        first = false;
        out.push_str(word);
    }
}

/// The path normalized (RFC 3986 dot segments, empty segments) and percent-encoded per segment.
pub fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 8);
    for segment in &segments {
        out.push('/');
        uri_encode(&mut out, segment.as_bytes());
    }
    if segments.is_empty() || path.ends_with('/') {
        out.push('/');
    }
    out
}

/// The query pairs decoded, re-encoded and sorted; `X-Amz-Signature` dropped when presigned.
pub fn canonical_query(query: &str, presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let mut key = String::new();
            uri_encode(&mut key, &percent_decode(k));
            let mut value = String::new();
            uri_encode(&mut value, &percent_decode(v));
            (key, value)
        })
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The query's pairs, decoded.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                String::from_utf8_lossy(&percent_decode(k)).into_owned(),
                String::from_utf8_lossy(&percent_decode(v)).into_owned(),
            )
        })
        .collect()
}

/// Percent-encodes every byte outside the unreserved set `A-Za-z0-9-_.~`, uppercase hex.
fn uri_encode(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0x0f)] as char);
        }
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The signing key of `secret` for a scope `<yyyymmdd>/<region>/<service>/aws4_request`.
pub fn signing_key(secret: &str, scope: &str) -> Vec<u8> {
    let mut key = format!("AWS4{secret}").into_bytes();
    for piece in scope.split('/') {
        key = hmac(&key, piece.as_bytes());
    }
    key
}

/// The hex signature of a canonical request.
pub fn signature(secret: &str, amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let key = signing_key(secret, scope);
    hex(&hmac(
        &key,
        string_to_sign(amz_date, scope, canonical_request).as_bytes(),
    ))
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out
}

/// Compares without an early exit, so the time taken does not reveal how many leading
/// characters of a guessed signature were right. Lengths are public (always 64 for SigV4).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn header_text<'a>(req: &HttpRequest<'a>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

// ---------------------------------------------------------------------------------------------
// Dates. SigV4 uses ISO 8601 basic format, `20150830T123600Z`; the `Date` header uses RFC 1123.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Epoch seconds of `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    u64::try_from(days * 86_400 + i64::from(h * 3600 + mi * 60 + se)).ok()
}

/// `YYYYMMDDTHHMMSSZ` of epoch seconds.
pub fn format_amz_date(epoch_s: u64) -> String {
    let days = (epoch_s / 86_400) as i64;
    let rem = epoch_s % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → `19941106T084937Z`.
fn http_date_to_amz(s: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut words = s.split_whitespace().skip(1);
    let day: u32 = words.next()?.parse().ok()?;
    let month_name = words.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? + 1;
    let year: u32 = words.next()?.parse().ok()?;
    let time = words.next()?;
    let mut hms = time.split(':').map(|t| t.parse::<u32>().ok());
    let (h, mi, se) = (hms.next()??, hms.next()??, hms.next()??);
    Some(format!("{year:04}{month:02}{day:02}T{h:02}{mi:02}{se:02}Z"))
}

#[cfg(test)]
mod tests;
