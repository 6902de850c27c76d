//! The filter language: `views >= 10 && (status = "published" || title ~ "rust")`.
//!
//! Grammar (also in docs/querying.md):
//!
//! ```text
//! expr       := or
//! or         := and ( "||" and )*
//! and        := unary ( "&&" unary )*
//! unary      := "!" unary | primary
//! primary    := "(" expr ")" | comparison
//! comparison := FIELD op literal | FIELD "in" "[" literal ( "," literal )* "]"
//! op         := "=" | "!=" | ">" | ">=" | "<" | "<=" | "~"
//! literal    := STRING | NUMBER | "true" | "false" | "null"
//! STRING     := '"' chars '"' | "'" chars "'"     (escapes: \" \' \\ \n \t)
//! NUMBER     := "-"? digits ( "." digits )? ( ("e"|"E") ("+"|"-")? digits )?
//! FIELD      := [a-z_][a-z0-9_]*                   (a field or system field)
//! ```
//!
//! Parsing ([`parse_filter`]) is syntax only; [`check_filter`] types a parsed
//! filter against a collection (a date compared with a number is an error) and
//! produces a [`Filter`] whose literals are domain [`Value`]s, ready for the
//! store to compile to SQL with bound parameters, or for [`Filter::matches`]
//! to evaluate in memory.
//!
//! Permission rules ([`crate::rule`]) reuse this language: the boolean layer
//! (`||`, `&&`, `!`, parentheses, depth limit) and the lexer are shared through
//! the crate-private `Grammar` trait; rules lex dotted names (`record.title`,
//! `auth.user_id`), which plain filters keep rejecting.

use std::fmt;

use crate::schema::{Collection, FieldType};
use crate::value::{Record, Value, normalize_date, normalize_datetime};

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses and `!` accepted.
pub const MAX_DEPTH: usize = 32;

/// A filter mistake, at a 1-based character position of the filter text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    /// Contains (case-insensitive for ASCII letters).
    Contains,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Contains => "~",
        }
    }
}

/// A parsed (untyped) filter. `pos` is the 1-based character position of the field.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Cmp {
        field: String,
        op: CmpOp,
        value: Literal,
        pos: usize,
    },
    In {
        field: String,
        values: Vec<Literal>,
        pos: usize,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    Num(Literal),
    Op(CmpOp),
    And,
    Or,
    Not,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(_) => "a string".into(),
        Tok::Num(_) => "a number".into(),
        Tok::Op(o) => format!("`{}`", o.as_str()),
        Tok::And => "`&&`".into(),
        Tok::Or => "`||`".into(),
        Tok::Not => "`!`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Comma => "`,`".into(),
    }
}

fn err<T>(position: usize, message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError {
        position,
        message: message.into(),
    })
}

