//! `franzy consume -f FORMAT`: kcat's output format strings.
//!
//! A format is literal text with tokens, parsed once at startup into a list of pieces that
//! each record is written through. The tokens are kcat's (`kcat -h`, format.c):
//!
//! | token | output |
//! |-------|--------|
//! | `%s`  | the value (nothing for a null value, `NULL` with `-Z`) |
//! | `%v`  | the same as `%s` (franzy's alias; kcat has no `%v`) |
//! | `%S`  | the value's length in bytes, `-1` for a null value |
//! | `%R`  | the same length as a 4-byte big-endian signed integer (binary) |
//! | `%k`  | the key (nothing for a null key, `NULL` with `-Z`) |
//! | `%K`  | the key's length in bytes, `-1` for a null key |
//! | `%t`  | the topic |
//! | `%p`  | the partition |
//! | `%o`  | the offset |
//! | `%T`  | the timestamp, milliseconds since the epoch (`-1` when the producer set none) |
//! | `%h`  | the headers as `name=value` separated by commas, `NULL` for a null header value |
//! | `%%`  | a `%` |
//!
//! In the literal text, `\n`, `\r` and `\t` are newline, carriage return and tab, `\xH` or
//! `\xHH` is the byte with that hex value, `\\` is a backslash, and a backslash before any
//! other character stands for that character, as in kcat. Unlike kcat, a backslash before a
//! digit (kcat reads a decimal or octal number there) is an error, pointing to `\xHH`; and
//! `-Z` prints `NULL` only for a null key or value, not for an empty one as kcat does.
//! Any other `%` token, or a `%` that ends the format, is an error naming it.

use std::io::{self, Write};

use franzy::consumer::ConsumerRecord;

/// What `-Z` prints for a null key or value.
const NULL_TEXT: &[u8] = b"NULL";

/// A parsed output format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pieces: Vec<Piece>,
    null_as_text: bool,
}

/// One piece of a format: literal bytes or a record field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Value,
    ValueLength,
    ValueLengthBinary,
    Key,
    KeyLength,
    Topic,
    Partition,
    Offset,
    Timestamp,
    Headers,
}

