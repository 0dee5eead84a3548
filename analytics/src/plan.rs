//! Compiling a pump's query into a plan over its source stream's batches.
//!
//! A pump is one of two plans:
//! - **stateless**: an optional filter (`WHERE`) and one expression per output column;
//! - **tumbling aggregate**: `GROUP BY` holding exactly one bucket of the source's `ROWTIME`
//!   (`STEP(s.ROWTIME BY INTERVAL 'n' unit)` or `FLOOR(s.ROWTIME TO unit)`) plus any other keys
//!   (which may themselves be buckets of an event-time column), with COUNT/SUM/AVG/MIN/MAX.
//!   Each select item is an aggregate, a `GROUP BY` item, or the bucket (its window start).
//!   With `WINDOWED BY EVENT TIME ("c") …` after the query (ours, not KDA's) the one bucket is
//!   over the TIMESTAMP column `c` instead, and the window closes by watermark
//!   ([`EventTimePlan`]).
//!
//! The select list maps positionally onto the target stream's columns (or onto the pump's
//! column list), each cast to its column's type. Anything the planner cannot run is a
//! [`CodeError`] with the position of the offending expression, answered at CreateApplication.

use std::collections::HashMap;

use sqlparser::ast::{
    BinaryOperator, CeilFloorKind, DateTimeField, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, Query, SelectItem, SetExpr, Spanned, TableFactor,
    UnaryOperator, Value as AstValue,
};

use crate::batch::StreamShape;
use crate::expr::{ArithOp, CExpr, CmpOp, ScalarFn};
use crate::program::{
    CodeError, EventTimeClause, Position, PumpDef, column_ref, ident_name, object_name,
};
use crate::rcf::ForestParameters;
use crate::types::Kind;
use crate::value::{self, Value};

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFn {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

/// One output column of a tumbling aggregate.
#[derive(Clone, Debug, PartialEq)]
pub enum AggOutput {
    /// The value of GROUP BY key `i`.
    Key(usize),
    /// The start of the window (the ROWTIME bucket itself).
    WindowStart,
    /// An aggregate over the rows of the group; `arg` is `None` for COUNT(*).
    Aggregate { func: AggFn, arg: Option<CExpr> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TumblingPlan {
    pub width_ms: i64,
    /// `WINDOWED BY STAGGER`: each key's window opens at its first row and lasts `width_ms`,
    /// instead of fixed buckets of ROWTIME.
    pub stagger: bool,
    pub keys: Vec<CExpr>,
    pub outputs: Vec<AggOutput>,
    /// `WINDOWED BY EVENT TIME`: the buckets are over an event-time column, closed by a
    /// watermark, instead of over ROWTIME.
    pub event_time: Option<EventTimePlan>,
    /// Select items that compute over the group's values (`SUM(x) / COUNT(*)`) or a HAVING:
    /// `outputs` then give a synthetic row (keys, window start, aggregates) that these read.
    pub post: Option<PostAggregate>,
}

/// An event-time tumbling window: rows fall into buckets of `column`; the watermark is the
/// greatest event time seen minus `watermark_delay_ms`, and a window `[s, e)` closes once the
/// watermark reaches `e + allowed_lateness_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct EventTimePlan {
    /// The event-time column's index in the source stream (a TIMESTAMP column).
    pub column: usize,
    pub column_name: String,
    pub watermark_delay_ms: i64,
    pub allowed_lateness_ms: i64,
}

/// Expressions over a window's synthetic rows: columns `$K<i>` (keys), `$W` (window start) and
/// `$A<j>` (aggregates), in `shape`.
#[derive(Clone, Debug, PartialEq)]
pub struct PostAggregate {
    pub shape: StreamShape,
    pub items: Vec<CExpr>,
    pub having: Option<CExpr>,
}

/// Replaces GROUP BY items, the window bucket and aggregate calls inside an expression by
/// references to the synthetic row's columns, before its children are visited (so a key inside
/// an aggregate's argument stays the row's own value).
struct GroupRewriter<'a> {
    keys: &'a [&'a Expr],
    window: Option<&'a Expr>,
    aggregates: Vec<Expr>,
}

impl sqlparser::ast::VisitorMut for GroupRewriter<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> std::ops::ControlFlow<()> {
        let bare = strip_nested(expr).clone();
        let name = if let Some(i) = self.keys.iter().position(|k| strip_nested(k) == &bare) {
            Some(format!("$K{i}"))
        } else if self.window.is_some_and(|w| strip_nested(w) == &bare) {
            Some("$W".to_owned())
        } else if aggregate_of(&bare).is_some() {
            let j = match self.aggregates.iter().position(|a| *a == bare) {
                Some(j) => j,
                None => {
                    self.aggregates.push(bare);
                    self.aggregates.len() - 1
                }
            };
            Some(format!("$A{j}"))
        } else {
            None
        };
        if let Some(name) = name {
            *expr = Expr::Identifier(sqlparser::ast::Ident::with_quote('"', name));
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// The extent of a sliding window, ending at the current row.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `RANGE INTERVAL … PRECEDING`: rows whose ROWTIME is within this many ms before the
    /// current row's (inclusive).
    RangeMs(i64),
    /// `ROWS n PRECEDING`: the current row and the `n` rows before it.
    Rows(usize),
}

/// A sliding window: its partition keys and frame.
#[derive(Clone, Debug, PartialEq)]
pub struct SlidingWindow {
    pub partition: Vec<CExpr>,
    pub frame: Frame,
}

/// One output column of a sliding-window pump.
#[derive(Clone, Debug, PartialEq)]
pub enum SlideOutput {
    Expr(CExpr),
    Aggregate {
        func: AggFn,
        arg: Option<CExpr>,
        window: usize,
    },
}

/// A pump with `agg OVER window` items: one output row per input row.
#[derive(Clone, Debug, PartialEq)]
pub struct SlidingPlan {
    pub windows: Vec<SlidingWindow>,
    pub outputs: Vec<SlideOutput>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PlanBody {
    Project(Vec<CExpr>),
    Tumbling(TumblingPlan),
    Sliding(SlidingPlan),
    Items(crate::items::ItemsPlan),
    Join(JoinPlan),
    ReferenceJoin(ReferenceJoinPlan),
    Rcf(RcfPlan),
    Hotspots(HotspotsPlan),
}

/// The columns a row-wise table function (RANDOM_CUT_FOREST, its _WITH_EXPLANATION form and
/// HOTSPOTS) reads from its `CURSOR(SELECT STREAM … FROM s)` and what the pump selects from the
/// rows it returns: the cursor's columns, then the function's own.
#[derive(Clone, Debug, PartialEq)]
pub struct CursorColumns {
    /// The cursor's select items over the source stream.
    pub cursor: Vec<CExpr>,
    /// Their names: the column's own, the alias, or `EXPR$<n>`.
    pub names: Vec<String>,
    /// Which cursor columns are numeric: the function's dimensions.
    pub numeric: Vec<usize>,
    /// For each select item, the index into (cursor columns, then the function's columns).
    pub outputs: Vec<usize>,
    /// The pump's WHERE, over the function's rows (`result`).
    pub filter: Option<CExpr>,
    /// The function's rows: the cursor's columns, then the function's own (and ROWTIME).
    pub result: StreamShape,
}

/// `RANDOM_CUT_FOREST(cursor [, numberOfTrees, subSampleSize, timeDecay, shingleSize])`, adding
/// `ANOMALY_SCORE`, or `RANDOM_CUT_FOREST_WITH_EXPLANATION(cursor [, …, withDirectionality])`,
/// adding `ANOMALY_SCORE` and `ANOMALY_EXPLANATION`.
#[derive(Clone, Debug, PartialEq)]
pub struct RcfPlan {
    pub columns: CursorColumns,
    pub forest: ForestParameters,
    /// shingleSize: how many consecutive rows make one point of the forest.
    pub shingle_size: usize,
    /// Set for RANDOM_CUT_FOREST_WITH_EXPLANATION.
    pub explanation: Option<Explanation>,
}

/// What RANDOM_CUT_FOREST_WITH_EXPLANATION puts in each column's explanation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// `withDirectionality`: DIRECTION and STRENGTH as well as ATTRIBUTION_SCORE.
    pub directionality: bool,
}

/// `HOTSPOTS(cursor, windowSize, scanRadius, minimumNumberOfPointsInAHotspot)`, adding
/// `HOTSPOTS_RESULT`.
#[derive(Clone, Debug, PartialEq)]
pub struct HotspotsPlan {
    pub columns: CursorColumns,
    pub window_size: usize,
    pub scan_radius: f64,
    pub minimum_points: usize,
}

/// A windowed stream-to-stream join. Expressions read the combined row: the left stream's
/// columns and ROWTIME, then the right stream's columns and ROWTIME.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinPlan {
    pub right_source: String,
    pub frame: Frame,
    pub on: Option<CExpr>,
    pub filter: Option<CExpr>,
    /// LEFT or FULL OUTER JOIN: a left row with no partner is kept, the right side NULL.
    pub left_outer: bool,
    /// RIGHT or FULL OUTER JOIN: a right row that leaves the window without a partner is kept,
    /// the left side NULL.
    pub right_outer: bool,
    pub projections: Vec<CExpr>,
}

/// A join of a stream with a reference table (`FROM s [LEFT] JOIN "table" [AS t] ON …`).
/// `residual`, `filter` and `projections` read the combined row: the stream's columns and
/// ROWTIME, then the table's columns (a table has no ROWTIME).
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceJoinPlan {
    pub table: String,
    /// The equality conjuncts of ON, as (an expression over the stream's batch, one over the
    /// table's batch) of the same kind: the hash join's keys.
    pub keys: Vec<(CExpr, CExpr)>,
    /// The rest of ON, evaluated over the pairs the keys found.
    pub residual: Option<CExpr>,
    pub filter: Option<CExpr>,
    pub left_outer: bool,
    pub projections: Vec<CExpr>,
}

