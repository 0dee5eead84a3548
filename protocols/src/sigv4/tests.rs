//! The verifier against AWS's official SigV4 test suite (vectors copied from the `aws-sigv4`
//! crate into `protocols/tests/fixtures/sigv4`, see the README there) and against requests
//! signed by the real `aws-sigv4` signer.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sigv4")
}

/// A request as the suite writes it: request line, headers (continuation lines folded into the
/// previous header), a blank line, the body.
struct RawRequest {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn parse_request(text: &str) -> RawRequest {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().expect("a request line");
    let (method, rest) = request_line.split_once(' ').expect("method and target");
    let target = rest
        .rsplit_once(' ')
        .map_or(rest, |(target, _version)| target);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().expect("a continuation follows a header");
            last.1.push(b'\n');
            last.1.extend_from_slice(line.as_bytes());
        } else {
            let (name, value) = line.split_once(':').expect("name:value");
            headers.push((name.to_owned(), value.as_bytes().to_vec()));
        }
    }
    RawRequest {
        method: method.to_owned(),
        path,
        query,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn context_time(dir: &Path) -> SystemTime {
    let context: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("context.json")).expect("context.json is readable"),
    )
    .expect("context.json is JSON");
    let stamp = context["timestamp"].as_str().expect("a timestamp");
    // "2015-08-30T12:36:00Z" → "20150830T123600Z".
    let basic: String = stamp.chars().filter(|c| *c != '-' && *c != ':').collect();
    UNIX_EPOCH + Duration::from_secs(parse_amz_date(&basic).expect("suite dates parse"))
}

/// Runs `check` on the request as `HttpRequest`.
fn with_request<T>(raw: &RawRequest, check: impl FnOnce(&HttpRequest<'_>) -> T) -> T {
    let headers: Vec<(&str, &[u8])> = raw
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let authorization = raw
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| std::str::from_utf8(v).expect("ASCII"));
    let req = HttpRequest {
        method: &raw.method,
        path: &raw.path,
        query: raw.query.as_deref(),
        authorization,
        headers: &headers,
        body: &raw.body,
        ..HttpRequest::default()
    };
    check(&req)
}

fn suite_credentials() -> HashMap<String, String> {
    HashMap::from([("AKIDEXAMPLE".to_owned(), SUITE_SECRET.to_owned())])
}

#[test]
fn every_copied_suite_case_verifies_and_rebuilds_the_official_canonical_request() {
    let mut cases = 0;
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures()).expect("fixture directory exists") {
        let dir = entry.expect("directory entry").path();
        if !dir.is_dir() {
            continue;
        }
        cases += 1;
        let now = context_time(&dir);
        for (signed, canonical) in [
            ("header-signed-request.txt", "header-canonical-request.txt"),
            ("query-signed-request.txt", "query-canonical-request.txt"),
        ] {
            let Ok(text) = std::fs::read_to_string(dir.join(signed)) else {
                continue;
            };
            let expected = std::fs::read_to_string(dir.join(canonical))
                .expect("each signed request has its canonical request");
            let raw = parse_request(&text);
            with_request(&raw, |req| {
                let parts = signature_parts(req)
                    .expect("suite requests are well formed")
                    .expect("suite requests are signed");
                let body_hash = hex(&Sha256::digest(req.body));
                assert_eq!(
                    canonical_request(req, &parts, &body_hash),
                    expected,
                    "{}/{signed}",
                    dir.display()
                );
                assert_eq!(
                    verify(req, &suite_credentials(), "service", "us-east-1", now),
                    Ok(()),
                    "{}/{signed}",
                    dir.display()
                );
            });
            checked += 1;
        }
    }
    assert!(cases >= 25, "only {cases} suite cases found");
    assert!(checked >= 50, "only {checked} signed requests checked");
}

fn vanilla() -> (RawRequest, SystemTime) {
    let dir = fixtures().join("get-vanilla");
    let text = std::fs::read_to_string(dir.join("header-signed-request.txt"))
        .expect("get-vanilla is copied");
    (parse_request(&text), context_time(&dir))
}

