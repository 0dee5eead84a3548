//! JSON building blocks shared by the JSON 1.1 protocols: a borrowed document tree for requests
//! and a direct writer for responses.

pub mod value;
pub mod writer;

pub use value::{JsonSyntaxError, JsonValue, Number};