/// A compiled pump.
#[derive(Clone, Debug, PartialEq)]
pub struct PumpPlan {
    pub name: String,
    pub source: String,
    pub target: String,
    pub filter: Option<CExpr>,
    pub body: PlanBody,
    /// For each select item, the index of the target column it fills.
    pub target_columns: Vec<usize>,
}

impl PumpPlan {
    /// The plan of `pump`, which reads `source`.
    fn of(
        pump: &PumpDef,
        source: String,
        filter: Option<CExpr>,
        body: PlanBody,
        target_columns: Vec<usize>,
    ) -> Self {
        PumpPlan {
            name: pump.name.clone(),
            source,
            target: pump.target.clone(),
            filter,
            body,
            target_columns,
        }
    }
}

/// The stream a query reads, as its expressions see it.
struct Scope<'a> {
    stream: &'a str,
    alias: Option<String>,
    shape: &'a StreamShape,
    /// The joined (windowed) stream of a join; its columns follow the left stream's columns and
    /// ROWTIME in the combined row.
    right: Option<Side<'a>>,
}

struct Side<'a> {
    stream: &'a str,
    alias: Option<String>,
    shape: &'a StreamShape,
    /// Streams have a ROWTIME; reference tables do not.
    rowtime: bool,
}

impl Side<'_> {
    fn index_of(&self, column: &str) -> Option<(usize, Kind)> {
        if !self.rowtime && column == crate::batch::ROWTIME {
            return None;
        }
        self.shape.index_of(column)
    }
}

fn position_of(expr: &Expr, fallback: Position) -> Position {
    let start = expr.span().start;
    if start.line == 0 {
        fallback
    } else {
        start.into()
    }
}

/// Compiles `pump` against the shapes of every stream it may read or write and of the
/// application's reference tables.
pub fn compile_pump(
    pump: &PumpDef,
    shapes: &HashMap<String, StreamShape>,
    tables: &HashMap<String, StreamShape>,
) -> Result<PumpPlan, CodeError> {
    let at = pump.position;
    let query: &Query = &pump.query;
    let SetExpr::Select(select) = &*query.body else {
        return Err(CodeError::at(at, "a pump's query must be SELECT STREAM"));
    };
    if select.from.len() != 1 || select.from[0].joins.len() > 1 {
        return Err(CodeError::at(
            at,
            "FROM takes one stream, or one stream JOIN one windowed stream or reference table",
        ));
    }
    if let Some(clause) = &pump.event_time {
        let grouped =
            matches!(&select.group_by, GroupByExpr::Expressions(keys, _) if !keys.is_empty());
        if !grouped
            || !select.from[0].joins.is_empty()
            || !matches!(
                select.from[0].relation,
                TableFactor::Table { args: None, .. }
            )
        {
            return Err(CodeError::at(
                clause.position,
                "WINDOWED BY EVENT TIME needs a GROUP BY over one stream with a bucket of the event-time column",
            ));
        }
    }
    if let TableFactor::Table { name, .. } = &select.from[0].relation
        && let Some(table) = object_name(name).filter(|n| tables.contains_key(n))
    {
        return Err(CodeError::at(
            at,
            format!("'{table}' is a reference table, not a stream: join a stream with it"),
        ));
    }
    if let Some(join) = select.from[0].joins.first() {
        if let TableFactor::Table { name, args, .. } = &join.relation
            && let Some(table) = object_name(name).filter(|n| tables.contains_key(n))
        {
            if args.is_some() {
                return Err(CodeError::at(
                    at,
                    format!("reference table '{table}' takes no window: it is not a stream"),
                ));
            }
            return compile_reference_join(pump, select, &table, shapes, tables);
        }
        return compile_join(pump, select, shapes);
    }
    if let TableFactor::TableFunction { expr, .. } = &select.from[0].relation {
        return compile_items(pump, select, expr, shapes);
    }
    let TableFactor::Table {
        name,
        alias,
        args: None,
        ..
    } = &select.from[0].relation
    else {
        return Err(CodeError::at(at, "FROM must name an in-application stream"));
    };
    let source = object_name(name).ok_or_else(|| CodeError::at(at, "invalid stream name"))?;
    let shape = stream_shape(shapes, &source, at)?;
    let scope = Scope {
        stream: &source,
        alias: alias.as_ref().map(|a| ident_name(&a.name)),
        shape,
        right: None,
    };
    let (target_shape, target_columns) = insert_target(pump, shapes, at)?;
    let items: Vec<&Expr> = select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Ok(e),
            _ => Err(CodeError::at(
                at,
                "SELECT * is not supported: name the columns",
            )),
        })
        .collect::<Result<_, _>>()?;
    check_insert_count(target_columns.len(), items.len(), at)?;
    let filter = where_condition(select, &scope, at)?;
    let group_keys: &[Expr] = match &select.group_by {
        GroupByExpr::Expressions(keys, _) => keys,
        GroupByExpr::All(_) => return Err(CodeError::at(at, "GROUP BY ALL is not supported")),
    };
    let target_kind = |i: usize| target_shape.columns[target_columns[i]].1;
    let sliding = items
        .iter()
        .any(|e| matches!(strip_nested(e), Expr::Function(f) if f.over.is_some()));
    let body = if group_keys.is_empty() && sliding {
        PlanBody::Sliding(compile_sliding(&items, &select.named_window, &scope, at)?)
    } else if group_keys.is_empty() {
        if let Some(agg) = items.iter().find(|e| aggregate_of(e).is_some()) {
            return Err(CodeError::at(
                position_of(agg, at),
                "an aggregate needs a GROUP BY with a ROWTIME window (STEP or FLOOR over ROWTIME)",
            ));
        }
        let exprs = items
            .iter()
            .enumerate()
            .map(|(i, e)| Ok(cast_to(compile(e, &scope, at)?, target_kind(i))))
            .collect::<Result<_, CodeError>>()?;
        PlanBody::Project(exprs)
    } else {
        PlanBody::Tumbling(compile_tumbling(
            &items,
            group_keys,
            select.having.as_ref(),
            pump.event_time.as_ref(),
            &scope,
            at,
        )?)
    };
    Ok(PumpPlan::of(pump, source, filter, body, target_columns))
}

fn compile_tumbling(
    items: &[&Expr],
    group_keys: &[Expr],
    having: Option<&Expr>,
    event_clause: Option<&EventTimeClause>,
    scope: &Scope,
    at: Position,
) -> Result<TumblingPlan, CodeError> {
    let event_time = match event_clause {
        Some(clause) => Some(compile_event_time(clause, scope)?),
        None => None,
    };
    let mut width_ms = None;
    let mut window_key = None;
    let mut stagger = false;
    let mut keys = Vec::new();
    let mut key_exprs: Vec<&Expr> = Vec::new();
    for key in group_keys {
        if let Expr::Function(f) = key
            && object_name(&f.name).as_deref() == Some("STAGGER")
        {
            let FunctionArguments::List(list) = &f.args else {
                return Err(CodeError::at(
                    position_of(key, at),
                    "STAGGER needs RANGE INTERVAL …",
                ));
            };
            let [FunctionArg::Unnamed(FunctionArgExpr::Expr(range))] = list.args.as_slice() else {
                return Err(CodeError::at(
                    position_of(key, at),
                    "STAGGER needs RANGE INTERVAL …",
                ));
            };
            if width_ms.is_some() {
                return Err(CodeError::at(
                    position_of(key, at),
                    "only one window may be grouped by",
                ));
            }
            if let Some(clause) = event_clause {
                return Err(CodeError::at(
                    clause.position,
                    "WINDOWED BY EVENT TIME cannot be combined with a stagger window",
                ));
            }
            width_ms = Some(interval_ms(range, at)?);
            stagger = true;
            continue;
        }
        let compiled = compile(key, scope, at)?;
        if let (CExpr::TimeBucket { expr, .. }, Some(_)) = (&compiled, &event_time)
            && is_rowtime(expr, scope)
        {
            return Err(CodeError::at(
                position_of(key, at),
                "an event-time window groups by a bucket of its event-time column, not of ROWTIME",
            ));
        }
        let is_window = |e: &CExpr| match &event_time {
            Some(plan) => matches!(e, CExpr::Column { index, .. } if *index == plan.column),
            None => is_rowtime(e, scope),
        };
        if let CExpr::TimeBucket { expr, width_ms: w } = &compiled
            && is_window(expr)
        {
            if width_ms.is_some() {
                return Err(CodeError::at(
                    position_of(key, at),
                    "only one window may be grouped by",
                ));
            }
            width_ms = Some(*w);
            window_key = Some(key);
            continue;
        }
        keys.push(compiled);
        key_exprs.push(key);
    }
    let Some(width_ms) = width_ms else {
        if let (Some(clause), Some(plan)) = (event_clause, &event_time) {
            return Err(CodeError::at(
                clause.position,
                format!(
                    "WINDOWED BY EVENT TIME needs GROUP BY STEP(\"{0}\" BY INTERVAL …) or FLOOR(\"{0}\" TO …)",
                    plan.column_name
                ),
            ));
        }
        return Err(CodeError::at(
            position_of(&group_keys[0], at),
            "GROUP BY on a stream needs a monotonic expression: STEP(s.ROWTIME BY INTERVAL …) or FLOOR(s.ROWTIME TO …)",
        ));
    };
    let aggregate = |func: AggFn, arg: Option<&Expr>| -> Result<AggOutput, CodeError> {
        let arg = match arg {
            None => None,
            Some(a) => {
                let c = compile(a, scope, at)?;
                if matches!(func, AggFn::Sum | AggFn::Avg) && !c.kind().is_numeric() {
                    return Err(CodeError::at(
                        position_of(a, at),
                        "SUM and AVG need a numeric argument",
                    ));
                }
                Some(c)
            }
        };
        Ok(AggOutput::Aggregate { func, arg })
    };
    // Direct form: every item is an aggregate, a GROUP BY item or the window.
    let direct = having.is_none()
        && items.iter().all(|item| {
            let bare = strip_nested(item);
            aggregate_of(bare).is_some()
                || window_key.is_some_and(|w| strip_nested(w) == bare)
                || key_exprs.iter().any(|k| strip_nested(k) == bare)
        });
    if direct {
        let mut outputs = Vec::new();
        for item in items {
            let bare = strip_nested(item);
            if let Some((func, arg)) = aggregate_of(bare) {
                outputs.push(aggregate(func, arg)?);
            } else if window_key.is_some_and(|w| strip_nested(w) == bare) {
                outputs.push(AggOutput::WindowStart);
            } else if let Some(i) = key_exprs.iter().position(|k| strip_nested(k) == bare) {
                outputs.push(AggOutput::Key(i));
            }
        }
        return Ok(TumblingPlan {
            width_ms,
            stagger,
            event_time,
            keys,
            outputs,
            post: None,
        });
    }
    // Post form: rewrite the items and HAVING over a synthetic row of the group.
    use sqlparser::ast::VisitMut as _;
    let mut rewriter = GroupRewriter {
        keys: &key_exprs,
        window: window_key,
        aggregates: Vec::new(),
    };
    let mut rewritten: Vec<Expr> = items.iter().map(|e| (*e).clone()).collect();
    for e in &mut rewritten {
        let _ = e.visit(&mut rewriter);
    }
    let mut having = having.cloned();
    if let Some(h) = &mut having {
        let _ = h.visit(&mut rewriter);
    }
    let mut outputs: Vec<AggOutput> = (0..keys.len()).map(AggOutput::Key).collect();
    let mut columns: Vec<(String, Kind)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (format!("$K{i}"), k.kind()))
        .collect();
    outputs.push(AggOutput::WindowStart);
    columns.push(("$W".to_owned(), Kind::Time));
    for (j, call) in rewriter.aggregates.iter().enumerate() {
        let Some((func, arg)) = aggregate_of(call) else {
            continue;
        };
        let output = aggregate(func, arg)?;
        let kind = match (&output, func) {
            (_, AggFn::Count) => Kind::Int,
            (_, AggFn::Avg) => Kind::Float,
            (AggOutput::Aggregate { arg: Some(a), .. }, _) => a.kind(),
            _ => Kind::Float,
        };
        outputs.push(output);
        columns.push((format!("$A{j}"), kind));
    }
    let shape = StreamShape { columns };
    let group_scope = Scope {
        stream: "$GROUP",
        alias: None,
        shape: &shape,
        right: None,
    };
    let not_grouped = |item: &Expr, e: CodeError| {
        if e.message.starts_with("Column ") {
            CodeError::at(
                position_of(item, at),
                format!("Expression '{item}' is not being grouped"),
            )
        } else {
            e
        }
    };
    let mut post_items = Vec::new();
    for (original, e) in items.iter().zip(&rewritten) {
        post_items.push(compile(e, &group_scope, at).map_err(|err| not_grouped(original, err))?);
    }
    let having = match &having {
        Some(h) => {
            let c = compile(h, &group_scope, at).map_err(|err| not_grouped(h, err))?;
            Some(boolean_condition(c, h, "HAVING", at)?)
        }
        None => None,
    };
    Ok(TumblingPlan {
        width_ms,
        stagger,
        event_time,
        keys,
        outputs,
        post: Some(PostAggregate {
            shape: shape.clone(),
            items: post_items,
            having,
        }),
    })
}

