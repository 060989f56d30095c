//! Splits T-SQL text into tokens: bare, `[bracketed]` and `"quoted"` identifiers,
//! `@variables`, `@@functions`, `'strings'`/`N'strings'`, numbers, `0x` binary
//! literals and operators, skipping `--` and `/* */` comments.

use super::error;
use crate::mssql::types::SqlError;

/// One token of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A bare word (keyword or identifier); `quoted` when written `[x]` or `"x"`,
    /// which can never be a keyword.
    Word { text: String, quoted: bool },
    /// `@name` (parameter or variable), text includes the `@`.
    Var(String),
    /// `@@NAME`, text includes the `@@`.
    Global(String),
    /// `'text'` (`national` for `N'text'`).
    Str { text: String, national: bool },
    /// A number literal as written.
    Num(String),
    /// `0x…`
    Bin(Vec<u8>),
    /// Punctuation and operators: `( ) , . ; :: = <> != < > <= >= + - * / %`.
    Sym(&'static str),
}

/// A token with the line it starts on.
#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub line: u32,
}

impl Tok {
    /// How SQL Server names this token in `Incorrect syntax near '…'`.
    pub fn describe(&self) -> String {
        match self {
            Tok::Word { text, .. } => text.clone(),
            Tok::Var(v) | Tok::Global(v) => v.clone(),
            Tok::Str { text, .. } => text.clone(),
            Tok::Num(n) => n.clone(),
            Tok::Bin(b) => {
                let mut s = String::from("0x");
                for x in b {
                    s.push_str(&format!("{x:02X}"));
                }
                s
            }
            Tok::Sym(s) => (*s).to_string(),
        }
    }

    /// Whether this is the bare keyword `kw` (case-insensitive).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word { text, quoted: false } if text.eq_ignore_ascii_case(kw))
    }
}

