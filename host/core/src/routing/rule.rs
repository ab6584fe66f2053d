//! GOST's routing rule language (go-gost/x routing/rules, built on
//! vulcand/predicate): calls like `Host("example.com")` joined with `&&`,
//! `||`, `!` and parentheses, string arguments in Go's double-quoted or
//! back-quoted form.

/// A parsed rule before its matchers are compiled.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Call { name: String, args: Vec<String> },
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// Where and why a rule does not parse; `pos` is a byte offset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("at byte {pos}: {msg}")]
pub struct SyntaxError {
    pub pos: usize,
    pub msg: String,
}

pub fn parse(rule: &str) -> Result<Expr, SyntaxError> {
    let mut p = Parser { src: rule, pos: 0 };
    let e = p.or()?;
    p.skip_ws();
    if p.pos < rule.len() {
        return Err(p.err(format!("unexpected {:?}", p.rest_char())));
    }
    Ok(e)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, msg: String) -> SyntaxError {
        SyntaxError { pos: self.pos, msg }
    }

    fn rest_char(&self) -> char {
        self.src[self.pos..].chars().next().unwrap_or(' ')
    }

    fn skip_ws(&mut self) {
        let rest = &self.src[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// Consumes `tok` after optional whitespace when it is next.
    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.src[self.pos..].starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let e = self.or()?;
            if !self.eat(")") {
                return Err(self.err("expected ')'".into()));
            }
            return Ok(e);
        }
        self.call()
    }

    fn call(&mut self) -> Result<Expr, SyntaxError> {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.src[start..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(if rest.is_empty() {
                self.err("expected a matcher call, found the end of the rule".into())
            } else {
                self.err(format!(
                    "expected a matcher call, found {:?}",
                    self.rest_char()
                ))
            });
        }
        let name = rest[..len].to_string();
        self.pos += len;
        if !self.eat("(") {
            return Err(self.err(format!("expected '(' after {name}")));
        }
        let mut args = Vec::new();
        if !self.eat(")") {
            loop {
                args.push(self.string()?);
                if self.eat(")") {
                    break;
                }
                if !self.eat(",") {
                    return Err(self.err(format!("expected ',' or ')' in the arguments of {name}")));
                }
            }
        }
        Ok(Expr::Call { name, args })
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.skip_ws();
        let start = self.pos;
        let mut chars = self.src[start..].char_indices();
        let quote = match chars.next() {
            Some((_, q @ ('"' | '`'))) => q,
            _ => return Err(self.err("expected a quoted string argument".into())),
        };
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => {
                    self.pos = start + i + 1;
                    return Ok(out);
                }
                '\\' if quote == '"' => {
                    let (_, e) = chars
                        .next()
                        .ok_or_else(|| self.err("unterminated string".into()))?;
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '\\' | '"' | '\'' => e,
                        other => {
                            self.pos = start + i;
                            return Err(self.err(format!("unknown escape \\{other}")));
                        }
                    });
                }
                '\n' if quote == '"' => break,
                c => out.push(c),
            }
        }
        Err(self.err("unterminated string".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[&str]) -> Expr {
        Expr::Call {
            name: name.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn precedence_and_grouping() {
        let e = parse(r#"Host("a") || Host("b") && !Path(`/x`)"#).unwrap();
        assert_eq!(
            e,
            Expr::Or(
                Box::new(call("Host", &["a"])),
                Box::new(Expr::And(
                    Box::new(call("Host", &["b"])),
                    Box::new(Expr::Not(Box::new(call("Path", &["/x"]))))
                ))
            )
        );
        let e = parse(r#"( Host("a")||Host("b") )&&Header("X-A", "1\"2")"#).unwrap();
        assert_eq!(
            e,
            Expr::And(
                Box::new(Expr::Or(
                    Box::new(call("Host", &["a"])),
                    Box::new(call("Host", &["b"]))
                )),
                Box::new(call("Header", &["X-A", "1\"2"]))
            )
        );
    }

    #[test]
    fn errors_name_the_position() {
        let bad = [
            ("", 0, "end of the rule"),
            ("Host(\"a\"", 8, "expected ',' or ')'"),
            ("Host(a)", 5, "quoted string"),
            ("Host(\"a\") &&", 12, "end of the rule"),
            ("Host(\"a\") Path(\"/\")", 10, "unexpected 'P'"),
            ("(Host(\"a\")", 10, "expected ')'"),
            ("Host", 4, "expected '('"),
            ("Host(\"a)", 5, "unterminated"),
        ];
        for (rule, pos, msg) in bad {
            let e = parse(rule).unwrap_err();
            assert_eq!(e.pos, pos, "{rule}: {e}");
            assert!(e.msg.contains(msg), "{rule}: {e}");
        }
    }
}