/// Checks the `WINDOWED BY EVENT TIME` clause: its column is a TIMESTAMP column of the source
/// (not ROWTIME), the watermark delay and the allowed lateness are intervals of zero or more.
fn compile_event_time(clause: &EventTimeClause, scope: &Scope) -> Result<EventTimePlan, CodeError> {
    let column_at = position_of(&Expr::Identifier(clause.column.clone()), clause.position);
    let name = ident_name(&clause.column);
    let compiled = compile(&Expr::Identifier(clause.column.clone()), scope, column_at)?;
    let column = match compiled {
        CExpr::Column { index, .. } if index == scope.shape.columns.len() => {
            return Err(CodeError::at(
                column_at,
                "ROWTIME is the arrival time, which KDA's windows already use: name a TIMESTAMP column of the rows",
            ));
        }
        CExpr::Column {
            index,
            kind: Kind::Time,
        } => index,
        _ => {
            return Err(CodeError::at(
                column_at,
                format!("the event-time column \"{name}\" must be a TIMESTAMP column"),
            ));
        }
    };
    let watermark_delay_ms = interval_at_least_zero(&clause.watermark_delay, clause.position)?;
    let allowed_lateness_ms = match &clause.allowed_lateness {
        Some(e) => interval_at_least_zero(e, clause.position)?,
        None => 0,
    };
    Ok(EventTimePlan {
        column,
        column_name: name,
        watermark_delay_ms,
        allowed_lateness_ms,
    })
}

/// An interval that may be zero (`INTERVAL '0' SECOND`): a watermark delay or a lateness.
fn interval_at_least_zero(e: &Expr, at: Position) -> Result<i64, CodeError> {
    let ms = interval_value_ms(e, at)?;
    if ms < 0 {
        return Err(CodeError::at(
            position_of(e, at),
            "a watermark delay or allowed lateness must be zero or more",
        ));
    }
    Ok(ms)
}

fn compile_sliding(
    items: &[&Expr],
    named: &[sqlparser::ast::NamedWindowDefinition],
    scope: &Scope,
    at: Position,
) -> Result<SlidingPlan, CodeError> {
    use sqlparser::ast::{NamedWindowExpr, WindowFrameBound, WindowFrameUnits, WindowType};
    let mut windows: Vec<SlidingWindow> = Vec::new();
    let mut outputs = Vec::new();
    for item in items {
        let bare = strip_nested(item);
        let pos = position_of(item, at);
        let Expr::Function(f) = bare else {
            outputs.push(SlideOutput::Expr(compile(item, scope, at)?));
            continue;
        };
        let Some(over) = &f.over else {
            if aggregate_of(bare).is_some() {
                return Err(CodeError::at(
                    pos,
                    "an aggregate in a sliding-window query needs OVER",
                ));
            }
            outputs.push(SlideOutput::Expr(compile(item, scope, at)?));
            continue;
        };
        let mut plain = f.clone();
        plain.over = None;
        let probe = Expr::Function(plain);
        let Some((func, arg)) = aggregate_of(&probe) else {
            return Err(CodeError::at(
                pos,
                "only COUNT, SUM, AVG, MIN and MAX may have OVER",
            ));
        };
        let spec = match over {
            WindowType::WindowSpec(spec) => spec.clone(),
            WindowType::NamedWindow(name) => {
                let wanted = ident_name(name);
                let found = named
                    .iter()
                    .find(|d| ident_name(&d.0) == wanted)
                    .ok_or_else(|| CodeError::at(pos, format!("Window '{wanted}' not found")))?;
                match &found.1 {
                    NamedWindowExpr::WindowSpec(spec) => spec.clone(),
                    NamedWindowExpr::NamedWindow(_) => {
                        return Err(CodeError::at(
                            pos,
                            "a window defined as another window is not supported",
                        ));
                    }
                }
            }
        };
        let frame = spec.window_frame.as_ref().ok_or_else(|| {
            CodeError::at(
                pos,
                "a sliding window needs RANGE INTERVAL … PRECEDING or ROWS n PRECEDING",
            )
        })?;
        if !matches!(frame.end_bound, None | Some(WindowFrameBound::CurrentRow)) {
            return Err(CodeError::at(
                pos,
                "a sliding window must end at the current row",
            ));
        }
        let frame = match (&frame.units, &frame.start_bound) {
            (WindowFrameUnits::Range, WindowFrameBound::Preceding(Some(e))) => {
                Frame::RangeMs(interval_ms(e, pos)?)
            }
            (WindowFrameUnits::Rows, WindowFrameBound::Preceding(Some(e))) => match &**e {
                Expr::Value(v) => match &v.value {
                    AstValue::Number(n, _) => Frame::Rows(
                        n.parse()
                            .map_err(|_| CodeError::at(pos, "ROWS needs a whole number"))?,
                    ),
                    _ => return Err(CodeError::at(pos, "ROWS needs a whole number")),
                },
                _ => return Err(CodeError::at(pos, "ROWS needs a whole number")),
            },
            (_, WindowFrameBound::Preceding(None)) => {
                return Err(CodeError::at(
                    pos,
                    "UNBOUNDED PRECEDING is not allowed on a stream (the window would grow forever)",
                ));
            }
            _ => return Err(CodeError::at(pos, "unsupported window frame")),
        };
        let partition = spec
            .partition_by
            .iter()
            .map(|e| compile(e, scope, at))
            .collect::<Result<Vec<_>, _>>()?;
        let window = SlidingWindow { partition, frame };
        let index = match windows.iter().position(|w| *w == window) {
            Some(i) => i,
            None => {
                windows.push(window);
                windows.len() - 1
            }
        };
        let arg = match arg {
            None => None,
            Some(a) => {
                let c = compile(a, scope, at)?;
                if matches!(func, AggFn::Sum | AggFn::Avg) && !c.kind().is_numeric() {
                    return Err(CodeError::at(
                        position_of(a, at),
                        "SUM and AVG need a numeric argument",
                    ));
                }
                Some(c)
            }
        };
        outputs.push(SlideOutput::Aggregate {
            func,
            arg,
            window: index,
        });
    }
    Ok(SlidingPlan { windows, outputs })
}

