//! The part of CEL that Istio's metric overrides use in practice: attribute paths
//! (`request.headers['x-user']`, `xds.node.metadata['LABELS'].app`,
//! `filter_state.upstream_peer.labels['role']`), string/number/bool literals, `+ - * / %`,
//! comparisons, `&& || !`, `in`, `c ? a : b`, and the functions `has()`, `string()`, `int()`,
//! `uint()`, `size()`, `.startsWith()`, `.endsWith()`, `.contains()`.
//!
//! Parsing happens once, when the filter configuration is compiled. An expression outside this
//! subset is [`ExprError::Unsupported`] (the caller counts it as not enforced); text that is not
//! CEL at all is [`ExprError::Invalid`] (Istio skips those too). Evaluation never panics: a
//! missing attribute, a type mismatch or an overflow is an error, which Istio reports as the
//! label value `unknown`.

mod parse;

use std::borrow::Cow;

/// Why an expression was not compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// Not valid CEL.
    #[error("invalid expression: {0}")]
    Invalid(String),
    /// Valid CEL, but outside the subset tern evaluates.
    #[error("unsupported expression: {0}")]
    Unsupported(String),
}

/// A compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal.
    Lit(Value<'static>),
    /// An identifier (the root of an attribute path).
    Ident(String),
    /// `e.field`.
    Select(Box<Expr>, String),
    /// `e[key]`.
    Index(Box<Expr>, Box<Expr>),
    /// A global function: `has`, `string`, `int`, `uint`, `size`.
    Call(&'static str, Vec<Expr>),
    /// A method: `startsWith`, `endsWith`, `contains`.
    Method(Box<Expr>, &'static str, Box<Expr>),
    /// `!e`.
    Not(Box<Expr>),
    /// `-e`.
    Neg(Box<Expr>),
    /// A binary operator.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `c ? a : b`.
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `in`
    In,
}

/// A CEL value, as far as labels need one.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `null`.
    Null,
    /// `bool`.
    Bool(bool),
    /// `int`.
    Int(i64),
    /// `uint`.
    Uint(u64),
    /// `double`.
    Double(f64),
    /// `string`.
    Str(Cow<'a, str>),
    /// A map or list (headers, metadata): it can be indexed through a path, not printed.
    Container(&'static str),
}

impl Value<'_> {
    /// The text a label gets, as Envoy prints a CEL value.
    pub fn print(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Bool(b) => if *b { "true" } else { "false" }.into(),
            Value::Int(i) => i.to_string(),
            Value::Uint(u) => u.to_string(),
            Value::Double(d) => format_g6(*d),
            Value::Str(s) => s.to_string(),
            Value::Container(kind) => format!("{kind} value"),
        }
    }

    fn into_owned(self) -> Value<'static> {
        match self {
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Uint(u) => Value::Uint(u),
            Value::Double(d) => Value::Double(d),
            Value::Container(k) => Value::Container(k),
        }
    }
}

