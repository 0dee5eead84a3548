//! The Redshift destination on PostgreSQL: RedshiftDestinationConfiguration is accepted as it
//! is, its `ClusterJDBCURL` (`jdbc:redshift://host:port/db` or `jdbc:postgresql://…`) names a
//! PostgreSQL server, and each buffer is staged as an object in the S3 configuration (as
//! Firehose stages for Redshift) and then loaded with `COPY <table> (<columns>) FROM STDIN`
//! through tokio-postgres, instead of Redshift's `COPY … FROM 's3://…'` which PostgreSQL lacks.
//!
//! `CopyOptions` pick the format the way Redshift reads the staged file: `JSON 'auto'` (each
//! line a JSON object; DataTableColumns are taken from its members by name), `CSV` (optionally
//! with `DELIMITER 'c'`), `DELIMITER 'c'` (text), and by default Redshift's pipe-delimited text.
//! Failed COPYs are retried with backoff for `RetryOptions.DurationInSeconds` (default 3600);
//! then, as Firehose does, a manifest naming the staged object is written under the S3
//! configuration's `errors/manifests/` prefix and the buffer is skipped (its data stays in S3).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{
    check_length, check_range, merge_s3, processing_description, s3_description, s3_destination,
};
use crate::error::FirehoseError;
use crate::model::{Compression, S3Destination};

pub const RETRY_DURATION_S_DEFAULT: u32 = 3600;

/// A Redshift-style destination on PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redshift {
    pub jdbc_url: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    /// Kept in the definition file under the data dir (as the AccessKey of an HTTP endpoint);
    /// never described.
    pub password: String,
    pub table: String,
    pub columns: Option<String>,
    pub copy_options: Option<String>,
    pub retry_duration_s: u32,
    pub role_arn: String,
    #[serde(default)]
    pub transform: Option<crate::transform::LambdaTransform>,
}

/// How the staged data is read by COPY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyFormat {
    Json,
    Csv { delimiter: char },
    Text { delimiter: char },
}

impl Redshift {
    pub fn format(&self) -> CopyFormat {
        copy_format(self.copy_options.as_deref().unwrap_or(""))
    }

