//! Tokenizer and recursive-descent parser for the CEL subset. Nesting is bounded, so a hostile
//! configuration cannot overflow the stack.

use super::{BinOp, Expr, ExprError, Value};
use std::borrow::Cow;

/// How deep expressions may nest.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Lit(Value<'static>),
    /// Punctuation and operators.
    P(&'static str),
}

fn invalid(msg: impl Into<String>) -> ExprError {
    ExprError::Invalid(msg.into())
}

fn unsupported(msg: impl Into<String>) -> ExprError {
    ExprError::Unsupported(msg.into())
}

const PUNCT: [&str; 24] = [
    "==", "!=", "<=", ">=", "&&", "||", ".", "[", "]", "(", ")", ",", "?", ":", "!", "-", "+", "*",
    "/", "%", "<", ">", "{", "}",
];

/// Split an expression into tokens.
pub(super) fn tokenize(src: &str) -> Result<Vec<Tok>, ExprError> {
    let mut out = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &src[start..i];
            // Raw and bytes string prefixes.
            if matches!(word, "r" | "R" | "b" | "B" | "rb" | "br")
                && i < b.len()
                && matches!(b[i], b'\'' | b'"')
            {
                return Err(unsupported("raw and bytes strings"));
            }
            out.push(match word {
                "true" => Tok::Lit(Value::Bool(true)),
                "false" => Tok::Lit(Value::Bool(false)),
                "null" => Tok::Lit(Value::Null),
                "in" => Tok::P("in"),
                _ => Tok::Ident(word.to_owned()),
            });
        } else if c.is_ascii_digit() {
            let (tok, next) = number(src, i)?;
            out.push(tok);
            i = next;
        } else if c == b'\'' || c == b'"' {
            let (s, next) = string(src, i)?;
            out.push(Tok::Lit(Value::Str(Cow::Owned(s))));
            i = next;
        } else if let Some(p) = PUNCT.iter().find(|p| src[i..].starts_with(**p)) {
            out.push(Tok::P(p));
            i += p.len();
        } else {
            return Err(invalid(format!("unexpected character at offset {i}")));
        }
    }
    if out.is_empty() {
        return Err(invalid("empty expression"));
    }
    Ok(out)
}

fn number(src: &str, start: usize) -> Result<(Tok, usize), ExprError> {
    let b = src.as_bytes();
    let mut i = start;
    if src[i..].starts_with("0x") || src[i..].starts_with("0X") {
        i += 2;
        let digits = i;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        let v = u64::from_str_radix(&src[digits..i], 16).map_err(|_| invalid("bad hex literal"))?;
        return suffix(src, i, v);
    }
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut float = false;
    if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
        float = true;
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        float = true;
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    let text = &src[start..i];
    if float {
        let d: f64 = text.parse().map_err(|_| invalid("bad number"))?;
        return Ok((Tok::Lit(Value::Double(d)), i));
    }
    let v: u64 = text.parse().map_err(|_| invalid("integer out of range"))?;
    suffix(src, i, v)
}

fn suffix(src: &str, i: usize, v: u64) -> Result<(Tok, usize), ExprError> {
    if src[i..].starts_with(['u', 'U']) {
        return Ok((Tok::Lit(Value::Uint(v)), i + 1));
    }
    // CEL's int is 64-bit signed; a larger literal without `u` does not parse.
    let v = i64::try_from(v).map_err(|_| invalid("integer out of range"))?;
    Ok((Tok::Lit(Value::Int(v)), i))
}

fn string(src: &str, start: usize) -> Result<(String, usize), ExprError> {
    let quote = src.as_bytes()[start] as char;
    if src[start..].starts_with("'''") || src[start..].starts_with("\"\"\"") {
        return Err(unsupported("triple-quoted strings"));
    }
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, start + 1 + off + 1)),
            '\n' | '\r' => break,
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('\\') => out.push('\\'),
                Some('\'') => out.push('\''),
                Some('"') => out.push('"'),
                Some('`') => out.push('`'),
                Some('?') => out.push('?'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('a') => out.push('\u{7}'),
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('v') => out.push('\u{b}'),
                Some(_) => return Err(unsupported("numeric string escapes")),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(invalid("unterminated string"))
}

pub(super) struct Parser<'t> {
    toks: &'t [Tok],
    pos: usize,
    depth: usize,
}

impl<'t> Parser<'t> {
    pub(super) fn new(toks: &'t [Tok]) -> Self {
        Parser {
            toks,
            pos: 0,
            depth: 0,
        }
    }

    pub(super) fn parse_all(mut self) -> Result<Expr, ExprError> {
        let e = self.expr()?;
        match self.toks.get(self.pos) {
            None => Ok(e),
            Some(t) => Err(invalid(format!("unexpected {t:?}"))),
        }
    }