#[test]
fn a_wrong_secret_is_refused_with_aws_mismatch_text() {
    let (raw, now) = vanilla();
    let credentials = HashMap::from([("AKIDEXAMPLE".to_owned(), "not-the-secret".to_owned())]);
    let error = with_request(&raw, |req| {
        verify(req, &credentials, "service", "us-east-1", now).expect_err("wrong secret")
    });
    assert_eq!(error.type_name, "InvalidSignatureException");
    assert_eq!(error.message, SIGNATURE_MISMATCH);
}

#[test]
fn an_unknown_access_key_is_an_unrecognized_client() {
    let (raw, now) = vanilla();
    let credentials = HashMap::from([("SOMEONEELSE".to_owned(), SUITE_SECRET.to_owned())]);
    let error = with_request(&raw, |req| {
        verify(req, &credentials, "service", "us-east-1", now).expect_err("unknown key")
    });
    assert_eq!(
        error,
        AuthError {
            type_name: "UnrecognizedClientException",
            message: "The security token included in the request is invalid.".to_owned(),
        }
    );
}

#[test]
fn a_date_more_than_fifteen_minutes_old_or_ahead_is_refused_with_aws_text() {
    let (raw, signed_at) = vanilla();
    let late = signed_at + Duration::from_secs(15 * 60 + 1);
    let error = with_request(&raw, |req| {
        verify(req, &suite_credentials(), "service", "us-east-1", late).expect_err("stale")
    });
    assert_eq!(error.type_name, "InvalidSignatureException");
    assert_eq!(
        error.message,
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z (20150830T125101Z - 15 min.)"
    );
    let early = signed_at - Duration::from_secs(15 * 60 + 1);
    let error = with_request(&raw, |req| {
        verify(req, &suite_credentials(), "service", "us-east-1", early).expect_err("future")
    });
    assert_eq!(
        error.message,
        "Signature not yet current: 20150830T123600Z is still later than 20150830T123559Z (20150830T122059Z + 15 min.)"
    );
    // Exactly 15 minutes either way is still fine.
    for now in [
        signed_at + Duration::from_secs(900),
        signed_at - Duration::from_secs(900),
    ] {
        with_request(&raw, |req| {
            assert_eq!(
                verify(req, &suite_credentials(), "service", "us-east-1", now),
                Ok(())
            );
        });
    }
}

#[test]
fn a_scope_for_another_region_or_service_is_refused() {
    let (raw, now) = vanilla();
    let error = with_request(&raw, |req| {
        verify(req, &suite_credentials(), "kinesis", "eu-west-1", now).expect_err("scope")
    });
    assert_eq!(error.type_name, "InvalidSignatureException");
    assert_eq!(
        error.message,
        "Credential should be scoped to a valid region, not 'us-east-1'. Credential should be scoped to correct service: 'kinesis'. "
    );
}

#[test]
fn a_tampered_signature_or_header_is_refused() {
    let (mut raw, now) = vanilla();
    // Change one header that is signed.
    for (name, value) in &mut raw.headers {
        if name.eq_ignore_ascii_case("host") {
            *value = b"evil.example.com".to_vec();
        }
    }
    let error = with_request(&raw, |req| {
        verify(req, &suite_credentials(), "service", "us-east-1", now).expect_err("tampered")
    });
    assert_eq!(error.message, SIGNATURE_MISMATCH);
}

#[test]
fn dates_convert_both_ways() {
    for s in [
        "19700101T000000Z",
        "20000229T235959Z",
        "20150830T123600Z",
        "21060207T062815Z",
    ] {
        let epoch = parse_amz_date(s).expect("valid");
        assert_eq!(format_amz_date(epoch), s);
    }
    assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
    assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
    assert_eq!(parse_amz_date("20151330T123600Z"), None);
    assert_eq!(
        http_date_to_amz("Sun, 06 Nov 1994 08:49:37 GMT").as_deref(),
        Some("19941106T084937Z")
    );
}

#[test]
fn canonical_uris_are_normalized_and_encoded_twice() {
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_uri("//example//"), "/example/");
    assert_eq!(canonical_uri("/a/b/../c/./d"), "/a/c/d");
    assert_eq!(canonical_uri("/a%3Db c"), "/a%253Db%20c");
}

