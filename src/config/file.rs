//! `--config-file`: etcd's YAML configuration file, read as the flags it names.
//!
//! As in etcd, a configuration file replaces the command line and the environment: every
//! top-level `key: value` becomes `--key value`. Keys Cairn does not know (etcd options it
//! has no use for yet) are reported and skipped, so an etcd deployment's file still starts a
//! member; nested sections (TLS settings) are reported the same way. Only the flat subset of
//! YAML that etcd's sample file uses is read: scalars, optionally quoted, and `#` comments.

use std::fmt;

/// A problem in a configuration file, with its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {reason}")]
pub struct ConfigFileError {
    pub path: String,
    pub line: usize,
    pub reason: String,
}

/// What a file said: flags to apply and what was skipped (for a warning each).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigFile {
    /// `(flag name, value)` in file order.
    pub settings: Vec<(String, String)>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub line: usize,
    pub key: String,
    pub why: &'static str,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {:?} {}", self.line, self.key, self.why)
    }
}

/// Parses the text of a configuration file. `known` says which keys are flags.
pub fn parse(
    path: &str,
    text: &str,
    known: &dyn Fn(&str) -> bool,
) -> Result<ConfigFile, ConfigFileError> {
    let error = |line: usize, reason: String| ConfigFileError {
        path: path.to_string(),
        line,
        reason,
    };
    let mut file = ConfigFile::default();
    let mut in_section = false;
    for (number, raw) in text.lines().enumerate() {
        let line_no = number + 1;
        let line = strip_comment(raw);
        if line.trim().is_empty() || line.trim() == "---" {
            continue;
        }
        if line.starts_with([' ', '\t', '-']) {
            if in_section {
                continue;
            }
            return Err(error(line_no, "indented line outside a section".into()));
        }
        let (key, value) = line.split_once(':').ok_or_else(|| {
            error(
                line_no,
                format!("expected `key: value`, found {:?}", line.trim()),
            )
        })?;
        let key = key.trim();
        let value = value.trim();
        in_section = value.is_empty();
        if value.is_empty() {
            file.skipped.push(Skipped {
                line: line_no,
                key: key.to_string(),
                why: "is a section or empty; not supported, skipped",
            });
            continue;
        }
        let value = unquote(value).map_err(|reason| error(line_no, reason))?;
        if value == "~" || value == "null" {
            continue;
        }
        if !known(key) {
            file.skipped.push(Skipped {
                line: line_no,
                key: key.to_string(),
                why: "is not a Cairn setting; skipped",
            });
            continue;
        }
        file.settings.push((key.to_string(), value));
    }
    Ok(file)
}

/// Drops a `#` comment that is not inside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if i == 0 || line[..i].ends_with([' ', '\t']) => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(value: &str) -> Result<String, String> {
    for quote in ['\'', '"'] {
        if let Some(inner) = value.strip_prefix(quote) {
            return inner
                .strip_suffix(quote)
                .map(str::to_string)
                .ok_or_else(|| format!("unterminated quote in {value:?}"));
        }
    }
    Ok(value.to_string())
}

/// The command line a file stands for (program name first).
pub fn to_args(program: &str, file: &ConfigFile) -> Vec<String> {
    let mut args = vec![program.to_string()];
    for (key, value) in &file.settings {
        args.push(format!("--{key}={value}"));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(key: &str) -> bool {
        [
            "name",
            "data-dir",
            "listen-client-urls",
            "heartbeat-interval",
            "initial-cluster-state",
        ]
        .contains(&key)
    }

    #[test]
    fn etcd_sample_file_reads_as_flags() {
        let text = "\
# This is the configuration file for the etcd server.
name: 'infra1'
data-dir: /var/lib/cairn   # where data lives
heartbeat-interval: 100
listen-client-urls: \"http://127.0.0.1:2379,http://10.0.0.1:2379\"
enable-v2: true
initial-cluster-state: 'new'
client-transport-security:
  cert-file:
  client-cert-auth: false
wal-dir:
";
        let file = parse("etcd.yml", text, &known).unwrap();
        assert_eq!(
            file.settings,
            [
                ("name".to_string(), "infra1".to_string()),
                ("data-dir".to_string(), "/var/lib/cairn".to_string()),
                ("heartbeat-interval".to_string(), "100".to_string()),
                (
                    "listen-client-urls".to_string(),
                    "http://127.0.0.1:2379,http://10.0.0.1:2379".to_string()
                ),
                ("initial-cluster-state".to_string(), "new".to_string()),
            ]
        );
        let skipped: Vec<&str> = file.skipped.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            skipped,
            ["enable-v2", "client-transport-security", "wal-dir"]
        );
        assert_eq!(to_args("cairn", &file)[1], "--name=infra1");
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let err = parse("c.yml", "name: a\njust words\n", &known).unwrap_err();
        assert_eq!(
            (err.line, err.to_string().starts_with("c.yml:2:")),
            (2, true)
        );
        let err = parse("c.yml", "name: 'open\n", &known).unwrap_err();
        assert!(err.reason.contains("unterminated"), "{err}");
        let err = parse("c.yml", "  indented: x\n", &known).unwrap_err();
        assert_eq!(err.line, 1);
    }
}
