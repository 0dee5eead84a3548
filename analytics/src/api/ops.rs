//! The operations: request fields in, catalog changes, response documents out.

use serde_json::{Value as J, json};
use sluice_core::storage::{CheckpointLog, RecordLog};

use super::catalog::{
    Application, CloudWatchLoggingOption, InputConfig, LambdaProcessor, OutputConfig,
    ReferenceConfig, Status, Tag, bucket_of,
};
use super::{AnalyticsService, ApiError};
use crate::peers::{Resource, function_name, is_log_stream_arn, is_role_arn, resource_of};
use crate::pipeline::{Pipeline, PipelineInput, PipelineTable};
use crate::program::parse_program;
use crate::schema_wire::WireSourceSchema;

/// Limits of the API model and the service.
const NAME_CHARS_MAX: usize = 128;
const CODE_CHARS_MAX: usize = 102_400;
const OUTPUTS_MAX: usize = 3;
/// KDA takes one streaming input and "optionally, one reference data source".
const REFERENCES_MAX: usize = 1;
const TABLE_NAME_CHARS_MAX: usize = 32;
const FILE_KEY_CHARS_MAX: usize = 1024;
const ARN_CHARS_MAX: usize = 2048;
const TAGS_MAX: usize = 50;
const LIST_LIMIT_MAX: usize = 50;

fn field<'a>(doc: &'a J, name: &str) -> Option<&'a J> {
    doc.get(name).filter(|v| !v.is_null())
}

fn string<'a>(doc: &'a J, name: &str) -> Result<Option<&'a str>, ApiError> {
    match field(doc, name) {
        None => Ok(None),
        Some(J::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::new(
            "SerializationException",
            format!("{name} must be a string"),
        )),
    }
}

fn required_str<'a>(doc: &'a J, name: &str) -> Result<&'a str, ApiError> {
    string(doc, name)?.ok_or_else(|| ApiError::invalid(format!("{name} is required")))
}

fn required_u64(doc: &J, name: &str) -> Result<u64, ApiError> {
    field(doc, name)
        .and_then(J::as_u64)
        .ok_or_else(|| ApiError::invalid(format!("{name} is required")))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = (1..=NAME_CHARS_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{name}' at 'applicationName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        )))
    }
}

/// The stream name of a Kinesis stream ARN (`arn:aws:kinesis:region:account:stream/NAME`).
pub(crate) fn stream_name_of(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(6, ':');
    let (_partition, service, _region, _account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if service != "kinesis" && service != "firehose" {
        return None;
    }
    resource
        .strip_prefix("stream/")
        .or_else(|| resource.strip_prefix("deliverystream/"))
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Application {name} is not found"))
}

fn parse_input(doc: &J, id: String) -> Result<InputConfig, ApiError> {
    let name_prefix = required_str(doc, "NamePrefix")?.to_owned();
    if name_prefix.is_empty() || name_prefix.len() > 32 {
        return Err(ApiError::invalid("NamePrefix must be 1 to 32 characters"));
    }
    let (source_kind, source) = if let Some(s) = field(doc, "KinesisStreamsInput") {
        ("KinesisStreams", s)
    } else if let Some(s) = field(doc, "KinesisFirehoseInput") {
        ("KinesisFirehose", s)
    } else {
        return Err(ApiError::invalid(
            "Input needs KinesisStreamsInput or KinesisFirehoseInput",
        ));
    };
    let resource_arn = required_str(source, "ResourceARN")?.to_owned();
    check_source_arn(source_kind, &resource_arn)?;
    let role_arn = string(source, "RoleARN")?.unwrap_or("").to_owned();
    let schema_doc =
        field(doc, "InputSchema").ok_or_else(|| ApiError::invalid("InputSchema is required"))?;
    let schema: WireSourceSchema = serde_json::from_value(schema_doc.clone())
        .map_err(|e| ApiError::invalid(format!("InputSchema is invalid: {e}")))?;
    schema.to_domain().map_err(ApiError::invalid)?;
    let parallelism =
        match field(doc, "InputParallelism").and_then(|p| field(p, "Count")) {
            None => 1,
            Some(c) => c.as_u64().filter(|c| (1..=64).contains(c)).ok_or_else(|| {
                ApiError::invalid("InputParallelism Count must be between 1 and 64")
            })? as u32,
        };
    let processing = field(doc, "InputProcessingConfiguration")
        .map(parse_processing)
        .transpose()?;
    Ok(InputConfig {
        id,
        name_prefix,
        source_kind: source_kind.to_owned(),
        resource_arn,
        role_arn,
        schema,
        parallelism,
        starting_position: None,
        processing,
    })
}

/// Checks that `arn` names the kind of resource `kind` (`KinesisStreams`, `KinesisFirehose`)
/// says: a Kinesis stream ARN or a Firehose delivery stream ARN.
fn check_source_arn(kind: &str, arn: &str) -> Result<(), ApiError> {
    if arn.len() > ARN_CHARS_MAX {
        return Err(ApiError::invalid(format!(
            "ResourceARN is longer than {ARN_CHARS_MAX} characters"
        )));
    }
    if matches!(
        (kind, resource_of(arn)),
        ("KinesisStreams", Some(Resource::KinesisStream(_)))
            | ("KinesisFirehose", Some(Resource::DeliveryStream(_)))
    ) {
        return Ok(());
    }
    let what = if kind == "KinesisStreams" {
        "Kinesis stream"
    } else {
        "Kinesis Firehose delivery stream"
    };
    Err(ApiError::invalid(format!(
        "ResourceARN {arn} is not a valid {what} ARN"
    )))
}

/// Checks a RoleARN that the model requires.
fn check_role(member: &str, arn: &str) -> Result<(), ApiError> {
    if arn.len() <= ARN_CHARS_MAX && is_role_arn(arn) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{member} {arn} is not a valid IAM role ARN"
        )))
    }
}

