//! Compiled scalar expressions, evaluated a whole batch at a time.
//!
//! Arithmetic, comparisons and boolean logic run as Arrow compute kernels over whole columns
//! (literals stay scalars, so `"px" * "qty" > 10000` never materialises the constant). String,
//! time and conversion functions have no Arrow kernel in the crates we build, so they run one row
//! at a time over the columns and build a new column.
//!
//! Invariant: an expression's [`CExpr::kind`] is the kind of the array it evaluates to; the
//! planner inserts casts so that both operands of a kernel have the same kind.

use std::sync::Arc;

use arrow_arith::boolean::{and_kleene, not, or_kleene};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Datum, Float64Array, Int64Array, RecordBatch, Scalar,
};
use arrow_schema::ArrowError;

use crate::batch::{ColumnBuilder, StreamShape, rowtimes, value_at};
use crate::types::Kind;
use crate::value::{self, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// Functions evaluated row by row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarFn {
    Upper,
    Lower,
    CharLength,
    Abs,
    /// SUBSTRING(s FROM start [FOR length]), 1-based.
    Substring,
    Trim,
    /// POSITION(needle IN haystack), 1-based, 0 when absent.
    Position,
    Concat,
    Power,
    Sqrt,
    Ln,
    Exp,
    FloorNum,
    CeilNum,
    /// TIMESTAMP_TO_CHAR(format, ts) with a Java `SimpleDateFormat` pattern.
    TimestampToChar,
    /// CHAR_TO_TIMESTAMP(format, text).
    CharToTimestamp,
    /// `a LIKE pattern` (`%` and `_`).
    Like,
    /// `CASE WHEN c1 THEN v1 … [ELSE e] END`, args as (c1, v1, …, else).
    Case,
    /// COALESCE(a, b, …).
    Coalesce,
}

/// A compiled expression.
#[derive(Clone, Debug, PartialEq)]
pub enum CExpr {
    Column {
        index: usize,
        kind: Kind,
    },
    Literal(Value, Kind),
    Arith {
        op: ArithOp,
        left: Box<CExpr>,
        right: Box<CExpr>,
        kind: Kind,
    },
    Compare {
        op: CmpOp,
        left: Box<CExpr>,
        right: Box<CExpr>,
    },
    And(Box<CExpr>, Box<CExpr>),
    Or(Box<CExpr>, Box<CExpr>),
    /// `expr IN (v, …)`: `expr` is evaluated once and compared, as the paired kind, with each
    /// value (already of that kind); true when one is equal, NULL when none is but a comparison
    /// was NULL. A chain of ORs would copy `expr` once per value and nest as deep as the list
    /// is long, and the evaluation recurses once per level.
    In {
        expr: Box<CExpr>,
        list: Vec<(Kind, CExpr)>,
    },
    Not(Box<CExpr>),
    Neg(Box<CExpr>),
    IsNull {
        expr: Box<CExpr>,
        negated: bool,
    },
    Cast {
        expr: Box<CExpr>,
        kind: Kind,
    },
    /// The start of the bucket of width `width_ms` holding a time (STEP, FLOOR … TO unit).
    TimeBucket {
        expr: Box<CExpr>,
        width_ms: i64,
    },
    Func {
        func: ScalarFn,
        args: Vec<CExpr>,
        kind: Kind,
    },
}

/// A value for a kernel: a full column, or one value standing for every row.
enum Col {
    Array(ArrayRef),
    Scalar(ArrayRef),
}

impl Col {
    fn datum(&self) -> Box<dyn Datum + '_> {
        match self {
            Col::Array(a) => Box::new(a.clone()),
            Col::Scalar(a) => Box::new(Scalar::new(a.clone())),
        }
    }

    fn into_array(self, rows: usize) -> ArrayRef {
        match self {
            Col::Array(a) => a,
            Col::Scalar(a) => repeat(&a, rows),
        }
    }
}

fn repeat(one: &ArrayRef, rows: usize) -> ArrayRef {
    let indices = arrow_array::UInt32Array::from(vec![0u32; rows]);
    arrow_select::take::take(one.as_ref(), &indices, None).expect("index 0 of a one-row array")
}

