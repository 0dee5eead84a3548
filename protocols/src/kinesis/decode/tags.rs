//! Tags: AddTagsToStream, RemoveTagsFromStream and ListTagsForStream by stream, TagResource
//! and UntagResource by resource ARN.

use sluice_core::api::{ListTagsForStreamInput, Tag};
use sluice_core::{KinesisError, limits};

use super::arns::{resolve_stream, stream_members};
use super::body::{Obj, as_string, string_list, tags_of};
use super::constraints::{Shown, TAG_KEYS_MAX, Violations};
use super::{Home, to_u32};
use crate::json::JsonValue;

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
    let mut keys = Vec::with_capacity(items.map_or(0, <[_]>::len));
    for item in items.unwrap_or_default() {
        if !matches!(item, JsonValue::Null) {
            keys.push(as_string(item)?.to_owned());
        }
    }
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.not_null(items, "tagKeys");
    if items.is_some() {
        let shown = || format!("[{}]", keys.join(", "));
        if keys.is_empty() {
            v.push(
                Shown::Owned(shown()),
                "tagKeys",
                "Member must have length greater than or equal to 1",
            );
        }
        if keys.len() > TAG_KEYS_MAX {
            v.push(
                Shown::Owned(shown()),
                "tagKeys",
                &format!("Member must have length less than or equal to {TAG_KEYS_MAX}"),
            );
        }
        if !keys
            .iter()
            .all(|k| (1..=limits::TAG_KEY_CHARS_MAX).contains(&k.chars().count()))
        {
            v.push(
                Shown::Owned(shown()),
                "tagKeys",
                &format!(
                    "Member must satisfy constraint: [Member must have length less than or equal to {}, Member must have length greater than or equal to 1]",
                    limits::TAG_KEY_CHARS_MAX
                ),
            );
        }
    }
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok((resolve_stream(home, name, arn)?, keys))
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
    v.not_null(items, "tagKeys");
    v.list_len(items.map(|_| keys.as_slice()), "tagKeys", 1, TAG_KEYS_MAX);
    if items.is_some()
        && !keys
            .iter()
            .all(|k| (1..=limits::TAG_KEY_CHARS_MAX).contains(&k.chars().count()))
    {
        v.push(
            Shown::Owned(format!("[{}]", keys.join(", "))),
            "tagKeys",
            &format!(
                "Member must satisfy constraint: [Member must have length less than or equal to {}, Member must have length greater than or equal to 1]",
                limits::TAG_KEY_CHARS_MAX
            ),
        );
    }
    v.finish()?;
    Ok((
        arn.expect("validated as not null").to_owned(),
        keys.into_iter().map(str::to_owned).collect(),
    ))
}
