//! Stream tags: AddTagsToStream, RemoveTagsFromStream and ListTagsForStream, and the tag rules
//! CreateStream and consumer tagging share, with AWS's texts.

use super::{Catalog, keys_after, page_size, take_page};
use crate::api::{ListTagsForStreamInput, ListTagsForStreamOutput, Tag};
use crate::error::KinesisError;
use crate::limits;
use crate::tag_rules;

/// AWS's text for a tag key or value with a character outside the tag character set.
const INVALID_TAG_CHARACTERS: &str = "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @.";

/// Which call a refusal names: AWS's texts say "add tags to" or "remove tags from".
#[derive(Clone, Copy, Debug)]
enum TagChange {
    Add,
    Remove,
}

/// What a refusal names: AWS's texts say "stream <name>" or "consumer <name>".
#[derive(Clone, Copy, Debug)]
enum Tagged {
    Stream,
    Consumer,
}

impl Tagged {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Consumer => "consumer",
        }
    }
}

/// `Failed to add tags to stream <name> under account <account> because <reason>`: the form of
/// every refusal that names the resource. `reason` carries its own full stop.
fn tag_change_refused(
    change: TagChange,
    tagged: Tagged,
    account: &str,
    name: &str,
    reason: &str,
) -> KinesisError {
    let change = match change {
        TagChange::Add => "add tags to",
        TagChange::Remove => "remove tags from",
    };
    let tagged = tagged.as_str();
    KinesisError::invalid_argument(format!(
        "Failed to {change} {tagged} {name} under account {account} because {reason}"
    ))
}

/// Checks the characters of tag keys (and, for an add, values) in AWS's order: first the tag
/// character set, then `%`, which the set allows but the tagging calls refuse.
fn validate_tag_texts<'a>(
    change: TagChange,
    account: &str,
    stream_name: &str,
    mut texts: impl Iterator<Item = &'a str> + Clone,
) -> Result<(), KinesisError> {
    if texts
        .clone()
        .any(|text| !tag_rules::has_only_tag_characters(text))
    {
        return Err(KinesisError::invalid_argument(INVALID_TAG_CHARACTERS));
    }
    if texts.any(tag_rules::contains_percent) {
        return Err(tag_change_refused(
            change,
            Tagged::Stream,
            account,
            stream_name,
            "some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'.",
        ));
    }
    Ok(())
}

/// Refuses a tag key with the prefix AWS reserves.
fn check_reserved_prefix(
    tagged: Tagged,
    account: &str,
    name: &str,
    tags: &[Tag],
) -> Result<(), KinesisError> {
    if tags
        .iter()
        .any(|tag| tag.key.starts_with(tag_rules::RESERVED_KEY_PREFIX))
    {
        return Err(tag_change_refused(
            TagChange::Add,
            tagged,
            account,
            name,
            &format!(
                "tag keys may not start with '{}'.",
                tag_rules::RESERVED_KEY_PREFIX
            ),
        ));
    }
    Ok(())
}

fn too_many(tagged: Tagged, account: &str, name: &str) -> KinesisError {
    tag_change_refused(
        TagChange::Add,
        tagged,
        account,
        name,
        &format!(
            "a given {} cannot have more than {} tags associated with it.",
            tagged.as_str(),
            limits::TAGS_PER_STREAM_MAX
        ),
    )
}

/// Checks tag characters and the reserved prefix, in AWS's order, for an add (or a create).
pub(super) fn validate_new_tags(
    account: &str,
    stream_name: &str,
    tags: &[Tag],
) -> Result<(), KinesisError> {
    validate_tag_texts(
        TagChange::Add,
        account,
        stream_name,
        tags.iter()
            .flat_map(|tag| [tag.key.as_str(), tag.value.as_str()]),
    )?;
    check_reserved_prefix(Tagged::Stream, account, stream_name, tags)
}

pub(super) fn too_many_tags(account: &str, stream_name: &str) -> KinesisError {
    too_many(Tagged::Stream, account, stream_name)
}