    /// `COPY "schema"."table" ("a", "b") FROM STDIN WITH (…)`.
    pub fn copy_statement(&self) -> String {
        let table = self
            .table
            .split('.')
            .map(quote_identifier)
            .collect::<Vec<_>>()
            .join(".");
        let columns = self
            .columns
            .as_deref()
            .map(|c| {
                format!(
                    " ({})",
                    column_names(c)
                        .iter()
                        .map(|c| quote_identifier(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .unwrap_or_default();
        let with = match self.format() {
            CopyFormat::Json => "FORMAT csv".to_owned(),
            CopyFormat::Csv { delimiter } => {
                format!("FORMAT csv, DELIMITER {}", quote_literal(delimiter))
            }
            CopyFormat::Text { delimiter } => {
                format!("FORMAT text, DELIMITER {}", quote_literal(delimiter))
            }
        };
        format!("COPY {table}{columns} FROM STDIN WITH ({with})")
    }
}

fn column_names(columns: &str) -> Vec<String> {
    columns
        .split(',')
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(c: char) -> String {
    if c == '\'' {
        "''''".to_owned()
    } else {
        format!("'{c}'")
    }
}

fn copy_format(options: &str) -> CopyFormat {
    let lower = options.to_ascii_lowercase();
    let delimiter = lower
        .find("delimiter")
        .and_then(|at| {
            options[at + "delimiter".len()..]
                .trim_start()
                .strip_prefix(['\'', '"'])
        })
        .and_then(|rest| rest.chars().next());
    if lower.contains("json") {
        CopyFormat::Json
    } else if lower.contains("csv") {
        CopyFormat::Csv {
            delimiter: delimiter.unwrap_or(','),
        }
    } else {
        CopyFormat::Text {
            delimiter: delimiter.unwrap_or('|'),
        }
    }
}

/// The rows COPY reads for `data` (the buffer's records, concatenated as staged): as they are
/// for CSV and text, each JSON line turned into a CSV row of DataTableColumns for JSON. A line
/// that is not a JSON object is an error naming it.
pub fn copy_rows(redshift: &Redshift, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(data.len() + 1);
    match redshift.format() {
        CopyFormat::Json => {
            let columns = column_names(redshift.columns.as_deref().unwrap_or(""));
            for line in data
                .split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            {
                let value: Value = serde_json::from_slice(line)
                    .map_err(|e| format!("a record is not JSON: {e}"))?;
                let object = value.as_object().ok_or("a record is not a JSON object")?;
                let cells: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        match object
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(c))
                            .map(|(_, v)| v)
                        {
                            None | Some(Value::Null) => String::new(),
                            Some(Value::String(s)) => csv_quote(s),
                            Some(other) => csv_quote(&other.to_string()),
                        }
                    })
                    .collect();
                out.extend_from_slice(cells.join(",").as_bytes());
                out.push(b'\n');
            }
        }
        CopyFormat::Csv { .. } | CopyFormat::Text { .. } => {
            out.extend_from_slice(data);
            if !out.ends_with(b"\n") && !out.is_empty() {
                out.push(b'\n');
            }
        }
    }
    Ok(out)
}

fn csv_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Parses RedshiftDestinationConfiguration; the S3 configuration is the staging area.
pub fn create(config: &Value) -> Result<(Redshift, S3Destination), FirehoseError> {
    let member = "redshiftDestinationConfiguration";
    let text = |name: &str, lower: &str| -> Result<String, FirehoseError> {
        config
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| FirehoseError::missing(&format!("{member}.{lower}")))
    };
    if config
        .get("SecretsManagerConfiguration")
        .and_then(|s| s.get("Enabled"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(FirehoseError::invalid(
            "SecretsManagerConfiguration is not supported by this appliance: give Username and Password.",
        ));
    }
    if config
        .get("S3BackupMode")
        .and_then(Value::as_str)
        .is_some_and(|m| m != "Disabled")
    {
        return Err(FirehoseError::invalid(
            "S3 source backup (S3BackupMode Enabled) is not supported by this appliance.",
        ));
    }
    let role_arn = text("RoleARN", "roleARN")?;
    let jdbc_url = text("ClusterJDBCURL", "clusterJDBCURL")?;
    check_length(&jdbc_url, 1, 512, &format!("{member}.clusterJDBCURL"))?;
    let (host, port, database) = parse_jdbc_url(&jdbc_url).ok_or_else(|| {
        FirehoseError::invalid(format!(
            "ClusterJDBCURL {jdbc_url} is not jdbc:redshift://host:port/database or jdbc:postgresql://host:port/database."
        ))
    })?;
    let username = text("Username", "username")?;
    check_length(&username, 1, 512, &format!("{member}.username"))?;
    let password = text("Password", "password")?;
    check_length(&password, 6, 512, &format!("{member}.password"))?;
    let copy = config
        .get("CopyCommand")
        .ok_or_else(|| FirehoseError::missing(&format!("{member}.copyCommand")))?;
    let table = copy
        .get("DataTableName")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| FirehoseError::missing(&format!("{member}.copyCommand.dataTableName")))?;
    check_length(
        &table,
        1,
        512,
        &format!("{member}.copyCommand.dataTableName"),
    )?;
    let columns = copy
        .get("DataTableColumns")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let copy_options = copy
        .get("CopyOptions")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if copy_format(copy_options.as_deref().unwrap_or("")) == CopyFormat::Json
        && columns
            .as_deref()
            .is_none_or(|c| column_names(c).is_empty())
    {
        return Err(FirehoseError::invalid(
            "CopyOptions JSON needs DataTableColumns on this appliance: the columns are read from each record's members by name.",
        ));
    }
    let retry_duration_s = match config
        .get("RetryOptions")
        .and_then(|r| r.get("DurationInSeconds"))
        .and_then(Value::as_i64)
    {
        Some(s) => check_range(
            s,
            0,
            7200,
            &format!("{member}.retryOptions.durationInSeconds"),
        )? as u32,
        None => RETRY_DURATION_S_DEFAULT,
    };
    let transform = match config.get("ProcessingConfiguration") {
        Some(p) => crate::transform::parse(p, member, false)?.lambda,
        None => None,
    };
    let s3: crate::wire::S3Configuration = serde_json::from_value(
        config
            .get("S3Configuration")
            .cloned()
            .ok_or_else(|| FirehoseError::missing(&format!("{member}.s3Configuration")))?,
    )
    .map_err(|e| FirehoseError::new(crate::error::ErrorKind::Serialization, e.to_string()))?;
    let staging = s3_destination(s3, false, &format!("{member}.s3Configuration"))?;
    check_staging(&staging)?;
    Ok((
        Redshift {
            jdbc_url,
            host,
            port,
            database,
            username,
            password,
            table,
            columns,
            copy_options,
            retry_duration_s,
            role_arn,
            transform,
        },
        staging,
    ))
}

/// AWS's rules for a Redshift staging configuration.
fn check_staging(staging: &S3Destination) -> Result<(), FirehoseError> {
    if !matches!(
        staging.compression,
        Compression::Uncompressed | Compression::Gzip
    ) {
        return Err(FirehoseError::invalid(
            "CompressionFormat must be UNCOMPRESSED or GZIP for a Redshift destination's S3Configuration.",
        ));
    }
    if staging.prefix.as_deref().is_some_and(|p| p.contains("!{"))
        || staging.error_output_prefix.is_some()
    {
        return Err(FirehoseError::invalid(
            "A Redshift destination's S3Configuration may not use prefix expressions or an ErrorOutputPrefix.",
        ));
    }
    Ok(())
}

/// A RedshiftDestinationUpdate applied to `current` and its staging configuration.
pub fn update(
    current: &Redshift,
    staging: &S3Destination,
    update: &Value,
) -> Result<(Redshift, S3Destination), FirehoseError> {
    let member = "redshiftDestinationUpdate";
    let mut next = current.clone();
    if let Some(url) = update.get("ClusterJDBCURL").and_then(Value::as_str) {
        let (host, port, database) = parse_jdbc_url(url).ok_or_else(|| {
            FirehoseError::invalid(format!(
                "ClusterJDBCURL {url} is not a JDBC URL of Redshift or PostgreSQL."
            ))
        })?;
        (next.jdbc_url, next.host, next.port, next.database) =
            (url.to_owned(), host, port, database);
    }
    if let Some(username) = update.get("Username").and_then(Value::as_str) {
        next.username = username.to_owned();
    }
    if let Some(password) = update.get("Password").and_then(Value::as_str) {
        check_length(password, 6, 512, &format!("{member}.password"))?;
        next.password = password.to_owned();
    }
    if let Some(copy) = update.get("CopyCommand") {
        if let Some(table) = copy.get("DataTableName").and_then(Value::as_str) {
            next.table = table.to_owned();
        }
        next.columns = copy
            .get("DataTableColumns")
            .and_then(Value::as_str)
            .map(str::to_owned);
        next.copy_options = copy
            .get("CopyOptions")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    if let Some(s) = update
        .get("RetryOptions")
        .and_then(|r| r.get("DurationInSeconds"))
        .and_then(Value::as_i64)
    {
        next.retry_duration_s = check_range(
            s,
            0,
            7200,
            &format!("{member}.retryOptions.durationInSeconds"),
        )? as u32;
    }
    if let Some(p) = update.get("ProcessingConfiguration") {
        next.transform = crate::transform::parse(p, member, false)?.lambda;
    }
    let staging = match update.get("S3Update") {
        Some(s3) => {
            let s3: crate::wire::S3Configuration =
                serde_json::from_value(s3.clone()).map_err(|e| {
                    FirehoseError::new(crate::error::ErrorKind::Serialization, e.to_string())
                })?;
            merge_s3(staging, s3, false, &format!("{member}.s3Update"), false)?
        }
        None => staging.clone(),
    };
    check_staging(&staging)?;
    Ok((next, staging))
}

/// `(host, port, database)` of `jdbc:redshift://host:port/db` or `jdbc:postgresql://…`.
pub fn parse_jdbc_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url
        .strip_prefix("jdbc:redshift://")
        .or_else(|| url.strip_prefix("jdbc:postgresql://"))?;
    let (authority, path) = rest.split_once('/')?;
    let database = path.split(['?', ';']).next()?.to_owned();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().ok()?),
        None => (authority.to_owned(), 5439),
    };
    (!host.is_empty() && !database.is_empty()).then_some((host, port, database))
}

