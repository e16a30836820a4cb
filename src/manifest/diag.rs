//! Manifest problems that point at the TOML. Each [`Problem`] carries a byte span of the file;
//! [`ManifestError`] renders them all at once as `file:line:col` with the snippet and the span
//! labelled (through miette), or as a versioned JSON shape for editors and CI.
//!
//! Spans of values that deserialised fine (for semantic checks) come from [`Locator`], which
//! walks a span-keeping parse of the same text by key path.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};
use serde::Serialize;

/// One problem in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What is wrong, as a sentence.
    pub message: String,
    /// Bytes of the file the problem is about.
    pub span: Range<usize>,
    /// Short text under the span.
    pub label: String,
    /// How to fix it, when apf can tell.
    pub help: Option<String>,
}

impl Problem {
    pub fn new(message: impl Into<String>, span: Range<usize>) -> Problem {
        Problem { message: message.into(), span, label: String::new(), help: None }
    }

    pub fn label(mut self, label: impl Into<String>) -> Problem {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }
}

/// Every problem found in one manifest.
#[derive(Debug, Clone)]
pub struct ManifestError {
    pub path: PathBuf,
    pub source: String,
    pub problems: Vec<Problem>,
}

/// A line and column, both 1-based, the column counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

pub fn line_col(source: &str, offset: usize) -> LineCol {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    LineCol { line, column: before[line_start..].chars().count() + 1 }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl ManifestError {
    /// `file:line:col: message` for each problem, the form compilers and editors parse.
    pub fn short_lines(&self) -> Vec<String> {
        self.problems
            .iter()
            .map(|p| {
                let at = line_col(&self.source, p.span.start);
                format!("{}:{}:{}: {}", self.path.display(), at.line, at.column, p.message)
            })
            .collect()
    }

    /// The versioned JSON shape of `apf validate --json`.
    pub fn to_json(&self) -> serde_json::Value {
        let problems: Vec<_> = self
            .problems
            .iter()
            .map(|p| {
                let start = line_col(&self.source, p.span.start);
                let end = line_col(&self.source, p.span.end);
                serde_json::json!({
                    "severity": "error",
                    "message": p.message,
                    "label": p.label,
                    "help": p.help,
                    "range": {
                        "start": start, "end": end,
                        "offset": p.span.start, "length": p.span.len(),
                    },
                })
            })
            .collect();
        serde_json::json!({
            "format_version": 1,
            "file": self.path.display().to_string(),
            "valid": false,
            "problems": problems,
        })
    }

    /// One miette report per problem, each with the file's text so the span is drawn.
    pub fn reports(&self) -> Vec<miette::Report> {
        self.problems
            .iter()
            .map(|p| {
                let source = NamedSource::new(self.path.display().to_string(), self.source.clone())
                    .with_language("TOML");
                miette::Report::new(Located { problem: p.clone(), source })
            })
            .collect()
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{} has {n} problem{}", self.path.display(), if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for ManifestError {}

#[derive(Debug)]
struct Located {
    problem: Problem,
    source: NamedSource<String>,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem.message)
    }
}

impl std::error::Error for Located {}

impl Diagnostic for Located {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let label = (!self.problem.label.is_empty()).then(|| self.problem.label.clone());
        let span = self.problem.span.clone();
        Some(Box::new(std::iter::once(LabeledSpan::new(label, span.start, span.len()))))
    }

    fn help(&self) -> Option<Box<dyn fmt::Display + '_>> {
        self.problem.help.as_ref().map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }
}

/// One step of a key path into the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Finds the span of a value by its key path, in a span-keeping parse of the manifest.
pub struct Locator {
    doc: Option<toml_edit::Document<String>>,
}

impl Locator {
    pub fn new(source: &str) -> Locator {
        Locator { doc: toml_edit::Document::parse(source.to_string()).ok() }
    }

