//! What every `/metrics` renderer of the workspace shares about Prometheus's text format.

/// A label value with backslash, double quote and newline escaped, as the text format wants.
pub fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_label_value_escapes_backslash_quote_and_newline() {
        assert_eq!(super::label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