/// `SELECT STREAM … FROM TABLE(TOP_K_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM s), 'col', K,
/// seconds))` and `COUNT_DISTINCT_ITEMS_TUMBLING(CURSOR(…), 'col', seconds)`.
fn compile_items(
    pump: &PumpDef,
    select: &sqlparser::ast::Select,
    expr: &Expr,
    shapes: &HashMap<String, StreamShape>,
) -> Result<PumpPlan, CodeError> {
    use crate::items::{ItemsFn, ItemsPlan};
    let at = position_of(expr, pump.position);
    let Expr::Function(f) = expr else {
        return Err(CodeError::at(at, "TABLE(…) needs a table function"));
    };
    let name = object_name(&f.name).unwrap_or_default();
    let FunctionArguments::List(list) = &f.args else {
        return Err(CodeError::at(
            at,
            format!("Invalid number of arguments to function '{name}'"),
        ));
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    if matches!(
        name.as_str(),
        "RANDOM_CUT_FOREST" | "RANDOM_CUT_FOREST_WITH_EXPLANATION" | "HOTSPOTS"
    ) {
        return compile_row_function(pump, select, &name, &args, list.args.len(), shapes, at);
    }
    let expected = match name.as_str() {
        "TOP_K_ITEMS_TUMBLING" => 4,
        "COUNT_DISTINCT_ITEMS_TUMBLING" => 3,
        _ => {
            return Err(CodeError::at(
                at,
                format!("No match found for function signature {name}"),
            ));
        }
    };
    if args.len() != expected || args.len() != list.args.len() {
        return Err(CodeError::at(
            at,
            format!("Invalid number of arguments to function '{name}'"),
        ));
    }
    let (inner, source, shape) = cursor_source(
        args[0],
        shapes,
        at,
        "the first argument must be CURSOR(SELECT STREAM * FROM a stream)",
    )?;
    let scope = Scope {
        stream: &source,
        alias: None,
        shape,
        right: None,
    };
    let filter = match &inner.selection {
        Some(e) => Some(compile(e, &scope, at)?),
        None => None,
    };
    let quoted_error =
        || CodeError::at(at, "the column name must be a quoted string, e.g. 'ticker'");
    let column = match args[1] {
        Expr::Value(v) => match &v.value {
            AstValue::SingleQuotedString(c) => c.clone(),
            _ => return Err(quoted_error()),
        },
        _ => return Err(quoted_error()),
    };
    let (index, kind) = shape.index_of(&column).ok_or_else(|| {
        CodeError::at(
            position_of(args[1], at),
            format!("Column '{column}' not found in any table"),
        )
    })?;
    let whole = |e: &Expr, what: &str, max: i64| -> Result<i64, CodeError> {
        let n = match e {
            Expr::Value(v) => match &v.value {
                AstValue::Number(n, _) => n.parse::<i64>().ok(),
                _ => None,
            },
            _ => None,
        };
        n.filter(|n| (1..=max).contains(n)).ok_or_else(|| {
            CodeError::at(
                position_of(e, at),
                format!("{what} must be a whole number from 1 to {max}"),
            )
        })
    };
    let func = if expected == 4 {
        ItemsFn::TopK(whole(args[2], "K", 100_000)? as usize)
    } else {
        ItemsFn::CountDistinct
    };
    let width_ms = whole(args[expected - 1], "windowSize", 3_600)? * 1_000;
    let columns = ItemsPlan::columns(func);
    let mut outputs = Vec::new();
    for item in &select.projection {
        match item {
            SelectItem::Wildcard(_) => outputs.extend(0..columns.len()),
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                let (_, name) = column_ref(e).ok_or_else(|| {
                    CodeError::at(position_of(e, at), "select the function's columns by name")
                })?;
                let i = columns
                    .iter()
                    .position(|(c, _)| c.eq_ignore_ascii_case(&name))
                    .ok_or_else(|| {
                        CodeError::at(
                            position_of(e, at),
                            format!("Column '{name}' not found in any table"),
                        )
                    })?;
                outputs.push(i);
            }
            _ => return Err(CodeError::at(at, "unsupported select item")),
        }
    }
    let (_, target_columns) = insert_target(pump, shapes, pump.position)?;
    check_insert_count(target_columns.len(), outputs.len(), pump.position)?;
    // The WHERE after `FROM TABLE(…)` is over the function's columns.
    let result = StreamShape { columns };
    let post_filter = where_condition(
        select,
        &Scope {
            stream: &name,
            alias: None,
            shape: &result,
            right: None,
        },
        at,
    )?;
    Ok(PumpPlan::of(
        pump,
        source,
        filter,
        PlanBody::Items(ItemsPlan {
            func,
            column: CExpr::Column { index, kind },
            width_ms,
            outputs,
            filter: post_filter,
        }),
        target_columns,
    ))
}

/// A windowed stream-to-stream join: `FROM "L" [AS l] [LEFT] JOIN "R" OVER (RANGE INTERVAL …
/// PRECEDING | ROWS n PRECEDING) [AS r] ON …`. Each left row joins the right rows whose ROWTIME
/// is in the frame ending at the left row's ROWTIME.
fn compile_join(
    pump: &PumpDef,
    select: &sqlparser::ast::Select,
    shapes: &HashMap<String, StreamShape>,
) -> Result<PumpPlan, CodeError> {
    use sqlparser::ast::JoinConstraint;
    let at = pump.position;
    let from = &select.from[0];
    let join = &from.joins[0];
    let (left, left_alias) = join_left_stream(
        &from.relation,
        at,
        "the window of a join goes on the joined stream: FROM a JOIN b OVER (…)",
    )?;
    let TableFactor::Table {
        name,
        alias,
        args: Some(args),
        ..
    } = &join.relation
    else {
        return Err(CodeError::at(
            at,
            "the joined stream needs a window: JOIN s OVER (RANGE INTERVAL … PRECEDING)",
        ));
    };
    let right = object_name(name).ok_or_else(|| CodeError::at(at, "invalid stream name"))?;
    let right_alias = alias.as_ref().map(|a| ident_name(&a.name));
    let window_text = match args.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))] => match &v.value {
            AstValue::SingleQuotedString(t) => t.clone(),
            _ => return Err(CodeError::at(at, "invalid stream window")),
        },
        _ => return Err(CodeError::at(at, "invalid stream window")),
    };
    let spec = crate::program::parse_window_text(&window_text)
        .ok_or_else(|| CodeError::at(at, format!("invalid stream window ({window_text})")))?;
    let frame = spec.window_frame.as_ref().ok_or_else(|| {
        CodeError::at(
            at,
            "a stream window needs RANGE INTERVAL … PRECEDING or ROWS n PRECEDING",
        )
    })?;
    let frame = frame_of(frame, at)?;
    let (constraint, left_outer, right_outer) = join_operator(
        join,
        at,
        "only INNER, LEFT, RIGHT, FULL OUTER and CROSS JOIN are supported between streams",
    )?;
    if left == right {
        return Err(CodeError::at(at, "a stream cannot be joined with itself"));
    }
    let left_shape = stream_shape(shapes, &left, at)?;
    let right_shape = stream_shape(shapes, &right, at)?;
    let scope = Scope {
        stream: &left,
        alias: left_alias,
        shape: left_shape,
        right: Some(Side {
            stream: &right,
            alias: right_alias,
            shape: right_shape,
            rowtime: true,
        }),
    };
    let on = match constraint {
        JoinConstraint::On(e) => Some(boolean_condition(compile(e, &scope, at)?, e, "ON", at)?),
        JoinConstraint::None => None,
        _ => return Err(CodeError::at(at, "a stream join takes an ON condition")),
    };
    let filter = where_condition(select, &scope, at)?;
    no_group_by_over_join(select, at)?;
    let (target_shape, target_columns) = insert_target(pump, shapes, at)?;
    let mut projections = Vec::new();
    for (i, item) in select.projection.iter().enumerate() {
        let e = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => {
                return Err(CodeError::at(
                    at,
                    "SELECT * is not supported: name the columns",
                ));
            }
        };
        let Some(&column) = target_columns.get(i) else {
            break;
        };
        projections.push(cast_to(
            compile(e, &scope, at)?,
            target_shape.columns[column].1,
        ));
    }
    check_insert_count(target_columns.len(), select.projection.len(), at)?;
    assert_eq!(
        projections.len(),
        target_columns.len(),
        "one projection per target column"
    );
    Ok(PumpPlan::of(
        pump,
        left,
        None,
        PlanBody::Join(JoinPlan {
            right_source: right,
            frame,
            on,
            filter,
            left_outer,
            right_outer,
            projections,
        }),
        target_columns,
    ))
}

/// A join of a stream with a reference table: `FROM "S" [AS s] [LEFT] JOIN "T" [AS t] ON …`.
/// Equalities in ON between an expression over the stream and one over the table become the
/// hash join's keys; the rest of ON filters the pairs they find.
fn compile_reference_join(
    pump: &PumpDef,
    select: &sqlparser::ast::Select,
    table: &str,
    shapes: &HashMap<String, StreamShape>,
    tables: &HashMap<String, StreamShape>,
) -> Result<PumpPlan, CodeError> {
    use sqlparser::ast::JoinConstraint;
    let at = pump.position;
    let from = &select.from[0];
    let join = &from.joins[0];
    let (left, left_alias) = join_left_stream(
        &from.relation,
        at,
        "FROM must name an in-application stream joined with the table",
    )?;
    let left_shape = stream_shape(shapes, &left, at)?;
    let table_alias = match &join.relation {
        TableFactor::Table { alias, .. } => alias.as_ref().map(|a| ident_name(&a.name)),
        _ => None,
    };
    let (constraint, left_outer, right_outer) = join_operator(
        join,
        at,
        "only INNER, LEFT and CROSS JOIN of a stream with a reference table are supported",
    )?;
    if right_outer {
        // A table row without a partner has no moment at which it is known to stay without
        // one: the stream never ends.
        return Err(CodeError::at(
            at,
            "only INNER, LEFT and CROSS JOIN of a stream with a reference table are supported (not RIGHT or FULL OUTER JOIN)",
        ));
    }
    let scope = Scope {
        stream: &left,
        alias: left_alias,
        shape: left_shape,
        right: Some(Side {
            stream: table,
            alias: table_alias,
            shape: &tables[table],
            rowtime: false,
        }),
    };
    // Columns at or below this index are the stream's (its ROWTIME included).
    let stream_last = left_shape.columns.len();
    let mut keys = Vec::new();
    let mut residual: Option<CExpr> = None;
    match constraint {
        JoinConstraint::On(on) => {
            boolean_condition(compile(on, &scope, at)?, on, "ON", at)?;
            let mut parts = Vec::new();
            conjuncts(on, &mut parts);
            for part in parts {
                let compiled = compile(part, &scope, at)?;
                if let CExpr::Compare {
                    op: CmpOp::Eq,
                    left,
                    right,
                } = &compiled
                {
                    let to_table = |i: usize| i - (stream_last + 1);
                    match (sides(left, stream_last), sides(right, stream_last)) {
                        (Sides::Stream, Sides::Table) => {
                            keys.push(((**left).clone(), right.remap_columns(&to_table)));
                            continue;
                        }
                        (Sides::Table, Sides::Stream) => {
                            keys.push(((**right).clone(), left.remap_columns(&to_table)));
                            continue;
                        }
                        _ => {}
                    }
                }
                residual = Some(match residual {
                    None => compiled,
                    Some(before) => CExpr::And(Box::new(before), Box::new(compiled)),
                });
            }
        }
        JoinConstraint::None => {}
        _ => {
            return Err(CodeError::at(
                at,
                "a join with a reference table takes an ON condition",
            ));
        }
    }
    let filter = where_condition(select, &scope, at)?;
    no_group_by_over_join(select, at)?;
    let (target_shape, target_columns) = insert_target(pump, shapes, at)?;
    check_insert_count(target_columns.len(), select.projection.len(), at)?;
    let mut projections = Vec::new();
    for (item, &column) in select.projection.iter().zip(&target_columns) {
        let e = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => {
                return Err(CodeError::at(
                    at,
                    "SELECT * is not supported: name the columns",
                ));
            }
        };
        projections.push(cast_to(
            compile(e, &scope, at)?,
            target_shape.columns[column].1,
        ));
    }
    Ok(PumpPlan::of(
        pump,
        left,
        None,
        PlanBody::ReferenceJoin(ReferenceJoinPlan {
            table: table.to_owned(),
            keys,
            residual,
            filter,
            left_outer,
            projections,
        }),
        target_columns,
    ))
}