    /// The span of the value at `path`, or of its nearest ancestor that exists. Falls back to
    /// the start of the file.
    pub fn value(&self, path: &[Seg]) -> Range<usize> {
        self.find(path, false)
    }

    /// The span of the key at the end of `path` (for "unknown key" and "missing" problems).
    pub fn key(&self, path: &[Seg]) -> Range<usize> {
        self.find(path, true)
    }

    fn find(&self, path: &[Seg], want_key: bool) -> Range<usize> {
        let Some(doc) = &self.doc else { return 0..0 };
        let mut best = 0..0;
        let mut item = Node::Item(doc.as_item());
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let Some((next, key_span)) = item.child(*seg) else { break };
            if let Some(span) = next.span() {
                best = span;
            }
            if last
                && want_key
                && let Some(k) = key_span
            {
                best = k;
            }
            item = next;
        }
        best
    }
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Value(&'a toml_edit::Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    fn span(&self) -> Option<Range<usize>> {
        match *self {
            Node::Item(toml_edit::Item::Value(v)) | Node::Value(v) => v.span(),
            Node::Item(toml_edit::Item::Table(t)) | Node::Table(t) => t.span(),
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => a.span(),
            Node::Item(toml_edit::Item::None) => None,
        }
    }

    fn child(&self, seg: Seg) -> Option<(Node<'a>, Option<Range<usize>>)> {
        match (*self, seg) {
            (Node::Item(toml_edit::Item::Table(t)) | Node::Table(t), Seg::Key(k)) => {
                let (key, item) = t.get_key_value(k)?;
                Some((Node::Item(item), key.span()))
            }
            (Node::Item(toml_edit::Item::Value(v)) | Node::Value(v), Seg::Key(k)) => {
                let table = v.as_inline_table()?;
                let (key, value) = table.get_key_value(k)?;
                let value = value.as_value()?;
                Some((Node::Value(value), key.span()))
            }
            (Node::Item(toml_edit::Item::ArrayOfTables(a)), Seg::Index(i)) => {
                Some((Node::Table(a.get(i)?), None))
            }
            (Node::Item(toml_edit::Item::Value(v)) | Node::Value(v), Seg::Index(i)) => {
                Some((Node::Value(v.as_array()?.get(i)?), None))
            }
            _ => None,
        }
    }
}

/// The bytes of the file that hold `decoded` (a range of a string value's decoded text), given
/// the span of the whole value as written, quotes included. Escapes, literal strings and
/// multi-line strings are walked so a position inside an expression lands on the same
/// character in the TOML. Falls back to the value's span when it is not a string.
pub fn string_span(source: &str, value: Range<usize>, decoded: Range<usize>) -> Range<usize> {
    let Some(raw) = source.get(value.clone()) else { return value };
    let (open, literal, multiline) = if raw.starts_with("\"\"\"") {
        (3, false, true)
    } else if raw.starts_with("'''") {
        (3, true, true)
    } else if raw.starts_with('"') {
        (1, false, false)
    } else if raw.starts_with('\'') {
        (1, true, false)
    } else {
        return value;
    };
    let mut body = open.min(raw.len());
    if multiline {
        if raw[body..].starts_with("\r\n") {
            body += 2;
        } else if raw[body..].starts_with('\n') {
            body += 1;
        }
    }
    let close = raw.len().saturating_sub(open).max(body);
    let content = &raw[body..close];
    let start = value.start + body + raw_offset(content, decoded.start, literal, multiline);
    let end = value.start + body + raw_offset(content, decoded.end, literal, multiline);
    let limit = value.start + close.max(body + 1);
    start.min(limit.saturating_sub(1))..end.max(start + 1).min(limit)
}