fn literal_array(value: &Value, kind: Kind) -> ArrayRef {
    let mut builder = ColumnBuilder::new(kind, 1);
    builder.push(value);
    builder.finish()
}

impl CExpr {
    pub fn kind(&self) -> Kind {
        match self {
            CExpr::Column { kind, .. }
            | CExpr::Literal(_, kind)
            | CExpr::Arith { kind, .. }
            | CExpr::Cast { kind, .. }
            | CExpr::Func { kind, .. } => *kind,
            CExpr::Compare { .. }
            | CExpr::And(..)
            | CExpr::Or(..)
            | CExpr::In { .. }
            | CExpr::Not(_)
            | CExpr::IsNull { .. } => Kind::Bool,
            CExpr::Neg(e) => e.kind(),
            CExpr::TimeBucket { .. } => Kind::Time,
        }
    }

    /// Calls `seen` with the index of every column the expression reads.
    pub fn visit_columns(&self, seen: &mut impl FnMut(usize)) {
        match self {
            CExpr::Column { index, .. } => seen(*index),
            CExpr::Literal(..) => {}
            CExpr::Arith { left, right, .. } | CExpr::Compare { left, right, .. } => {
                left.visit_columns(seen);
                right.visit_columns(seen);
            }
            CExpr::And(a, b) | CExpr::Or(a, b) => {
                a.visit_columns(seen);
                b.visit_columns(seen);
            }
            CExpr::In { expr, list } => {
                expr.visit_columns(seen);
                list.iter().for_each(|(_, v)| v.visit_columns(seen));
            }
            CExpr::Not(e)
            | CExpr::Neg(e)
            | CExpr::IsNull { expr: e, .. }
            | CExpr::Cast { expr: e, .. }
            | CExpr::TimeBucket { expr: e, .. } => e.visit_columns(seen),
            CExpr::Func { args, .. } => args.iter().for_each(|a| a.visit_columns(seen)),
        }
    }

    /// The same expression reading column `to(i)` wherever this one reads column `i` (an
    /// expression planned over a joined row, moved onto one side's batch).
    pub fn remap_columns(&self, to: &impl Fn(usize) -> usize) -> CExpr {
        let boxed = |e: &CExpr| Box::new(e.remap_columns(to));
        match self {
            CExpr::Column { index, kind } => CExpr::Column {
                index: to(*index),
                kind: *kind,
            },
            CExpr::Literal(..) => self.clone(),
            CExpr::Arith {
                op,
                left,
                right,
                kind,
            } => CExpr::Arith {
                op: *op,
                left: boxed(left),
                right: boxed(right),
                kind: *kind,
            },
            CExpr::Compare { op, left, right } => CExpr::Compare {
                op: *op,
                left: boxed(left),
                right: boxed(right),
            },
            CExpr::And(a, b) => CExpr::And(boxed(a), boxed(b)),
            CExpr::Or(a, b) => CExpr::Or(boxed(a), boxed(b)),
            CExpr::In { expr, list } => CExpr::In {
                expr: boxed(expr),
                list: list
                    .iter()
                    .map(|(kind, v)| (*kind, v.remap_columns(to)))
                    .collect(),
            },
            CExpr::Not(e) => CExpr::Not(boxed(e)),
            CExpr::Neg(e) => CExpr::Neg(boxed(e)),
            CExpr::IsNull { expr, negated } => CExpr::IsNull {
                expr: boxed(expr),
                negated: *negated,
            },
            CExpr::Cast { expr, kind } => CExpr::Cast {
                expr: boxed(expr),
                kind: *kind,
            },
            CExpr::TimeBucket { expr, width_ms } => CExpr::TimeBucket {
                expr: boxed(expr),
                width_ms: *width_ms,
            },
            CExpr::Func { func, args, kind } => CExpr::Func {
                func: *func,
                args: args.iter().map(|a| a.remap_columns(to)).collect(),
                kind: *kind,
            },
        }
    }

