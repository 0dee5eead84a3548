//! A KDA SQL program: its `CREATE STREAM` and `CREATE PUMP` statements, parsed.
//!
//! The text is tokenized by sqlparser with [`KdaDialect`]. One pass over the tokens removes the
//! `STREAM` keyword of `SELECT STREAM` (remembering that it was there), because sqlparser would
//! otherwise read `SELECT STREAM a` as the column `STREAM` aliased `a`. The statements are then
//! parsed by the grammar below, which delegates types, expressions and queries to sqlparser's
//! own parser:
//!
//! ```text
//! program    := { statement ";" }
//! statement  := CREATE [OR REPLACE] STREAM name "(" column { "," column } ")"
//!             | CREATE [OR REPLACE] PUMP name AS INSERT INTO name [ "(" name { "," name } ")" ]
//!               SELECT STREAM …            -- a sqlparser query
//!               [ event_time ]
//! event_time := WINDOWED BY EVENT TIME "(" column ")" WATERMARK interval
//!               [ ALLOWED LATENESS interval ]
//! ```
//!
//! `event_time` is ours, not KDA's: it makes the pump's tumbling window bucket an event-time
//! column instead of ROWTIME (see [`crate::window`] for its semantics).
//!
//! Unquoted identifiers fold to upper case; quoted ones keep their case. Every error carries the
//! line and column of the token where the problem is.

use sqlparser::ast::{Expr, Ident, ObjectName, ObjectNamePart, Query, SetExpr};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::dialect::KdaDialect;
use crate::types::SqlType;

/// Where a problem is in the program text (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl From<Location> for Position {
    fn from(l: Location) -> Self {
        Position {
            line: l.line,
            column: l.column,
        }
    }
}

/// Why a program was rejected; CreateApplication answers it as `CodeValidationException`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("SQL error at line {}, column {}: {message}", position.line, position.column)]
pub struct CodeError {
    pub position: Position,
    pub message: String,
}

impl CodeError {
    pub fn at(position: impl Into<Position>, message: impl Into<String>) -> Self {
        CodeError {
            position: position.into(),
            message: message.into(),
        }
    }

    /// Converts a sqlparser error, whose message ends with ` at Line: L, Column: C`.
    fn from_parser(error: ParserError, fallback: Position) -> Self {
        let text = match error {
            ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
            ParserError::RecursionLimitExceeded => "expression nested too deeply".to_owned(),
        };
        if let Some((message, place)) = text.rsplit_once(" at Line: ")
            && let Some((line, column)) = place.split_once(", Column: ")
            && let (Ok(line), Ok(column)) = (line.trim().parse(), column.trim().parse())
        {
            return CodeError::at(Position { line, column }, message);
        }
        CodeError::at(fallback, text)
    }
}

/// A column of an in-application stream.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub sql_type: SqlType,
}

/// `CREATE [OR REPLACE] STREAM`.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    pub position: Position,
}

/// `CREATE [OR REPLACE] PUMP name AS INSERT INTO target [(columns)] SELECT STREAM …`.
#[derive(Clone, Debug, PartialEq)]
pub struct PumpDef {
    pub name: String,
    pub target: String,
    pub columns: Option<Vec<String>>,
    pub query: Box<Query>,
    pub event_time: Option<EventTimeClause>,
    pub position: Position,
}

/// `WINDOWED BY EVENT TIME (column) WATERMARK interval [ALLOWED LATENESS interval]` after a
/// pump's query. The intervals stay expressions here; the planner checks them.
#[derive(Clone, Debug, PartialEq)]
pub struct EventTimeClause {
    pub column: Ident,
    pub watermark_delay: Expr,
    pub allowed_lateness: Option<Expr>,
    /// Where `WINDOWED` is.
    pub position: Position,
}

/// A parsed program, statements in text order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Program {
    pub streams: Vec<StreamDef>,
    pub pumps: Vec<PumpDef>,
}

/// The name an identifier denotes: quoted keeps its case, unquoted folds to upper case.
pub fn ident_name(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_uppercase(),
    }
}