/// Checks a Lambda function ARN (`ResourceARN` of a LambdaOutput or InputLambdaProcessor).
fn check_function(arn: &str) -> Result<(), ApiError> {
    if arn.len() <= ARN_CHARS_MAX && function_name(arn).is_some() {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "ResourceARN {arn} is not a valid Lambda function ARN"
        )))
    }
}

/// An `InputProcessingConfiguration`: `{InputLambdaProcessor: {ResourceARN, RoleARN}}`.
fn parse_processing(doc: &J) -> Result<LambdaProcessor, ApiError> {
    let lambda = field(doc, "InputLambdaProcessor")
        .ok_or_else(|| ApiError::invalid("InputLambdaProcessor is required"))?;
    let resource_arn = required_str(lambda, "ResourceARN")?;
    check_function(resource_arn)?;
    let role_arn = required_str(lambda, "RoleARN")?;
    check_role("RoleARN", role_arn)?;
    Ok(LambdaProcessor {
        resource_arn: resource_arn.to_owned(),
        role_arn: role_arn.to_owned(),
    })
}

/// A `CloudWatchLoggingOption`: `{LogStreamARN, RoleARN}`.
fn parse_logging_option(doc: &J, id: String) -> Result<CloudWatchLoggingOption, ApiError> {
    let option = CloudWatchLoggingOption {
        id,
        log_stream_arn: required_str(doc, "LogStreamARN")?.to_owned(),
        role_arn: required_str(doc, "RoleARN")?.to_owned(),
    };
    check_logging_option(&option)?;
    Ok(option)
}

fn check_logging_option(option: &CloudWatchLoggingOption) -> Result<(), ApiError> {
    let arn = &option.log_stream_arn;
    if arn.len() > ARN_CHARS_MAX || !is_log_stream_arn(arn) {
        return Err(ApiError::invalid(format!(
            "LogStreamARN {arn} is not a valid CloudWatch Logs log stream ARN"
        )));
    }
    check_role("RoleARN", &option.role_arn)
}

/// Adds a CloudWatch logging option to `app`; a log stream is named at most once.
fn add_logging_option(app: &mut Application, doc: &J) -> Result<(), ApiError> {
    let id = app.take_id();
    let option = parse_logging_option(doc, id)?;
    check_distinct_log_streams(app, &option)?;
    app.cloudwatch_logging_options.push(option);
    Ok(())
}

fn check_distinct_log_streams(
    app: &Application,
    option: &CloudWatchLoggingOption,
) -> Result<(), ApiError> {
    if app
        .cloudwatch_logging_options
        .iter()
        .any(|o| o.id != option.id && o.log_stream_arn == option.log_stream_arn)
    {
        return Err(ApiError::invalid(format!(
            "Application {} already has a CloudWatch logging option for log stream {}",
            app.name, option.log_stream_arn
        )));
    }
    Ok(())
}

/// Applies one `CloudWatchLoggingOptionUpdate`.
fn update_logging_option(app: &mut Application, update: &J) -> Result<(), ApiError> {
    let id = required_str(update, "CloudWatchLoggingOptionId")?;
    let mut option = app
        .cloudwatch_logging_options
        .iter()
        .find(|o| o.id == id)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found(format!("CloudWatch logging option {id} is not found"))
        })?;
    if let Some(arn) = string(update, "LogStreamARNUpdate")? {
        option.log_stream_arn = arn.to_owned();
    }
    if let Some(role) = string(update, "RoleARNUpdate")? {
        option.role_arn = role.to_owned();
    }
    check_logging_option(&option)?;
    check_distinct_log_streams(app, &option)?;
    for existing in &mut app.cloudwatch_logging_options {
        if existing.id == option.id {
            *existing = option.clone();
        }
    }
    Ok(())
}

/// Checks that a `KinesisFirehoseOutput` names a delivery stream of this server that records
/// can be put into (DirectPut), as Firehose's PutRecordBatch would require.
fn check_delivery_destination<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    arn: &str,
) -> Result<(), ApiError> {
    let Some(Resource::DeliveryStream(name)) = resource_of(arn) else {
        return Err(ApiError::invalid(format!(
            "ResourceARN {arn} is not a valid Kinesis Firehose delivery stream ARN"
        )));
    };
    let Some(stream) = service.delivery_stream(name) else {
        return Err(ApiError::invalid(format!(
            "Kinesis Firehose delivery stream {arn} does not exist"
        )));
    };
    if stream.arn != arn {
        return Err(ApiError::invalid(format!(
            "Kinesis Firehose delivery stream {arn} does not exist"
        )));
    }
    if !stream.direct_put {
        return Err(ApiError::invalid(format!(
            "Kinesis Firehose delivery stream {arn} has a Kinesis stream as its source; an application can only write to a DirectPut delivery stream"
        )));
    }
    Ok(())
}