    /// Evaluates over every row of `batch`; the array has `batch.num_rows()` rows.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef, ArrowError> {
        Ok(self.eval(batch)?.into_array(batch.num_rows()))
    }

    /// Evaluates a condition (`ON`, `WHERE`, `HAVING`) over every row of `batch`; `clause`
    /// names it in the error when the expression is not boolean. A NULL row is not kept.
    pub fn evaluate_condition(
        &self,
        batch: &RecordBatch,
        clause: &str,
    ) -> Result<BooleanArray, ArrowError> {
        let mask = self.evaluate(batch)?;
        mask.as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .ok_or_else(|| ArrowError::InvalidArgumentError(format!("{clause} is not boolean")))
    }

    /// Which rows of `rows` (built into a batch of `shape`) a `WHERE` over them keeps: the
    /// pump's WHERE after a table function, run over the function's own rows.
    pub fn keeps_rows(
        &self,
        shape: &crate::batch::StreamShape,
        rows: &[(Vec<crate::value::Value>, i64)],
    ) -> Result<Vec<bool>, ArrowError> {
        let mask = self.evaluate_condition(&crate::batch::batch_from_rows(shape, rows), "WHERE")?;
        Ok((0..rows.len())
            .map(|row| mask.is_valid(row) && mask.value(row))
            .collect())
    }

    fn eval(&self, batch: &RecordBatch) -> Result<Col, ArrowError> {
        let rows = batch.num_rows();
        Ok(match self {
            CExpr::Column { index, .. } => Col::Array(batch.column(*index).clone()),
            CExpr::Literal(value, kind) => Col::Scalar(literal_array(value, *kind)),
            CExpr::Arith {
                op, left, right, ..
            } => {
                let (l, r) = (left.eval(batch)?, right.eval(batch)?);
                let (l, r) = (l.datum(), r.datum());
                let (l, r) = (l.as_ref(), r.as_ref());
                let out = match op {
                    ArithOp::Add => arrow_arith::numeric::add(l, r)?,
                    ArithOp::Sub => arrow_arith::numeric::sub(l, r)?,
                    ArithOp::Mul => arrow_arith::numeric::mul(l, r)?,
                    ArithOp::Div => arrow_arith::numeric::div(l, r)?,
                    ArithOp::Rem => arrow_arith::numeric::rem(l, r)?,
                };
                scalar_or_array(out, left, right)
            }
            CExpr::Compare { op, left, right } => {
                let (l, r) = (left.eval(batch)?, right.eval(batch)?);
                let (l, r) = (l.datum(), r.datum());
                let (l, r) = (l.as_ref(), r.as_ref());
                let out = match op {
                    CmpOp::Eq => arrow_ord::cmp::eq(l, r)?,
                    CmpOp::NotEq => arrow_ord::cmp::neq(l, r)?,
                    CmpOp::Lt => arrow_ord::cmp::lt(l, r)?,
                    CmpOp::LtEq => arrow_ord::cmp::lt_eq(l, r)?,
                    CmpOp::Gt => arrow_ord::cmp::gt(l, r)?,
                    CmpOp::GtEq => arrow_ord::cmp::gt_eq(l, r)?,
                };
                scalar_or_array(Arc::new(out), left, right)
            }
            CExpr::And(a, b) | CExpr::Or(a, b) => {
                let l = a.evaluate(batch)?;
                let r = b.evaluate(batch)?;
                let (l, r) = (as_bool(&l), as_bool(&r));
                Col::Array(Arc::new(if matches!(self, CExpr::And(..)) {
                    and_kleene(l, r)?
                } else {
                    or_kleene(l, r)?
                }))
            }
            CExpr::In { expr, list } => {
                let x = expr.evaluate(batch)?;
                // `x` as each kind it is compared as; a list rarely needs more than one.
                let mut as_kind: Vec<(Kind, ArrayRef)> = vec![(expr.kind(), x.clone())];
                let mut any: Option<BooleanArray> = None;
                for (kind, value) in list {
                    let left = match as_kind.iter().find(|(k, _)| k == kind) {
                        Some((_, array)) => array.clone(),
                        None => {
                            let array = cast(x.clone(), expr.kind(), *kind)?;
                            as_kind.push((*kind, array.clone()));
                            array
                        }
                    };
                    let right = value.eval(batch)?;
                    let equal = arrow_ord::cmp::eq(&left, right.datum().as_ref())?;
                    any = Some(match any {
                        None => equal,
                        Some(before) => or_kleene(&before, &equal)?,
                    });
                }
                let any = any.expect("the planner compiles IN with at least one value");
                Col::Array(Arc::new(any))
            }
            CExpr::Not(e) => Col::Array(Arc::new(not(as_bool(&e.evaluate(batch)?))?)),
            CExpr::Neg(e) => Col::Array(arrow_arith::numeric::neg(e.evaluate(batch)?.as_ref())?),
            CExpr::IsNull { expr, negated } => {
                let array = expr.evaluate(batch)?;
                let out: BooleanArray = (0..rows)
                    .map(|i| Some(array.is_null(i) != *negated))
                    .collect();
                Col::Array(Arc::new(out))
            }
            CExpr::Cast { expr, kind } => {
                Col::Array(cast(expr.evaluate(batch)?, expr.kind(), *kind)?)
            }
            CExpr::TimeBucket { expr, width_ms } => {
                let array = expr.evaluate(batch)?;
                let times = array.as_any().downcast_ref::<Int64Array>().ok_or_else(|| {
                    ArrowError::InvalidArgumentError("time bucket of a non-time".into())
                })?;
                let width = *width_ms;
                Col::Array(Arc::new(times.unary::<_, arrow_array::types::Int64Type>(
                    |t| t.div_euclid(width) * width,
                )))
            }
            CExpr::Func { func, args, kind } => {
                let arrays = args
                    .iter()
                    .map(|a| a.evaluate(batch))
                    .collect::<Result<Vec<_>, _>>()?;
                let kinds: Vec<Kind> = args.iter().map(CExpr::kind).collect();
                let mut builder = ColumnBuilder::new(*kind, rows);
                let mut values = Vec::with_capacity(args.len());
                for row in 0..rows {
                    values.clear();
                    values.extend(
                        arrays
                            .iter()
                            .zip(&kinds)
                            .map(|(a, k)| value_at(a.as_ref(), *k, row)),
                    );
                    let out = apply(*func, &values, *kind).map_err(ArrowError::ComputeError)?;
                    builder.push(&out);
                }
                Col::Array(builder.finish())
            }
        })
    }
}