/// RedshiftDestinationDescription (the password is never described).
pub fn description(redshift: &Redshift, staging: &S3Destination) -> Value {
    let mut copy = json!({ "DataTableName": redshift.table });
    if let Some(columns) = &redshift.columns {
        copy["DataTableColumns"] = json!(columns);
    }
    if let Some(options) = &redshift.copy_options {
        copy["CopyOptions"] = json!(options);
    }
    json!({
        "RoleARN": redshift.role_arn,
        "ClusterJDBCURL": redshift.jdbc_url,
        "CopyCommand": copy,
        "Username": redshift.username,
        "RetryOptions": { "DurationInSeconds": redshift.retry_duration_s },
        "S3DestinationDescription": s3_description(staging),
        "ProcessingConfiguration": processing_description(redshift.transform.as_ref(), None),
        "S3BackupMode": "Disabled",
        "CloudWatchLoggingOptions": { "Enabled": false },
    })
}

/// The error code of a COPY PostgreSQL refused, or of rows that could not be made for it
/// [verify: AWS's Redshift error codes are per cause, such as Redshift.TableNotFound].
pub const DATA_LOAD_FAILED: &str = "Redshift.DataLoadFailed";
/// The error code of a database that could not be reached [verify].
pub const CONNECTION_FAILED: &str = "Redshift.ConnectionFailed";