/// The last part of an object name, folded like an identifier.
pub fn object_name(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(ident_name(ident)),
        ObjectNamePart::Function(_) => None,
    }
}

/// Parses a SQL type as an input schema's `SqlType` spells it (`VARCHAR(8)`, `DOUBLE`).
pub fn parse_sql_type(text: &str) -> Option<SqlType> {
    let dialect = KdaDialect;
    let mut parser = Parser::new(&dialect).try_with_sql(text).ok()?;
    let ty = parser.parse_data_type().ok()?;
    if parser.peek_token_ref().token != Token::EOF {
        return None;
    }
    SqlType::from_ast(&ty)
}

/// Parses `sql` into a program, or says where and why it is invalid.
pub fn parse_program(sql: &str) -> Result<Program, CodeError> {
    let dialect = KdaDialect;
    let start = Position { line: 1, column: 1 };
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| {
            CodeError::at(
                Position {
                    line: e.location.line,
                    column: e.location.column,
                },
                e.message,
            )
        })?;
    crate::nesting::check(&tokens)?;
    let tokens = strip_select_stream(tokens);
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut program = Program::default();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        let next = parser.peek_token();
        if next.token == Token::EOF {
            break;
        }
        let position: Position = next.span.start.into();
        parse_statement(&mut parser, &mut program, position)
            .map_err(|e| CodeError::from_parser(e, position))?;
        let after = parser.peek_token();
        if after.token != Token::SemiColon && after.token != Token::EOF {
            return Err(CodeError::at(
                after.span.start,
                format!("Expected: ';' or end of statement, found: {}", after.token),
            ));
        }
    }
    if program.streams.is_empty() && program.pumps.is_empty() {
        return Err(CodeError::at(start, "the program has no statement"));
    }
    check_names(&program)?;
    Ok(program)
}

/// Removes the unquoted word `STREAM` that directly follows `SELECT` (whitespace and comments
/// between them are kept). Queries without it are rejected later by the planner, which needs
/// to know it was there: the removed word is replaced by a marker comment.
///
/// It also rewrites a stream window in FROM, `"T" OVER (RANGE INTERVAL '1' MINUTE PRECEDING)`
/// (an identifier followed by `OVER (`), which sqlparser cannot parse, into table arguments
/// holding the window's text, `"T"('RANGE INTERVAL ''1'' MINUTE PRECEDING')`; the planner
/// parses that text as a window specification ([`parse_window_text`]).
///
/// And `WINDOWED BY STAGGER (PARTITION BY k1, k2 RANGE INTERVAL '1' MINUTE)`, which sqlparser
/// cannot parse either, becomes `GROUP BY k1, k2, STAGGER(INTERVAL '1' MINUTE)`.
fn strip_select_stream(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let tokens = rewrite_stagger(rewrite_stream_windows(tokens));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut after_select = false;
    for token in tokens {
        let is_space = matches!(token.token, Token::Whitespace(_));
        if after_select && !is_space {
            after_select = false;
            if let Token::Word(w) = &token.token
                && w.quote_style.is_none()
                && w.value.eq_ignore_ascii_case("STREAM")
            {
                continue;
            }
        }
        if let Token::Word(w) = &token.token
            && w.keyword == Keyword::SELECT
        {
            after_select = true;
        }
        out.push(token);
    }
    out
}