fn parse_output<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    doc: &J,
    id: String,
) -> Result<OutputConfig, ApiError> {
    let name = required_str(doc, "Name")?.to_owned();
    if name.is_empty() || name.len() > 32 {
        return Err(ApiError::invalid("Output Name must be 1 to 32 characters"));
    }
    let kinds = [
        ("KinesisStreams", "KinesisStreamsOutput"),
        ("KinesisFirehose", "KinesisFirehoseOutput"),
        ("Lambda", "LambdaOutput"),
    ];
    let given: Vec<(&str, &J)> = kinds
        .iter()
        .filter_map(|(kind, member)| Some((*kind, field(doc, member)?)))
        .collect();
    let (destination_kind, dest) = match given[..] {
        [one] => one,
        [] => {
            return Err(ApiError::invalid(
                "Output needs KinesisStreamsOutput, KinesisFirehoseOutput or LambdaOutput",
            ));
        }
        _ => {
            return Err(ApiError::invalid(
                "Output takes only one of KinesisStreamsOutput, KinesisFirehoseOutput and LambdaOutput",
            ));
        }
    };
    let resource_arn = required_str(dest, "ResourceARN")?.to_owned();
    let role_arn = match destination_kind {
        "KinesisStreams" => string(dest, "RoleARN")?.unwrap_or("").to_owned(),
        _ => required_str(dest, "RoleARN")?.to_owned(),
    };
    let mut output = OutputConfig {
        id,
        name,
        destination_kind: destination_kind.to_owned(),
        resource_arn,
        role_arn,
        record_format_type: String::new(),
    };
    check_destination(service, &output)?;
    let format = field(doc, "DestinationSchema")
        .and_then(|d| string(d, "RecordFormatType").ok().flatten())
        .ok_or_else(|| ApiError::invalid("DestinationSchema with RecordFormatType is required"))?;
    if format != "JSON" && format != "CSV" {
        return Err(ApiError::invalid(format!(
            "RecordFormatType {format} is not one of JSON, CSV"
        )));
    }
    output.record_format_type = format.to_owned();
    Ok(output)
}

/// Checks an output's destination ARN (and role) for its kind.
fn check_destination<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    output: &OutputConfig,
) -> Result<(), ApiError> {
    match output.destination_kind.as_str() {
        "KinesisStreams" => check_source_arn("KinesisStreams", &output.resource_arn),
        "KinesisFirehose" => {
            check_role("RoleARN", &output.role_arn)?;
            check_delivery_destination(service, &output.resource_arn)
        }
        _ => {
            check_role("RoleARN", &output.role_arn)?;
            check_function(&output.resource_arn)
        }
    }
}

/// Checks the fields of a reference data source, as AddApplicationReferenceDataSource takes them
/// and as UpdateApplication leaves them.
fn check_reference(reference: &ReferenceConfig) -> Result<(), ApiError> {
    let table = &reference.table_name;
    if table.is_empty() || table.chars().count() > TABLE_NAME_CHARS_MAX {
        return Err(ApiError::invalid(format!(
            "TableName must be 1 to {TABLE_NAME_CHARS_MAX} characters"
        )));
    }
    let arn = &reference.bucket_arn;
    if arn.len() > ARN_CHARS_MAX || bucket_of(arn).is_none() {
        return Err(ApiError::invalid(format!(
            "BucketARN {arn} is not a valid S3 bucket ARN (arn:aws:s3:::bucket)"
        )));
    }
    let key = &reference.file_key;
    if key.is_empty() || key.chars().count() > FILE_KEY_CHARS_MAX {
        return Err(ApiError::invalid(format!(
            "FileKey must be 1 to {FILE_KEY_CHARS_MAX} characters"
        )));
    }
    let role = &reference.role_arn;
    if role.is_empty() || role.len() > ARN_CHARS_MAX || !role.starts_with("arn:") {
        return Err(ApiError::invalid(format!(
            "ReferenceRoleARN {role} is not a valid role ARN"
        )));
    }
    reference
        .schema
        .to_domain()
        .map_err(|e| ApiError::invalid(format!("ReferenceSchema is invalid: {e}")))?;
    Ok(())
}

fn parse_schema(doc: &J, what: &str) -> Result<WireSourceSchema, ApiError> {
    serde_json::from_value(doc.clone())
        .map_err(|e| ApiError::invalid(format!("{what} is invalid: {e}")))
}

/// A `ReferenceDataSource`: TableName, S3ReferenceDataSource, ReferenceSchema.
fn parse_reference(doc: &J, id: String) -> Result<ReferenceConfig, ApiError> {
    let table_name = required_str(doc, "TableName")?.to_owned();
    // Optional in the model, since S3 is the only kind of reference source; without it there
    // is nothing to load.
    let s3 = field(doc, "S3ReferenceDataSource")
        .ok_or_else(|| ApiError::invalid("S3ReferenceDataSource is required"))?;
    let schema = field(doc, "ReferenceSchema")
        .ok_or_else(|| ApiError::invalid("ReferenceSchema is required"))?;
    let reference = ReferenceConfig {
        id,
        table_name,
        bucket_arn: required_str(s3, "BucketARN")?.to_owned(),
        file_key: required_str(s3, "FileKey")?.to_owned(),
        role_arn: required_str(s3, "ReferenceRoleARN")?.to_owned(),
        schema: parse_schema(schema, "ReferenceSchema")?,
    };
    check_reference(&reference)?;
    Ok(reference)
}

/// Adds a reference data source to `app`, within KDA's limit of one and with a table name no
/// other source uses.
fn add_reference(app: &mut Application, doc: &J) -> Result<(), ApiError> {
    if app.references.len() >= REFERENCES_MAX {
        return Err(ApiError::invalid(format!(
            "Application {} already has a reference data source (at most {REFERENCES_MAX})",
            app.name
        )));
    }
    let id = app.take_id();
    app.references.push(parse_reference(doc, id)?);
    Ok(())
}