/// Splits `src` into tokens with their 1-based character positions. With
/// `dotted`, a name may continue with `.name` parts (`record.title`), which
/// permission rules use; plain filters reject `.` as before.
fn lex(src: &str, dotted: bool) -> Result<Vec<(Tok, usize)>, FilterError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        let next = chars.get(i + 1).copied();
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
                continue;
            }
            '(' => out.push((Tok::LParen, pos)),
            ')' => out.push((Tok::RParen, pos)),
            '[' => out.push((Tok::LBracket, pos)),
            ']' => out.push((Tok::RBracket, pos)),
            ',' => out.push((Tok::Comma, pos)),
            '~' => out.push((Tok::Op(CmpOp::Contains), pos)),
            '=' => {
                if next == Some('=') {
                    return err(pos, "use `=` for equality, not `==`");
                }
                out.push((Tok::Op(CmpOp::Eq), pos));
            }
            '!' if next == Some('=') => {
                out.push((Tok::Op(CmpOp::Ne), pos));
                i += 1;
            }
            '!' => out.push((Tok::Not, pos)),
            '>' | '<' => {
                let eq = next == Some('=');
                let op = match (c, eq) {
                    ('>', true) => CmpOp::Ge,
                    ('>', false) => CmpOp::Gt,
                    ('<', true) => CmpOp::Le,
                    _ => CmpOp::Lt,
                };
                out.push((Tok::Op(op), pos));
                i += usize::from(eq);
            }
            '&' | '|' => {
                if next != Some(c) {
                    return err(pos, format!("expected `{c}{c}`"));
                }
                out.push((if c == '&' { Tok::And } else { Tok::Or }, pos));
                i += 1;
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return err(pos, "unterminated string"),
                        Some(&ch) if ch == quote => break,
                        Some('\\') => {
                            let esc = match chars.get(j + 1) {
                                Some('"') => '"',
                                Some('\'') => '\'',
                                Some('\\') => '\\',
                                Some('n') => '\n',
                                Some('t') => '\t',
                                _ => {
                                    return err(
                                        j + 1,
                                        "unknown escape; use \\\" \\' \\\\ \\n or \\t",
                                    );
                                }
                            };
                            s.push(esc);
                            j += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                out.push((Tok::Str(s), pos));
                i = j;
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let mut j = i + 1;
                let mut is_float = false;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(char::is_ascii_digit)
                {
                    is_float = true;
                    j += 1;
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                }
                if matches!(chars.get(j), Some('e' | 'E')) {
                    let mut k = j + 1;
                    if matches!(chars.get(k), Some('+' | '-')) {
                        k += 1;
                    }
                    if chars.get(k).is_some_and(char::is_ascii_digit) {
                        is_float = true;
                        j = k;
                        while j < chars.len() && chars[j].is_ascii_digit() {
                            j += 1;
                        }
                    }
                }
                if chars
                    .get(j)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_')
                {
                    return err(j + 1, "unexpected character after a number");
                }
                let text: String = chars[i..j].iter().collect();
                let lit = if is_float {
                    match text.parse::<f64>() {
                        Ok(f) if f.is_finite() => Literal::Float(f),
                        _ => return err(pos, format!("number {text} is out of range")),
                    }
                } else {
                    match text.parse::<i64>() {
                        Ok(n) => Literal::Int(n),
                        Err(_) => {
                            return err(pos, format!("integer {text} does not fit in 64 bits"));
                        }
                    }
                };
                out.push((Tok::Num(lit), pos));
                i = j;
                continue;
            }
            c if c.is_ascii_lowercase() || c == '_' || c.is_ascii_uppercase() => {
                let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
                let mut j = i;
                while j < chars.len() && name_char(chars[j]) {
                    j += 1;
                }
                while dotted && chars.get(j) == Some(&'.') {
                    match chars.get(j + 1) {
                        Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                            j += 1;
                            while j < chars.len() && name_char(chars[j]) {
                                j += 1;
                            }
                        }
                        _ => return err(j + 2, "expected a name after `.`"),
                    }
                }
                let word: String = chars[i..j].iter().collect();
                out.push((Tok::Ident(word), pos));
                i = j;
                continue;
            }
            other => return err(pos, format!("unexpected character {other:?}")),
        }
        i += 1;
    }
    Ok(out)
}

// ---------------------------------------------------------------- parser

/// A language built on the shared boolean layer: it parses its own
/// comparisons (the leaves) and says how to combine them. Plain filters
/// ([`Expr`]) and permission rules (`crate::rule`) are the two grammars.
pub(crate) trait Grammar: Sized {
    /// What the text is called in messages ("filter", "rule").
    const NOUN: &'static str;
    /// Whether names may be dotted (`record.title`).
    const DOTTED_NAMES: bool;
    /// Parses one comparison at the parser's position (the next token is
    /// neither `!` nor `(`).
    fn leaf(p: &mut Parser) -> Result<Self, FilterError>;
    fn and(a: Self, b: Self) -> Self;
    fn or(a: Self, b: Self) -> Self;
    fn not(a: Self) -> Self;
}

impl Grammar for Expr {
    const NOUN: &'static str = "filter";
    const DOTTED_NAMES: bool = false;
    fn leaf(p: &mut Parser) -> Result<Self, FilterError> {
        match p.peek() {
            Some(Tok::Ident(_)) => p.comparison(),
            _ => p.unexpected("a field name, `(` or `!`"),
        }
    }
    fn and(a: Self, b: Self) -> Self {
        Expr::And(Box::new(a), Box::new(b))
    }
    fn or(a: Self, b: Self) -> Self {
        Expr::Or(Box::new(a), Box::new(b))
    }
    fn not(a: Self) -> Self {
        Expr::Not(Box::new(a))
    }
}

