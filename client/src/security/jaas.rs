//! `sasl.jaas.config`: one JAAS login module entry, read as Kafka's `JaasConfig` reads it
//! (a `StreamTokenizer`): `<class> <flag> [<key>=<value>]... ;`, values bare words or
//! double-quoted strings with backslash escapes, `//` and `/* */` comments.

/// A parsed login module entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoginModule {
    /// The class name, e.g. `org.apache.kafka.common.security.plain.PlainLoginModule`.
    pub class: String,
    /// The options, in order.
    pub options: Vec<(String, String)>,
}

impl LoginModule {
    /// The option `key`, if given.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The class name's last segment (`PlainLoginModule`).
    pub fn simple_name(&self) -> &str {
        self.class.rsplit('.').next().unwrap_or(&self.class)
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                out.push(Token::Equals);
            }
            ';' => {
                chars.next();
                out.push(Token::Semicolon);
            }
            '"' | '\'' => {
                let quote = c;
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted value".into()),
                        Some(c) if c == quote => break,
                        Some('\\') => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some('t') => value.push('\t'),
                            Some('r') => value.push('\r'),
                            Some(other) => value.push(other),
                            None => return Err("unterminated quoted value".into()),
                        },
                        Some(c) => value.push(c),
                    }
                }
                out.push(Token::Quoted(value));
            }
            '/' if text_after(&chars, "//") => while chars.next().is_some_and(|c| c != '\n') {},
            '/' if text_after(&chars, "/*") => {
                chars.next();
                chars.next();
                let mut previous = ' ';
                loop {
                    match chars.next() {
                        None => return Err("unterminated comment".into()),
                        Some('/') if previous == '*' => break,
                        Some(c) => previous = c,
                    }
                }
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '=' | ';' | '"' | '\'') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

fn text_after(chars: &std::iter::Peekable<std::str::Chars<'_>>, prefix: &str) -> bool {
    chars.clone().take(prefix.len()).eq(prefix.chars())
}

/// Parses the text of `sasl.jaas.config`: exactly one login module, as Kafka requires of
/// clients.
pub(crate) fn parse(text: &str) -> Result<LoginModule, String> {
    let tokens = tokens(text)?;
    let mut iter = tokens.into_iter().peekable();
    let class = match iter.next() {
        Some(Token::Word(class)) => class,
        _ => return Err("expected a login module class name".into()),
    };
    match iter.next() {
        Some(Token::Word(flag))
            if ["required", "requisite", "sufficient", "optional"]
                .iter()
                .any(|f| f.eq_ignore_ascii_case(&flag)) => {}
        _ => {
            return Err(format!(
                "expected a control flag (required, requisite, sufficient, optional) after {class}"
            ))
        }
    }
    let mut options = Vec::new();
    loop {
        match iter.next() {
            Some(Token::Semicolon) => break,
            Some(Token::Word(key)) => {
                if iter.next() != Some(Token::Equals) {
                    return Err(format!("expected '=' after option {key}"));
                }
                let value = match iter.next() {
                    Some(Token::Word(value) | Token::Quoted(value)) => value,
                    _ => return Err(format!("expected a value for option {key}")),
                };
                options.push((key, value));
            }
            None => return Err("login module entry does not end with ';'".into()),
            Some(_) => return Err("expected an option name".into()),
        }
    }
    if iter.next().is_some() {
        return Err("more than one login module: a client takes exactly one".into());
    }
    Ok(LoginModule { class, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kafkas_login_modules() {
        let plain = parse(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="a \"quoted\" secret";"#,
        )
        .expect("plain");
        assert_eq!(plain.simple_name(), "PlainLoginModule");
        assert_eq!(plain.option("username"), Some("alice"));
        assert_eq!(plain.option("password"), Some("a \"quoted\" secret"));
        let oauth = parse(
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule Required\n \
             unsecuredLoginStringClaim_sub=thePrincipal /* who */ unsecuredLoginLifetimeSeconds=60 ;",
        )
        .expect("oauth");
        assert_eq!(
            oauth.option("unsecuredLoginStringClaim_sub"),
            Some("thePrincipal")
        );
        assert_eq!(oauth.option("unsecuredLoginLifetimeSeconds"), Some("60"));
    }

    #[test]
    fn refuses_what_kafka_refuses() {
        for bad in [
            "",
            "Module",
            "Module required",
            "Module maybe;",
            "Module required user;",
            "Module required user=;",
            "Module required user=\"x;",
            "Module required; Other required;",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