/// Applies one `ReferenceDataSourceUpdate`.
fn update_reference(app: &mut Application, update: &J) -> Result<(), ApiError> {
    let id = required_str(update, "ReferenceId")?;
    let reference = app
        .references
        .iter_mut()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found(format!("Reference data source {id} is not found")))?;
    if let Some(table) = string(update, "TableNameUpdate")? {
        reference.table_name = table.to_owned();
    }
    if let Some(s3) = field(update, "S3ReferenceDataSourceUpdate") {
        if let Some(arn) = string(s3, "BucketARNUpdate")? {
            reference.bucket_arn = arn.to_owned();
        }
        if let Some(key) = string(s3, "FileKeyUpdate")? {
            reference.file_key = key.to_owned();
        }
        if let Some(role) = string(s3, "ReferenceRoleARNUpdate")? {
            reference.role_arn = role.to_owned();
        }
    }
    if let Some(schema) = field(update, "ReferenceSchemaUpdate") {
        reference.schema = parse_schema(schema, "ReferenceSchemaUpdate")?;
    }
    check_reference(reference)
}

fn parse_tags(doc: &J) -> Result<Vec<Tag>, ApiError> {
    let Some(items) = field(doc, "Tags") else {
        return Ok(Vec::new());
    };
    let items = items
        .as_array()
        .ok_or_else(|| ApiError::invalid("Tags must be a list"))?;
    items
        .iter()
        .map(|t| {
            let key = required_str(t, "Key")?;
            if key.is_empty() || key.len() > 128 || key.starts_with("aws:") {
                return Err(ApiError::invalid(format!("Invalid tag key {key}")));
            }
            Ok(Tag {
                key: key.to_owned(),
                value: string(t, "Value")?.map(str::to_owned),
            })
        })
        .collect()
}

/// The in-application stream inputs of `app` as the pipeline sees them.
/// With InputParallelism N, an input feeds `<NamePrefix>_001` … `_00N`, in that order.
pub(crate) fn pipeline_inputs(app: &Application) -> Result<Vec<PipelineInput>, String> {
    let mut inputs = Vec::new();
    for input in &app.inputs {
        let schema = input.schema.to_domain()?;
        for n in 1..=input.parallelism.max(1) {
            inputs.push(PipelineInput {
                stream: format!("{}_{n:03}", input.name_prefix),
                schema: schema.clone(),
            });
        }
    }
    Ok(inputs)
}

/// The reference tables of `app` as the pipeline sees them.
pub(crate) fn pipeline_tables(app: &Application) -> Result<Vec<PipelineTable>, String> {
    app.references
        .iter()
        .map(|r| {
            Ok(PipelineTable {
                table: r.table_name.clone(),
                schema: r.schema.to_domain()?,
            })
        })
        .collect()
}

/// Checks the application code: it parses, and it compiles against the inputs when there are any.
fn validate_code(app: &Application) -> Result<(), ApiError> {
    let Some(code) = &app.code else { return Ok(()) };
    if code.chars().count() > CODE_CHARS_MAX {
        return Err(ApiError::invalid(format!(
            "ApplicationCode is longer than {CODE_CHARS_MAX} characters"
        )));
    }
    if code.trim().is_empty() {
        return Ok(());
    }
    let program =
        parse_program(code).map_err(|e| ApiError::new("CodeValidationException", e.to_string()))?;
    if app.inputs.is_empty() {
        return Ok(());
    }
    let inputs = pipeline_inputs(app).map_err(ApiError::invalid)?;
    let tables = pipeline_tables(app).map_err(ApiError::invalid)?;
    Pipeline::compile_with_tables(&program, &inputs, &tables)
        .map_err(|e| ApiError::new("CodeValidationException", e.to_string()))?;
    Ok(())
}

fn summary(app: &Application) -> J {
    json!({"ApplicationName": app.name, "ApplicationARN": app.arn, "ApplicationStatus": app.status.name()})
}

fn seconds(ms: u64) -> J {
    json!(ms as f64 / 1000.0)
}

fn detail(app: &Application) -> J {
    let inputs: Vec<J> = app
        .inputs
        .iter()
        .map(|i| {
            let streams: Vec<String> = (1..=i.parallelism)
                .map(|n| format!("{}_{n:03}", i.name_prefix))
                .collect();
            let mut d = json!({
                "InputId": i.id,
                "NamePrefix": i.name_prefix,
                "InAppStreamNames": streams,
                "InputSchema": i.schema,
                "InputParallelism": {"Count": i.parallelism},
            });
            let source = json!({"ResourceARN": i.resource_arn, "RoleARN": i.role_arn});
            d[format!("{}InputDescription", i.source_kind)] = source;
            if let Some(p) = &i.starting_position {
                d["InputStartingPositionConfiguration"] = json!({"InputStartingPosition": p});
            }
            if let Some(lambda) = &i.processing {
                d["InputProcessingConfigurationDescription"] = json!({
                    "InputLambdaProcessorDescription": {
                        "ResourceARN": lambda.resource_arn,
                        "RoleARN": lambda.role_arn,
                    }
                });
            }
            d
        })
        .collect();
    let outputs: Vec<J> = app
        .outputs
        .iter()
        .map(|o| {
            let mut d = json!({
                "OutputId": o.id,
                "Name": o.name,
                "DestinationSchema": {"RecordFormatType": o.record_format_type},
            });
            d[format!("{}OutputDescription", o.destination_kind)] =
                json!({"ResourceARN": o.resource_arn, "RoleARN": o.role_arn});
            d
        })
        .collect();
    let references: Vec<J> = app
        .references
        .iter()
        .map(|r| {
            json!({
                "ReferenceId": r.id,
                "TableName": r.table_name,
                "S3ReferenceDataSourceDescription": {
                    "BucketARN": r.bucket_arn,
                    "FileKey": r.file_key,
                    "ReferenceRoleARN": r.role_arn,
                },
                "ReferenceSchema": r.schema,
            })
        })
        .collect();
    let mut d = json!({
        "ApplicationName": app.name,
        "ApplicationARN": app.arn,
        "ApplicationStatus": app.status.name(),
        "CreateTimestamp": seconds(app.create_ms),
        "LastUpdateTimestamp": seconds(app.update_ms),
        "InputDescriptions": inputs,
        "OutputDescriptions": outputs,
        "ReferenceDataSourceDescriptions": references,
        "CloudWatchLoggingOptionDescriptions": app
            .cloudwatch_logging_options
            .iter()
            .map(|o| json!({
                "CloudWatchLoggingOptionId": o.id,
                "LogStreamARN": o.log_stream_arn,
                "RoleARN": o.role_arn,
            }))
            .collect::<Vec<J>>(),
        "ApplicationVersionId": app.version_id,
    });
    if let Some(desc) = &app.description {
        d["ApplicationDescription"] = json!(desc);
    }
    if let Some(code) = &app.code {
        d["ApplicationCode"] = json!(code);
    }
    d
}