/// Tokenizes a batch.
pub fn tokenize(sql: &str) -> Result<Vec<Token>, SqlError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line: u32 = 1;
    let n = chars.len();
    while i < n {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '-' && i + 1 < n && chars[i + 1] == '-' {
            while i < n && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && i + 1 < n && chars[i + 1] == '*' {
            let mut depth = 1;
            i += 2;
            while i < n && depth > 0 {
                if chars[i] == '\n' {
                    line += 1;
                }
                if chars[i] == '/' && i + 1 < n && chars[i + 1] == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && i + 1 < n && chars[i + 1] == '/' {
                    depth -= 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
            if depth > 0 {
                return Err(with_line(
                    SqlError::new(113, 15, "Missing end comment mark '*/'."),
                    line,
                ));
            }
            continue;
        }
        let start_line = line;
        let push = |out: &mut Vec<Token>, tok: Tok| out.push(Token { tok, line: start_line });
        // N'…'
        if (c == 'N' || c == 'n') && i + 1 < n && chars[i + 1] == '\'' {
            let (text, next, lines) = read_string(&chars, i + 1, start_line)?;
            line = lines;
            i = next;
            push(&mut out, Tok::Str { text, national: true });
            continue;
        }
        if c == '\'' {
            let (text, next, lines) = read_string(&chars, i, start_line)?;
            line = lines;
            i = next;
            push(&mut out, Tok::Str { text, national: false });
            continue;
        }
        if c == '[' {
            let mut text = String::new();
            i += 1;
            loop {
                if i >= n {
                    return Err(with_line(
                        SqlError::new(
                            105,
                            15,
                            format!("Unclosed quotation mark after the character string '{text}'."),
                        ),
                        start_line,
                    ));
                }
                if chars[i] == ']' {
                    if i + 1 < n && chars[i + 1] == ']' {
                        text.push(']');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                text.push(chars[i]);
                i += 1;
            }
            push(&mut out, Tok::Word { text, quoted: true });
            continue;
        }
        if c == '"' {
            let mut text = String::new();
            i += 1;
            while i < n && chars[i] != '"' {
                text.push(chars[i]);
                i += 1;
            }
            i += 1;
            push(&mut out, Tok::Word { text, quoted: true });
            continue;
        }
        if c == '0' && i + 1 < n && (chars[i + 1] == 'x' || chars[i + 1] == 'X') {
            i += 2;
            let mut hex = String::new();
            while i < n && chars[i].is_ascii_hexdigit() {
                hex.push(chars[i]);
                i += 1;
            }
            if hex.len() % 2 == 1 {
                hex.insert(0, '0');
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .filter_map(|k| u8::from_str_radix(&hex[k..k + 2], 16).ok())
                .collect();
            push(&mut out, Tok::Bin(bytes));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && i + 1 < n && chars[i + 1].is_ascii_digit()) {
            let mut text = String::new();
            while i < n && (chars[i].is_ascii_digit() || chars[i] == '.') {
                text.push(chars[i]);
                i += 1;
            }
            if i < n && (chars[i] == 'e' || chars[i] == 'E') {
                text.push('e');
                i += 1;
                if i < n && (chars[i] == '+' || chars[i] == '-') {
                    text.push(chars[i]);
                    i += 1;
                }
                while i < n && chars[i].is_ascii_digit() {
                    text.push(chars[i]);
                    i += 1;
                }
            }
            push(&mut out, Tok::Num(text));
            continue;
        }
        if c == '@' {
            let global = i + 1 < n && chars[i + 1] == '@';
            let mut text = String::from(if global { "@@" } else { "@" });
            i += if global { 2 } else { 1 };
            while i < n && is_ident_char(chars[i]) {
                text.push(chars[i]);
                i += 1;
            }
            push(&mut out, if global { Tok::Global(text) } else { Tok::Var(text) });
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '#' {
            let mut text = String::new();
            while i < n && is_ident_char(chars[i]) {
                text.push(chars[i]);
                i += 1;
            }
            push(&mut out, Tok::Word { text, quoted: false });
            continue;
        }
        let two: String = chars[i..(i + 2).min(n)].iter().collect();
        let sym: Option<&'static str> = match two.as_str() {
            "<>" => Some("<>"),
            "!=" => Some("!="),
            "<=" => Some("<="),
            ">=" => Some(">="),
            "::" => Some("::"),
            _ => None,
        };
        if let Some(s) = sym {
            i += 2;
            push(&mut out, Tok::Sym(s));
            continue;
        }
        let one: Option<&'static str> = match c {
            '(' => Some("("),
            ')' => Some(")"),
            ',' => Some(","),
            '.' => Some("."),
            ';' => Some(";"),
            '=' => Some("="),
            '<' => Some("<"),
            '>' => Some(">"),
            '+' => Some("+"),
            '-' => Some("-"),
            '*' => Some("*"),
            '/' => Some("/"),
            '%' => Some("%"),
            _ => None,
        };
        match one {
            Some(s) => {
                i += 1;
                push(&mut out, Tok::Sym(s));
            }
            None => return Err(with_line(error::syntax_near(&c.to_string()), start_line)),
        }
    }
    Ok(out)
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '#' || c == '@'
}

fn read_string(chars: &[char], quote: usize, mut line: u32) -> Result<(String, usize, u32), SqlError> {
    let mut i = quote + 1;
    let mut text = String::new();
    let start_line = line;
    loop {
        if i >= chars.len() {
            return Err(with_line(
                SqlError::new(
                    105,
                    15,
                    format!("Unclosed quotation mark after the character string '{text}'."),
                ),
                start_line,
            ));
        }
        let c = chars[i];
        if c == '\'' {
            if i + 1 < chars.len() && chars[i + 1] == '\'' {
                text.push('\'');
                i += 2;
                continue;
            }
            return Ok((text, i + 1, line));
        }
        if c == '\n' {
            line += 1;
        }
        text.push(c);
        i += 1;
    }
}

/// Sets the line an error is reported at.
pub fn with_line(mut e: SqlError, line: u32) -> SqlError {
    e.line = line;
    e
}
