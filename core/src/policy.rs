//! Enforcement of resource-based policies (the documents PutResourcePolicy stores): does a
//! stored policy explicitly deny one request?
//!
//! The principal model: Sluice has one account and no IAM users or roles, so every caller with
//! valid credentials (any access key in the config, or any key at all on loopback) acts as that
//! account's root principal, `arn:aws:iam::<account>:root`. Same-account callers are allowed by
//! default, as in AWS, where their identity policies would grant access; so only `Deny`
//! statements change an outcome, and `Allow` statements are read but never needed.
//!
//! A `Deny` statement applies when all of these match the request:
//! - `Action` (a string or a list; `*` and `?` wildcards; case-insensitive, as IAM compares
//!   actions), or the complement of `NotAction`;
//! - `Resource` (a string or a list; `*` and `?` wildcards; case-sensitive), or the complement
//!   of `NotResource`;
//! - `Principal` (`"*"`, or `{"AWS": …}` with `"*"`, a 12-digit account id or
//!   `arn:aws:iam::<account>:root`, alone or in a list), or the complement of `NotPrincipal`.
//!   Principals of other kinds (`Service`, `Federated`, IAM user and role ARNs) never name the
//!   caller.
//!
//! Anything this module does not evaluate errs towards denying: a `Condition` block on a
//! matching `Deny` is assumed to hold, a `Deny` without an `Action`, `Resource` or `Principal`
//! element matches every value of it, and a document that cannot be read denies everything.
//! (Stored documents are valid JSON, so the last only guards against a future change there.)

use serde_json::Value;

/// The caller's principal ARN under the single-account model of the module doc.
pub fn root_principal(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:root")
}

/// Whether `policy` has a `Deny` statement that matches `action` (without the `kinesis:`
/// prefix, e.g. `PutRecord`) on `resource_arn` for the root principal of `account_id`.
pub fn explicitly_denies(policy: &str, action: &str, resource_arn: &str, account_id: &str) -> bool {
    let Ok(document) = serde_json::from_str::<Value>(policy) else {
        return true;
    };
    let statements = match document.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
        Some(one) => vec![one],
        None => return true,
    };
    let action = format!("kinesis:{action}");
    statements.into_iter().any(|statement| {
        let effect = statement.get("Effect").and_then(Value::as_str);
        effect == Some("Deny")
            && element_matches(statement, "Action", "NotAction", |pattern| {
                glob_matches(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
            })
            && element_matches(statement, "Resource", "NotResource", |pattern| {
                glob_matches(pattern, resource_arn)
            })
            && principal_matches(statement, account_id)
        // A Condition is not evaluated: the statement is taken to apply (see the module doc).
    })
}