/// Runs one operation.
pub(super) async fn dispatch<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    operation: &str,
    doc: &J,
    now_ms: u64,
) -> Result<J, ApiError> {
    match operation {
        "CreateApplication" => create(service, doc, now_ms),
        "DescribeApplication" => {
            let name = required_str(doc, "ApplicationName")?;
            let catalog = service.catalog();
            let app = catalog.get(name).ok_or_else(|| not_found(name))?;
            Ok(json!({"ApplicationDetail": detail(app)}))
        }
        "ListApplications" => {
            let limit = field(doc, "Limit")
                .and_then(J::as_u64)
                .map_or(LIST_LIMIT_MAX, |l| l as usize);
            if !(1..=LIST_LIMIT_MAX).contains(&limit) {
                return Err(ApiError::invalid("Limit must be between 1 and 50"));
            }
            let after = string(doc, "ExclusiveStartApplicationName")?;
            let catalog = service.catalog();
            let matching: Vec<&Application> = catalog
                .applications
                .iter()
                .filter(|a| after.is_none_or(|s| a.name.as_str() > s))
                .collect();
            let page: Vec<J> = matching.iter().take(limit).map(|a| summary(a)).collect();
            Ok(json!({"ApplicationSummaries": page, "HasMoreApplications": matching.len() > limit}))
        }
        "DeleteApplication" => {
            let name = required_str(doc, "ApplicationName")?;
            let created = field(doc, "CreateTimestamp")
                .and_then(J::as_f64)
                .ok_or_else(|| ApiError::invalid("CreateTimestamp is required"))?;
            let mut catalog = service.catalog();
            let app = catalog.get(name).ok_or_else(|| not_found(name))?;
            if (created * 1000.0 - app.create_ms as f64).abs() >= 1.0 {
                return Err(ApiError::invalid(format!(
                    "CreateTimestamp does not match the creation time of application {name}"
                )));
            }
            if matches!(
                app.status,
                Status::Starting | Status::Stopping | Status::Updating | Status::Deleting
            ) {
                return Err(ApiError::in_use(format!(
                    "Application {name} is in {} state",
                    app.status.name()
                )));
            }
            catalog.applications.retain(|a| a.name != name);
            save(&mut catalog)?;
            crate::metrics::forget_application(name);
            Ok(json!({}))
        }
        "StartApplication" => start(service, doc),
        "StopApplication" => {
            let name = required_str(doc, "ApplicationName")?;
            let mut catalog = service.catalog();
            let app = catalog.get_mut(name).ok_or_else(|| not_found(name))?;
            match app.status {
                Status::Running | Status::Starting => app.status = Status::Stopping,
                Status::Ready | Status::Stopping => return Ok(json!({})),
                other => {
                    return Err(ApiError::in_use(format!(
                        "Application {name} is in {} state",
                        other.name()
                    )));
                }
            }
            save(&mut catalog)?;
            Ok(json!({}))
        }
        "UpdateApplication" => update(service, doc, now_ms),
        "AddApplicationInput" => modify(service, doc, now_ms, |app, doc| {
            if !app.inputs.is_empty() {
                return Err(ApiError::invalid(format!(
                    "Application {} already has an input",
                    app.name
                )));
            }
            let input_doc =
                field(doc, "Input").ok_or_else(|| ApiError::invalid("Input is required"))?;
            let id = app.take_id();
            app.inputs.push(parse_input(input_doc, id)?);
            Ok(())
        }),
        "AddApplicationOutput" => modify(service, doc, now_ms, |app, doc| {
            if app.outputs.len() >= OUTPUTS_MAX {
                return Err(ApiError::new(
                    "LimitExceededException",
                    format!("An application can have at most {OUTPUTS_MAX} outputs"),
                ));
            }
            let output_doc =
                field(doc, "Output").ok_or_else(|| ApiError::invalid("Output is required"))?;
            let id = app.take_id();
            app.outputs.push(parse_output(service, output_doc, id)?);
            Ok(())
        }),
        "DeleteApplicationOutput" => modify(service, doc, now_ms, |app, doc| {
            let id = required_str(doc, "OutputId")?;
            let before = app.outputs.len();
            app.outputs.retain(|o| o.id != id);
            if app.outputs.len() == before {
                return Err(ApiError::not_found(format!(
                    "Output {id} is not found in application {}",
                    app.name
                )));
            }
            Ok(())
        }),
        "AddApplicationReferenceDataSource" => modify(service, doc, now_ms, |app, doc| {
            let reference = field(doc, "ReferenceDataSource")
                .ok_or_else(|| ApiError::invalid("ReferenceDataSource is required"))?;
            add_reference(app, reference)
        }),
        "DeleteApplicationReferenceDataSource" => modify(service, doc, now_ms, |app, doc| {
            let id = required_str(doc, "ReferenceId")?;
            let before = app.references.len();
            app.references.retain(|r| r.id != id);
            if app.references.len() == before {
                return Err(ApiError::not_found(format!(
                    "Reference data source {id} is not found in application {}",
                    app.name
                )));
            }
            Ok(())
        }),
        "TagResource" | "UntagResource" | "ListTagsForResource" => tags(service, operation, doc),
        "DiscoverInputSchema" => super::discover::discover(service, doc).await,
        "AddApplicationInputProcessingConfiguration" => modify(service, doc, now_ms, |app, doc| {
            let id = required_str(doc, "InputId")?;
            let config = field(doc, "InputProcessingConfiguration")
                .ok_or_else(|| ApiError::invalid("InputProcessingConfiguration is required"))?;
            let processing = parse_processing(config)?;
            let name = app.name.clone();
            let input = app.inputs.iter_mut().find(|i| i.id == id).ok_or_else(|| {
                ApiError::not_found(format!("Input {id} is not found in application {name}"))
            })?;
            if input.processing.is_some() {
                return Err(ApiError::invalid(format!(
                    "Input {id} of application {name} already has an input processing configuration"
                )));
            }
            input.processing = Some(processing);
            Ok(())
        }),
        "DeleteApplicationInputProcessingConfiguration" => {
            modify(service, doc, now_ms, |app, doc| {
                let id = required_str(doc, "InputId")?;
                let name = app.name.clone();
                let input = app.inputs.iter_mut().find(|i| i.id == id).ok_or_else(|| {
                    ApiError::not_found(format!("Input {id} is not found in application {name}"))
                })?;
                if input.processing.take().is_none() {
                    return Err(ApiError::not_found(format!(
                        "Input {id} of application {name} has no input processing configuration"
                    )));
                }
                Ok(())
            })
        }
        "AddApplicationCloudWatchLoggingOption" => modify(service, doc, now_ms, |app, doc| {
            let option = field(doc, "CloudWatchLoggingOption")
                .ok_or_else(|| ApiError::invalid("CloudWatchLoggingOption is required"))?;
            add_logging_option(app, option)
        }),
        "DeleteApplicationCloudWatchLoggingOption" => modify(service, doc, now_ms, |app, doc| {
            let id = required_str(doc, "CloudWatchLoggingOptionId")?;
            let before = app.cloudwatch_logging_options.len();
            app.cloudwatch_logging_options.retain(|o| o.id != id);
            if app.cloudwatch_logging_options.len() == before {
                return Err(ApiError::not_found(format!(
                    "CloudWatch logging option {id} is not found in application {}",
                    app.name
                )));
            }
            Ok(())
        }),
        _ => Err(ApiError::new("UnknownOperationException", "")),
    }
}

