//! Which characters stream tags may hold, as Kinesis checks them (the texts were recorded from
//! AWS by kinesalite): Unicode letters, digits, white space and `_ . / = + - % @`. AWS then
//! refuses `%` anyway, with a different message, so callers check it in a second step.
//!
//! "Unicode letters" is AWS's approximation of U+00C0..=U+1FFF and U+2C00..=U+D7FF; characters
//! outside the Basic Multilingual Plane (emoji, for one) are refused.

/// Whether every character of `text` is in the set AWS allows in tag keys and values
/// (including `%`, which [`contains_percent`] rejects separately).
pub fn has_only_tag_characters(text: &str) -> bool {
    text.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '.' | '/' | '=' | '+' | '-' | ' ' | '@' | '%')
            || ('\u{C0}'..='\u{1FFF}').contains(&c)
            || ('\u{2C00}'..='\u{D7FF}').contains(&c)
    })
}

pub fn contains_percent(text: &str) -> bool {
    text.contains('%')
}

/// Keys with this prefix are reserved for AWS.
pub const RESERVED_KEY_PREFIX: &str = "aws:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_characters_follow_the_aws_set() {
        assert!(has_only_tag_characters("ü0 _./=+-@%"));
        assert!(has_only_tag_characters(""));
        assert!(has_only_tag_characters("ÿ"));
        for bad in ["abc;def", "abc\tdef", "abc\ndef", "abc,def", "😀", "a*b"] {
            assert!(!has_only_tag_characters(bad), "{bad:?}");
        }
    }
}