/// A recursive-descent parser over the tokens of one text.
pub(crate) struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    end: usize,
    depth: usize,
    noun: &'static str,
}

impl Parser {
    /// The next token, if any.
    pub(crate) fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(t, _)| t)
    }
    /// The 1-based position of the next token (one past the end at the end).
    pub(crate) fn pos(&self) -> usize {
        self.toks.get(self.at).map_or(self.end, |(_, p)| *p)
    }
    /// Consumes the next token.
    pub(crate) fn bump(&mut self) -> Option<(Tok, usize)> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    /// An error at the next token: expected `wanted`, found it.
    pub(crate) fn unexpected<T>(&self, wanted: &str) -> Result<T, FilterError> {
        match self.peek() {
            Some(t) => err(
                self.pos(),
                format!("expected {wanted}, found {}", describe(t)),
            ),
            None => err(
                self.pos(),
                format!("expected {wanted}, found the end of the {}", self.noun),
            ),
        }
    }

    fn or<G: Grammar>(&mut self) -> Result<G, FilterError> {
        let mut left = self.and::<G>()?;
        while self.peek() == Some(&Tok::Or) {
            self.bump();
            let right = self.and::<G>()?;
            left = G::or(left, right);
        }
        Ok(left)
    }

    fn and<G: Grammar>(&mut self) -> Result<G, FilterError> {
        let mut left = self.unary::<G>()?;
        while self.peek() == Some(&Tok::And) {
            self.bump();
            let right = self.unary::<G>()?;
            left = G::and(left, right);
        }
        Ok(left)
    }

    fn nest(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(
                self.pos(),
                format!("the {} nests deeper than {MAX_DEPTH} levels", self.noun),
            );
        }
        Ok(())
    }

    fn unary<G: Grammar>(&mut self) -> Result<G, FilterError> {
        match self.peek() {
            Some(Tok::Not) => {
                self.bump();
                self.nest()?;
                let e = self.unary::<G>()?;
                self.depth -= 1;
                Ok(G::not(e))
            }
            Some(Tok::LParen) => {
                self.bump();
                self.nest()?;
                let e = self.or::<G>()?;
                self.depth -= 1;
                if self.peek() != Some(&Tok::RParen) {
                    return self.unexpected("`)` or `&&` or `||`");
                }
                self.bump();
                Ok(e)
            }
            _ => G::leaf(self),
        }
    }

    /// Parses a literal value (string, number, `true`, `false`, `null`).
    pub(crate) fn literal(&mut self) -> Result<Literal, FilterError> {
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.bump();
                Ok(Literal::Str(s))
            }
            Some(Tok::Num(n)) => {
                self.bump();
                Ok(n)
            }
            Some(Tok::Ident(w)) if w == "true" || w == "false" || w == "null" => {
                self.bump();
                Ok(match w.as_str() {
                    "true" => Literal::Bool(true),
                    "false" => Literal::Bool(false),
                    _ => Literal::Null,
                })
            }
            Some(Tok::Ident(w)) => err(
                self.pos(),
                format!("expected a value, found `{w}` (quote strings: \"{w}\")"),
            ),
            _ => self.unexpected("a value (string, number, true, false or null)"),
        }
    }

    /// Parses `[literal, …]` (after `in`), with each literal's position.
    pub(crate) fn literal_list(&mut self) -> Result<Vec<(Literal, usize)>, FilterError> {
        if self.peek() != Some(&Tok::LBracket) {
            return self.unexpected("`[` after `in`");
        }
        let mut values = Vec::new();
        loop {
            self.bump(); // `[` or `,`
            let pos = self.pos();
            values.push((self.literal()?, pos));
            match self.peek() {
                Some(Tok::Comma) => {}
                Some(Tok::RBracket) => break,
                _ => return self.unexpected("`,` or `]`"),
            }
        }
        self.bump();
        Ok(values)
    }

    fn comparison(&mut self) -> Result<Expr, FilterError> {
        let Some((Tok::Ident(field), pos)) = self.bump() else {
            return err(self.pos(), "expected a field name");
        };
        if matches!(field.as_str(), "true" | "false" | "null" | "in") {
            return err(pos, format!("expected a field name, found `{field}`"));
        }
        match self.peek().cloned() {
            Some(Tok::Op(op)) => {
                self.bump();
                let value = self.literal()?;
                Ok(Expr::Cmp {
                    field,
                    op,
                    value,
                    pos,
                })
            }
            Some(Tok::Ident(w)) if w == "in" => {
                self.bump();
                let values = self.literal_list()?.into_iter().map(|(v, _)| v).collect();
                Ok(Expr::In { field, values, pos })
            }
            _ => self.unexpected("an operator (= != > >= < <= ~ in)"),
        }
    }
}