/// A double as C's `%g` with six significant digits (how absl prints one).
pub fn format_g6(d: f64) -> String {
    if d.is_nan() {
        return "nan".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{d:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..6).contains(&exp) {
        let decimals = (5 - exp).max(0) as usize;
        trim(&format!("{d:.decimals$}"))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    }
}

/// Why evaluation failed (the label becomes `unknown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// No such attribute or key.
    NotFound,
    /// Anything else: a type mismatch, an overflow, an attribute tern does not provide.
    Failed(&'static str),
}

/// One step of an attribute path after its root.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg<'a> {
    /// `.name`
    Field(&'a str),
    /// `[key]`
    Key(Value<'a>),
}

/// Where attribute values come from.
pub trait Attributes {
    /// The value of `root` followed by `path` (`request` + `[Field("headers"), Key("x")]`).
    fn resolve(&self, root: &str, path: &[Seg<'_>]) -> Result<Value<'_>, EvalError>;
}

impl Expr {
    /// Parse an expression.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        let tokens = parse::tokenize(src)?;
        parse::Parser::new(&tokens).parse_all()
    }

    /// Evaluate against `attrs`.
    pub fn eval<'a>(&self, attrs: &'a dyn Attributes) -> Result<Value<'a>, EvalError> {
        Ok(match self {
            Expr::Lit(v) => v.clone(),
            Expr::Ident(_) | Expr::Select(..) | Expr::Index(..) => self.eval_path(attrs)?,
            Expr::Call("has", args) => match first(args)?.eval_path(attrs) {
                Ok(_) => Value::Bool(true),
                Err(EvalError::NotFound) => Value::Bool(false),
                Err(e) => return Err(e),
            },
            Expr::Call(f, args) => call(f, first(args)?.eval(attrs)?)?,
            Expr::Method(target, m, arg) => {
                let (Value::Str(t), Value::Str(a)) = (target.eval(attrs)?, arg.eval(attrs)?) else {
                    return Err(EvalError::Failed("string method on a non-string"));
                };
                Value::Bool(match *m {
                    "startsWith" => t.starts_with(&*a),
                    "endsWith" => t.ends_with(&*a),
                    _ => t.contains(&*a),
                })
            }
            Expr::Not(e) => match e.eval(attrs)? {
                Value::Bool(b) => Value::Bool(!b),
                _ => return Err(EvalError::Failed("! on a non-bool")),
            },
            Expr::Neg(e) => match e.eval(attrs)? {
                Value::Int(i) => Value::Int(i.checked_neg().ok_or(EvalError::Failed("overflow"))?),
                Value::Double(d) => Value::Double(-d),
                _ => return Err(EvalError::Failed("- on a non-number")),
            },
            Expr::Cond(c, a, b) => match c.eval(attrs)? {
                Value::Bool(true) => a.eval(attrs)?,
                Value::Bool(false) => b.eval(attrs)?,
                _ => return Err(EvalError::Failed("condition is not a bool")),
            },
            Expr::Binary(BinOp::And, a, b) => logic(a.eval(attrs), || b.eval(attrs), false)?,
            Expr::Binary(BinOp::Or, a, b) => logic(a.eval(attrs), || b.eval(attrs), true)?,
            Expr::Binary(BinOp::In, key, container) => {
                let key = key.eval(attrs)?.into_owned();
                match container.eval_path_with(attrs, Some(Seg::Key(key))) {
                    Ok(_) => Value::Bool(true),
                    Err(EvalError::NotFound) => Value::Bool(false),
                    Err(e) => return Err(e),
                }
            }
            Expr::Binary(op, a, b) => binary(*op, a.eval(attrs)?, b.eval(attrs)?)?,
        })
    }

    fn eval_path<'a>(&self, attrs: &'a dyn Attributes) -> Result<Value<'a>, EvalError> {
        self.eval_path_with(attrs, None)
    }

    /// Walk `ident(.field|[key])*` down to its root, then resolve the whole path at once.
    fn eval_path_with<'a>(
        &self,
        attrs: &'a dyn Attributes,
        extra: Option<Seg<'static>>,
    ) -> Result<Value<'a>, EvalError> {
        let mut segs: Vec<Seg<'_>> = extra.into_iter().collect();
        let mut e = self;
        let root = loop {
            match e {
                Expr::Ident(name) => break name.as_str(),
                Expr::Select(inner, field) => {
                    segs.push(Seg::Field(field));
                    e = inner;
                }
                Expr::Index(inner, key) => {
                    segs.push(Seg::Key(key.eval(attrs)?.into_owned()));
                    e = inner;
                }
                _ => return Err(EvalError::Failed("selection on a computed value")),
            }
        };
        segs.reverse();
        attrs.resolve(root, &segs)
    }
}

fn first(args: &[Expr]) -> Result<&Expr, EvalError> {
    args.first().ok_or(EvalError::Failed("missing argument"))
}

fn logic<'a>(
    a: Result<Value<'a>, EvalError>,
    b: impl FnOnce() -> Result<Value<'a>, EvalError>,
    short: bool,
) -> Result<Value<'a>, EvalError> {
    // CEL's commutative logic: a decisive side wins even when the other is an error.
    if let Ok(Value::Bool(x)) = a
        && x == short
    {
        return Ok(Value::Bool(short));
    }
    match (a, b()) {
        (_, Ok(Value::Bool(y))) if y == short => Ok(Value::Bool(short)),
        (Ok(Value::Bool(_)), Ok(Value::Bool(_))) => Ok(Value::Bool(!short)),
        (Err(e), _) | (_, Err(e)) => Err(e),
        _ => Err(EvalError::Failed("logic on a non-bool")),
    }
}

