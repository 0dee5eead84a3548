//! The operations: request fields in, catalog changes, response documents out.

use serde_json::{Value as J, json};
use sluice_core::storage::{CheckpointLog, RecordLog};

use super::catalog::{
    Application, InputConfig, OutputConfig, ReferenceConfig, Status, Tag, bucket_of,
};
use super::{AnalyticsService, ApiError};
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
    if stream_name_of(&resource_arn).is_none() {
        return Err(ApiError::invalid(format!(
            "ResourceARN {resource_arn} is not a valid stream ARN"
        )));
    }
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
    if field(doc, "InputProcessingConfiguration").is_some() {
        return Err(ApiError::new(
            "UnsupportedOperationException",
            "InputProcessingConfiguration (a pre-processing Lambda) is not supported by this server",
        ));
    }
    Ok(InputConfig {
        id,
        name_prefix,
        source_kind: source_kind.to_owned(),
        resource_arn,
        role_arn,
        schema,
        parallelism,
        starting_position: None,
    })
}

fn parse_output(doc: &J, id: String) -> Result<OutputConfig, ApiError> {
    let name = required_str(doc, "Name")?.to_owned();
    if name.is_empty() || name.len() > 32 {
        return Err(ApiError::invalid("Output Name must be 1 to 32 characters"));
    }
    let (destination_kind, dest) = if let Some(d) = field(doc, "KinesisStreamsOutput") {
        ("KinesisStreams", d)
    } else if field(doc, "KinesisFirehoseOutput").is_some() || field(doc, "LambdaOutput").is_some()
    {
        return Err(ApiError::new(
            "UnsupportedOperationException",
            "Only KinesisStreamsOutput destinations are supported by this server",
        ));
    } else {
        return Err(ApiError::invalid(
            "Output needs KinesisStreamsOutput, KinesisFirehoseOutput or LambdaOutput",
        ));
    };
    let resource_arn = required_str(dest, "ResourceARN")?.to_owned();
    if stream_name_of(&resource_arn).is_none() {
        return Err(ApiError::invalid(format!(
            "ResourceARN {resource_arn} is not a valid stream ARN"
        )));
    }
    let role_arn = string(dest, "RoleARN")?.unwrap_or("").to_owned();
    let format = field(doc, "DestinationSchema")
        .and_then(|d| string(d, "RecordFormatType").ok().flatten())
        .ok_or_else(|| ApiError::invalid("DestinationSchema with RecordFormatType is required"))?;
    if format != "JSON" && format != "CSV" {
        return Err(ApiError::invalid(format!(
            "RecordFormatType {format} is not one of JSON, CSV"
        )));
    }
    Ok(OutputConfig {
        id,
        name,
        destination_kind: destination_kind.to_owned(),
        resource_arn,
        role_arn,
        record_format_type: format.to_owned(),
    })
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
        "CloudWatchLoggingOptionDescriptions": [],
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
            app.outputs.push(parse_output(output_doc, id)?);
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
        "AddApplicationInputProcessingConfiguration"
        | "DeleteApplicationInputProcessingConfiguration"
        | "AddApplicationCloudWatchLoggingOption"
        | "DeleteApplicationCloudWatchLoggingOption" => Err(ApiError::new(
            "UnsupportedOperationException",
            format!("{operation} is not supported by this server"),
        )),
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
            app.outputs.push(parse_output(output, id)?);
        }
    }
    if field(doc, "ReferenceDataSources").is_some() {
        // Not a member of the v1 CreateApplicationRequest (botocore's kinesisanalytics
        // 2015-08-14 model); refused rather than ignored so a reference source is never lost.
        return Err(ApiError::invalid(
            "CreateApplication takes no ReferenceDataSources; add one with AddApplicationReferenceDataSource",
        ));
    }
    if field(doc, "CloudWatchLoggingOptions")
        .is_some_and(|c| c.as_array().is_some_and(|a| !a.is_empty()))
    {
        return Err(ApiError::new(
            "UnsupportedOperationException",
            "CloudWatchLoggingOptions are not supported by this server",
        ));
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
            if let Some(arn) = field(input_update, "KinesisStreamsInputUpdate")
                .and_then(|u| string(u, "ResourceARNUpdate").ok().flatten())
            {
                if stream_name_of(arn).is_none() {
                    return Err(ApiError::invalid(format!(
                        "ResourceARN {arn} is not a valid stream ARN"
                    )));
                }
                input.resource_arn = arn.to_owned();
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
            if let Some(arn) = field(output_update, "KinesisStreamsOutputUpdate")
                .and_then(|u| string(u, "ResourceARNUpdate").ok().flatten())
            {
                if stream_name_of(arn).is_none() {
                    return Err(ApiError::invalid(format!(
                        "ResourceARN {arn} is not a valid stream ARN"
                    )));
                }
                output.resource_arn = arn.to_owned();
            }
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
        if field(&update, "CloudWatchLoggingOptionUpdates")
            .is_some_and(|r| r.as_array().is_some_and(|a| !a.is_empty()))
        {
            return Err(ApiError::new(
                "UnsupportedOperationException",
                "CloudWatch logging updates are not supported by this server",
            ));
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