/// Parses filter text (syntax only; see [`check_filter`]).
pub fn parse_filter(src: &str) -> Result<Expr, FilterError> {
    parse_with::<Expr>(src)
}

/// Parses `src` in grammar `G`: the length and depth limits, the boolean
/// layer, and "nothing after the expression".
pub(crate) fn parse_with<G: Grammar>(src: &str) -> Result<G, FilterError> {
    let noun = G::NOUN;
    if src.len() > MAX_FILTER_LEN {
        return err(
            1,
            format!("the {noun} is longer than {MAX_FILTER_LEN} bytes"),
        );
    }
    let toks = lex(src, G::DOTTED_NAMES)?;
    if toks.is_empty() {
        return err(1, format!("the {noun} is empty"));
    }
    let mut p = Parser {
        toks,
        at: 0,
        end: src.chars().count() + 1,
        depth: 0,
        noun,
    };
    let e = p.or::<G>()?;
    if p.peek().is_some() {
        return p.unexpected(&format!("`&&`, `||` or the end of the {noun}"));
    }
    Ok(e)
}

// ---------------------------------------------------------------- printing

fn write_literal(f: &mut fmt::Formatter<'_>, l: &Literal) -> fmt::Result {
    match l {
        Literal::Null => f.write_str("null"),
        Literal::Bool(b) => write!(f, "{b}"),
        Literal::Int(i) => write!(f, "{i}"),
        // `{:?}` keeps a decimal point or exponent, so it re-lexes as a float.
        Literal::Float(x) => write!(f, "{x:?}"),
        Literal::Str(s) => {
            f.write_str("\"")?;
            for c in s.chars() {
                match c {
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\t' => f.write_str("\\t")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")
        }
    }
}

impl fmt::Display for Expr {
    /// Canonical text: re-parsing it gives back an equal expression (up to positions).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Cmp {
                field, op, value, ..
            } => {
                write!(f, "{field} {} ", op.as_str())?;
                write_literal(f, value)
            }
            Expr::In { field, values, .. } => {
                write!(f, "{field} in [")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_literal(f, v)?;
                }
                f.write_str("]")
            }
            Expr::And(a, b) => {
                write_operand(f, a, true)?;
                f.write_str(" && ")?;
                write_operand(f, b, true)
            }
            Expr::Or(a, b) => {
                write_operand(f, a, false)?;
                f.write_str(" || ")?;
                write_operand(f, b, false)
            }
            // `!(a = 1)` rather than `!a = 1`, which reads as `(!a) = 1`.
            Expr::Not(e) if matches!(**e, Expr::Not(_)) => write!(f, "!{e}"),
            Expr::Not(e) => write!(f, "!({e})"),
        }
    }
}