fn call<'a>(f: &str, v: Value<'a>) -> Result<Value<'a>, EvalError> {
    let bad = EvalError::Failed("bad conversion");
    Ok(match (f, v) {
        ("string", v @ Value::Str(_)) => v,
        ("string", Value::Container(_)) => return Err(bad),
        ("string", v) => Value::Str(Cow::Owned(v.print())),
        ("int", Value::Int(i)) => Value::Int(i),
        ("int", Value::Uint(u)) => Value::Int(i64::try_from(u).map_err(|_| bad)?),
        ("int", Value::Double(d)) if d.is_finite() && d.abs() < 9.2e18 => Value::Int(d as i64),
        ("int", Value::Str(s)) => Value::Int(s.parse().map_err(|_| bad)?),
        ("uint", Value::Uint(u)) => Value::Uint(u),
        ("uint", Value::Int(i)) => Value::Uint(u64::try_from(i).map_err(|_| bad)?),
        ("uint", Value::Double(d)) if d.is_finite() && (0.0..1.8e19).contains(&d) => {
            Value::Uint(d as u64)
        }
        ("uint", Value::Str(s)) => Value::Uint(s.parse().map_err(|_| bad)?),
        ("size", Value::Str(s)) => Value::Int(s.chars().count() as i64),
        _ => return Err(bad),
    })
}

fn binary<'a>(op: BinOp, a: Value<'a>, b: Value<'a>) -> Result<Value<'a>, EvalError> {
    use BinOp::*;
    let overflow = EvalError::Failed("overflow or division by zero");
    let ord = |o: Option<std::cmp::Ordering>| -> Result<Value<'a>, EvalError> {
        let o = o.ok_or(EvalError::Failed("incomparable"))?;
        Ok(Value::Bool(match op {
            Lt => o.is_lt(),
            Le => o.is_le(),
            Gt => o.is_gt(),
            _ => o.is_ge(),
        }))
    };
    match (op, a, b) {
        (Eq, a, b) => Ok(Value::Bool(a == b)),
        (Ne, a, b) => Ok(Value::Bool(a != b)),
        (Lt | Le | Gt | Ge, Value::Int(x), Value::Int(y)) => ord(x.partial_cmp(&y)),
        (Lt | Le | Gt | Ge, Value::Uint(x), Value::Uint(y)) => ord(x.partial_cmp(&y)),
        (Lt | Le | Gt | Ge, Value::Double(x), Value::Double(y)) => ord(x.partial_cmp(&y)),
        (Lt | Le | Gt | Ge, Value::Str(x), Value::Str(y)) => ord(x.partial_cmp(&y)),
        (Add, Value::Str(x), Value::Str(y)) => Ok(Value::Str(Cow::Owned(format!("{x}{y}")))),
        (op, Value::Int(x), Value::Int(y)) => Ok(Value::Int(
            match op {
                Add => x.checked_add(y),
                Sub => x.checked_sub(y),
                Mul => x.checked_mul(y),
                Div => x.checked_div(y),
                _ => x.checked_rem(y),
            }
            .ok_or(overflow)?,
        )),
        (op, Value::Uint(x), Value::Uint(y)) => Ok(Value::Uint(
            match op {
                Add => x.checked_add(y),
                Sub => x.checked_sub(y),
                Mul => x.checked_mul(y),
                Div => x.checked_div(y),
                _ => x.checked_rem(y),
            }
            .ok_or(overflow)?,
        )),
        (op @ (Add | Sub | Mul | Div), Value::Double(x), Value::Double(y)) => {
            Ok(Value::Double(match op {
                Add => x + y,
                Sub => x - y,
                Mul => x * y,
                _ => x / y,
            }))
        }
        _ => Err(EvalError::Failed("operator on mismatched types")),
    }
}

#[cfg(test)]
mod tests;