/// The operands of a chain of ANDs.
fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match strip_nested(e) {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        other => out.push(other),
    }
}

/// Which side of a joined row an expression reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sides {
    /// No column: a constant.
    Neither,
    Stream,
    Table,
    Both,
}

fn sides(e: &CExpr, stream_last: usize) -> Sides {
    let (mut stream, mut table) = (false, false);
    e.visit_columns(&mut |i| {
        if i <= stream_last {
            stream = true;
        } else {
            table = true;
        }
    });
    match (stream, table) {
        (false, false) => Sides::Neither,
        (true, false) => Sides::Stream,
        (false, true) => Sides::Table,
        (true, true) => Sides::Both,
    }
}

/// `FROM TABLE(f(CURSOR(…), parameters…))` for the row-wise functions: RANDOM_CUT_FOREST,
/// RANDOM_CUT_FOREST_WITH_EXPLANATION and HOTSPOTS. Each returns one row per cursor row: the
/// cursor's columns, then its own. Parameters are checked against the ranges KDA documents.
fn compile_row_function(
    pump: &PumpDef,
    select: &sqlparser::ast::Select,
    function: &str,
    args: &[&Expr],
    given: usize,
    shapes: &HashMap<String, StreamShape>,
    at: Position,
) -> Result<PumpPlan, CodeError> {
    // The arities KDA accepts: the cursor alone (defaults) or every parameter.
    let arities: &[usize] = match function {
        "RANDOM_CUT_FOREST" => &[1, 5],
        "RANDOM_CUT_FOREST_WITH_EXPLANATION" => &[1, 6],
        _ => &[4],
    };
    if !arities.contains(&given) || args.len() != given {
        return Err(CodeError::at(
            at,
            format!("Invalid number of arguments to function '{function}'"),
        ));
    }
    let (inner, source, shape) = cursor_source(
        args[0],
        shapes,
        at,
        "the first argument must be CURSOR(SELECT STREAM … FROM a stream)",
    )?;
    let scope = Scope {
        stream: &source,
        alias: None,
        shape,
        right: None,
    };
    let filter = match &inner.selection {
        Some(e) => Some(compile(e, &scope, at)?),
        None => None,
    };
    let mut columns: Vec<(String, Kind)> = Vec::new();
    let mut cursor = Vec::new();
    for (n, item) in inner.projection.iter().enumerate() {
        match item {
            SelectItem::Wildcard(_) => {
                for (i, (name, kind)) in shape.columns.iter().enumerate() {
                    columns.push((name.clone(), *kind));
                    cursor.push(CExpr::Column {
                        index: i,
                        kind: *kind,
                    });
                }
            }
            SelectItem::UnnamedExpr(e) => {
                let name = column_ref(e).map_or_else(|| format!("EXPR${n}"), |(_, c)| c);
                let c = compile(e, &scope, at)?;
                columns.push((name, c.kind()));
                cursor.push(c);
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let c = compile(expr, &scope, at)?;
                columns.push((ident_name(alias), c.kind()));
                cursor.push(c);
            }
            _ => return Err(CodeError::at(at, "unsupported select item in the cursor")),
        }
    }
    let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
    let numeric: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, (_, k))| k.is_numeric())
        .map(|(i, _)| i)
        .collect();
    if numeric.is_empty() {
        return Err(CodeError::at(
            at,
            format!("{function} needs at least one numeric column"),
        ));
    }
    let explained = function == "RANDOM_CUT_FOREST_WITH_EXPLANATION";
    if explained && numeric.len() > RCF_EXPLAINED_COLUMNS_MAX {
        return Err(CodeError::at(
            at,
            format!("{function} takes at most {RCF_EXPLAINED_COLUMNS_MAX} numeric columns"),
        ));
    }
    let literal = |e: &Expr| match e {
        Expr::Value(v) => match &v.value {
            AstValue::Number(n, _) => Some(n.clone()),
            _ => None,
        },
        _ => None,
    };
    let whole = |e: &Expr, what: &str, min: i64, max: i64| -> Result<i64, CodeError> {
        literal(e)
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                CodeError::at(
                    position_of(e, at),
                    format!("{what} must be a whole number from {min} to {max}"),
                )
            })
    };
    let (_, target_columns) = insert_target(pump, shapes, pump.position)?;
    let target_count = target_columns.len();
    // Given the function's result columns: the select items over them, which the INSERT must
    // match, and the WHERE over them.
    let finish = move |columns: Vec<(String, Kind)>| -> Result<CursorColumns, CodeError> {
        let outputs = select_function_columns(select, &columns, at)?;
        check_insert_count(target_count, outputs.len(), pump.position)?;
        let result = StreamShape { columns };
        let scope = Scope {
            stream: function,
            alias: None,
            shape: &result,
            right: None,
        };
        let filter = where_condition(select, &scope, at)?;
        Ok(CursorColumns {
            cursor,
            names,
            numeric,
            outputs,
            filter,
            result,
        })
    };
    let body = if function == "HOTSPOTS" {
        let window_size = whole(args[1], "windowSize", 100, 1_000)?;
        let scan_radius = literal(args[2])
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|r| r.is_finite() && *r > 0.0)
            .ok_or_else(|| {
                CodeError::at(
                    position_of(args[2], at),
                    "scanRadius must be a number greater than 0",
                )
            })?;
        let minimum_points = whole(args[3], "minimumNumberOfPointsInAHotspot", 2, window_size)?;
        columns.push(("HOTSPOTS_RESULT".into(), Kind::Text));
        PlanBody::Hotspots(HotspotsPlan {
            columns: finish(columns)?,
            window_size: window_size as usize,
            scan_radius,
            minimum_points: minimum_points as usize,
        })
    } else {
        let (forest, shingle_size, directionality) = if given > 1 {
            let trees = whole(args[1], "numberOfTrees", 1, 1_000)? as usize;
            let sample_size = whole(args[2], "subSampleSize", 10, 1_000)?;
            let time_decay = whole(args[3], "timeDecay", 1, i64::from(i32::MAX))?;
            if sample_size >= time_decay {
                return Err(CodeError::at(
                    position_of(args[2], at),
                    "subSampleSize must be less than timeDecay",
                ));
            }
            let shingle_size = whole(args[4], "shingleSize", 1, 30)? as usize;
            let directionality = if explained {
                match args[5] {
                    Expr::Value(v) => match v.value {
                        AstValue::Boolean(b) => Some(b),
                        _ => None,
                    },
                    _ => None,
                }
                .ok_or_else(|| {
                    CodeError::at(
                        position_of(args[5], at),
                        "withDirectionality must be TRUE or FALSE",
                    )
                })?
            } else {
                false
            };
            let forest = ForestParameters {
                trees,
                sample_size: sample_size as usize,
                time_decay: time_decay as u64,
            };
            (forest, shingle_size, directionality)
        } else {
            // KDA's defaults.
            let forest = ForestParameters {
                trees: 100,
                sample_size: 256,
                time_decay: 100_000,
            };
            (forest, 1, false)
        };
        columns.push(("ANOMALY_SCORE".into(), Kind::Float));
        if explained {
            columns.push(("ANOMALY_EXPLANATION".into(), Kind::Text));
        }
        PlanBody::Rcf(RcfPlan {
            columns: finish(columns)?,
            forest,
            shingle_size,
            explanation: explained.then_some(Explanation { directionality }),
        })
    };
    Ok(PumpPlan::of(pump, source, filter, body, target_columns))
}

/// The numeric columns RANDOM_CUT_FOREST_WITH_EXPLANATION takes (KDA: "up to 30").
const RCF_EXPLAINED_COLUMNS_MAX: usize = 30;

/// The indexes into `columns` (a table function's result) of the pump's select items, which
/// name them (`*` takes them all).
fn select_function_columns(
    select: &sqlparser::ast::Select,
    columns: &[(String, Kind)],
    at: Position,
) -> Result<Vec<usize>, CodeError> {
    let mut outputs = Vec::new();
    for item in &select.projection {
        match item {
            SelectItem::Wildcard(_) => outputs.extend(0..columns.len()),
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                let (_, name) = column_ref(e).ok_or_else(|| {
                    CodeError::at(position_of(e, at), "select the function's columns by name")
                })?;
                let i = columns
                    .iter()
                    .position(|(c, _)| *c == name)
                    .ok_or_else(|| {
                        CodeError::at(
                            position_of(e, at),
                            format!("Column '{name}' not found in any table"),
                        )
                    })?;
                outputs.push(i);
            }
            _ => return Err(CodeError::at(at, "unsupported select item")),
        }
    }
    Ok(outputs)
}