/// Parenthesises operands so the printed text parses back to the same tree
/// (operators are left-associative, so a right operand of the same kind needs
/// parentheses too).
fn write_operand(f: &mut fmt::Formatter<'_>, e: &Expr, in_and: bool) -> fmt::Result {
    let needs = match e {
        Expr::Cmp { .. } | Expr::In { .. } | Expr::Not(_) => false,
        Expr::Or(..) => true,
        Expr::And(..) => in_and,
    };
    if needs {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

// ---------------------------------------------------------------- typing

/// A filter typed against a collection: fields exist, literals are domain
/// values of the field's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Cmp {
        field: String,
        ty: FieldType,
        op: CmpOp,
        value: Value,
    },
    In {
        field: String,
        ty: FieldType,
        values: Vec<Value>,
    },
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

/// The type of a field or system field.
pub fn field_type(c: &Collection, name: &str) -> Option<FieldType> {
    match name {
        "id" => Some(FieldType::Relation),
        "created_at" | "updated_at" => Some(FieldType::Datetime),
        "version" => Some(FieldType::Integer),
        _ => c.field(name).map(|f| f.ty),
    }
}

fn type_literal(
    c: &Collection,
    field: &str,
    ty: FieldType,
    lit: &Literal,
    pos: usize,
) -> Result<Value, FilterError> {
    let mismatch = |what: &str| {
        err(
            pos,
            format!(
                "`{field}` is {} field; it cannot be compared with {what}",
                with_article(ty)
            ),
        )
    };
    if let Literal::Str(s) = lit
        && s.contains('\0')
    {
        return err(pos, "strings cannot contain NUL characters");
    }
    let what = match lit {
        Literal::Null => return Ok(Value::Null),
        Literal::Bool(_) => "true/false",
        Literal::Int(_) | Literal::Float(_) => "a number",
        Literal::Str(_) => "a string",
    };
    match (ty, lit) {
        (FieldType::Integer, Literal::Int(i)) => Ok(Value::Int(*i)),
        (FieldType::Integer, Literal::Float(_)) => mismatch("a fractional number"),
        (FieldType::Number, Literal::Int(i)) =>
        {
            #[allow(clippy::cast_precision_loss)]
            Ok(Value::Float(*i as f64))
        }
        (FieldType::Number, Literal::Float(x)) => Ok(Value::Float(*x)),
        (FieldType::Boolean, Literal::Bool(b)) => Ok(Value::Bool(*b)),
        (FieldType::Datetime, Literal::Str(s)) => normalize_datetime(s)
            .map(Value::Text)
            .ok_or_else(|| FilterError {
                position: pos,
                message: format!("`{field}` is a datetime; {s:?} is not an RFC 3339 date-time"),
            }),
        (FieldType::Date, Literal::Str(s)) => {
            normalize_date(s)
                .map(Value::Text)
                .ok_or_else(|| FilterError {
                    position: pos,
                    message: format!("`{field}` is a date; {s:?} is not a YYYY-MM-DD date"),
                })
        }
        (FieldType::Enum, Literal::Str(s)) => {
            let allowed = &c.field(field).map(|f| f.values.clone()).unwrap_or_default();
            if allowed.iter().any(|v| v == s) {
                Ok(Value::Text(s.clone()))
            } else {
                err(
                    pos,
                    format!(
                        "{s:?} is not a value of `{field}` (one of: {})",
                        allowed.join(", ")
                    ),
                )
            }
        }
        (FieldType::Relation, Literal::Str(s)) => Ok(Value::Text(s.to_ascii_lowercase())),
        (FieldType::Text | FieldType::Email | FieldType::Url, Literal::Str(s)) => {
            Ok(Value::Text(s.clone()))
        }
        (FieldType::Json, _) => err(
            pos,
            format!("`{field}` is a json field and cannot be filtered on"),
        ),
        _ => mismatch(what),
    }
}

/// `a text`, `an integer`: a field type with its article.
pub(crate) fn with_article(ty: FieldType) -> String {
    let name = ty.as_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// Types a parsed filter against `c`.
pub fn check_filter(c: &Collection, e: &Expr) -> Result<Filter, FilterError> {
    Ok(match e {
        Expr::Cmp {
            field,
            op,
            value,
            pos,
        } => {
            let ty = field_type(c, field).ok_or_else(|| FilterError {
                position: *pos,
                message: format!("`{}` has no field `{field}`", c.name),
            })?;
            let v = type_literal(c, field, ty, value, *pos)?;
            if v.is_null() && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return err(
                    *pos,
                    format!(
                        "`{}` cannot compare with null; use = null or != null",
                        op.as_str()
                    ),
                );
            }
            if *op == CmpOp::Contains
                && !matches!(ty, FieldType::Text | FieldType::Email | FieldType::Url)
            {
                return err(
                    *pos,
                    format!(
                        "`~` (contains) applies to text fields; `{field}` is {}",
                        with_article(ty)
                    ),
                );
            }
            if matches!(op, CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le)
                && ty == FieldType::Boolean
            {
                return err(*pos, format!("`{field}` is boolean; use = or !="));
            }
            Filter::Cmp {
                field: field.clone(),
                ty,
                op: *op,
                value: v,
            }
        }
        Expr::In { field, values, pos } => {
            let ty = field_type(c, field).ok_or_else(|| FilterError {
                position: *pos,
                message: format!("`{}` has no field `{field}`", c.name),
            })?;
            let mut typed = Vec::with_capacity(values.len());
            for v in values {
                let t = type_literal(c, field, ty, v, *pos)?;
                if t.is_null() {
                    return err(
                        *pos,
                        "`in` lists cannot contain null; use `|| field = null`",
                    );
                }
                typed.push(t);
            }
            Filter::In {
                field: field.clone(),
                ty,
                values: typed,
            }
        }
        Expr::And(a, b) => {
            Filter::And(Box::new(check_filter(c, a)?), Box::new(check_filter(c, b)?))
        }
        Expr::Or(a, b) => Filter::Or(Box::new(check_filter(c, a)?), Box::new(check_filter(c, b)?)),
        Expr::Not(a) => Filter::Not(Box::new(check_filter(c, a)?)),
    })
}

// ---------------------------------------------------------------- evaluation

/// The value of a field or system field of a record.
pub fn record_value(r: &Record, field: &str) -> Value {
    match field {
        "id" => Value::Text(r.id.clone()),
        "created_at" => Value::Text(r.created_at.clone()),
        "updated_at" => Value::Text(r.updated_at.clone()),
        "version" => Value::Int(r.version),
        _ => r.get(field).cloned().unwrap_or(Value::Null),
    }
}

/// Orders two non-null values of one field type (text compares by bytes, as
/// the store's binary collation does).
pub fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        #[allow(clippy::cast_precision_loss)]
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        #[allow(clippy::cast_precision_loss)]
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Text(x), Value::Text(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    }
}

