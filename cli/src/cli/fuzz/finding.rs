//! Findings as replayable files.
//!
//! A finding file is text, one `key: value` a line, frames in hex (size prefix included):
//!
//! ```text
//! # franzy fuzz finding
//! kind: closed-without-response
//! detail: Metadata v12: the connection closed without a response
//! seed: 42
//! broker: 1
//! deadline-ms: 5000
//! minimised: yes
//! before: 0000001a00120003...        (zero or more: the conversation before, in order)
//! request: 0000002c00030000...       (the request that found it)
//! ```
//!
//! `broker` is the node id of the broker that received the request (-1: the bootstrap).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The kind's short name (`FindingKind::name`).
    pub kind: String,
    /// What was seen, for people.
    pub detail: String,
    /// The run's seed.
    pub seed: u64,
    /// Node id of the broker (-1: the bootstrap).
    pub broker: i32,
    /// The deadline the run used, in milliseconds.
    pub deadline_ms: u64,
    /// Whether the conversation and request were minimised (and still reproduce).
    pub minimised: bool,
    /// The requests sent on the connection before, in order (frames with size prefix).
    pub before: Vec<Vec<u8>>,
    /// The request that found it (frame with size prefix); empty for findings that no one
    /// request caused (a broker that stopped accepting connections).
    pub request: Vec<u8>,
}

impl Finding {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# franzy fuzz finding: replay with `franzy fuzz --replay FILE -b BOOTSTRAP`\n",
        );
        let _ = writeln!(out, "kind: {}", self.kind);
        let _ = writeln!(out, "detail: {}", self.detail.replace('\n', " "));
        let _ = writeln!(out, "seed: {}", self.seed);
        let _ = writeln!(out, "broker: {}", self.broker);
        let _ = writeln!(out, "deadline-ms: {}", self.deadline_ms);
        let _ = writeln!(
            out,
            "minimised: {}",
            if self.minimised { "yes" } else { "no" }
        );
        for frame in &self.before {
            let _ = writeln!(out, "before: {}", hex(frame));
        }
        let _ = writeln!(out, "request: {}", hex(&self.request));
        out
    }

    /// Reads a file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut finding = Finding {
            kind: String::new(),
            detail: String::new(),
            seed: 0,
            broker: -1,
            deadline_ms: 5_000,
            minimised: false,
            before: Vec::new(),
            request: Vec::new(),
        };
        let mut has_request = false;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: not `key: value`", number + 1))?;
            let value = value.trim();
            let bad = |what: &str| format!("line {}: {what} {value:?}", number + 1);
            match key.trim() {
                "kind" => finding.kind = value.to_string(),
                "detail" => finding.detail = value.to_string(),
                "seed" => finding.seed = value.parse().map_err(|_| bad("seed"))?,
                "broker" => finding.broker = value.parse().map_err(|_| bad("broker"))?,
                "deadline-ms" => {
                    finding.deadline_ms = value.parse().map_err(|_| bad("deadline"))?
                }
                "minimised" => finding.minimised = value == "yes",
                "before" => finding.before.push(unhex(value).ok_or_else(|| bad("hex"))?),
                "request" => {
                    finding.request = unhex(value).ok_or_else(|| bad("hex"))?;
                    has_request = true;
                }
                other => return Err(format!("line {}: unknown key {other:?}", number + 1)),
            }
        }
        if finding.kind.is_empty() || !has_request {
            return Err("a finding needs `kind:` and `request:` lines".into());
        }
        Ok(finding)
    }

    /// Writes the finding under `dir` as `NNN-KIND-API.finding`; returns the path.
    pub fn save(&self, dir: &Path, index: usize, api: &str) -> Result<PathBuf, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{index:03}-{}-{api}.finding", self.kind));
        std::fs::write(&path, self.to_text()).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_survive_their_file() {
        let finding = Finding {
            kind: "hang".into(),
            detail: "ListOffsets v9: no answer\nin 5s".into(),
            seed: 7,
            broker: 2,
            deadline_ms: 1500,
            minimised: true,
            before: vec![vec![0, 0, 0, 1, 0xff], vec![]],
            request: vec![0, 0, 0, 2, 0xab, 0xcd],
        };
        let text = finding.to_text();
        let read = Finding::parse(&text).expect("parses");
        assert_eq!(read.detail, "ListOffsets v9: no answer in 5s");
        assert_eq!(
            Finding {
                detail: finding.detail.replace('\n', " "),
                ..finding
            },
            read
        );
        assert!(Finding::parse("kind: hang\n").is_err());
        assert!(Finding::parse("kind: hang\nrequest: abc\n").is_err());
    }
}