/// The shape of in-application stream `name`; a stream the application does not have is the
/// same error wherever a query names it.
fn stream_shape<'s>(
    shapes: &'s HashMap<String, StreamShape>,
    name: &str,
    at: Position,
) -> Result<&'s StreamShape, CodeError> {
    shapes
        .get(name)
        .ok_or_else(|| CodeError::at(at, format!("Object '{name}' not found")))
}

/// `condition`, compiled from `source`, if it is boolean; `clause` (`WHERE`, `ON`, `HAVING`)
/// names it in the error otherwise.
fn boolean_condition(
    condition: CExpr,
    source: &Expr,
    clause: &str,
    at: Position,
) -> Result<CExpr, CodeError> {
    if condition.kind() != Kind::Bool {
        return Err(CodeError::at(
            position_of(source, at),
            format!("{clause} needs a boolean condition"),
        ));
    }
    Ok(condition)
}

/// The query's WHERE, compiled against `scope`, which must be boolean.
fn where_condition(
    select: &sqlparser::ast::Select,
    scope: &Scope,
    at: Position,
) -> Result<Option<CExpr>, CodeError> {
    select
        .selection
        .as_ref()
        .map(|e| boolean_condition(compile(e, scope, at)?, e, "WHERE", at))
        .transpose()
}

/// The left side of a join, which must name a stream without a window: its name and alias;
/// anything else is `not_a_stream` at `at`.
fn join_left_stream(
    relation: &TableFactor,
    at: Position,
    not_a_stream: &str,
) -> Result<(String, Option<String>), CodeError> {
    let TableFactor::Table {
        name,
        alias,
        args: None,
        ..
    } = relation
    else {
        return Err(CodeError::at(at, not_a_stream));
    };
    let stream = object_name(name).ok_or_else(|| CodeError::at(at, "invalid stream name"))?;
    Ok((stream, alias.as_ref().map(|a| ident_name(&a.name))))
}

/// A join's ON constraint and which sides it keeps without a partner (left, right); a CROSS
/// JOIN is a JOIN without ON. Any other kind of join is `unsupported`.
fn join_operator<'j>(
    join: &'j sqlparser::ast::Join,
    at: Position,
    unsupported: &str,
) -> Result<(&'j sqlparser::ast::JoinConstraint, bool, bool), CodeError> {
    use sqlparser::ast::{JoinConstraint, JoinOperator};
    match &join.join_operator {
        JoinOperator::Join(c) | JoinOperator::Inner(c) => Ok((c, false, false)),
        JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => Ok((c, true, false)),
        JoinOperator::Right(c) | JoinOperator::RightOuter(c) => Ok((c, false, true)),
        JoinOperator::FullOuter(c) => Ok((c, true, true)),
        JoinOperator::CrossJoin(c @ JoinConstraint::None) => Ok((c, false, false)),
        JoinOperator::CrossJoin(_) => Err(CodeError::at(at, "a CROSS JOIN takes no ON condition")),
        _ => Err(CodeError::at(at, unsupported)),
    }
}

/// A join's output is not aggregated in the same pump: its output stream is.
fn no_group_by_over_join(select: &sqlparser::ast::Select, at: Position) -> Result<(), CodeError> {
    if !matches!(&select.group_by, GroupByExpr::Expressions(keys, _) if keys.is_empty()) {
        return Err(CodeError::at(
            at,
            "GROUP BY over a join is not supported; aggregate its output stream instead",
        ));
    }
    Ok(())
}

/// The stream a pump inserts into and the indexes of the columns it fills: those its INSERT
/// names, in that order, or all of them.
fn insert_target<'s>(
    pump: &PumpDef,
    shapes: &'s HashMap<String, StreamShape>,
    at: Position,
) -> Result<(&'s StreamShape, Vec<usize>), CodeError> {
    let shape = stream_shape(shapes, &pump.target, at)?;
    let columns = match &pump.columns {
        Some(names) => names
            .iter()
            .map(|n| {
                shape
                    .columns
                    .iter()
                    .position(|(c, _)| c == n)
                    .ok_or_else(|| {
                        CodeError::at(at, format!("Column '{n}' not found in '{}'", pump.target))
                    })
            })
            .collect::<Result<_, _>>()?,
        None => (0..shape.columns.len()).collect(),
    };
    Ok((shape, columns))
}

/// An INSERT fills exactly as many columns as its SELECT yields.
fn check_insert_count(targets: usize, items: usize, at: Position) -> Result<(), CodeError> {
    if targets == items {
        return Ok(());
    }
    Err(CodeError::at(
        at,
        format!(
            "Number of INSERT target columns ({targets}) does not equal number of source items ({items})"
        ),
    ))
}

/// The query of a function's `CURSOR(SELECT STREAM … FROM stream)` argument, the stream it
/// reads and that stream's shape; anything else is `wrong_cursor` at `at`.
fn cursor_source<'a, 's>(
    arg: &'a Expr,
    shapes: &'s HashMap<String, StreamShape>,
    at: Position,
    wrong_cursor: &str,
) -> Result<(&'a sqlparser::ast::Select, String, &'s StreamShape), CodeError> {
    let cursor_error = || CodeError::at(at, wrong_cursor);
    let Expr::Function(cursor) = arg else {
        return Err(cursor_error());
    };
    let FunctionArguments::Subquery(query) = &cursor.args else {
        return Err(cursor_error());
    };
    if object_name(&cursor.name).as_deref() != Some("CURSOR") {
        return Err(cursor_error());
    }
    let SetExpr::Select(inner) = &*query.body else {
        return Err(cursor_error());
    };
    let source = match inner.from.as_slice() {
        [t] if t.joins.is_empty() => match &t.relation {
            TableFactor::Table {
                name, args: None, ..
            } => object_name(name),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(cursor_error)?;
    let shape = stream_shape(shapes, &source, at)?;
    Ok((inner, source, shape))
}

/// The frame of a sliding or stream window: `RANGE INTERVAL … PRECEDING` or `ROWS n PRECEDING`,
/// ending at the current row.
fn frame_of(frame: &sqlparser::ast::WindowFrame, pos: Position) -> Result<Frame, CodeError> {
    use sqlparser::ast::{WindowFrameBound, WindowFrameUnits};
    if !matches!(frame.end_bound, None | Some(WindowFrameBound::CurrentRow)) {
        return Err(CodeError::at(
            pos,
            "a sliding window must end at the current row",
        ));
    }
    Ok(match (&frame.units, &frame.start_bound) {
        (WindowFrameUnits::Range, WindowFrameBound::Preceding(Some(e))) => {
            Frame::RangeMs(interval_ms(e, pos)?)
        }
        (WindowFrameUnits::Rows, WindowFrameBound::Preceding(Some(e))) => match &**e {
            Expr::Value(v) => match &v.value {
                AstValue::Number(n, _) => Frame::Rows(
                    n.parse()
                        .map_err(|_| CodeError::at(pos, "ROWS needs a whole number"))?,
                ),
                _ => return Err(CodeError::at(pos, "ROWS needs a whole number")),
            },
            _ => return Err(CodeError::at(pos, "ROWS needs a whole number")),
        },
        (_, WindowFrameBound::Preceding(None)) => {
            return Err(CodeError::at(
                pos,
                "UNBOUNDED PRECEDING is not allowed on a stream (the window would grow forever)",
            ));
        }
        _ => return Err(CodeError::at(pos, "unsupported window frame")),
    })
}

fn strip_nested(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip_nested(inner),
        other => other,
    }
}

fn is_rowtime(e: &CExpr, scope: &Scope) -> bool {
    matches!(e, CExpr::Column { index, .. } if *index == scope.shape.columns.len())
}

/// `COUNT(*)`, `COUNT(x)`, `SUM(x)` … as (function, argument).
fn aggregate_of(e: &Expr) -> Option<(AggFn, Option<&Expr>)> {
    let Expr::Function(f) = e else { return None };
    let name = object_name(&f.name)?;
    let func = match name.as_str() {
        "COUNT" => AggFn::Count,
        "SUM" => AggFn::Sum,
        "AVG" => AggFn::Avg,
        "MIN" => AggFn::Min,
        "MAX" => AggFn::Max,
        _ => return None,
    };
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] if func == AggFn::Count => {
            Some((func, None))
        }
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(a))] => Some((func, Some(a))),
        _ => None,
    }
}

fn cast_to(e: CExpr, kind: Kind) -> CExpr {
    if e.kind() == kind {
        e
    } else {
        CExpr::Cast {
            expr: Box::new(e),
            kind,
        }
    }
}

/// Brings two operands to one kind: numbers widen to DOUBLE, a text literal beside a time is
/// read as a timestamp.
fn unify(l: CExpr, r: CExpr, at: Position) -> Result<(CExpr, CExpr), CodeError> {
    let (lk, rk) = (l.kind(), r.kind());
    if lk == rk {
        return Ok((l, r));
    }
    match (lk, rk) {
        (Kind::Int, Kind::Float) => Ok((cast_to(l, Kind::Float), r)),
        (Kind::Float, Kind::Int) => Ok((l, cast_to(r, Kind::Float))),
        (Kind::Time, Kind::Int) => Ok((l, cast_to(r, Kind::Time))),
        (Kind::Int, Kind::Time) => Ok((cast_to(l, Kind::Time), r)),
        (Kind::Time, Kind::Text) | (Kind::Text, Kind::Time) => {
            let (time, text, swapped) = if lk == Kind::Time {
                (l, r, false)
            } else {
                (r, l, true)
            };
            let text = match text {
                CExpr::Literal(Value::Text(s), _) => match value::parse_timestamp(&s) {
                    Some(ms) => CExpr::Literal(Value::Time(ms), Kind::Time),
                    None => return Err(CodeError::at(at, format!("'{s}' is not a timestamp"))),
                },
                other => cast_to(other, Kind::Time),
            };
            Ok(if swapped { (text, time) } else { (time, text) })
        }
        (Kind::Text, _) | (_, Kind::Text)
            if matches!(l, CExpr::Literal(Value::Null, _))
                || matches!(r, CExpr::Literal(Value::Null, _)) =>
        {
            let kind = if matches!(l, CExpr::Literal(Value::Null, _)) {
                rk
            } else {
                lk
            };
            Ok((cast_to(l, kind), cast_to(r, kind)))
        }
        _ => Err(CodeError::at(
            at,
            format!("Cannot apply an operator to {lk:?} and {rk:?}"),
        )),
    }
}