fn save(catalog: &mut super::catalog::Catalog) -> Result<(), ApiError> {
    catalog.save().map_err(|e| {
        tracing::error!(error = %e, "The analytics catalog could not be written.");
        ApiError::new(
            "ServiceUnavailableException",
            "The application catalog could not be written",
        )
    })
}

fn create<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    doc: &J,
    now_ms: u64,
) -> Result<J, ApiError> {
    let name = required_str(doc, "ApplicationName")?;
    check_name(name)?;
    let mut app = Application {
        name: name.to_owned(),
        arn: service.application_arn(name),
        description: string(doc, "ApplicationDescription")?.map(str::to_owned),
        status: Status::Ready,
        create_ms: now_ms,
        update_ms: now_ms,
        version_id: 1,
        code: string(doc, "ApplicationCode")?.map(str::to_owned),
        inputs: Vec::new(),
        outputs: Vec::new(),
        references: Vec::new(),
        tags: parse_tags(doc)?,
        cloudwatch_logging_options: Vec::new(),
        next_id: 0,
    };
    if app.tags.len() > TAGS_MAX {
        return Err(ApiError::new(
            "TooManyTagsException",
            format!("An application can have at most {TAGS_MAX} tags"),
        ));
    }
    if let Some(inputs) = field(doc, "Inputs") {
        let inputs = inputs
            .as_array()
            .ok_or_else(|| ApiError::invalid("Inputs must be a list"))?;
        if inputs.len() > 1 {
            return Err(ApiError::invalid(
                "An application can have at most one streaming input",
            ));
        }
        for input in inputs {
            let id = app.take_id();
            app.inputs.push(parse_input(input, id)?);
        }
    }
    if let Some(outputs) = field(doc, "Outputs") {
        let outputs = outputs
            .as_array()
            .ok_or_else(|| ApiError::invalid("Outputs must be a list"))?;
        if outputs.len() > OUTPUTS_MAX {
            return Err(ApiError::new(
                "LimitExceededException",
                format!("An application can have at most {OUTPUTS_MAX} outputs"),
            ));
        }
        for output in outputs {
            let id = app.take_id();
            app.outputs.push(parse_output(service, output, id)?);
        }
    }
    if field(doc, "ReferenceDataSources").is_some() {
        // Not a member of the v1 CreateApplicationRequest (botocore's kinesisanalytics
        // 2015-08-14 model); refused rather than ignored so a reference source is never lost.
        return Err(ApiError::invalid(
            "CreateApplication takes no ReferenceDataSources; add one with AddApplicationReferenceDataSource",
        ));
    }
    if let Some(options) = field(doc, "CloudWatchLoggingOptions") {
        let options = options
            .as_array()
            .ok_or_else(|| ApiError::invalid("CloudWatchLoggingOptions must be a list"))?;
        for option in options {
            add_logging_option(&mut app, option)?;
        }
    }
    validate_code(&app)?;
    let mut catalog = service.catalog();
    if catalog.get(name).is_some() {
        return Err(ApiError::in_use(format!(
            "Application {name} already exists"
        )));
    }
    let answer = json!({"ApplicationSummary": summary(&app)});
    catalog.applications.push(app);
    save(&mut catalog)?;
    Ok(answer)
}