/// Checks tags for a consumer the way stream tags are checked, except that `%` gets the
/// character-set text: AWS's characters, no `aws:` prefix, and at most 50 once added to the
/// `existing` ones.
pub(crate) fn validate_consumer_tags(
    account: &str,
    consumer_name: &str,
    tags: &[Tag],
    existing: usize,
) -> Result<(), KinesisError> {
    if tags
        .iter()
        .flat_map(|tag| [tag.key.as_str(), tag.value.as_str()])
        .any(|text| !tag_rules::has_only_tag_characters(text) || tag_rules::contains_percent(text))
    {
        return Err(KinesisError::invalid_argument(INVALID_TAG_CHARACTERS));
    }
    check_reserved_prefix(Tagged::Consumer, account, consumer_name, tags)?;
    let mut keys: Vec<&str> = tags.iter().map(|tag| tag.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    if existing + keys.len() > limits::TAGS_PER_STREAM_MAX {
        return Err(too_many(Tagged::Consumer, account, consumer_name));
    }
    Ok(())
}

impl Catalog {
    pub fn add_tags_to_stream(
        &mut self,
        stream_name: &str,
        tags: Vec<Tag>,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let account = self.config.account_id.clone();
        let stream = self.found_readable_mut(stream_name, now_ms)?;
        validate_new_tags(&account, stream_name, &tags)?;
        let added = tags
            .iter()
            .filter(|tag| !stream.tags.contains_key(&tag.key));
        let mut new_keys: Vec<&str> = added.map(|tag| tag.key.as_str()).collect();
        new_keys.sort_unstable();
        new_keys.dedup();
        if stream.tags.len() + new_keys.len() > limits::TAGS_PER_STREAM_MAX {
            return Err(too_many_tags(&account, stream_name));
        }
        for tag in tags {
            stream.tags.insert(tag.key, tag.value);
        }
        Ok(())
    }

    pub fn remove_tags_from_stream(
        &mut self,
        stream_name: &str,
        tag_keys: Vec<String>,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let account = self.config.account_id.clone();
        let stream = self.found_readable_mut(stream_name, now_ms)?;
        validate_tag_texts(
            TagChange::Remove,
            &account,
            stream_name,
            tag_keys.iter().map(String::as_str),
        )?;
        for key in &tag_keys {
            stream.tags.remove(key);
        }
        Ok(())
    }

    pub fn list_tags_for_stream(
        &self,
        input: ListTagsForStreamInput,
        now_ms: u64,
    ) -> Result<ListTagsForStreamOutput, KinesisError> {
        let stream = self.found(&input.stream_name, now_ms)?;
        let limit = page_size(
            input.limit,
            u32::try_from(limits::TAGS_PER_STREAM_MAX).expect("50 fits u32"),
        );
        let remaining = stream
            .tags
            .range::<str, _>(keys_after(input.exclusive_start_tag_key.as_deref()));
        let (page, has_more_tags) = take_page(remaining, limit);
        let tags: Vec<Tag> = page
            .into_iter()
            .map(|(key, value)| Tag {
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        Ok(ListTagsForStreamOutput {
            tags,
            has_more_tags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::*;
    use crate::catalog::test_support::*;

    #[test]
    fn tags_are_added_listed_in_key_order_and_removed() {
        let (mut catalog, now) = active_catalog(1);
        let tags = [("b", "2"), ("a", "1"), ("ü0 _.", "x"), ("c", "")]
            .map(|(key, value)| Tag {
                key: key.into(),
                value: value.into(),
            })
            .to_vec();
        catalog.add_tags_to_stream("s", tags, now).expect("added");
        let list = |catalog: &Catalog, start: Option<&str>, limit: Option<u32>| {
            catalog
                .list_tags_for_stream(
                    ListTagsForStreamInput {
                        stream_name: "s".into(),
                        exclusive_start_tag_key: start.map(str::to_owned),
                        limit,
                    },
                    now,
                )
                .expect("listed")
        };
        let all = list(&catalog, None, None);
        assert_eq!(
            all.tags.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
            vec!["a", "b", "c", "ü0 _."]
        );
        assert!(!all.has_more_tags);
        let page = list(&catalog, Some("a"), Some(2));
        assert_eq!(
            page.tags,
            vec![
                Tag {
                    key: "b".into(),
                    value: "2".into()
                },
                Tag {
                    key: "c".into(),
                    value: String::new()
                }
            ]
        );
        assert!(page.has_more_tags);
        catalog
            .remove_tags_from_stream("s", vec!["a".into(), "zz".into()], now)
            .expect("removed");
        assert_eq!(list(&catalog, None, None).tags.len(), 3);
    }

    #[test]
    fn tag_changes_refuse_bad_characters_and_more_than_fifty_tags_with_aws_texts() {
        let (mut catalog, now) = active_catalog(1);
        let tag = |key: &str, value: &str| {
            vec![Tag {
                key: key.into(),
                value: value.into(),
            }]
        };
        let error = catalog
            .add_tags_to_stream("s", tag("abc;def", "1"), now)
            .expect_err("refused");
        assert_eq!(
            error.message,
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @."
        );
        let error = catalog
            .add_tags_to_stream("s", tag("a", "abc%def"), now)
            .expect_err("refused");
        assert_eq!(
            error.message,
            "Failed to add tags to stream s under account 000000000000 because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'."
        );
        let error = catalog
            .remove_tags_from_stream("s", vec!["abc%def".into()], now)
            .expect_err("refused");
        assert!(
            error
                .message
                .starts_with("Failed to remove tags from stream s under account 000000000000")
        );
        let forty: Vec<Tag> = (0..40)
            .map(|i| Tag {
                key: format!("k{i}"),
                value: String::new(),
            })
            .collect();
        catalog
            .add_tags_to_stream("s", forty.clone(), now)
            .expect("forty fit");
        catalog
            .add_tags_to_stream("s", forty, now)
            .expect("re-adding existing keys adds nothing");
        let eleven: Vec<Tag> = (0..11)
            .map(|i| Tag {
                key: format!("n{i}"),
                value: String::new(),
            })
            .collect();
        let error = catalog
            .add_tags_to_stream("s", eleven, now)
            .expect_err("fifty-one");
        assert_eq!(
            error.message,
            "Failed to add tags to stream s under account 000000000000 because a given stream cannot have more than 50 tags associated with it."
        );
        assert_eq!(
            catalog.add_tags_to_stream("x", tag("a", "b"), now),
            Err(KinesisError::stream_not_found("x", ACCOUNT))
        );
    }

    #[test]
    fn removing_a_tag_key_with_a_percent_sign_names_the_removal_in_the_aws_text() {
        let (mut catalog, now) = active_catalog(1);
        let error = catalog
            .remove_tags_from_stream("s", vec!["abc%def".into()], now)
            .expect_err("refused");
        assert_eq!(
            error.message,
            "Failed to remove tags from stream s under account 000000000000 because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'."
        );
        let error = catalog
            .remove_tags_from_stream("s", vec!["abc;def".into()], now)
            .expect_err("refused");
        assert_eq!(
            error.message,
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @."
        );
    }

    #[test]
    fn tag_changes_need_an_active_or_updating_stream() {
        let mut catalog = Catalog::new(config());
        create(&mut catalog, "s", 1, T0);
        let error = catalog.add_tags_to_stream(
            "s",
            vec![Tag {
                key: "a".into(),
                value: "b".into(),
            }],
            T0,
        );
        assert_eq!(
            error,
            Err(KinesisError::stream_not_active("s", ACCOUNT, "CREATING"))
        );
        let error = catalog.remove_tags_from_stream("s", vec!["a".into()], T0);
        assert_eq!(
            error,
            Err(KinesisError::stream_not_active("s", ACCOUNT, "CREATING"))
        );
    }
}