/// Why a load failed: Firehose's error code and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error_code}: {error_message}")]
pub struct CopyError {
    pub error_code: &'static str,
    pub error_message: String,
}

/// Loads `rows` with one COPY; the number of rows copied.
pub async fn copy(redshift: &Redshift, rows: Vec<u8>) -> Result<u64, CopyError> {
    use futures_util::SinkExt as _;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&redshift.host)
        .port(redshift.port)
        .dbname(&redshift.database)
        .user(&redshift.username)
        .password(&redshift.password)
        .connect_timeout(std::time::Duration::from_secs(10));
    let (client, connection) =
        config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| CopyError {
                error_code: CONNECTION_FAILED,
                error_message: format!(
                    "connecting to {}:{} failed: {e}",
                    redshift.host, redshift.port
                ),
            })?;
    let driver = tokio::task::spawn_local(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "A PostgreSQL connection ended with an error.");
        }
    });
    // tokio-postgres' own Display of a server error is only "db error"; the server's message
    // (`ERROR: relation "t" does not exist`) is what the user needs to act on.
    let refused = |e: tokio_postgres::Error| CopyError {
        error_code: DATA_LOAD_FAILED,
        error_message: match e.as_db_error() {
            Some(db) => format!("COPY failed: {db}"),
            None => format!("COPY failed: {e}"),
        },
    };
    let result = async {
        let sink = client
            .copy_in(&redshift.copy_statement())
            .await
            .map_err(refused)?;
        futures_util::pin_mut!(sink);
        sink.send(bytes::Bytes::from(rows)).await.map_err(refused)?;
        sink.as_mut().finish().await.map_err(refused)
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(options: Option<&str>, columns: Option<&str>) -> Redshift {
        Redshift {
            jdbc_url: "jdbc:redshift://h:5439/db".into(),
            host: "h".into(),
            port: 5439,
            database: "db".into(),
            username: "u".into(),
            password: "password".into(),
            table: "public.events".into(),
            columns: columns.map(str::to_owned),
            copy_options: options.map(str::to_owned),
            retry_duration_s: 3600,
            role_arn: "r".into(),
            transform: None,
        }
    }

    #[test]
    fn jdbc_urls_of_redshift_and_postgresql_name_host_port_and_database() {
        assert_eq!(
            parse_jdbc_url("jdbc:redshift://example:5439/dev"),
            Some(("example".into(), 5439, "dev".into()))
        );
        assert_eq!(
            parse_jdbc_url("jdbc:postgresql://127.0.0.1:4590/test?ssl=false"),
            Some(("127.0.0.1".into(), 4590, "test".into()))
        );
        assert_eq!(parse_jdbc_url("postgres://x/y"), None);
    }

    #[test]
    fn copy_options_pick_the_format_and_identifiers_are_quoted() {
        assert_eq!(
            sample(None, None).copy_statement(),
            r#"COPY "public"."events" FROM STDIN WITH (FORMAT text, DELIMITER '|')"#
        );
        assert_eq!(
            sample(Some("CSV DELIMITER ';'"), Some("a, b")).copy_statement(),
            r#"COPY "public"."events" ("a", "b") FROM STDIN WITH (FORMAT csv, DELIMITER ';')"#
        );
        assert_eq!(
            sample(Some("JSON 'auto'"), Some("a")).format(),
            CopyFormat::Json
        );
    }

    #[test]
    fn json_records_become_csv_rows_of_the_table_columns() {
        let redshift = sample(Some("JSON 'auto'"), Some("id,name,extra"));
        let rows = copy_rows(
            &redshift,
            b"{\"id\":1,\"name\":\"a \\\"q\\\"\"}\n{\"name\":\"b\",\"id\":2}\n",
        )
        .expect("rows");
        assert_eq!(rows, b"\"1\",\"a \"\"q\"\"\",\n\"2\",\"b\",\n");
        assert!(copy_rows(&redshift, b"not json\n").is_err());
    }
}