/// A configuration change under `CurrentApplicationVersionId`: checks the version, applies
/// `change`, validates the code, bumps the version and saves.
fn modify<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    doc: &J,
    now_ms: u64,
    change: impl FnOnce(&mut Application, &J) -> Result<(), ApiError>,
) -> Result<J, ApiError> {
    let name = required_str(doc, "ApplicationName")?;
    let version = required_u64(doc, "CurrentApplicationVersionId")?;
    let mut catalog = service.catalog();
    let app = catalog.get_mut(name).ok_or_else(|| not_found(name))?;
    if app.version_id != version {
        return Err(ApiError::new(
            "ConcurrentModificationException",
            format!(
                "Current application version is {}. Provided version is {version}.",
                app.version_id
            ),
        ));
    }
    if matches!(
        app.status,
        Status::Starting | Status::Stopping | Status::Updating | Status::Deleting
    ) {
        return Err(ApiError::in_use(format!(
            "Application {name} is in {} state",
            app.status.name()
        )));
    }
    let mut changed = app.clone();
    change(&mut changed, doc)?;
    validate_code(&changed)?;
    changed.version_id += 1;
    changed.update_ms = now_ms;
    // A running application shows UPDATING until the runner has the new version running.
    if changed.status == Status::Running {
        changed.status = Status::Updating;
    }
    *app = changed;
    save(&mut catalog)?;
    Ok(json!({}))
}

fn update<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    doc: &J,
    now_ms: u64,
) -> Result<J, ApiError> {
    let update = field(doc, "ApplicationUpdate")
        .ok_or_else(|| ApiError::invalid("ApplicationUpdate is required"))?
        .clone();
    modify(service, doc, now_ms, move |app, _| {
        if let Some(code) = string(&update, "ApplicationCodeUpdate")? {
            app.code = Some(code.to_owned());
        }
        for input_update in field(&update, "InputUpdates")
            .and_then(J::as_array)
            .into_iter()
            .flatten()
        {
            let id = required_str(input_update, "InputId")?;
            let input = app
                .inputs
                .iter_mut()
                .find(|i| i.id == id)
                .ok_or_else(|| ApiError::not_found(format!("Input {id} is not found")))?;
            if let Some(prefix) = string(input_update, "NamePrefixUpdate")? {
                input.name_prefix = prefix.to_owned();
            }
            for (kind, member) in [
                ("KinesisStreams", "KinesisStreamsInputUpdate"),
                ("KinesisFirehose", "KinesisFirehoseInputUpdate"),
            ] {
                let Some(source) = field(input_update, member) else {
                    continue;
                };
                if let Some(arn) = string(source, "ResourceARNUpdate")? {
                    check_source_arn(kind, arn)?;
                    input.resource_arn = arn.to_owned();
                    input.source_kind = kind.to_owned();
                } else if input.source_kind != kind {
                    return Err(ApiError::invalid(format!(
                        "{member} needs ResourceARNUpdate: input {id} reads a {} source",
                        input.source_kind
                    )));
                }
                if let Some(role) = string(source, "RoleARNUpdate")? {
                    input.role_arn = role.to_owned();
                }
            }
            if let Some(processing) = field(input_update, "InputProcessingConfigurationUpdate") {
                let lambda = field(processing, "InputLambdaProcessorUpdate")
                    .ok_or_else(|| ApiError::invalid("InputLambdaProcessorUpdate is required"))?;
                let mut current = input.processing.clone().ok_or_else(|| {
                    ApiError::invalid(format!(
                        "Input {id} has no input processing configuration to update"
                    ))
                })?;
                if let Some(arn) = string(lambda, "ResourceARNUpdate")? {
                    check_function(arn)?;
                    current.resource_arn = arn.to_owned();
                }
                if let Some(role) = string(lambda, "RoleARNUpdate")? {
                    check_role("RoleARNUpdate", role)?;
                    current.role_arn = role.to_owned();
                }
                input.processing = Some(current);
            }
            if let Some(schema_update) = field(input_update, "InputSchemaUpdate") {
                let mut schema = serde_json::to_value(&input.schema).expect("a schema serializes");
                for (wire, key) in [
                    ("RecordFormatUpdate", "RecordFormat"),
                    ("RecordEncodingUpdate", "RecordEncoding"),
                    ("RecordColumnUpdates", "RecordColumns"),
                ] {
                    if let Some(v) = field(schema_update, wire) {
                        schema[key] = v.clone();
                    }
                }
                input.schema = serde_json::from_value(schema)
                    .map_err(|e| ApiError::invalid(format!("InputSchemaUpdate is invalid: {e}")))?;
                input.schema.to_domain().map_err(ApiError::invalid)?;
            }
            if let Some(count) = field(input_update, "InputParallelismUpdate")
                .and_then(|p| field(p, "CountUpdate"))
                .and_then(J::as_u64)
            {
                if !(1..=64).contains(&count) {
                    return Err(ApiError::invalid(
                        "InputParallelism Count must be between 1 and 64",
                    ));
                }
                input.parallelism = count as u32;
            }
        }
        for output_update in field(&update, "OutputUpdates")
            .and_then(J::as_array)
            .into_iter()
            .flatten()
        {
            let id = required_str(output_update, "OutputId")?;
            let output = app
                .outputs
                .iter_mut()
                .find(|o| o.id == id)
                .ok_or_else(|| ApiError::not_found(format!("Output {id} is not found")))?;
            if let Some(name) = string(output_update, "NameUpdate")? {
                output.name = name.to_owned();
            }
            let mut changed = output.clone();
            for (kind, member) in [
                ("KinesisStreams", "KinesisStreamsOutputUpdate"),
                ("KinesisFirehose", "KinesisFirehoseOutputUpdate"),
                ("Lambda", "LambdaOutputUpdate"),
            ] {
                let Some(destination) = field(output_update, member) else {
                    continue;
                };
                if let Some(arn) = string(destination, "ResourceARNUpdate")? {
                    changed.resource_arn = arn.to_owned();
                    changed.destination_kind = kind.to_owned();
                } else if changed.destination_kind != kind {
                    return Err(ApiError::invalid(format!(
                        "{member} needs ResourceARNUpdate: output {id} writes to a {} destination",
                        changed.destination_kind
                    )));
                }
                if let Some(role) = string(destination, "RoleARNUpdate")? {
                    changed.role_arn = role.to_owned();
                }
            }
            if changed.destination_kind != output.destination_kind
                || changed.resource_arn != output.resource_arn
                || changed.role_arn != output.role_arn
            {
                check_destination(service, &changed)?;
            }
            *output = changed;
            if let Some(format) = field(output_update, "DestinationSchemaUpdate")
                .and_then(|d| string(d, "RecordFormatType").ok().flatten())
            {
                if format != "JSON" && format != "CSV" {
                    return Err(ApiError::invalid(format!(
                        "RecordFormatType {format} is not one of JSON, CSV"
                    )));
                }
                output.record_format_type = format.to_owned();
            }
        }
        for reference_update in field(&update, "ReferenceDataSourceUpdates")
            .and_then(J::as_array)
            .into_iter()
            .flatten()
        {
            update_reference(app, reference_update)?;
        }
        for option_update in field(&update, "CloudWatchLoggingOptionUpdates")
            .and_then(J::as_array)
            .into_iter()
            .flatten()
        {
            update_logging_option(app, option_update)?;
        }
        Ok(())
    })
}

