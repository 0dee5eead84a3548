//! SQL types of in-application streams and how they map onto Arrow.
//!
//! Every SQL type has one physical Arrow representation, so a column's array type is known from
//! its declaration: integers (TINYINT … BIGINT) are `Int64`, approximate and exact numerics
//! (REAL, DOUBLE, DECIMAL) are `Float64`, character types are `Utf8`, BOOLEAN is `Boolean`, and
//! TIMESTAMP/DATE are milliseconds since the epoch in `Int64` (rendered as timestamps on output).
//! DECIMAL computed in binary floating point is a documented deviation (docs/DECISIONS.md).

use arrow_schema::DataType;
use sqlparser::ast::{CharacterLength, DataType as AstType};

/// A column type as declared in `CREATE STREAM` or an input schema's `SqlType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlType {
    /// VARCHAR(n) / CHAR(n); `None` is unbounded.
    Varchar(Option<u64>),
    Integer,
    BigInt,
    SmallInt,
    TinyInt,
    Double,
    Real,
    Decimal,
    Boolean,
    Timestamp,
    Date,
}

/// The physical kind of a value, one per Arrow array type the engine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Text,
    Bool,
    /// Milliseconds since the Unix epoch.
    Time,
}

impl Kind {
    pub fn arrow(self) -> DataType {
        match self {
            Kind::Int | Kind::Time => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Text => DataType::Utf8,
            Kind::Bool => DataType::Boolean,
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, Kind::Int | Kind::Float)
    }
}

impl SqlType {
    pub fn kind(self) -> Kind {
        match self {
            SqlType::Varchar(_) => Kind::Text,
            SqlType::Integer | SqlType::BigInt | SqlType::SmallInt | SqlType::TinyInt => Kind::Int,
            SqlType::Double | SqlType::Real | SqlType::Decimal => Kind::Float,
            SqlType::Boolean => Kind::Bool,
            SqlType::Timestamp | SqlType::Date => Kind::Time,
        }
    }

    /// The type of a parsed declaration, or `None` for a type KDA does not have.
    pub fn from_ast(ty: &AstType) -> Option<SqlType> {
        let length = |l: &Option<CharacterLength>| match l {
            Some(CharacterLength::IntegerLength { length, .. }) => Some(*length),
            _ => None,
        };
        Some(match ty {
            AstType::Varchar(l) | AstType::Char(l) | AstType::Character(l) => {
                SqlType::Varchar(length(l))
            }
            AstType::Integer(_) | AstType::Int(_) => SqlType::Integer,
            AstType::BigInt(_) => SqlType::BigInt,
            AstType::SmallInt(_) => SqlType::SmallInt,
            AstType::TinyInt(_) => SqlType::TinyInt,
            AstType::Double(_) | AstType::DoublePrecision | AstType::Float(_) => SqlType::Double,
            AstType::Real => SqlType::Real,
            AstType::Decimal(_) | AstType::Numeric(_) => SqlType::Decimal,
            AstType::Boolean | AstType::Bool => SqlType::Boolean,
            AstType::Timestamp(..) => SqlType::Timestamp,
            AstType::Date => SqlType::Date,
            _ => return None,
        })
    }

    /// The type as the API spells it in `SqlType` (`VARCHAR(8)`, `DOUBLE`, …).
    pub fn api_name(self) -> String {
        match self {
            SqlType::Varchar(Some(n)) => format!("VARCHAR({n})"),
            SqlType::Varchar(None) => "VARCHAR".to_owned(),
            SqlType::Integer => "INTEGER".to_owned(),
            SqlType::BigInt => "BIGINT".to_owned(),
            SqlType::SmallInt => "SMALLINT".to_owned(),
            SqlType::TinyInt => "TINYINT".to_owned(),
            SqlType::Double => "DOUBLE".to_owned(),
            SqlType::Real => "REAL".to_owned(),
            SqlType::Decimal => "DECIMAL".to_owned(),
            SqlType::Boolean => "BOOLEAN".to_owned(),
            SqlType::Timestamp => "TIMESTAMP".to_owned(),
            SqlType::Date => "DATE".to_owned(),
        }
    }
}
