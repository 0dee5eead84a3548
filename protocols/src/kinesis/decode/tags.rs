//! Tags: AddTagsToStream, RemoveTagsFromStream and ListTagsForStream by stream, TagResource
//! and UntagResource by resource ARN.

use sluice_core::api::{ListTagsForStreamInput, Tag};
use sluice_core::{KinesisError, limits};

use super::arns::{resolve_stream, stream_members};
use super::body::{Obj, string_list, tags_of};
use super::constraints::Violations;
use super::{Home, to_u32};

const LIST_TAGS_LIMIT_MAX: i64 = 50;

pub fn add_tags_to_stream(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<(String, Vec<Tag>), KinesisError> {
    let tag_members = body.map("Tags")?;
    let tags = tags_of(tag_members)?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.not_null(tag_members, "tags");
    v.tag_map(tag_members, &tags, "tags");
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok((resolve_stream(home, name, arn)?, tags))
}

pub fn remove_tags_from_stream(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<(String, Vec<String>), KinesisError> {
    let items = body.list("TagKeys")?;
    let keys = string_list(items)?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.tag_keys(items.map(|_| keys.as_slice()), "tagKeys");
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok((
        resolve_stream(home, name, arn)?,
        keys.into_iter().map(str::to_owned).collect(),
    ))
}

pub fn list_tags_for_stream(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<ListTagsForStreamInput, KinesisError> {
    let limit = body.integer("Limit")?;
    let start = body.string("ExclusiveStartTagKey")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.range(limit, "limit", 1, Some(LIST_TAGS_LIMIT_MAX));
    v.str_len(
        start,
        "exclusiveStartTagKey",
        Some(1),
        Some(limits::TAG_KEY_CHARS_MAX),
    );
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok(ListTagsForStreamInput {
        stream_name: resolve_stream(home, name, arn)?,
        exclusive_start_tag_key: start.map(str::to_owned),
        limit: to_u32(limit),
    })
}

pub fn tag_resource(body: Obj<'_, '_>) -> Result<(String, Vec<Tag>), KinesisError> {
    let arn = body.string("ResourceARN")?;
    let tag_members = body.map("Tags")?;
    let tags = tags_of(tag_members)?;
    let mut v = Violations::default();
    v.resource_arn(arn);
    v.not_null(tag_members, "tags");
    v.tag_map(tag_members, &tags, "tags");
    v.finish()?;
    Ok((arn.expect("validated as not null").to_owned(), tags))
}

pub fn untag_resource(body: Obj<'_, '_>) -> Result<(String, Vec<String>), KinesisError> {
    let arn = body.string("ResourceARN")?;
    let items = body.list("TagKeys")?;
    let keys = string_list(items)?;
    let mut v = Violations::default();
    v.resource_arn(arn);
    v.tag_keys(items.map(|_| keys.as_slice()), "tagKeys");
    v.finish()?;
    Ok((
        arn.expect("validated as not null").to_owned(),
        keys.into_iter().map(str::to_owned).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::value::parse;

    const HOME: Home<'static> = Home {
        region: "us-east-1",
        account_id: "000000000000",
    };

    #[test]
    fn remove_tags_from_stream_and_untag_resource_check_tag_keys_with_the_same_texts() {
        let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
        let error = |body: String, by_stream: bool| {
            let doc = parse(body.as_bytes()).expect("test bodies are JSON");
            let result = if by_stream {
                remove_tags_from_stream(HOME, Obj::new(&doc)).map(|_| ())
            } else {
                untag_resource(Obj::new(&doc)).map(|_| ())
            };
            result.expect_err("refused").message
        };
        let long = "k".repeat(129);
        let many: Vec<String> = (0..51).map(|i| format!("\"k{i}\"")).collect();
        let shown_many: Vec<String> = (0..51).map(|i| format!("k{i}")).collect();
        let cases = [
            (
                "[]".to_owned(),
                "Value '[]' at 'tagKeys' failed to satisfy constraint: Member must have length greater than or equal to 1".to_owned(),
            ),
            (
                format!("[\"a\",\"{long}\"]"),
                format!("Value '[a, {long}]' at 'tagKeys' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]"),
            ),
            (
                format!("[{}]", many.join(",")),
                format!("Value '[{}]' at 'tagKeys' failed to satisfy constraint: Member must have length less than or equal to 50", shown_many.join(", ")),
            ),
        ];
        for (keys, violation) in cases {
            let expected = format!("1 validation error detected: {violation}");
            assert_eq!(
                error(format!(r#"{{"StreamName":"s","TagKeys":{keys}}}"#), true),
                expected
            );
            assert_eq!(
                error(
                    format!(r#"{{"ResourceARN":"{arn}","TagKeys":{keys}}}"#),
                    false
                ),
                expected
            );
        }
        assert_eq!(
            error(r#"{"StreamName":"s"}"#.to_owned(), true),
            "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null"
        );
    }
}