/// The batch of the target stream that `exprs` fill from `batch`: `exprs[i]` fills column
/// `target_columns[i]`, every other column is NULL, and the rows keep `batch`'s ROWTIME.
pub fn project(
    exprs: &[CExpr],
    batch: &RecordBatch,
    target: &StreamShape,
    target_columns: &[usize],
) -> Result<RecordBatch, ArrowError> {
    let rows = batch.num_rows();
    let mut columns: Vec<Option<ArrayRef>> = vec![None; target.columns.len()];
    for (expr, &column) in exprs.iter().zip(target_columns) {
        columns[column] = Some(expr.evaluate(batch)?);
    }
    let mut arrays: Vec<ArrayRef> = columns
        .into_iter()
        .zip(&target.columns)
        .map(|(c, (_, kind))| c.unwrap_or_else(|| arrow_array::new_null_array(&kind.arrow(), rows)))
        .collect();
    arrays.push(Arc::new(rowtimes(batch).clone()));
    RecordBatch::try_new(target.schema(), arrays)
}

/// A kernel over two scalars gives a one-row array: keep it a scalar.
fn scalar_or_array(out: ArrayRef, left: &CExpr, right: &CExpr) -> Col {
    if matches!(left, CExpr::Literal(..)) && matches!(right, CExpr::Literal(..)) {
        Col::Scalar(out)
    } else {
        Col::Array(out)
    }
}

fn as_bool(array: &ArrayRef) -> &BooleanArray {
    array
        .as_any()
        .downcast_ref::<BooleanArray>()
        .expect("the planner only combines boolean expressions with AND/OR/NOT")
}

