//! A bound on how deep a program's expressions can nest, checked on its tokens before sqlparser
//! builds any tree.
//!
//! Why before: sqlparser counts nested parentheses, function calls and subqueries against its
//! recursion limit, but builds a chain of infix or postfix operators (`1 + 1 + 1 …`,
//! `x IS NULL IS NULL …`, `a UNION b UNION c …`) in a loop, as a left-deep tree of any depth.
//! Every later pass over that tree recurses once per level: its `Drop` (even when the parse
//! then fails), its spans, the planner and the compiled expression's evaluation. A program of
//! ApplicationCode's 102,400 characters can nest 50,000 levels, and 2,000 already overflow the
//! 2 MiB stack of the thread that parses or runs it, which aborts the whole appliance.
//!
//! The bound (the invariant this file keeps): every node of an expression owns a token at the
//! outermost bracket level of its own text (its operator, keyword, name or brackets), and no
//! node's text holds a comma at that level. So the nodes on one path from the root to a leaf
//! own distinct tokens that lie in the leaf's *segment* or in the segments around it, where a
//! segment is the tokens of one bracket level between two commas, the brackets themselves
//! counted in the segment around them. The largest sum of segment lengths along a chain of
//! enclosing segments is therefore at least the depth of every expression in the statement.
//!
//! Two refinements keep the bound close for real programs. `CASE … END` is a bracket pair in
//! which `WHEN`, `THEN` and `ELSE` separate like commas, so a long CASE is wide, not deep. Set
//! operators (`UNION`, `INTERSECT`, `EXCEPT`, `MINUS`) join selects whose select lists hold
//! commas at the operator's level, so they count at their level across commas; the planner
//! refuses them anyway, but only after sqlparser has built the chain.
//!
//! Query nesting (subqueries, `CURSOR(SELECT …)`) is left to sqlparser's recursion limit.

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::program::CodeError;

/// The most tokens one chain of enclosing segments of a statement may hold, and so the deepest
/// expression a program can hold. The statement's own words count too, so a pump can still
/// select a sum of about 250 columns. Measured on a release build, the planner and the
/// evaluation take about 2.5 KiB of stack a level: such a sum needs about 640 KiB of an
/// executor thread's 2 MiB. A debug build needs about ten times as much.
pub const EXPRESSION_PATH_TOKENS_MAX: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    Statement,
    Paren,
    Bracket,
    Brace,
    Case,
}

/// One open bracket level.
#[derive(Debug)]
struct Level {
    group: Group,
    /// Tokens of the open segment.
    segment: usize,
    /// Set operators at this level, whatever the segment.
    set_operators: usize,
    /// The most tokens on a chain through a closed group inside the open segment.
    inner: usize,
    /// The most tokens on a chain through a closed segment of this level (set operators aside).
    closed: usize,
}

impl Level {
    fn new(group: Group) -> Self {
        Level {
            group,
            segment: 0,
            set_operators: 0,
            inner: 0,
            closed: 0,
        }
    }

    /// The most tokens on a chain through this level.
    fn deepest(&self) -> usize {
        self.set_operators + self.closed.max(self.segment + self.inner)
    }
}

/// The levels of the statement being read, and the tokens of their open segments in total.
#[derive(Debug)]
struct Levels {
    open: Vec<Level>,
    /// The sum of `segment + set_operators` over `open`.
    counted: usize,
}

impl Levels {
    fn new() -> Self {
        Levels {
            open: vec![Level::new(Group::Statement)],
            counted: 0,
        }
    }

    fn innermost(&mut self) -> &mut Level {
        self.open
            .last_mut()
            .expect("the statement level is never closed")
    }

    fn count(&mut self) {
        self.innermost().segment += 1;
        self.counted += 1;
    }

    fn separate(&mut self) {
        let level = self.innermost();
        let segment = level.segment;
        level.closed = level.closed.max(level.segment + level.inner);
        level.segment = 0;
        level.inner = 0;
        self.counted -= segment;
    }

    fn open(&mut self, group: Group) {
        self.count();
        self.open.push(Level::new(group));
    }

    /// Closes the innermost level of `group` and every level inside it, then counts the
    /// closing token around it; a closer with nothing to close is an ordinary token.
    fn close(&mut self, group: Group) {
        let Some(at) = self.open.iter().rposition(|l| l.group == group) else {
            self.count();
            return;
        };
        // A bracket closes the CASEs left open inside it, but not another kind of bracket.
        if self.open[at + 1..].iter().any(|l| l.group != Group::Case) {
            self.count();
            return;
        }
        while self.open.len() > at {
            let level = self
                .open
                .pop()
                .expect("at least the statement level is open");
            self.counted -= level.segment + level.set_operators;
            let outer = self.innermost();
            outer.inner = outer.inner.max(level.deepest());
        }
        self.count();
    }

