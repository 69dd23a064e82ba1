//! Java `.properties` text, read as `java.util.Properties.load` reads it, so that the files
//! Java clients are configured with load unchanged: `key=value`, `key: value` or
//! `key value`; `#` and `!` comment lines; blank lines; a line ending in an odd number of
//! backslashes continues on the next (whose leading blanks are dropped); escapes `\t`, `\n`,
//! `\r`, `\f`, `\uXXXX`, and `\` before any other character for that character.

use crate::error::Error;

/// The `(key, value)` pairs of `text`, in order (a later pair for the same key wins when
/// they are applied in order, as in `Properties`).
pub(super) fn parse(text: &str) -> Result<Vec<(String, String)>, Error> {
    let mut pairs = Vec::new();
    // `\r\n`, `\r` and `\n` all end a line.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines = text.split('\n').enumerate();
    while let Some((index, line)) = lines.next() {
        let first = line.trim_start_matches(is_blank);
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = String::from(first);
        while ends_in_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start_matches(is_blank)),
                None => break,
            }
        }
        let line_number = index + 1;
        let (raw_key, raw_value) = split_key(&logical);
        let key = unescape(raw_key).ok_or_else(|| malformed(raw_key, line_number, "in the key"))?;
        let value =
            unescape(raw_value).ok_or_else(|| malformed(&key, line_number, "in the value"))?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Space, tab and form feed: what `Properties` skips around keys and separators.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{c}')
}

fn ends_in_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Splits a logical line at the first unescaped `=`, `:` or blank; blanks around the
/// separator, and one `=` or `:` after blanks, belong to neither side.
fn split_key(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut end = line.len();
    for (at, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || is_blank(c) {
            end = at;
            break;
        }
    }
    let key = &line[..end];
    let mut rest = line[end..].trim_start_matches(is_blank);
    if let Some(stripped) = rest.strip_prefix(['=', ':']) {
        rest = stripped.trim_start_matches(is_blank);
    }
    (key, rest)
}

/// Resolves escapes; `None` for a malformed `\uXXXX`.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()?;
                // A lone surrogate half (Java strings allow them) becomes U+FFFD.
                out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Some(out)
}

fn malformed(key: &str, line: usize, place: &str) -> Error {
    Error::config(
        key,
        format!("malformed \\uXXXX escape {place} (properties line {line})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).expect("parses")
    }

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_string(), value.to_string())
    }

    #[test]
    fn separators_comments_and_blank_lines_as_java_reads_them() {
        let text = "# a comment\n\
                    ! another\n\
                    \n   \t\n\
                    linger.ms=5\n\
                    acks : all\n\
                    \tclient.id   franzy-app\n\
                    compression.type =  lz4  \n\
                    interceptor.classes=\n\
                    group.id\n\
                    url=http://host:8081/a=b\n";
        assert_eq!(
            pairs(text),
            vec![
                pair("linger.ms", "5"),
                pair("acks", "all"),
                pair("client.id", "franzy-app"),
                pair("compression.type", "lz4  "),
                pair("interceptor.classes", ""),
                pair("group.id", ""),
                pair("url", "http://host:8081/a=b"),
            ]
        );
    }

    #[test]
    fn continuations_escapes_and_crlf() {
        let text = "bootstrap.servers=a:1,\\\r\n      b:2,\\\n\tc:3\r\n\
                    odd=ends\\\\\n\
                    key\\=with\\:separators=v\n\
                    unicode=caf\\u00e9 \\t tab\n\
                    # comment \\\n\
                    after.comment=1\n";
        assert_eq!(
            pairs(text),
            vec![
                pair("bootstrap.servers", "a:1,b:2,c:3"),
                pair("odd", "ends\\"),
                pair("key=with:separators", "v"),
                pair("unicode", "café \t tab"),
                pair("after.comment", "1"),
            ]
        );
        // A continuation at the end of the text ends the value.
        assert_eq!(pairs("a=b\\"), vec![pair("a", "b")]);
    }

    #[test]
    fn a_malformed_unicode_escape_names_the_key_and_line() {
        let err = parse("ok=1\nbad=\\u12x4\n").expect_err("malformed");
        assert!(
            matches!(&err, Error::Config { key, reason } if key == "bad" && reason.contains("line 2")),
            "{err}"
        );
    }
}