/// Converts a column from one kind to another (CAST, and the planner's implicit widenings).
pub fn cast(array: ArrayRef, from: Kind, to: Kind) -> Result<ArrayRef, ArrowError> {
    if from == to
        || (from == Kind::Int && to == Kind::Time)
        || (from == Kind::Time && to == Kind::Int)
    {
        return Ok(array);
    }
    if let (Kind::Int | Kind::Time, Kind::Float) = (from, to) {
        let ints = array
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int column");
        return Ok(Arc::new(
            ints.unary::<_, arrow_array::types::Float64Type>(|v| v as f64),
        ));
    }
    if let (Kind::Float, Kind::Int) = (from, to) {
        let floats = array
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("float column");
        return Ok(Arc::new(
            floats.unary::<_, arrow_array::types::Int64Type>(|v| v.trunc() as i64),
        ));
    }
    let mut builder = ColumnBuilder::new(to, array.len());
    for row in 0..array.len() {
        let v = convert(value_at(array.as_ref(), from, row), to).map_err(ArrowError::CastError)?;
        builder.push(&v);
    }
    Ok(builder.finish())
}

/// Converts one value to `to`.
pub fn convert(v: Value, to: Kind) -> Result<Value, String> {
    Ok(match (v, to) {
        (Value::Null, _) => Value::Null,
        (Value::Int(i), Kind::Int) | (Value::Time(i), Kind::Int) => Value::Int(i),
        (Value::Int(i), Kind::Time) | (Value::Time(i), Kind::Time) => Value::Time(i),
        (Value::Int(i), Kind::Float) | (Value::Time(i), Kind::Float) => Value::Float(i as f64),
        (Value::Float(f), Kind::Float) => Value::Float(f),
        (Value::Float(f), Kind::Int) => Value::Int(f.trunc() as i64),
        (Value::Float(f), Kind::Time) => Value::Time(f.trunc() as i64),
        (Value::Bool(b), Kind::Bool) => Value::Bool(b),
        (Value::Text(s), kind) => value::from_text(&s, kind)?,
        (Value::Int(i), Kind::Text) => Value::Text(i.to_string()),
        (Value::Float(f), Kind::Text) => Value::Text(f.to_string()),
        (Value::Bool(b), Kind::Text) => Value::Text(if b { "TRUE" } else { "FALSE" }.to_owned()),
        (Value::Time(t), Kind::Text) => Value::Text(value::format_timestamp(t)),
        (v, to) => return Err(format!("cannot cast {v:?} to {to:?}")),
    })
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::Text(s) => Some(s),
        _ => None,
    }
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) | Value::Time(i) => Some(*i as f64),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) | Value::Time(i) => Some(*i),
        Value::Float(f) => Some(f.trunc() as i64),
        _ => None,
    }
}

