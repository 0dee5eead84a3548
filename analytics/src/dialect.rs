//! The Kinesis Data Analytics SQL dialect as a `sqlparser` [`Dialect`].
//!
//! sqlparser's tokenizer and expression grammar do the work; this dialect adds what SQLstream's
//! streaming SQL has and no stock dialect parses:
//! - `STEP(expr BY INTERVAL 'n' unit)`, the tumbling-window bucket function, through the
//!   `parse_prefix` hook (it becomes a function call `STEP(expr, INTERVAL ...)`);
//! - double-quoted identifiers that keep their case (`"SOURCE_SQL_STREAM_001"`).
//!
//! The statements (`CREATE STREAM`, `CREATE PUMP`, `INSERT INTO … SELECT STREAM`) are parsed by
//! [`crate::program`], which drives a `Parser` of this dialect.

use sqlparser::ast::{
    DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, ObjectNamePart,
};
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// The KDA (SQLstream) dialect.
#[derive(Debug, Default, Clone, Copy)]
pub struct KdaDialect;

impl Dialect for KdaDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_ascii_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '"'
    }

    fn supports_window_clause_named_window_reference(&self) -> bool {
        true
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let is_step = matches!(
            &parser.peek_token_ref().token,
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("STEP")
        ) && parser.peek_nth_token_ref(1).token == Token::LParen;
        if !is_step {
            return None;
        }
        Some(parse_step(parser))
    }
}

/// `STEP ( operand BY interval )`, with the cursor on `STEP`.
fn parse_step(parser: &mut Parser) -> Result<Expr, ParserError> {
    parser.next_token();
    parser.expect_token(&Token::LParen)?;
    let operand = parser.parse_expr()?;
    parser.expect_keyword_is(Keyword::BY)?;
    let width = parser.parse_expr()?;
    parser.expect_token(&Token::RParen)?;
    let arg = |e: Expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(e));
    Ok(Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new("STEP"))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None::<DuplicateTreatment>,
            args: vec![arg(operand), arg(width)],
            clauses: Vec::new(),
        }),
        within_group: Vec::new(),
        filter: None,
        null_treatment: None,
        over: None,
    }))
}