fn start<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    doc: &J,
) -> Result<J, ApiError> {
    let name = required_str(doc, "ApplicationName")?;
    let configs = field(doc, "InputConfigurations")
        .and_then(J::as_array)
        .ok_or_else(|| ApiError::invalid("InputConfigurations is required"))?;
    let mut catalog = service.catalog();
    let app = catalog.get_mut(name).ok_or_else(|| not_found(name))?;
    if app.status != Status::Ready {
        return Err(ApiError::in_use(format!(
            "Application {name} is in {} state",
            app.status.name()
        )));
    }
    if app.inputs.is_empty() || app.code.as_deref().is_none_or(|c| c.trim().is_empty()) {
        return Err(ApiError::new(
            "InvalidApplicationConfigurationException",
            format!("Application {name} needs an input and application code to start"),
        ));
    }
    let mut positions = Vec::new();
    for config in configs {
        let id = required_str(config, "Id")?;
        if !app.inputs.iter().any(|i| i.id == id) {
            return Err(ApiError::invalid(format!(
                "Input {id} is not found in application {name}"
            )));
        }
        let position = field(config, "InputStartingPositionConfiguration")
            .and_then(|p| string(p, "InputStartingPosition").ok().flatten())
            .ok_or_else(|| ApiError::invalid("InputStartingPositionConfiguration is required"))?;
        if !matches!(position, "NOW" | "TRIM_HORIZON" | "LAST_STOPPED_POINT") {
            return Err(ApiError::invalid(format!(
                "InputStartingPosition {position} is not one of NOW, TRIM_HORIZON, LAST_STOPPED_POINT"
            )));
        }
        positions.push((id.to_owned(), position.to_owned()));
    }
    for input in &mut app.inputs {
        if let Some((_, p)) = positions.iter().find(|(id, _)| *id == input.id) {
            input.starting_position = Some(p.clone());
        }
    }
    app.status = Status::Starting;
    save(&mut catalog)?;
    Ok(json!({}))
}

fn tags<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    operation: &str,
    doc: &J,
) -> Result<J, ApiError> {
    let arn = required_str(doc, "ResourceARN")?;
    let mut catalog = service.catalog();
    let app = catalog
        .applications
        .iter_mut()
        .find(|a| a.arn == arn)
        .ok_or_else(|| ApiError::not_found(format!("Resource {arn} is not found")))?;
    match operation {
        "ListTagsForResource" => {
            let tags: Vec<J> = app
                .tags
                .iter()
                .map(|t| match &t.value {
                    Some(v) => json!({"Key": t.key, "Value": v}),
                    None => json!({"Key": t.key}),
                })
                .collect();
            return Ok(json!({"Tags": tags}));
        }
        "TagResource" => {
            let new = parse_tags(doc)?;
            let mut tags = app.tags.clone();
            for tag in new {
                match tags.iter_mut().find(|t| t.key == tag.key) {
                    Some(existing) => existing.value = tag.value,
                    None => tags.push(tag),
                }
            }
            if tags.len() > TAGS_MAX {
                return Err(ApiError::new(
                    "TooManyTagsException",
                    format!("An application can have at most {TAGS_MAX} tags"),
                ));
            }
            app.tags = tags;
        }
        _ => {
            let keys = field(doc, "TagKeys")
                .and_then(J::as_array)
                .ok_or_else(|| ApiError::invalid("TagKeys is required"))?;
            let keys: Vec<&str> = keys.iter().filter_map(J::as_str).collect();
            app.tags.retain(|t| !keys.contains(&t.key.as_str()));
        }
    }
    save(&mut catalog)?;
    Ok(json!({}))
}