/// Applies a row-wise function; NULL in gives NULL out (except CASE and COALESCE).
fn apply(func: ScalarFn, args: &[Value], kind: Kind) -> Result<Value, String> {
    match func {
        ScalarFn::Case => {
            let mut i = 0;
            while i + 1 < args.len() {
                if args[i] == Value::Bool(true) {
                    return Ok(args[i + 1].clone());
                }
                i += 2;
            }
            return Ok(if args.len() % 2 == 1 {
                args[args.len() - 1].clone()
            } else {
                Value::Null
            });
        }
        ScalarFn::Coalesce => {
            return Ok(args
                .iter()
                .find(|v| **v != Value::Null)
                .cloned()
                .unwrap_or(Value::Null));
        }
        _ => {}
    }
    if args.contains(&Value::Null) {
        return Ok(Value::Null);
    }
    let bad = || format!("invalid argument to {func:?}");
    Ok(match func {
        ScalarFn::Upper => Value::Text(text(&args[0]).ok_or_else(bad)?.to_uppercase()),
        ScalarFn::Lower => Value::Text(text(&args[0]).ok_or_else(bad)?.to_lowercase()),
        ScalarFn::CharLength => Value::Int(text(&args[0]).ok_or_else(bad)?.chars().count() as i64),
        ScalarFn::Trim => Value::Text(text(&args[0]).ok_or_else(bad)?.trim().to_owned()),
        ScalarFn::Abs => match &args[0] {
            Value::Int(i) => Value::Int(i.checked_abs().ok_or_else(bad)?),
            v => Value::Float(float(v).ok_or_else(bad)?.abs()),
        },
        ScalarFn::Substring => {
            let s = text(&args[0]).ok_or_else(bad)?;
            let start = int(&args[1]).ok_or_else(bad)?;
            let chars: Vec<char> = s.chars().collect();
            // `start` is 1-based and may lie anywhere in BIGINT's range (a DOUBLE argument
            // saturates to it), so the bounds are worked out in i128, where they cannot
            // overflow, then clamped to the string.
            let last = chars.len() as i128;
            let first = i128::from(start) - 1;
            let from = first.clamp(0, last) as usize;
            let end = match args.get(2) {
                Some(len) => {
                    let len = int(len).ok_or_else(bad)?;
                    if len < 0 {
                        return Err("negative substring length".to_owned());
                    }
                    (first + i128::from(len)).clamp(0, last) as usize
                }
                None => chars.len(),
            };
            Value::Text(if from >= end {
                String::new()
            } else {
                chars[from..end].iter().collect()
            })
        }
        ScalarFn::Position => {
            let needle = text(&args[0]).ok_or_else(bad)?;
            let hay = text(&args[1]).ok_or_else(bad)?;
            Value::Int(match hay.find(needle) {
                Some(byte) => hay[..byte].chars().count() as i64 + 1,
                None => 0,
            })
        }
        ScalarFn::Concat => {
            let mut out = String::new();
            for v in args {
                match convert(v.clone(), Kind::Text)? {
                    Value::Text(s) => out.push_str(&s),
                    _ => return Err(bad()),
                }
            }
            Value::Text(out)
        }
        ScalarFn::Power => Value::Float(
            float(&args[0])
                .ok_or_else(bad)?
                .powf(float(&args[1]).ok_or_else(bad)?),
        ),
        ScalarFn::Sqrt => Value::Float(float(&args[0]).ok_or_else(bad)?.sqrt()),
        ScalarFn::Ln => Value::Float(float(&args[0]).ok_or_else(bad)?.ln()),
        ScalarFn::Exp => Value::Float(float(&args[0]).ok_or_else(bad)?.exp()),
        ScalarFn::FloorNum | ScalarFn::CeilNum => match (&args[0], kind) {
            (Value::Int(i), _) => Value::Int(*i),
            (v, _) => {
                let f = float(v).ok_or_else(bad)?;
                Value::Float(if func == ScalarFn::FloorNum {
                    f.floor()
                } else {
                    f.ceil()
                })
            }
        },
        ScalarFn::TimestampToChar => {
            let format = java_date_format(text(&args[0]).ok_or_else(bad)?);
            let t = int(&args[1]).ok_or_else(bad)?;
            let time = chrono::DateTime::from_timestamp_millis(t).ok_or_else(bad)?;
            Value::Text(time.format(&format).to_string())
        }
        ScalarFn::CharToTimestamp => {
            let format = java_date_format(text(&args[0]).ok_or_else(bad)?);
            let s = text(&args[1]).ok_or_else(bad)?;
            let parsed = chrono::NaiveDateTime::parse_from_str(s, &format)
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(s, &format)
                        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
                })
                .map_err(|e| format!("cannot parse '{s}' as a timestamp: {e}"))?;
            Value::Time(parsed.and_utc().timestamp_millis())
        }
        ScalarFn::Like => {
            let s = text(&args[0]).ok_or_else(bad)?;
            let p = text(&args[1]).ok_or_else(bad)?;
            let s: Vec<char> = s.chars().collect();
            let p: Vec<char> = p.chars().collect();
            Value::Bool(like(&s, &p))
        }
        ScalarFn::Case | ScalarFn::Coalesce => unreachable!("handled above"),
    })
}