    /// Reads the next token of a statement (not whitespace, not `;`).
    fn read(&mut self, token: &Token) {
        let in_case = self.open.last().map(|l| l.group) == Some(Group::Case);
        match token {
            Token::Comma => self.separate(),
            Token::LParen => self.open(Group::Paren),
            Token::LBracket => self.open(Group::Bracket),
            Token::LBrace => self.open(Group::Brace),
            Token::RParen => self.close(Group::Paren),
            Token::RBracket => self.close(Group::Bracket),
            Token::RBrace => self.close(Group::Brace),
            t if is_keyword(t, Keyword::CASE) => self.open(Group::Case),
            t if in_case && is_keyword(t, Keyword::END) => self.close(Group::Case),
            t if in_case
                && [Keyword::WHEN, Keyword::THEN, Keyword::ELSE]
                    .iter()
                    .any(|k| is_keyword(t, *k)) =>
            {
                self.separate();
            }
            t if [
                Keyword::UNION,
                Keyword::INTERSECT,
                Keyword::EXCEPT,
                Keyword::MINUS,
            ]
            .iter()
            .any(|k| is_keyword(t, *k)) =>
            {
                self.innermost().set_operators += 1;
                self.counted += 1;
            }
            _ => self.count(),
        }
    }

    /// The most tokens on a chain through what has been read: exact once every level is
    /// closed, and never more than that before.
    fn chain(&self) -> usize {
        let inner = self.open.last().map_or(0, |l| l.inner);
        self.counted + inner
    }

    /// The most tokens on any chain of the statement, closing every level left open.
    fn finish(mut self) -> usize {
        while self.open.len() > 1 {
            let level = self.open.pop().expect("more than one level is open");
            let outer = self.innermost();
            outer.inner = outer.inner.max(level.deepest());
        }
        self.open[0].deepest()
    }
}

fn is_keyword(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.keyword == keyword)
}

/// Refuses a program in which one statement has a chain of enclosing segments longer than
/// [`EXPRESSION_PATH_TOKENS_MAX`] tokens (see the module doc), at the token that passes it.
pub fn check(tokens: &[TokenWithSpan]) -> Result<(), CodeError> {
    let too_deep = |token: &TokenWithSpan| {
        CodeError::at(
            token.span.start,
            format!(
                "expression nested too deeply: more than {EXPRESSION_PATH_TOKENS_MAX} operators \
                 and operands on one path (a list of alternatives can be an IN list)"
            ),
        )
    };
    let mut levels = Levels::new();
    let mut last = None;
    for token in tokens {
        match token.token {
            Token::Whitespace(_) => continue,
            Token::SemiColon => {
                let statement = std::mem::replace(&mut levels, Levels::new());
                if statement.finish() > EXPRESSION_PATH_TOKENS_MAX {
                    return Err(too_deep(token));
                }
            }
            _ => {
                levels.read(&token.token);
                if levels.chain() > EXPRESSION_PATH_TOKENS_MAX {
                    return Err(too_deep(token));
                }
            }
        }
        last = Some(token);
    }
    match last {
        Some(token) if levels.finish() > EXPRESSION_PATH_TOKENS_MAX => Err(too_deep(token)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use sqlparser::tokenizer::Tokenizer;

    use super::*;
    use crate::dialect::KdaDialect;

    /// The most tokens on a chain of enclosing segments of one statement.
    fn deepest(sql: &str) -> usize {
        let mut levels = Levels::new();
        for token in tokens(sql) {
            if !matches!(token.token, Token::Whitespace(_)) {
                levels.read(&token.token);
            }
        }
        levels.finish()
    }

    #[test]
    fn a_chain_counts_every_token_of_its_segment() {
        assert_eq!(deepest("1 + 2 + 3"), 5);
        assert_eq!(deepest("1 + 2, 3"), 3);
    }

    #[test]
    fn brackets_count_around_them_and_their_deepest_segment_inside() {
        // `f`, `(`, `)` and `+ 1` outside; `a * b` is the deeper of the two segments inside.
        assert_eq!(deepest("f(a * b, c) + 1"), 5 + 3);
        assert_eq!(deepest("((1))"), 4 + 1);
    }

    #[test]
    fn a_closer_that_matches_no_open_bracket_is_an_ordinary_token() {
        assert_eq!(deepest("1 ) + ] 2"), 5);
        // `]` cannot close the `(` around it: both count inside the parentheses.
        assert_eq!(deepest("f(a ] b)"), 3 + 3);
        // `)` closes the CASE left open inside its parentheses.
        assert_eq!(deepest("(CASE WHEN a + b) + 1"), 4 + 1 + 3);
    }

    #[test]
    fn a_long_case_is_wide_and_a_long_chain_is_deep() {
        let case = format!("CASE {} ELSE 0 END", "WHEN x = 1 THEN 2 ".repeat(1_000));
        assert!(check(&tokens(&case)).is_ok());
        let chain = format!("1{}", " + 1".repeat(EXPRESSION_PATH_TOKENS_MAX / 2));
        assert!(check(&tokens(&chain)).is_err());
        let chain = format!("1{}", " + 1".repeat(EXPRESSION_PATH_TOKENS_MAX / 2 - 1));
        assert!(check(&tokens(&chain)).is_ok());
    }

    #[test]
    fn set_operators_count_across_the_commas_of_their_selects() {
        let select = "SELECT a, b FROM s";
        let chain = vec![select; EXPRESSION_PATH_TOKENS_MAX + 1].join(" UNION ");
        assert!(check(&tokens(&chain)).is_err());
    }

    #[test]
    fn each_statement_has_its_own_bound() {
        let chain = format!("1{}", " + 1".repeat(EXPRESSION_PATH_TOKENS_MAX / 4));
        assert!(check(&tokens(&format!("{chain}; {chain}; {chain};"))).is_ok());
    }

    fn tokens(sql: &str) -> Vec<TokenWithSpan> {
        Tokenizer::new(&KdaDialect, sql)
            .tokenize_with_location()
            .expect("tokenizes")
    }
}
