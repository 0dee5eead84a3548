//! The API's schema shapes (`SourceSchema` / `InputSchema`, `DestinationSchema`) as JSON, and
//! their conversion to the engine's [`InputSchema`].

use serde::{Deserialize, Serialize};

use crate::input::{InputSchema, RecordColumn, RecordFormat};
use crate::program::parse_sql_type;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireRecordColumn {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
    pub sql_type: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireJsonMapping {
    #[serde(rename = "RecordRowPath")]
    pub record_row_path: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireCsvMapping {
    pub record_row_delimiter: String,
    pub record_column_delimiter: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct WireMappingParameters {
    #[serde(
        rename = "JSONMappingParameters",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub json: Option<WireJsonMapping>,
    #[serde(
        rename = "CSVMappingParameters",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub csv: Option<WireCsvMapping>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireRecordFormat {
    pub record_format_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_parameters: Option<WireMappingParameters>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireSourceSchema {
    pub record_format: WireRecordFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_encoding: Option<String>,
    pub record_columns: Vec<WireRecordColumn>,
}

impl WireSourceSchema {
    /// The engine's schema, or the `InvalidArgumentException` message saying what is wrong.
    pub fn to_domain(&self) -> Result<InputSchema, String> {
        if self.record_columns.is_empty() || self.record_columns.len() > 1000 {
            return Err("RecordColumns must have between 1 and 1000 columns".to_owned());
        }
        if let Some(encoding) = &self.record_encoding
            && encoding != "UTF-8"
        {
            return Err(format!(
                "RecordEncoding {encoding} is not supported; use UTF-8"
            ));
        }
        let mapping = self
            .record_format
            .mapping_parameters
            .clone()
            .unwrap_or_default();
        let format = match self.record_format.record_format_type.as_str() {
            "JSON" => RecordFormat::Json {
                row_path: mapping
                    .json
                    .map_or_else(|| "$".to_owned(), |j| j.record_row_path),
            },
            "CSV" => {
                let csv = mapping.csv.ok_or_else(|| {
                    "CSVMappingParameters are required for RecordFormatType CSV".to_owned()
                })?;
                RecordFormat::Csv {
                    row_delimiter: csv.record_row_delimiter,
                    column_delimiter: csv.record_column_delimiter,
                }
            }
            other => return Err(format!("RecordFormatType {other} is not one of JSON, CSV")),
        };
        let mut columns = Vec::with_capacity(self.record_columns.len());
        for column in &self.record_columns {
            let sql_type = parse_sql_type(&column.sql_type).ok_or_else(|| {
                format!(
                    "SqlType {} of column {} is not a supported SQL type",
                    column.sql_type, column.name
                )
            })?;
            if columns.iter().any(|c: &RecordColumn| c.name == column.name) {
                return Err(format!(
                    "Column {} appears twice in RecordColumns",
                    column.name
                ));
            }
            columns.push(RecordColumn {
                name: column.name.clone(),
                mapping: column.mapping.clone(),
                sql_type,
            });
        }
        Ok(InputSchema { format, columns })
    }
}