/// The strings of an element that may be one string or a list of them; `None` when it has
/// another shape.
fn strings(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// Matches `Name` (any listed pattern matches) or `NotName` (none does); an element of an
/// unreadable shape, or neither element, matches, to err towards denying.
fn element_matches(
    statement: &Value,
    name: &str,
    not_name: &str,
    matches: impl Fn(&str) -> bool,
) -> bool {
    if let Some(value) = statement.get(name) {
        return strings(value).is_none_or(|list| list.into_iter().any(&matches));
    }
    if let Some(value) = statement.get(not_name) {
        return strings(value).is_none_or(|list| !list.into_iter().any(&matches));
    }
    true
}

fn principal_matches(statement: &Value, account_id: &str) -> bool {
    if let Some(value) = statement.get("Principal") {
        return names_caller(value, account_id).unwrap_or(true);
    }
    if let Some(value) = statement.get("NotPrincipal") {
        return names_caller(value, account_id).is_none_or(|named| !named);
    }
    true
}

/// Whether a principal element names the caller; `None` when its shape is unreadable.
fn names_caller(value: &Value, account_id: &str) -> Option<bool> {
    match value {
        Value::String(s) => Some(s == "*"),
        Value::Object(kinds) => {
            let mut named = false;
            for (kind, ids) in kinds {
                let ids = strings(ids)?;
                named |= kind == "AWS"
                    && ids.into_iter().any(|id| {
                        id == "*" || id == account_id || id == root_principal(account_id)
                    });
            }
            Some(named)
        }
        _ => None,
    }
}

/// IAM's wildcard match: `*` is any run of characters, `?` any one character.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    // The last `*` seen and the text position it was tried at, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "000000000000";
    const STREAM: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/s";

    fn deny(action: &str, resource: &str, principal: &str) -> String {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Principal":{principal},"Action":{action},"Resource":{resource}}}]}}"#
        )
    }

    #[test]
    fn deny_statements_are_matched_by_action_resource_and_principal() {
        let any = r#""*""#;
        let stream = format!("\"{STREAM}\"");
        // (policy, action, whether it is denied)
        let cases: Vec<(String, &str, bool)> = vec![
            (deny(r#""kinesis:PutRecord""#, any, any), "PutRecord", true),
            (
                deny(r#""kinesis:PutRecord""#, any, any),
                "PutRecords",
                false,
            ),
            (
                deny(r#""kinesis:PutRecord*""#, any, any),
                "PutRecords",
                true,
            ),
            (deny(r#""kinesis:put*""#, any, any), "PutRecord", true),
            (
                deny(r#""KINESIS:GETRECORDS""#, any, any),
                "GetRecords",
                true,
            ),
            (
                deny(r#""kinesis:*""#, any, any),
                "DescribeStreamSummary",
                true,
            ),
            (deny(r#""*""#, any, any), "GetShardIterator", true),
            (
                deny(r#""kinesis:Get?ecords""#, any, any),
                "GetRecords",
                true,
            ),
            (deny(r#""kinesis:Put*""#, any, any), "GetRecords", false),
            (deny(r#""s3:*""#, any, any), "PutRecord", false),
            (
                deny(r#"["kinesis:GetRecords","kinesis:PutRecord"]"#, any, any),
                "PutRecord",
                true,
            ),
            (deny(r#""kinesis:*""#, &stream, any), "PutRecord", true),
            (
                deny(r#""kinesis:*""#, r#""arn:aws:kinesis:*:*:stream/s""#, any),
                "PutRecord",
                true,
            ),
            (
                deny(
                    r#""kinesis:*""#,
                    r#""arn:aws:kinesis:us-east-1:000000000000:stream/other""#,
                    any,
                ),
                "PutRecord",
                false,
            ),
            (
                deny(
                    r#""kinesis:*""#,
                    r#""arn:aws:kinesis:us-east-1:000000000000:stream/S""#,
                    any,
                ),
                "PutRecord",
                false,
            ),
            (
                deny(
                    r#""kinesis:*""#,
                    r#"["arn:aws:kinesis:*:*:stream/x", "arn:aws:kinesis:*:*:stream/s"]"#,
                    any,
                ),
                "PutRecord",
                true,
            ),
            (
                deny(r#""kinesis:*""#, any, r#"{"AWS":"*"}"#),
                "PutRecord",
                true,
            ),
            (
                deny(r#""kinesis:*""#, any, r#"{"AWS":"000000000000"}"#),
                "PutRecord",
                true,
            ),
            (
                deny(
                    r#""kinesis:*""#,
                    any,
                    r#"{"AWS":"arn:aws:iam::000000000000:root"}"#,
                ),
                "PutRecord",
                true,
            ),
            (
                deny(
                    r#""kinesis:*""#,
                    any,
                    r#"{"AWS":["111111111111","000000000000"]}"#,
                ),
                "PutRecord",
                true,
            ),
            (
                deny(r#""kinesis:*""#, any, r#"{"AWS":"111111111111"}"#),
                "PutRecord",
                false,
            ),
            (
                deny(
                    r#""kinesis:*""#,
                    any,
                    r#"{"AWS":"arn:aws:iam::000000000000:role/r"}"#,
                ),
                "PutRecord",
                false,
            ),
            (
                deny(
                    r#""kinesis:*""#,
                    any,
                    r#"{"Service":"firehose.amazonaws.com"}"#,
                ),
                "PutRecord",
                false,
            ),
        ];
        for (policy, action, denied) in cases {
            assert_eq!(
                explicitly_denies(&policy, action, STREAM, ACCOUNT),
                denied,
                "{action} under {policy}"
            );
        }
    }

    #[test]
    fn allow_statements_never_deny() {
        let policy = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kinesis:*","Resource":"*"}]}"#;
        assert!(!explicitly_denies(policy, "PutRecord", STREAM, ACCOUNT));
        let single =
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}"#;
        assert!(!explicitly_denies(single, "PutRecord", STREAM, ACCOUNT));
    }

    #[test]
    fn a_single_statement_object_and_not_elements_are_understood() {
        let single = r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"kinesis:PutRecord","Resource":"*"}}"#;
        assert!(explicitly_denies(single, "PutRecord", STREAM, ACCOUNT));
        let not_action = r#"{"Statement":[{"Effect":"Deny","Principal":"*","NotAction":"kinesis:Describe*","Resource":"*"}]}"#;
        assert!(explicitly_denies(not_action, "PutRecord", STREAM, ACCOUNT));
        assert!(!explicitly_denies(
            not_action,
            "DescribeStream",
            STREAM,
            ACCOUNT
        ));
        let not_resource = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"*","NotResource":"arn:aws:kinesis:*:*:stream/s"}]}"#;
        assert!(!explicitly_denies(
            not_resource,
            "PutRecord",
            STREAM,
            ACCOUNT
        ));
        let not_principal = r#"{"Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":"000000000000"},"Action":"*","Resource":"*"}]}"#;
        assert!(!explicitly_denies(
            not_principal,
            "PutRecord",
            STREAM,
            ACCOUNT
        ));
    }

    #[test]
    fn what_is_not_evaluated_errs_towards_denying() {
        let conditional = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"kinesis:PutRecord","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#;
        assert!(explicitly_denies(conditional, "PutRecord", STREAM, ACCOUNT));
        assert!(!explicitly_denies(
            conditional,
            "GetRecords",
            STREAM,
            ACCOUNT
        ));
        let no_principal =
            r#"{"Statement":[{"Effect":"Deny","Action":"kinesis:PutRecord","Resource":"*"}]}"#;
        assert!(explicitly_denies(
            no_principal,
            "PutRecord",
            STREAM,
            ACCOUNT
        ));
        assert!(explicitly_denies("not json", "PutRecord", STREAM, ACCOUNT));
        assert!(explicitly_denies("{}", "PutRecord", STREAM, ACCOUNT));
    }

    #[test]
    fn the_wildcard_match_backtracks() {
        assert!(glob_matches("a*b*c", "axxbyybc"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a**", "a"));
        assert!(!glob_matches("a*b", "axxbyyc"));
        assert!(!glob_matches("?", ""));
        assert!(glob_matches("arn:aws:kinesis:*:*:stream/*", STREAM));
    }
}