impl Filter {
    /// The fields (user or system) this filter compares, in order of
    /// appearance, repeats included.
    pub fn fields(&self) -> Vec<&str> {
        fn walk<'a>(f: &'a Filter, out: &mut Vec<&'a str>) {
            match f {
                Filter::Cmp { field, .. } | Filter::In { field, .. } => out.push(field),
                Filter::And(a, b) | Filter::Or(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Filter::Not(a) => walk(a, out),
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// The reference semantics, which the SQL compilation must equal:
    /// - `= null` / `!= null` test for absence / presence;
    /// - `!=` against a value is also true when the field is null;
    /// - ordering comparisons and `~` are false when the field is null;
    /// - `~` is substring containment, case-insensitive for ASCII letters;
    /// - `in` is true when the field equals one of the values.
    pub fn matches(&self, r: &Record) -> bool {
        match self {
            Filter::Cmp {
                field, op, value, ..
            } => {
                let v = record_value(r, field);
                match (op, value.is_null(), v.is_null()) {
                    (CmpOp::Eq, true, n) => n,
                    (CmpOp::Ne, true, n) => !n,
                    (CmpOp::Ne, false, true) => true,
                    (_, _, true) => false,
                    (CmpOp::Contains, _, _) => match (&v, value) {
                        (Value::Text(h), Value::Text(n)) => {
                            h.to_ascii_lowercase().contains(&n.to_ascii_lowercase())
                        }
                        _ => false,
                    },
                    _ => {
                        let Some(ord) = compare(&v, value) else {
                            return false;
                        };
                        match op {
                            CmpOp::Eq => ord.is_eq(),
                            CmpOp::Ne => ord.is_ne(),
                            CmpOp::Gt => ord.is_gt(),
                            CmpOp::Ge => ord.is_ge(),
                            CmpOp::Lt => ord.is_lt(),
                            CmpOp::Le => ord.is_le(),
                            CmpOp::Contains => false,
                        }
                    }
                }
            }
            Filter::In { field, values, .. } => {
                let v = record_value(r, field);
                values
                    .iter()
                    .any(|x| compare(&v, x).is_some_and(|o| o.is_eq()))
            }
            Filter::And(a, b) => a.matches(r) && b.matches(r),
            Filter::Or(a, b) => a.matches(r) || b.matches(r),
            Filter::Not(a) => !a.matches(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(e: Expr) -> Expr {
        match e {
            Expr::Cmp {
                field, op, value, ..
            } => Expr::Cmp {
                field,
                op,
                value,
                pos: 0,
            },
            Expr::In { field, values, .. } => Expr::In {
                field,
                values,
                pos: 0,
            },
            Expr::And(a, b) => Expr::And(Box::new(strip(*a)), Box::new(strip(*b))),
            Expr::Or(a, b) => Expr::Or(Box::new(strip(*a)), Box::new(strip(*b))),
            Expr::Not(a) => Expr::Not(Box::new(strip(*a))),
        }
    }

    #[test]
    fn parses_the_issue_example() {
        let e = parse_filter(r#"views >= 10 && (status = "published" || title ~ "rust")"#)
            .expect("parses");
        assert_eq!(
            e.to_string(),
            r#"views >= 10 && (status = "published" || title ~ "rust")"#
        );
        let e2 =
            parse_filter("!(a in [1, 2.5, 'x\\'y', null, true]) || b != null").expect("parses");
        assert_eq!(
            e2.to_string(),
            r#"!(a in [1, 2.5, "x'y", null, true]) || b != null"#
        );
    }

    #[test]
    fn precedence_and_associativity() {
        let e = parse_filter("a = 1 || b = 2 && c = 3").expect("parses");
        assert!(matches!(e, Expr::Or(_, _)));
        let e = parse_filter("a = 1 && (b = 2 && c = 3)").expect("parses");
        let back = parse_filter(&e.to_string()).expect("reparses");
        assert_eq!(strip(back), strip(e));
    }

    #[test]
    fn errors_name_the_position() {
        let cases = [
            ("views >", 8, "expected a value"),
            ("views == 1", 7, "use `=`"),
            ("(a = 1", 7, "expected `)`"),
            ("a = 'x", 5, "unterminated string"),
            ("a = draft", 5, "quote strings"),
            ("a & b", 3, "expected `&&`"),
            ("", 1, "empty"),
            ("a = 1 b = 2", 7, "expected `&&`"),
            ("a in 1", 6, "expected `[`"),
            ("a = 99999999999999999999", 5, "does not fit"),
            ("a = 1x", 6, "after a number"),
            ("a = #", 5, "unexpected character"),
        ];
        for (src, pos, msg) in cases {
            let e = parse_filter(src).expect_err(src);
            assert_eq!(e.position, pos, "{src}: {e}");
            assert!(e.message.contains(msg), "{src}: {e}");
        }
        let deep = "(".repeat(40) + "a = 1" + &")".repeat(40);
        assert!(
            parse_filter(&deep)
                .expect_err("too deep")
                .message
                .contains("nests deeper")
        );
    }

    fn posts() -> Collection {
        crate::parse_schema(
            r#"[collections.posts.fields]
title = { type = "text" }
views = { type = "integer" }
rating = { type = "number" }
on = { type = "boolean" }
at = { type = "datetime" }
day = { type = "date" }
status = { type = "enum", values = ["draft", "published"] }
meta = { type = "json" }
"#,
        )
        .expect("valid")
        .collections
        .remove(0)
    }

    #[test]
    fn typing_against_the_schema() {
        let c = posts();
        let bad = [
            ("day = 3", "cannot be compared with a number"),
            ("views = \"x\"", "cannot be compared with a string"),
            ("views = 1.5", "fractional"),
            ("nope = 1", "has no field `nope`"),
            ("status = \"gone\"", "not a value of `status`"),
            ("at > \"tomorrow\"", "not an RFC 3339"),
            ("views ~ 1", "applies to text"),
            ("views > null", "cannot compare with null"),
            ("on > true", "use = or !="),
            ("meta = 1", "cannot be filtered"),
            ("views in [1, null]", "cannot contain null"),
        ];
        for (src, msg) in bad {
            let e = check_filter(&c, &parse_filter(src).expect(src)).expect_err(src);
            assert!(e.message.contains(msg), "{src}: {e}");
            assert_eq!(e.position, 1, "{src}");
        }
        let f = check_filter(
            &c,
            &parse_filter("at >= \"2026-01-01T01:00:00+01:00\" && rating > 1").expect("parses"),
        )
        .expect("typed");
        let Filter::And(a, b) = f else { panic!("and") };
        assert_eq!(
            *a,
            Filter::Cmp {
                field: "at".into(),
                ty: FieldType::Datetime,
                op: CmpOp::Ge,
                value: Value::Text("2026-01-01T00:00:00.000000Z".into())
            }
        );
        assert!(matches!(
            *b,
            Filter::Cmp {
                value: Value::Float(_),
                ..
            }
        ));
    }

    #[test]
    fn reference_semantics() {
        let c = posts();
        let r = Record {
            id: "01".into(),
            created_at: "2026-01-01T00:00:00.000000Z".into(),
            updated_at: "2026-01-01T00:00:00.000000Z".into(),
            version: 3,
            fields: vec![
                ("title".into(), Value::Text("Learning Rust".into())),
                ("views".into(), Value::Int(10)),
                ("rating".into(), Value::Null),
            ],
        };
        let m = |src: &str| {
            check_filter(&c, &parse_filter(src).expect(src))
                .expect(src)
                .matches(&r)
        };
        assert!(m("title ~ \"rust\""));
        assert!(m("views >= 10 && version = 3"));
        assert!(!m("views > 10"));
        assert!(m("rating = null"));
        assert!(m("rating != 2"));
        assert!(!m("rating < 2"));
        assert!(m("views in [1, 10]"));
        assert!(m("!(views in [1])"));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn literal() -> impl Strategy<Value = Literal> {
            prop_oneof![
                Just(Literal::Null),
                any::<bool>().prop_map(Literal::Bool),
                any::<i64>().prop_map(Literal::Int),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Literal::Float),
                ".*".prop_map(Literal::Str),
            ]
        }

        fn ident() -> impl Strategy<Value = String> {
            "[a-z_][a-z0-9_]{0,8}".prop_filter("keyword", |s| {
                !matches!(s.as_str(), "true" | "false" | "null" | "in")
            })
        }

        fn expr() -> impl Strategy<Value = Expr> {
            let ops = prop::sample::select(vec![
                CmpOp::Eq,
                CmpOp::Ne,
                CmpOp::Gt,
                CmpOp::Ge,
                CmpOp::Lt,
                CmpOp::Le,
                CmpOp::Contains,
            ]);
            let leaf = prop_oneof![
                (ident(), ops, literal()).prop_map(|(field, op, value)| Expr::Cmp {
                    field,
                    op,
                    value,
                    pos: 0
                }),
                (ident(), prop::collection::vec(literal(), 1..4)).prop_map(|(field, values)| {
                    Expr::In {
                        field,
                        values,
                        pos: 0,
                    }
                }),
            ];
            leaf.prop_recursive(4, 24, 2, |inner| {
                prop_oneof![
                    (inner.clone(), inner.clone())
                        .prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
                    (inner.clone(), inner.clone())
                        .prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
                    inner.prop_map(|a| Expr::Not(Box::new(a))),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_input_never_panics(s in "\\PC{0,64}") {
                let _ = parse_filter(&s);
            }

            #[test]
            fn filter_like_input_never_panics(s in "[a-z0-9 =!<>~&|()\\[\\],.\"'-]{0,48}") {
                if let Ok(e) = parse_filter(&s) {
                    // Whatever parses prints to text that parses to the same tree.
                    let again = parse_filter(&e.to_string()).expect("printed filter parses");
                    prop_assert_eq!(strip(again), strip(e));
                }
            }

            #[test]
            fn print_then_parse_round_trips(e in expr()) {
                let text = e.to_string();
                let back = parse_filter(&text).map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
                prop_assert_eq!(strip(back), e);
            }
        }
    }
}
