//! Calls that name a resource by ARN rather than a stream: Put-, Get- and DeleteResourcePolicy
//! and ListTagsForResource. TagResource and UntagResource are in `tags`. Model constraints and
//! member order as in `stream_settings`.

use sluice_core::KinesisError;

use super::body::Obj;
use super::constraints::Violations;

/// Get-, Delete- and ListTagsForResource: just the ResourceARN.
pub fn resource_arn(body: Obj<'_, '_>) -> Result<String, KinesisError> {
    let arn = body.string("ResourceARN")?;
    let mut v = Violations::default();
    v.resource_arn(arn);
    v.finish()?;
    Ok(arn.expect("validated as not null").to_owned())
}

pub fn put_resource_policy(body: Obj<'_, '_>) -> Result<(String, String), KinesisError> {
    let policy = body.string("Policy")?;
    let arn = body.string("ResourceARN")?;
    let mut v = Violations::default();
    v.not_null(policy, "policy");
    v.resource_arn(arn);
    v.finish()?;
    Ok((
        arn.expect("validated as not null").to_owned(),
        policy.expect("validated as not null").to_owned(),
    ))
}