/// SQL LIKE with `%` (any run) and `_` (one character). Hand-written: arrow-string's kernels
/// would add a regex engine to the build for this one operator.
fn like(s: &[char], p: &[char]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '_' || p[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

/// Translates a Java `SimpleDateFormat` pattern (as TIMESTAMP_TO_CHAR takes) into chrono's.
fn java_date_format(pattern: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut run = 1;
        while i + run < chars.len() && chars[i + run] == c {
            run += 1;
        }
        let piece = match (c, run) {
            ('y', 2) => "%y",
            ('y', _) => "%Y",
            ('M', 1 | 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', _) => "%d",
            ('H', _) => "%H",
            ('h', _) => "%I",
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('S', _) => "%3f",
            ('a', _) => "%p",
            ('E', _) => "%a",
            ('%', _) => "%%",
            _ => {
                for _ in 0..run {
                    out.push(c);
                }
                i += run;
                continue;
            }
        };
        out.push_str(piece);
        i += run;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{StreamShape, batch_from_rows};

    fn batch() -> RecordBatch {
        let shape = StreamShape {
            columns: vec![
                ("px".into(), Kind::Float),
                ("qty".into(), Kind::Int),
                ("sym".into(), Kind::Text),
            ],
        };
        batch_from_rows(
            &shape,
            &[
                (
                    vec![
                        Value::Float(100.0),
                        Value::Int(200),
                        Value::Text("amzn".into()),
                    ],
                    1_000,
                ),
                (
                    vec![Value::Float(1.5), Value::Int(3), Value::Text("ibm".into())],
                    2_000,
                ),
                (
                    vec![Value::Null, Value::Int(3), Value::Text("x".into())],
                    3_500,
                ),
            ],
        )
    }

    fn col(index: usize, kind: Kind) -> Box<CExpr> {
        Box::new(CExpr::Column { index, kind })
    }

    #[test]
    fn arithmetic_and_comparison_run_as_kernels_with_nulls_propagating() {
        let notional = CExpr::Arith {
            op: ArithOp::Mul,
            left: col(0, Kind::Float),
            right: Box::new(CExpr::Cast {
                expr: col(1, Kind::Int),
                kind: Kind::Float,
            }),
            kind: Kind::Float,
        };
        let big = CExpr::Compare {
            op: CmpOp::Gt,
            left: Box::new(notional.clone()),
            right: Box::new(CExpr::Literal(Value::Float(10_000.0), Kind::Float)),
        };
        let out = big.evaluate(&batch()).expect("evaluates");
        let out = as_bool(&out);
        assert!(out.value(0));
        assert!(!out.value(1));
        assert!(out.is_null(2));
        let values = notional.evaluate(&batch()).expect("evaluates");
        assert_eq!(value_at(values.as_ref(), Kind::Float, 1), Value::Float(4.5));
    }

    #[test]
    fn string_and_time_functions_run_row_by_row() {
        let upper = CExpr::Func {
            func: ScalarFn::Upper,
            args: vec![*col(2, Kind::Text)],
            kind: Kind::Text,
        };
        let out = upper.evaluate(&batch()).expect("evaluates");
        assert_eq!(
            value_at(out.as_ref(), Kind::Text, 0),
            Value::Text("AMZN".into())
        );
        let bucket = CExpr::TimeBucket {
            expr: col(3, Kind::Time),
            width_ms: 2_000,
        };
        let out = bucket.evaluate(&batch()).expect("evaluates");
        assert_eq!(value_at(out.as_ref(), Kind::Time, 1), Value::Time(2_000));
        assert_eq!(value_at(out.as_ref(), Kind::Time, 2), Value::Time(2_000));
        let sub = apply(
            ScalarFn::Substring,
            &[Value::Text("abcdef".into()), Value::Int(2), Value::Int(3)],
            Kind::Text,
        );
        assert_eq!(sub, Ok(Value::Text("bcd".into())));
        let fmt = apply(
            ScalarFn::TimestampToChar,
            &[Value::Text("yyyy-MM-dd HH:mm".into()), Value::Time(60_000)],
            Kind::Text,
        );
        assert_eq!(fmt, Ok(Value::Text("1970-01-01 00:01".into())));
        assert!(like(
            &"hello".chars().collect::<Vec<_>>(),
            &"h%l_".chars().collect::<Vec<_>>()
        ));
        assert!(!like(
            &"hello".chars().collect::<Vec<_>>(),
            &"h%x".chars().collect::<Vec<_>>()
        ));
    }

    #[test]
    fn integer_division_by_zero_is_an_error_not_a_panic() {
        let div = CExpr::Arith {
            op: ArithOp::Div,
            left: col(1, Kind::Int),
            right: Box::new(CExpr::Literal(Value::Int(0), Kind::Int)),
            kind: Kind::Int,
        };
        assert!(div.evaluate(&batch()).is_err());
    }
}