/// The offset in `content` (a string's body as written) of byte `target` of its decoded text.
fn raw_offset(content: &str, target: usize, literal: bool, multiline: bool) -> usize {
    if literal {
        return floor_char_boundary(content, target.min(content.len()));
    }
    let bytes = content.as_bytes();
    let (mut raw, mut decoded) = (0usize, 0usize);
    while raw < bytes.len() && decoded < target {
        if bytes[raw] != b'\\' {
            let width = content[raw..].chars().next().map_or(1, char::len_utf8);
            raw += width;
            decoded += width;
            continue;
        }
        let next = bytes.get(raw + 1).copied().unwrap_or(b' ');
        let (consumed, produced) = match next {
            b'u' => (6, unicode_width(content.get(raw + 2..raw + 6))),
            b'U' => (10, unicode_width(content.get(raw + 2..raw + 10))),
            b'x' => (4, unicode_width(content.get(raw + 2..raw + 4))),
            b' ' | b'\t' | b'\r' | b'\n' if multiline => {
                // A line-ending backslash swallows the whitespace that follows it.
                let rest = &content[raw + 1..];
                let skip = rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len());
                (1 + skip, 0)
            }
            _ => (2, 1),
        };
        raw += consumed;
        decoded += produced;
    }
    floor_char_boundary(content, raw.min(content.len()))
}

fn unicode_width(hex: Option<&str>) -> usize {
    hex.and_then(|h| u32::from_str_radix(h, 16).ok())
        .and_then(char::from_u32)
        .map_or(1, char::len_utf8)
}

/// The closest of `candidates` to `word`, when it is close enough to suggest.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // Edit distance catches short words ("r0" for "ro") that similarity scores miss; the
    // score breaks ties and catches longer near misses.
    candidates
        .into_iter()
        .filter_map(|c| {
            let distance = strsim::damerau_levenshtein(word, c);
            let score = strsim::jaro_winkler(word, c);
            let allowed = (word.chars().count().max(c.chars().count()) / 4).max(1);
            (distance <= allowed || score > 0.85).then_some((distance, score, c))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_col(src, 0), LineCol { line: 1, column: 1 });
        let at = src.find('=').unwrap();
        assert_eq!(line_col(src, at), LineCol { line: 1, column: 3 });
        let second = src.rfind('=').unwrap();
        assert_eq!(line_col(src, second), LineCol { line: 2, column: 4 });
    }

    #[test]
    fn locator_finds_nested_values_and_keys() {
        let src = "[budget]\nper_model_usd = 0.25\n\n[[models]]\nid = \"a\"\n\n[[models]]\nid = \"b\"\nalias = \"x\"\n";
        let loc = Locator::new(src);
        let v = loc.value(&[Seg::Key("models"), Seg::Index(1), Seg::Key("alias")]);
        assert_eq!(&src[v], "\"x\"");
        let k = loc.key(&[Seg::Key("budget"), Seg::Key("per_model_usd")]);
        assert_eq!(&src[k], "per_model_usd");
    }

    #[test]
    fn string_spans_land_inside_the_toml_string() {
        let cases = [
            "x = \"tool_calls > oops\"\n",
            "x = 'tool_calls > oops'\n",
            "x = \"\\\"a\\\" == oops\"\n",
            "x = \"\\u00e9 == oops\"\n",
            "x = \"\"\"\ntool_calls >\n  oops\"\"\"\n",
            "x = \"\"\"a \\\n    b oops\"\"\"\n",
            "x = '''\nab oops'''\n",
        ];
        for src in cases {
            let doc: toml::Table = toml::from_str(src).unwrap();
            let decoded = doc["x"].as_str().unwrap();
            let at = decoded.find("oops").unwrap();
            let value = src.find(" = ").unwrap() + 3..src.len() - 1;
            let span = string_span(src, value, at..at + 4);
            assert_eq!(&src[span], "oops", "{src:?}");
        }
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        let keys = ["per_model_usd", "mode", "inject_every"];
        assert_eq!(did_you_mean("per_model_ud", keys), Some("per_model_usd"));
        assert_eq!(did_you_mean("zzz", keys), None);
    }
}