/// Milliseconds of `INTERVAL 'n' unit`, a window width (more than zero).
fn interval_ms(e: &Expr, at: Position) -> Result<i64, CodeError> {
    let ms = interval_value_ms(e, at)?;
    if ms <= 0 {
        return Err(CodeError::at(
            position_of(e, at),
            "a window width must be positive",
        ));
    }
    Ok(ms)
}

/// Milliseconds of `INTERVAL 'n' unit`, any whole `n`.
fn interval_value_ms(e: &Expr, at: Position) -> Result<i64, CodeError> {
    let Expr::Interval(interval) = e else {
        return Err(CodeError::at(position_of(e, at), "expected an INTERVAL"));
    };
    let n: i64 = match &*interval.value {
        Expr::Value(v) => match &v.value {
            AstValue::SingleQuotedString(s) | AstValue::Number(s, _) => s.trim().parse().ok(),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| {
        CodeError::at(
            position_of(e, at),
            "an interval needs a whole number, e.g. INTERVAL '30' SECOND",
        )
    })?;
    let unit = interval
        .leading_field
        .clone()
        .unwrap_or(DateTimeField::Second);
    let unit_ms = unit_ms(&unit).ok_or_else(|| {
        CodeError::at(
            position_of(e, at),
            format!("unsupported interval unit {unit}"),
        )
    })?;
    n.checked_mul(unit_ms)
        .ok_or_else(|| CodeError::at(position_of(e, at), "the interval is too long"))
}

fn unit_ms(unit: &DateTimeField) -> Option<i64> {
    Some(match unit {
        DateTimeField::Second | DateTimeField::Seconds => 1_000,
        DateTimeField::Minute | DateTimeField::Minutes => 60_000,
        DateTimeField::Hour | DateTimeField::Hours => 3_600_000,
        DateTimeField::Day | DateTimeField::Days => 86_400_000,
        DateTimeField::Millisecond | DateTimeField::Milliseconds => 1,
        _ => return None,
    })
}

fn literal(v: &AstValue, at: Position) -> Result<CExpr, CodeError> {
    Ok(match v {
        AstValue::Number(s, _) => match s.parse::<i64>() {
            Ok(i) => CExpr::Literal(Value::Int(i), Kind::Int),
            Err(_) => CExpr::Literal(
                Value::Float(
                    s.parse()
                        .map_err(|_| CodeError::at(at, format!("invalid number {s}")))?,
                ),
                Kind::Float,
            ),
        },
        AstValue::SingleQuotedString(s) => CExpr::Literal(Value::Text(s.clone()), Kind::Text),
        AstValue::Boolean(b) => CExpr::Literal(Value::Bool(*b), Kind::Bool),
        AstValue::Null => CExpr::Literal(Value::Null, Kind::Text),
        other => return Err(CodeError::at(at, format!("unsupported literal {other}"))),
    })
}

fn compile(e: &Expr, scope: &Scope, fallback: Position) -> Result<CExpr, CodeError> {
    let at = position_of(e, fallback);
    let sub = |x: &Expr| compile(x, scope, at);
    Ok(match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            let (qualifier, column) =
                column_ref(e).ok_or_else(|| CodeError::at(at, "invalid column reference"))?;
            let is_left = |q: &String| q == scope.stream || Some(q) == scope.alias.as_ref();
            if let Some(right) = &scope.right {
                let is_right = |q: &String| q == right.stream || Some(q) == right.alias.as_ref();
                let use_right = match &qualifier {
                    Some(q) if is_left(q) => false,
                    Some(q) if is_right(q) => true,
                    Some(q) => return Err(CodeError::at(at, format!("Table '{q}' not found"))),
                    None => {
                        scope.shape.index_of(&column).is_none() && right.index_of(&column).is_some()
                    }
                };
                if use_right {
                    let (index, kind) = right.index_of(&column).ok_or_else(|| {
                        CodeError::at(at, format!("Column '{column}' not found in any table"))
                    })?;
                    return Ok(CExpr::Column {
                        index: scope.shape.columns.len() + 1 + index,
                        kind,
                    });
                }
            } else if let Some(q) = &qualifier
                && !is_left(q)
            {
                return Err(CodeError::at(at, format!("Table '{q}' not found")));
            }
            let (index, kind) = scope.shape.index_of(&column).ok_or_else(|| {
                CodeError::at(at, format!("Column '{column}' not found in any table"))
            })?;
            CExpr::Column { index, kind }
        }
        Expr::Value(v) => literal(&v.value, at)?,
        Expr::Nested(inner) => sub(inner)?,
        Expr::BinaryOp { left, op, right } => {
            let (l, r) = (sub(left)?, sub(right)?);
            match op {
                BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Multiply
                | BinaryOperator::Divide
                | BinaryOperator::Modulo => {
                    let (l, r) = unify(l, r, at)?;
                    let kind = l.kind();
                    if !kind.is_numeric() {
                        return Err(CodeError::at(
                            at,
                            format!("Cannot apply '{op}' to arguments of type {kind:?}"),
                        ));
                    }
                    let op = match op {
                        BinaryOperator::Plus => ArithOp::Add,
                        BinaryOperator::Minus => ArithOp::Sub,
                        BinaryOperator::Multiply => ArithOp::Mul,
                        BinaryOperator::Divide => ArithOp::Div,
                        _ => ArithOp::Rem,
                    };
                    CExpr::Arith {
                        op,
                        left: Box::new(l),
                        right: Box::new(r),
                        kind,
                    }
                }
                BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq => {
                    let (l, r) = unify(l, r, at)?;
                    let op = match op {
                        BinaryOperator::Eq => CmpOp::Eq,
                        BinaryOperator::NotEq => CmpOp::NotEq,
                        BinaryOperator::Lt => CmpOp::Lt,
                        BinaryOperator::LtEq => CmpOp::LtEq,
                        BinaryOperator::Gt => CmpOp::Gt,
                        _ => CmpOp::GtEq,
                    };
                    CExpr::Compare {
                        op,
                        left: Box::new(l),
                        right: Box::new(r),
                    }
                }
                BinaryOperator::And | BinaryOperator::Or => {
                    if l.kind() != Kind::Bool || r.kind() != Kind::Bool {
                        return Err(CodeError::at(at, format!("'{op}' needs boolean operands")));
                    }
                    if *op == BinaryOperator::And {
                        CExpr::And(Box::new(l), Box::new(r))
                    } else {
                        CExpr::Or(Box::new(l), Box::new(r))
                    }
                }
                BinaryOperator::StringConcat => CExpr::Func {
                    func: ScalarFn::Concat,
                    args: vec![l, r],
                    kind: Kind::Text,
                },
                other => return Err(CodeError::at(at, format!("unsupported operator {other}"))),
            }
        }
        Expr::UnaryOp { op, expr } => {
            let inner = sub(expr)?;
            match op {
                UnaryOperator::Not if inner.kind() == Kind::Bool => CExpr::Not(Box::new(inner)),
                UnaryOperator::Minus if inner.kind().is_numeric() => CExpr::Neg(Box::new(inner)),
                UnaryOperator::Plus if inner.kind().is_numeric() => inner,
                _ => {
                    return Err(CodeError::at(
                        at,
                        format!("cannot apply {op} to {:?}", inner.kind()),
                    ));
                }
            }
        }
        Expr::IsNull(x) => CExpr::IsNull {
            expr: Box::new(sub(x)?),
            negated: false,
        },
        Expr::IsNotNull(x) => CExpr::IsNull {
            expr: Box::new(sub(x)?),
            negated: true,
        },
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let x = sub(expr)?;
            let (a, lo) = unify(x.clone(), sub(low)?, at)?;
            let (b, hi) = unify(x, sub(high)?, at)?;
            let within = CExpr::And(
                Box::new(CExpr::Compare {
                    op: CmpOp::GtEq,
                    left: Box::new(a),
                    right: Box::new(lo),
                }),
                Box::new(CExpr::Compare {
                    op: CmpOp::LtEq,
                    left: Box::new(b),
                    right: Box::new(hi),
                }),
            );
            if *negated {
                CExpr::Not(Box::new(within))
            } else {
                within
            }
        }
        Expr::In {
            expr,
            target: sqlparser::ast::InTarget::List(list),
            negated,
            ..
        } => {
            let x = sub(expr)?;
            if list.is_empty() {
                return Err(CodeError::at(at, "IN needs at least one value"));
            }
            // Each value is paired with `x` as `=` would pair them, but `x` is compiled and
            // evaluated once: only its kind matters to `unify`, unless it is a literal, which
            // is cheap to copy.
            let stand_in = match &x {
                CExpr::Literal(..) => x.clone(),
                _ => CExpr::Column {
                    index: 0,
                    kind: x.kind(),
                },
            };
            let mut list = list
                .iter()
                .map(|item| {
                    let (l, r) = unify(stand_in.clone(), sub(item)?, at)?;
                    Ok((l.kind(), r))
                })
                .collect::<Result<Vec<_>, CodeError>>()?;
            // One value is a plain `=`, which a reference join can take as a hash key.
            let any = if list.len() == 1 {
                let (l, r) = unify(x, list.remove(0).1, at)?;
                CExpr::Compare {
                    op: CmpOp::Eq,
                    left: Box::new(l),
                    right: Box::new(r),
                }
            } else {
                CExpr::In {
                    expr: Box::new(x),
                    list,
                }
            };
            if *negated {
                CExpr::Not(Box::new(any))
            } else {
                any
            }
        }
        Expr::Like {
            negated,
            expr,
            pattern,
            escape_char: None,
            any: false,
        } => {
            let like = CExpr::Func {
                func: ScalarFn::Like,
                args: vec![text_arg(sub(expr)?, at)?, text_arg(sub(pattern)?, at)?],
                kind: Kind::Bool,
            };
            if *negated {
                CExpr::Not(Box::new(like))
            } else {
                like
            }
        }
        Expr::Cast {
            expr, data_type, ..
        } => {
            let kind = crate::types::SqlType::from_ast(data_type)
                .ok_or_else(|| CodeError::at(at, format!("unsupported type {data_type}")))?
                .kind();
            CExpr::Cast {
                expr: Box::new(sub(expr)?),
                kind,
            }
        }
        Expr::Floor { expr, field } | Expr::Ceil { expr, field } => {
            let x = sub(expr)?;
            let is_floor = matches!(e, Expr::Floor { .. });
            match field {
                CeilFloorKind::DateTimeField(DateTimeField::NoDateTime) => {
                    if !x.kind().is_numeric() {
                        return Err(CodeError::at(
                            at,
                            "FLOOR/CEIL of a non-number needs TO unit",
                        ));
                    }
                    let kind = x.kind();
                    CExpr::Func {
                        func: if is_floor {
                            ScalarFn::FloorNum
                        } else {
                            ScalarFn::CeilNum
                        },
                        args: vec![x],
                        kind,
                    }
                }
                CeilFloorKind::DateTimeField(unit) if is_floor && x.kind() == Kind::Time => {
                    let width_ms = unit_ms(unit)
                        .ok_or_else(|| CodeError::at(at, format!("unsupported unit {unit}")))?;
                    CExpr::TimeBucket {
                        expr: Box::new(x),
                        width_ms,
                    }
                }
                _ => return Err(CodeError::at(at, "unsupported FLOOR/CEIL form")),
            }
        }
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let mut args = vec![text_arg(sub(expr)?, at)?];
            args.push(match substring_from {
                Some(f) => cast_to(sub(f)?, Kind::Int),
                None => CExpr::Literal(Value::Int(1), Kind::Int),
            });
            if let Some(n) = substring_for {
                args.push(cast_to(sub(n)?, Kind::Int));
            }
            CExpr::Func {
                func: ScalarFn::Substring,
                args,
                kind: Kind::Text,
            }
        }
        Expr::Trim {
            expr,
            trim_where: None,
            trim_what: None,
            trim_characters: None,
        } => CExpr::Func {
            func: ScalarFn::Trim,
            args: vec![text_arg(sub(expr)?, at)?],
            kind: Kind::Text,
        },
        Expr::Position { expr, r#in } => CExpr::Func {
            func: ScalarFn::Position,
            args: vec![text_arg(sub(expr)?, at)?, text_arg(sub(r#in)?, at)?],
            kind: Kind::Int,
        },
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let mut args = Vec::new();
            let mut kind = None;
            for when in conditions {
                let cond = match operand {
                    Some(op) => {
                        let (l, r) = unify(sub(op)?, sub(&when.condition)?, at)?;
                        CExpr::Compare {
                            op: CmpOp::Eq,
                            left: Box::new(l),
                            right: Box::new(r),
                        }
                    }
                    None => sub(&when.condition)?,
                };
                let result = sub(&when.result)?;
                kind.get_or_insert(result.kind());
                args.push(cond);
                args.push(result);
            }
            if let Some(x) = else_result {
                args.push(sub(x)?);
            }
            let kind = kind.unwrap_or(Kind::Text);
            // Results (odd positions) and the ELSE value (after the pairs) take the CASE's kind.
            let else_index = conditions.len() * 2;
            let args = args
                .into_iter()
                .enumerate()
                .map(|(i, a)| {
                    if i % 2 == 1 || i == else_index {
                        cast_to(a, kind)
                    } else {
                        a
                    }
                })
                .collect();
            CExpr::Func {
                func: ScalarFn::Case,
                args,
                kind,
            }
        }
        Expr::Function(f) => compile_function(f, scope, at)?,
        other => return Err(CodeError::at(at, format!("unsupported expression {other}"))),
    })
}