    fn peek(&self) -> Option<&'t Tok> {
        self.toks.get(self.pos)
    }

    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Tok::P(q)) if *q == p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), ExprError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(invalid(format!("expected `{p}`")))
        }
    }

    fn expr(&mut self) -> Result<Expr, ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid("expression nests too deeply"));
        }
        let cond = self.binary(0)?;
        let e = if self.eat("?") {
            let a = self.expr()?;
            self.expect(":")?;
            let b = self.expr()?;
            Expr::Cond(Box::new(cond), Box::new(a), Box::new(b))
        } else {
            cond
        };
        self.depth -= 1;
        Ok(e)
    }

    /// Precedence climbing: `||` < `&&` < relations < `+ -` < `* / %`.
    fn binary(&mut self, level: usize) -> Result<Expr, ExprError> {
        const LEVELS: [&[(&str, BinOp)]; 5] = [
            &[("||", BinOp::Or)],
            &[("&&", BinOp::And)],
            &[
                ("==", BinOp::Eq),
                ("!=", BinOp::Ne),
                ("<=", BinOp::Le),
                (">=", BinOp::Ge),
                ("<", BinOp::Lt),
                (">", BinOp::Gt),
                ("in", BinOp::In),
            ],
            &[("+", BinOp::Add), ("-", BinOp::Sub)],
            &[("*", BinOp::Mul), ("/", BinOp::Div), ("%", BinOp::Rem)],
        ];
        let Some(ops) = LEVELS.get(level) else {
            return self.unary();
        };
        let mut lhs = self.binary(level + 1)?;
        loop {
            let Some((_, op)) = ops.iter().find(|(p, _)| self.eat(p)) else {
                return Ok(lhs);
            };
            let rhs = self.binary(level + 1)?;
            lhs = Expr::Binary(*op, Box::new(lhs), Box::new(rhs));
            if level == 2 {
                // Relations do not chain without parentheses.
                return Ok(lhs);
            }
        }
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid("expression nests too deeply"));
        }
        let e = if self.eat("!") {
            Expr::Not(Box::new(self.unary()?))
        } else if self.eat("-") {
            Expr::Neg(Box::new(self.unary()?))
        } else {
            self.member()?
        };
        self.depth -= 1;
        Ok(e)
    }

    fn member(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.primary()?;
        loop {
            if self.eat(".") {
                let Some(Tok::Ident(name)) = self.peek() else {
                    return Err(invalid("expected a field name after `.`"));
                };
                self.pos += 1;
                if self.eat("(") {
                    let method: &'static str = match name.as_str() {
                        "startsWith" => "startsWith",
                        "endsWith" => "endsWith",
                        "contains" => "contains",
                        other => return Err(unsupported(format!("method {other}()"))),
                    };
                    let mut args = self.args()?;
                    if args.len() != 1 {
                        return Err(invalid(format!("{method}() takes one argument")));
                    }
                    e = Expr::Method(Box::new(e), method, Box::new(args.remove(0)));
                } else {
                    e = Expr::Select(Box::new(e), name.clone());
                }
            } else if self.eat("[") {
                let key = self.expr()?;
                self.expect("]")?;
                e = Expr::Index(Box::new(e), Box::new(key));
            } else {
                return Ok(e);
            }
        }
    }

    /// Arguments after `(`, through `)`.
    fn args(&mut self) -> Result<Vec<Expr>, ExprError> {
        let mut args = Vec::new();
        if self.eat(")") {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat(")") {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let Some(tok) = self.peek() else {
            return Err(invalid("unexpected end of expression"));
        };
        self.pos += 1;
        match tok {
            Tok::Lit(v) => Ok(Expr::Lit(v.clone())),
            Tok::P("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::P("[") | Tok::P("{") => Err(unsupported("list and map literals")),
            Tok::P(".") => Err(unsupported("leading-dot identifiers")),
            Tok::Ident(name) if self.eat("(") => {
                let f: &'static str = match name.as_str() {
                    "has" => "has",
                    "string" => "string",
                    "int" => "int",
                    "uint" => "uint",
                    "size" => "size",
                    other => return Err(unsupported(format!("function {other}()"))),
                };
                let args = self.args()?;
                if args.len() != 1 {
                    return Err(invalid(format!("{f}() takes one argument")));
                }
                if f == "has" && !matches!(args[0], Expr::Select(..)) {
                    return Err(invalid("has() takes a field selection"));
                }
                Ok(Expr::Call(f, args))
            }
            Tok::Ident(name) => Ok(Expr::Ident(name.clone())),
            Tok::P(p) => Err(invalid(format!("unexpected `{p}`"))),
        }
    }
}