impl Format {
    /// Parses a kcat format string; the error names the token or escape at fault.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = spec.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let piece = match chars.next() {
                        Some('%') => {
                            literal.push(b'%');
                            continue;
                        }
                        Some('s' | 'v') => Piece::Value,
                        Some('S') => Piece::ValueLength,
                        Some('R') => Piece::ValueLengthBinary,
                        Some('k') => Piece::Key,
                        Some('K') => Piece::KeyLength,
                        Some('t') => Piece::Topic,
                        Some('p') => Piece::Partition,
                        Some('o') => Piece::Offset,
                        Some('T') => Piece::Timestamp,
                        Some('h') => Piece::Headers,
                        Some(other) => {
                            return Err(format!(
                                "unknown token %{other} in format {spec:?} (known: %s %v %S %R \
                                 %k %K %t %p %o %T %h %%)"
                            ))
                        }
                        None => {
                            return Err(format!(
                                "format {spec:?} ends with a lone % (write %% for a percent sign)"
                            ))
                        }
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(piece);
                }
                // As in kcat, a `%` always starts a token, so a backslash before one (or at
                // the end) is a backslash.
                '\\' => match chars.peek().copied() {
                    None | Some('%') => literal.push(b'\\'),
                    Some(escaped) => {
                        chars.next();
                        match escaped {
                            'n' => literal.push(b'\n'),
                            'r' => literal.push(b'\r'),
                            't' => literal.push(b'\t'),
                            'x' => {
                                let mut value: Option<u8> = None;
                                for _ in 0..2 {
                                    let Some(digit) = chars.peek().and_then(|d| d.to_digit(16))
                                    else {
                                        break;
                                    };
                                    chars.next();
                                    let digit = u8::try_from(digit).expect("a hex digit is < 16");
                                    value = Some(value.unwrap_or(0) * 16 + digit);
                                }
                                let value = value.ok_or_else(|| {
                                    format!("escape \\x in format {spec:?} needs hex digits")
                                })?;
                                literal.push(value);
                            }
                            digit if digit.is_ascii_digit() => {
                                return Err(format!(
                                    "escape \\{digit} in format {spec:?} is not supported; \
                                     write a byte as \\xHH"
                                ))
                            }
                            other => {
                                let mut utf8 = [0; 4];
                                literal.extend_from_slice(other.encode_utf8(&mut utf8).as_bytes());
                            }
                        }
                    }
                },
                other => {
                    let mut utf8 = [0; 4];
                    literal.extend_from_slice(other.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self {
            pieces,
            null_as_text: false,
        })
    }

    /// kcat's format when there is no `-f`: the value and a newline, or with `-K DELIM` the
    /// key, the delimiter, the value and a newline.
    pub fn kcat_default(key_delimiter: Option<&[u8]>) -> Self {
        let mut pieces = Vec::new();
        if let Some(delimiter) = key_delimiter {
            pieces.push(Piece::Key);
            pieces.push(Piece::Literal(delimiter.to_vec()));
        }
        pieces.push(Piece::Value);
        pieces.push(Piece::Literal(b"\n".to_vec()));
        Self {
            pieces,
            null_as_text: false,
        }
    }

    /// Prints a null key or value as `NULL` rather than nothing (kcat's `-Z`).
    pub fn null_as_text(mut self, enabled: bool) -> Self {
        self.null_as_text = enabled;
        self
    }

    /// Writes `record` as this format says.
    pub fn write(&self, out: &mut impl Write, record: &ConsumerRecord) -> io::Result<()> {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(bytes) => out.write_all(bytes)?,
                Piece::Value => self.write_nullable(out, record.value.as_deref())?,
                Piece::ValueLength => write!(out, "{}", length(record.value.as_deref()))?,
                Piece::ValueLengthBinary => {
                    let length = i32::try_from(length(record.value.as_deref())).unwrap_or(-1);
                    out.write_all(&length.to_be_bytes())?
                }
                Piece::Key => self.write_nullable(out, record.key.as_deref())?,
                Piece::KeyLength => write!(out, "{}", length(record.key.as_deref()))?,
                Piece::Topic => out.write_all(record.topic.as_bytes())?,
                Piece::Partition => write!(out, "{}", record.partition)?,
                Piece::Offset => write!(out, "{}", record.offset)?,
                Piece::Timestamp => write!(out, "{}", record.timestamp)?,
                Piece::Headers => {
                    for (i, header) in record.headers.iter().enumerate() {
                        if i > 0 {
                            out.write_all(b",")?;
                        }
                        out.write_all(&header.key)?;
                        out.write_all(b"=")?;
                        out.write_all(header.value.as_deref().unwrap_or(NULL_TEXT))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn write_nullable(&self, out: &mut impl Write, bytes: Option<&[u8]>) -> io::Result<()> {
        match bytes {
            Some(bytes) => out.write_all(bytes),
            None if self.null_as_text => out.write_all(NULL_TEXT),
            None => Ok(()),
        }
    }
}

/// kcat's length of a key or value: `-1` for null.
fn length(bytes: Option<&[u8]>) -> i64 {
    bytes.map_or(-1, |b| i64::try_from(b.len()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use franzy::consumer::{Header, TimestampType};

    use super::*;

    fn record(key: Option<&'static str>, value: Option<&'static str>) -> ConsumerRecord {
        let mut record = ConsumerRecord::new("orders", 3, 42)
            .with_timestamp(1_700_000_000_123, TimestampType::CreateTime)
            .with_headers(vec![
                Header::new("trace", "abc"),
                Header::null("gone"),
                Header::new("empty", ""),
            ]);
        record.key = key.map(|k| Bytes::from_static(k.as_bytes()));
        record.value = value.map(|v| Bytes::from_static(v.as_bytes()));
        record
    }

    fn render(format: &Format, record: &ConsumerRecord) -> Vec<u8> {
        let mut out = Vec::new();
        format
            .write(&mut out, record)
            .expect("writing to a Vec cannot fail");
        out
    }

    fn render_str(spec: &str, record: &ConsumerRecord) -> String {
        let format = Format::parse(spec).expect("valid format");
        String::from_utf8(render(&format, record)).expect("utf-8 output")
    }

    #[test]
    fn every_kcat_token() {
        let r = record(Some("user-1"), Some("hello"));
        assert_eq!(
            render_str("%t/%p@%o %k=%s %h\\n", &r),
            "orders/3@42 user-1=hello trace=abc,gone=NULL,empty=\n"
        );
        assert_eq!(render_str("%K %S %T", &r), "6 5 1700000000123");
        assert_eq!(render_str("%v|%s", &r), "hello|hello");
        assert_eq!(render_str("100%% %s", &r), "100% hello");
        assert_eq!(render_str("", &r), "");
        assert_eq!(render_str("no tokens", &r), "no tokens");
        let format = Format::parse("%R%s").expect("valid");
        assert_eq!(render(&format, &r), b"\x00\x00\x00\x05hello");
    }

    #[test]
    fn null_and_empty_keys_and_values() {
        let r = record(None, None);
        assert_eq!(render_str("[%k][%s] %K %S", &r), "[][] -1 -1");
        let format = Format::parse("[%k][%s]").expect("valid").null_as_text(true);
        assert_eq!(render(&format, &r), b"[NULL][NULL]");
        // -Z is about null, not empty.
        assert_eq!(render(&format, &record(Some(""), Some(""))), b"[][]");
        assert_eq!(render_str("%K %S", &record(Some(""), Some(""))), "0 0");
        let binary = Format::parse("%R").expect("valid");
        assert_eq!(render(&binary, &r), (-1i32).to_be_bytes());
        let mut no_headers = record(None, Some("v"));
        no_headers.headers.clear();
        assert_eq!(render_str("<%h>", &no_headers), "<>");
    }

    #[test]
    fn escapes_follow_kcat() {
        let r = record(None, Some("v"));
        assert_eq!(render_str("a\\tb\\rc\\n", &r), "a\tb\rc\n");
        assert_eq!(render_str("\\x41\\x7e\\x9", &r), "A~\t");
        assert_eq!(render_str("\\x4g", &r), "\x04g");
        assert_eq!(render_str("a\\\\b", &r), "a\\b");
        assert_eq!(render_str("\\q\\\"", &r), "q\"");
        // A `%` is always a token: the backslash before it stays.
        assert_eq!(render_str("\\%s", &r), "\\v");
        assert_eq!(render_str("end\\", &r), "end\\");
        assert_eq!(render_str("é%s€", &r), "év€");
    }

    #[test]
    fn kcat_default_formats() {
        let r = record(Some("k"), Some("v"));
        assert_eq!(render(&Format::kcat_default(None), &r), b"v\n");
        assert_eq!(render(&Format::kcat_default(Some(b"::")), &r), b"k::v\n");
        let keyless = record(None, Some("v"));
        assert_eq!(render(&Format::kcat_default(Some(b":")), &keyless), b":v\n");
    }

    #[test]
    fn malformed_formats_are_errors_naming_the_fault() {
        for (spec, names) in [
            ("%x", "%x"),
            ("%s %Q\\n", "%Q"),
            ("%é", "%é"),
            ("value %", "lone %"),
            ("%", "lone %"),
            ("\\xZZ", "\\x"),
            ("\\x", "\\x"),
            ("%s\\0", "\\0"),
        ] {
            let error = Format::parse(spec).expect_err(spec);
            assert!(error.contains(names), "{spec:?}: {error}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(spec in ".{0,40}") {
            let _ = Format::parse(&spec);
        }

        #[test]
        fn literal_text_comes_out_unchanged(text in "[^%\\\\]{0,40}") {
            let r = record(None, None);
            proptest::prop_assert_eq!(render_str(&text, &r), text);
        }
    }
}