fn rewrite_stream_windows(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let is_over = matches!(&token.token, Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::OVER);
        let after_identifier = out
            .iter()
            .rev()
            .find(|t| !matches!(t.token, Token::Whitespace(_)))
            .is_some_and(|t| matches!(&t.token, Token::Word(w) if w.quote_style.is_some() || w.keyword == Keyword::NoKeyword));
        let open = tokens[i + 1..]
            .iter()
            .position(|t| !matches!(t.token, Token::Whitespace(_)))
            .map(|p| i + 1 + p);
        if is_over && after_identifier && open.is_some_and(|o| tokens[o].token == Token::LParen) {
            let open = open.unwrap_or(i);
            let mut depth = 0usize;
            let mut close = None;
            for (j, t) in tokens.iter().enumerate().skip(open) {
                match t.token {
                    Token::LParen => depth += 1,
                    Token::RParen => {
                        depth -= 1;
                        if depth == 0 {
                            close = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            if let Some(close) = close {
                let text: String = tokens[open + 1..close]
                    .iter()
                    .map(|t| t.token.to_string())
                    .collect();
                let span = tokens[open].span;
                out.push(TokenWithSpan::new(Token::LParen, span));
                out.push(TokenWithSpan::new(Token::SingleQuotedString(text), span));
                out.push(TokenWithSpan::new(Token::RParen, tokens[close].span));
                i = close + 1;
                continue;
            }
        }
        out.push(token.clone());
        i += 1;
    }
    out
}

fn rewrite_stagger(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let word = |t: &TokenWithSpan, w: &str| matches!(&t.token, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if word(&tokens[i], "WINDOWED") {
            // The significant tokens after WINDOWED: BY STAGGER ( PARTITION BY …
            let significant: Vec<usize> = (i + 1..tokens.len())
                .filter(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
                .take(5)
                .collect();
            if significant.len() == 5
                && word(&tokens[significant[0]], "BY")
                && word(&tokens[significant[1]], "STAGGER")
                && tokens[significant[2]].token == Token::LParen
                && word(&tokens[significant[3]], "PARTITION")
                && word(&tokens[significant[4]], "BY")
            {
                let open = significant[2];
                let mut depth = 0usize;
                let mut range = None;
                let mut close = None;
                for (j, t) in tokens.iter().enumerate().skip(open) {
                    match t.token {
                        Token::LParen => depth += 1,
                        Token::RParen => {
                            depth -= 1;
                            if depth == 0 {
                                close = Some(j);
                                break;
                            }
                        }
                        _ if depth == 1 && range.is_none() && word(t, "RANGE") => range = Some(j),
                        _ => {}
                    }
                }
                if let (Some(range), Some(close)) = (range, close) {
                    let span = tokens[i].span;
                    let make = |t: Token| TokenWithSpan::new(t, span);
                    out.push(make(Token::make_keyword("GROUP")));
                    out.push(make(Token::Whitespace(
                        sqlparser::tokenizer::Whitespace::Space,
                    )));
                    out.push(make(Token::make_keyword("BY")));
                    out.push(make(Token::Whitespace(
                        sqlparser::tokenizer::Whitespace::Space,
                    )));
                    out.extend(tokens[significant[4] + 1..range].iter().cloned());
                    out.push(make(Token::Comma));
                    out.push(TokenWithSpan::new(
                        Token::make_word("STAGGER", None),
                        tokens[significant[1]].span,
                    ));
                    out.push(make(Token::LParen));
                    out.extend(tokens[range + 1..close].iter().cloned());
                    out.push(make(Token::RParen));
                    i = close + 1;
                    continue;
                }
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// Parses the text of a stream window (`RANGE INTERVAL '1' MINUTE PRECEDING`) into a window
/// specification.
pub fn parse_window_text(text: &str) -> Option<sqlparser::ast::WindowSpec> {
    let dialect = KdaDialect;
    let sql = format!("SELECT COUNT(*) OVER ({text}) FROM x");
    let mut parser = Parser::new(&dialect).try_with_sql(&sql).ok()?;
    let query = parser.parse_query().ok()?;
    let SetExpr::Select(select) = *query.body else {
        return None;
    };
    match select.projection.first()? {
        sqlparser::ast::SelectItem::UnnamedExpr(Expr::Function(f)) => match &f.over {
            Some(sqlparser::ast::WindowType::WindowSpec(spec)) => Some(spec.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn parse_statement(
    parser: &mut Parser,
    program: &mut Program,
    position: Position,
) -> Result<(), ParserError> {
    parser.expect_keyword_is(Keyword::CREATE)?;
    let _ = parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    let kind = parser.next_token();
    let is_word = |w: &str| matches!(&kind.token, Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(w));
    if is_word("STREAM") {
        let name = ident_name(&parser.parse_identifier()?);
        parser.expect_token(&Token::LParen)?;
        let columns = parser.parse_comma_separated(|p| {
            let at = p.peek_token();
            let name = ident_name(&p.parse_identifier()?);
            let type_at = p.peek_token();
            let ty = p.parse_data_type()?;
            let Some(sql_type) = SqlType::from_ast(&ty) else {
                return p.expected("a KDA SQL type", type_at);
            };
            let _ = at;
            Ok(ColumnDef { name, sql_type })
        })?;
        parser.expect_token(&Token::RParen)?;
        program.streams.push(StreamDef {
            name,
            columns,
            position,
        });
        Ok(())
    } else if is_word("PUMP") {
        let name = ident_name(&parser.parse_identifier()?);
        parser.expect_keyword_is(Keyword::AS)?;
        parser.expect_keyword_is(Keyword::INSERT)?;
        parser.expect_keyword_is(Keyword::INTO)?;
        let target = ident_name(&parser.parse_identifier()?);
        let columns = if parser.peek_token_ref().token == Token::LParen
            && !matches!(&parser.peek_nth_token_ref(1).token, Token::Word(w) if w.keyword == Keyword::SELECT)
        {
            parser.expect_token(&Token::LParen)?;
            let names = parser.parse_comma_separated(|p| Ok(ident_name(&p.parse_identifier()?)))?;
            parser.expect_token(&Token::RParen)?;
            Some(names)
        } else {
            None
        };
        let query_at = parser.peek_token();
        let query = parser.parse_query()?;
        if !matches!(*query.body, SetExpr::Select(_)) {
            return parser.expected("SELECT STREAM", query_at);
        }
        let event_time = parse_event_time(parser)?;
        program.pumps.push(PumpDef {
            name,
            target,
            columns,
            query,
            event_time,
            position,
        });
        Ok(())
    } else {
        parser.expected("STREAM or PUMP", kind)
    }
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn expect_word(parser: &mut Parser, word: &str) -> Result<(), ParserError> {
    let token = parser.next_token();
    if is_word(&token.token, word) {
        Ok(())
    } else {
        parser.expected(word, token)
    }
}

/// The optional `WINDOWED BY EVENT TIME …` clause after a pump's query (see the module doc).
/// `WINDOWED BY STAGGER` never reaches here: the token pass has rewritten it into GROUP BY.
fn parse_event_time(parser: &mut Parser) -> Result<Option<EventTimeClause>, ParserError> {
    let at = parser.peek_token();
    if !is_word(&at.token, "WINDOWED") {
        return Ok(None);
    }
    parser.next_token();
    expect_word(parser, "BY")?;
    expect_word(parser, "EVENT")?;
    expect_word(parser, "TIME")?;
    parser.expect_token(&Token::LParen)?;
    let column = parser.parse_identifier()?;
    parser.expect_token(&Token::RParen)?;
    expect_word(parser, "WATERMARK")?;
    let watermark_delay = parser.parse_expr()?;
    let allowed_lateness = if is_word(&parser.peek_token_ref().token, "ALLOWED") {
        parser.next_token();
        expect_word(parser, "LATENESS")?;
        Some(parser.parse_expr()?)
    } else {
        None
    };
    Ok(Some(EventTimeClause {
        column,
        watermark_delay,
        allowed_lateness,
        position: at.span.start.into(),
    }))
}

/// Stream and pump names are unique, and every pump writes into a declared stream.
fn check_names(program: &Program) -> Result<(), CodeError> {
    for (i, stream) in program.streams.iter().enumerate() {
        if program.streams[..i].iter().any(|s| s.name == stream.name) {
            return Err(CodeError::at(
                stream.position,
                format!("stream \"{}\" is created twice", stream.name),
            ));
        }
        for (j, column) in stream.columns.iter().enumerate() {
            if stream.columns[..j].iter().any(|c| c.name == column.name) {
                return Err(CodeError::at(
                    stream.position,
                    format!(
                        "column \"{}\" appears twice in stream \"{}\"",
                        column.name, stream.name
                    ),
                ));
            }
        }
    }
    for (i, pump) in program.pumps.iter().enumerate() {
        if program.pumps[..i].iter().any(|p| p.name == pump.name) {
            return Err(CodeError::at(
                pump.position,
                format!("pump \"{}\" is created twice", pump.name),
            ));
        }
        if !program.streams.iter().any(|s| s.name == pump.target) {
            return Err(CodeError::at(
                pump.position,
                format!("Object '{}' not found", pump.target),
            ));
        }
    }
    Ok(())
}

/// The expression of a single-identifier or compound-identifier column reference: its
/// qualifier (folded) and column name (folded).
pub fn column_ref(expr: &Expr) -> Option<(Option<String>, String)> {
    match expr {
        Expr::Identifier(ident) => Some((None, ident_name(ident))),
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let column = ident_name(parts.last()?);
            let qualifier = ident_name(&parts[parts.len() - 2]);
            Some((Some(qualifier), column))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILTER: &str = r#"
        CREATE OR REPLACE STREAM "BIG_TRADES" ("sym" VARCHAR(8), "notional" DOUBLE);
        CREATE OR REPLACE PUMP "BIG_PUMP" AS INSERT INTO "BIG_TRADES"
          SELECT STREAM "sym", "px" * "qty" FROM "SRC_001" WHERE "px" * "qty" > 10000;
    "#;

    const TUMBLING: &str = r#"
        CREATE OR REPLACE STREAM "STATS_30S" ("sym" VARCHAR(8), "n" BIGINT, "avg_px" DOUBLE, "hi" DOUBLE, "lo" DOUBLE);
        CREATE OR REPLACE PUMP "STATS_PUMP" AS INSERT INTO "STATS_30S"
          SELECT STREAM "sym", COUNT(*), AVG("px"), MAX("px"), MIN("px")
          FROM "SRC_001"
          GROUP BY "sym", STEP("SRC_001".ROWTIME BY INTERVAL '30' SECOND);
    "#;

    const SLIDING: &str = r#"
        CREATE OR REPLACE STREAM "MOVING" ("sym" VARCHAR(8), "vol_5m" BIGINT, "px" DOUBLE);
        CREATE OR REPLACE PUMP "MOVING_PUMP" AS INSERT INTO "MOVING"
          SELECT STREAM "sym", SUM("qty") OVER W, "px" FROM "SRC_001"
          WINDOW W AS (PARTITION BY "sym" RANGE INTERVAL '5' MINUTE PRECEDING);
    "#;

    #[test]
    fn parses_the_filter_and_projection_program() {
        let program = parse_program(FILTER).expect("valid");
        assert_eq!(program.streams.len(), 1);
        assert_eq!(program.streams[0].name, "BIG_TRADES");
        assert_eq!(program.streams[0].columns[0].name, "sym");
        assert_eq!(
            program.streams[0].columns[0].sql_type,
            SqlType::Varchar(Some(8))
        );
        assert_eq!(program.streams[0].columns[1].sql_type, SqlType::Double);
        assert_eq!(program.pumps.len(), 1);
        assert_eq!(program.pumps[0].name, "BIG_PUMP");
        assert_eq!(program.pumps[0].target, "BIG_TRADES");
        let SetExpr::Select(select) = &*program.pumps[0].query.body else {
            panic!("a select");
        };
        assert_eq!(select.projection.len(), 2, "STREAM is not read as a column");
        assert!(select.selection.is_some());
    }

    #[test]
    fn parses_the_tumbling_window_program_with_step_over_rowtime() {
        let program = parse_program(TUMBLING).expect("valid");
        let SetExpr::Select(select) = &*program.pumps[0].query.body else {
            panic!("a select");
        };
        let sqlparser::ast::GroupByExpr::Expressions(keys, _) = &select.group_by else {
            panic!("group by expressions");
        };
        assert_eq!(keys.len(), 2);
        let Expr::Function(step) = &keys[1] else {
            panic!("STEP is a function call");
        };
        assert_eq!(step.name.to_string(), "STEP");
        assert_eq!(
            step.args.to_string(),
            "(\"SRC_001\".ROWTIME, INTERVAL '30' SECOND)"
        );
    }

    #[test]
    fn parses_floor_to_minute_and_unquoted_identifiers_folding_to_upper_case() {
        let program = parse_program(
            "create or replace stream out_s (ticker varchar(4), n integer);\n\
             create pump p as insert into out_s select stream ticker, count(*) from source_sql_stream_001 \
             group by ticker, floor(source_sql_stream_001.rowtime to minute);",
        )
        .expect("valid");
        assert_eq!(program.streams[0].name, "OUT_S");
        assert_eq!(program.streams[0].columns[0].name, "TICKER");
        assert_eq!(program.pumps[0].target, "OUT_S");
    }

    #[test]
    fn parses_the_sliding_window_program() {
        parse_program(SLIDING).expect("valid");
    }

    #[test]
    fn rejects_a_misspelt_keyword_with_its_line_and_column() {
        let error = parse_program(
            "CREATE OR REPLACE STREAM \"S\" (\"a\" INTEGER);\nCREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"S\"\n  SELEC STREAM \"a\" FROM \"SOURCE_SQL_STREAM_001\";",
        )
        .expect_err("invalid");
        assert_eq!(error.position, Position { line: 3, column: 3 });
        assert!(error.message.contains("SELEC"), "{}", error.message);
    }

    #[test]
    fn rejects_an_unknown_column_type_at_the_type() {
        let error = parse_program("CREATE STREAM \"S\" (\"a\" BLOB_THING);").expect_err("invalid");
        assert_eq!(
            error.position,
            Position {
                line: 1,
                column: 24
            }
        );
    }

    #[test]
    fn rejects_a_pump_into_an_undeclared_stream_at_the_pump() {
        let error = parse_program(
            "CREATE STREAM \"S\" (\"a\" INTEGER);\n  CREATE PUMP \"P\" AS INSERT INTO \"T\" SELECT STREAM \"a\" FROM \"X\";",
        )
        .expect_err("invalid");
        assert_eq!(error.position, Position { line: 2, column: 3 });
        assert!(error.message.contains("'T' not found"));
    }

    #[test]
    fn rejects_an_unterminated_string_and_a_missing_parenthesis() {
        let error = parse_program("CREATE STREAM \"S\" (\"a\" INTEGER;").expect_err("invalid");
        assert_eq!(error.position.line, 1);
        assert_eq!(error.position.column, 31);
        let error = parse_program("CREATE STREAM \"S\" ('a INTEGER);").expect_err("invalid");
        assert_eq!(error.position.line, 1);
        assert!(parse_program("").is_err());
        assert!(parse_program("DROP TABLE x;").is_err());
    }

    #[test]
    fn parses_sql_types_as_input_schemas_spell_them() {
        assert_eq!(
            parse_sql_type("VARCHAR(16)"),
            Some(SqlType::Varchar(Some(16)))
        );
        assert_eq!(parse_sql_type("DOUBLE"), Some(SqlType::Double));
        assert_eq!(parse_sql_type("DECIMAL(10,2)"), Some(SqlType::Decimal));
        assert_eq!(parse_sql_type("TIMESTAMP"), Some(SqlType::Timestamp));
        assert_eq!(parse_sql_type("VARCHAR(8) junk"), None);
        assert_eq!(parse_sql_type("NOPE"), None);
    }
    #[test]
    fn parses_a_table_function_over_a_cursor() {
        let program = parse_program(
            r#"CREATE STREAM "D" ("ITEM" VARCHAR(8), "ITEM_COUNT" DOUBLE);
CREATE PUMP "P" AS INSERT INTO "D" SELECT STREAM * FROM TABLE(TOP_K_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001"), 'sym', 3, 60));"#,
        )
        .expect("parses");
        let SetExpr::Select(select) = &*program.pumps[0].query.body else {
            panic!("a select");
        };
        let sqlparser::ast::TableFactor::TableFunction { expr, .. } = &select.from[0].relation
        else {
            panic!("a table function");
        };
        assert!(
            expr.to_string().starts_with("TOP_K_ITEMS_TUMBLING(CURSOR"),
            "{expr}"
        );
    }
}