fn text_arg(e: CExpr, at: Position) -> Result<CExpr, CodeError> {
    if e.kind() == Kind::Text || matches!(e, CExpr::Literal(Value::Null, _)) {
        Ok(e)
    } else {
        Err(CodeError::at(
            at,
            format!("expected a character string, found {:?}", e.kind()),
        ))
    }
}

fn compile_function(
    f: &sqlparser::ast::Function,
    scope: &Scope,
    at: Position,
) -> Result<CExpr, CodeError> {
    let name = object_name(&f.name).ok_or_else(|| CodeError::at(at, "invalid function name"))?;
    if f.over.is_some() {
        return Err(CodeError::at(
            at,
            "OVER is only allowed on COUNT, SUM, AVG, MIN and MAX as select items",
        ));
    }
    let args: Vec<&Expr> = match &f.args {
        FunctionArguments::None => Vec::new(),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                _ => Err(CodeError::at(at, format!("unsupported argument to {name}"))),
            })
            .collect::<Result<_, _>>()?,
        FunctionArguments::Subquery(_) => {
            return Err(CodeError::at(at, format!("unsupported argument to {name}")));
        }
    };
    let arity = |n: std::ops::RangeInclusive<usize>| {
        if n.contains(&args.len()) {
            Ok(())
        } else {
            Err(CodeError::at(
                at,
                format!("Invalid number of arguments to function '{name}'"),
            ))
        }
    };
    let sub = |x: &Expr| compile(x, scope, at);
    Ok(match name.as_str() {
        "STEP" => {
            arity(2..=2)?;
            let x = sub(args[0])?;
            if x.kind() != Kind::Time {
                return Err(CodeError::at(at, "STEP needs a TIMESTAMP operand"));
            }
            CExpr::TimeBucket {
                expr: Box::new(x),
                width_ms: interval_ms(args[1], at)?,
            }
        }
        "UPPER" | "LOWER" | "CHAR_LENGTH" | "CHARACTER_LENGTH" | "TRIM" => {
            arity(1..=1)?;
            let (func, kind) = match name.as_str() {
                "UPPER" => (ScalarFn::Upper, Kind::Text),
                "LOWER" => (ScalarFn::Lower, Kind::Text),
                "TRIM" => (ScalarFn::Trim, Kind::Text),
                _ => (ScalarFn::CharLength, Kind::Int),
            };
            CExpr::Func {
                func,
                args: vec![text_arg(sub(args[0])?, at)?],
                kind,
            }
        }
        "ABS" => {
            arity(1..=1)?;
            let x = sub(args[0])?;
            let kind = x.kind();
            if !kind.is_numeric() {
                return Err(CodeError::at(at, "ABS needs a number"));
            }
            CExpr::Func {
                func: ScalarFn::Abs,
                args: vec![x],
                kind,
            }
        }
        "MOD" => {
            arity(2..=2)?;
            let (l, r) = unify(sub(args[0])?, sub(args[1])?, at)?;
            let kind = l.kind();
            CExpr::Arith {
                op: ArithOp::Rem,
                left: Box::new(l),
                right: Box::new(r),
                kind,
            }
        }
        "POWER" | "SQRT" | "LN" | "EXP" => {
            let func = match name.as_str() {
                "POWER" => {
                    arity(2..=2)?;
                    ScalarFn::Power
                }
                "SQRT" => ScalarFn::Sqrt,
                "LN" => ScalarFn::Ln,
                _ => ScalarFn::Exp,
            };
            if func != ScalarFn::Power {
                arity(1..=1)?;
            }
            let args = args
                .iter()
                .map(|a| Ok(cast_to(sub(a)?, Kind::Float)))
                .collect::<Result<_, CodeError>>()?;
            CExpr::Func {
                func,
                args,
                kind: Kind::Float,
            }
        }
        "COALESCE" => {
            arity(1..=64)?;
            let compiled: Vec<CExpr> = args.iter().map(|a| sub(a)).collect::<Result<_, _>>()?;
            let kind = compiled
                .iter()
                .map(CExpr::kind)
                .find(|k| *k != Kind::Text)
                .unwrap_or(Kind::Text);
            let args = compiled.into_iter().map(|a| cast_to(a, kind)).collect();
            CExpr::Func {
                func: ScalarFn::Coalesce,
                args,
                kind,
            }
        }
        "TIMESTAMP_TO_CHAR" => {
            arity(2..=2)?;
            let ts = sub(args[1])?;
            if ts.kind() != Kind::Time {
                return Err(CodeError::at(at, "TIMESTAMP_TO_CHAR needs a TIMESTAMP"));
            }
            CExpr::Func {
                func: ScalarFn::TimestampToChar,
                args: vec![text_arg(sub(args[0])?, at)?, ts],
                kind: Kind::Text,
            }
        }
        "CHAR_TO_TIMESTAMP" => {
            arity(2..=2)?;
            CExpr::Func {
                func: ScalarFn::CharToTimestamp,
                args: vec![text_arg(sub(args[0])?, at)?, text_arg(sub(args[1])?, at)?],
                kind: Kind::Time,
            }
        }
        "CURRENT_ROW_TIMESTAMP" => {
            arity(0..=0)?;
            CExpr::Column {
                index: scope.shape.columns.len(),
                kind: Kind::Time,
            }
        }
        "COUNT" | "SUM" | "AVG" | "MIN" | "MAX" => {
            return Err(CodeError::at(
                at,
                format!("aggregate {name} is only allowed as a select item of a GROUP BY query"),
            ));
        }
        _ => {
            return Err(CodeError::at(
                at,
                format!("No match found for function signature {name}"),
            ));
        }
    })
}