// ---------------------------------------------------------------------------------------------
// Requests signed by AWS's own signer.

mod real_signer {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
    };
    use aws_smithy_runtime_api::client::identity::Identity;

    use super::*;

    const KEY: &str = "AKIDSLUICE";
    const SECRET: &str = "sluice-secret/with+chars";
    const BODY: &[u8] = br#"{"StreamName":"s","Data":"AAFoZWxsbw==","PartitionKey":"pk"}"#;

    struct Signed {
        path_and_query: String,
        headers: Vec<(String, Vec<u8>)>,
    }

    fn signed(location: SignatureLocation, at: SystemTime) -> Signed {
        let identity: Identity = Credentials::new(KEY, SECRET, None, None, "test").into();
        let mut settings = SigningSettings::default();
        settings.signature_location = location;
        if location == SignatureLocation::QueryParams {
            settings.expires_in = Some(Duration::from_secs(300));
        }
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("kinesis")
            .time(at)
            .settings(settings)
            .build()
            .expect("complete signing params")
            .into();
        let base_headers = [
            ("host", "localhost:4567"),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "Kinesis_20131202.PutRecord"),
        ];
        let signable = SignableRequest::new(
            "POST",
            "http://localhost:4567/",
            base_headers.iter().copied(),
            SignableBody::Bytes(BODY),
        )
        .expect("signable request");
        let (instructions, _signature) =
            sign(signable, &params).expect("signing works").into_parts();
        let mut request = http::Request::builder()
            .method("POST")
            .uri("http://localhost:4567/")
            .body(())
            .expect("valid request");
        for (n, v) in base_headers {
            request
                .headers_mut()
                .insert(n, v.parse().expect("valid value"));
        }
        instructions.apply_to_request_http1x(&mut request);
        Signed {
            path_and_query: request
                .uri()
                .path_and_query()
                .expect("has a path")
                .to_string(),
            headers: request
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn check(signed: &Signed, body: &[u8], now: SystemTime) -> Result<(), AuthError> {
        let headers: Vec<(&str, &[u8])> = signed
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let (path, query) = match signed.path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (signed.path_and_query.as_str(), None),
        };
        let authorization = headers
            .iter()
            .find(|(n, _)| *n == "authorization")
            .map(|(_, v)| std::str::from_utf8(v).expect("ASCII"));
        let req = HttpRequest {
            method: "POST",
            path,
            query,
            authorization,
            headers: &headers,
            body,
            ..HttpRequest::default()
        };
        let credentials = HashMap::from([(KEY.to_owned(), SECRET.to_owned())]);
        verify(&req, &credentials, KINESIS_SERVICE, "us-east-1", now)
    }

    #[test]
    fn header_and_presigned_requests_from_aws_sigv4_verify() {
        let now = SystemTime::now();
        for location in [SignatureLocation::Headers, SignatureLocation::QueryParams] {
            let s = signed(location, now);
            assert_eq!(check(&s, BODY, now), Ok(()), "{location:?}");
        }
    }

    #[test]
    fn a_tampered_body_is_refused_in_both_forms() {
        let now = SystemTime::now();
        let tampered = br#"{"StreamName":"s","Data":"AAFoZWxsbw==","PartitionKey":"pX"}"#;
        for location in [SignatureLocation::Headers, SignatureLocation::QueryParams] {
            let s = signed(location, now);
            let error = check(&s, tampered, now).expect_err("tampered body");
            assert_eq!(error.type_name, "InvalidSignatureException", "{location:?}");
        }
    }

    #[test]
    fn a_presigned_request_expires_after_its_x_amz_expires() {
        let signed_at = SystemTime::now() - Duration::from_secs(301);
        let s = signed(SignatureLocation::QueryParams, signed_at);
        let error = check(&s, BODY, SystemTime::now()).expect_err("expired");
        assert_eq!(error.type_name, "InvalidSignatureException");
        assert!(
            error.message.starts_with("Signature expired: "),
            "{}",
            error.message
        );
        assert!(error.message.ends_with(" - 300 sec.)"), "{}", error.message);
    }
}
