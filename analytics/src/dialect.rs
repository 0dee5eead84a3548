//! The Kinesis Data Analytics SQL dialect as a `sqlparser` [`Dialect`].
//!
//! sqlparser's tokenizer and expression grammar do the work; this dialect adds what SQLstream's
//! streaming SQL has and no stock dialect parses:
//! - `STEP(expr BY INTERVAL 'n' unit)`, the tumbling-window bucket function, through the
//!   `parse_prefix` hook (it becomes a function call `STEP(expr, INTERVAL ...)`);
//! - `CURSOR(SELECT STREAM …)`, the stream pointer of table functions such as
//!   `TOP_K_ITEMS_TUMBLING`, through the same hook (a function `CURSOR` whose argument is a query);
//! - a word followed by `BY` is never an implicit table alias, so the pump clause
//!   `WINDOWED BY EVENT TIME (…)` ([`crate::program`]) can follow `FROM "S"`;
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

    /// A word followed by `BY` starts a clause (`WINDOWED BY EVENT TIME …`), not a table alias:
    /// without this `FROM "S" WINDOWED BY …` would read `WINDOWED` as the stream's alias.
    fn is_table_factor_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        if explicit {
            return true;
        }
        if *kw == Keyword::NoKeyword
            && matches!(&parser.peek_token_ref().token, Token::Word(w) if w.keyword == Keyword::BY)
        {
            return false;
        }
        self.is_table_alias(kw, parser)
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let word = |name: &str| {
            matches!(
                &parser.peek_token_ref().token,
                Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(name)
            ) && parser.peek_nth_token_ref(1).token == Token::LParen
        };
        if word("STEP") {
            Some(parse_step(parser))
        } else if word("CURSOR") {
            Some(parse_cursor(parser))
        } else {
            None
        }
    }
}

/// `CURSOR ( query )`, the stream pointer table functions take, with the cursor on `CURSOR`:
/// a function `CURSOR` whose argument is the query.
fn parse_cursor(parser: &mut Parser) -> Result<Expr, ParserError> {
    parser.next_token();
    parser.expect_token(&Token::LParen)?;
    let query = parser.parse_query()?;
    parser.expect_token(&Token::RParen)?;
    Ok(Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new("CURSOR"))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::Subquery(query),
        within_group: Vec::new(),
        filter: None,
        null_treatment: None,
        over: None,
    }))
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
