//! No input makes the manifest loader panic: random bytes, and random TOML-ish mutations of
//! the valid fixtures (deleted and inserted text, duplicated and swapped lines, values replaced
//! by values of other types). The expression checker and the duration parser get the same
//! treatment, since manifests feed them arbitrary strings.

use std::path::{Path, PathBuf};

use apf::expr::{COUNTERS, Condition, EVENT, PREFLIGHT};
use proptest::prelude::*;

fn valid_texts() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests/valid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect()
}

/// A manifest path inside the fixtures, so relative mounts resolve somewhere real.
fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests/valid/fuzz.toml")
}

const TOKENS: &[&str] = &[
    "0",
    "-1",
    "1e999",
    "-0.0",
    "nan",
    "inf",
    "9223372036854775807",
    "\"\"",
    "''",
    "[]",
    "{}",
    "true",
    "\"x:y\"",
    "\"./a:/b:ro\"",
    "1979-05-27T07:32:00Z",
    "'''\n'''",
    "\"\"\"\\\n\"\"\"",
    "[[models]]",
    "[budget]",
    "{ rule = \"all\", of = [] }",
    "\"tool_calls >\"",
    "\"é\"",
    "\"\\u00e9\"",
    "=",
    "\n",
    "#",
    ".",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "\\",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: usize },
    InsertText { at: usize, text: String },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
    ReplaceValue { line: usize, token: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<usize>(), "[ -~\\n\\t\u{e9}\u{1F600}]{0,12}")
            .prop_map(|(at, text)| Mutation::InsertText { at, text }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        (any::<usize>(), 0..TOKENS.len())
            .prop_map(|(line, token)| Mutation::ReplaceValue { line, token }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn boundary(s: &str, at: usize) -> usize {
    let mut i = at % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    match m {
        Mutation::Delete { at, len } => {
            let start = boundary(text, *at);
            let end = boundary(text, (start + len).min(text.len()));
            let end = end.max(start);
            format!("{}{}", &text[..start], &text[end..])
        }
        Mutation::Insert { at, token } => {
            let at = boundary(text, *at);
            format!("{}{}{}", &text[..at], TOKENS[*token], &text[at..])
        }
        Mutation::InsertText { at, text: t } => {
            let at = boundary(text, *at);
            format!("{}{t}{}", &text[..at], &text[at..])
        }
        Mutation::DuplicateLine { line } if !lines.is_empty() => {
            let i = line % lines.len();
            let copy = lines[i].clone();
            lines.insert(i, copy);
            lines.join("\n")
        }
        Mutation::SwapLines { a, b } if !lines.is_empty() => {
            let (a, b) = (a % lines.len(), b % lines.len());
            lines.swap(a, b);
            lines.join("\n")
        }
        Mutation::ReplaceValue { line, token } if !lines.is_empty() => {
            let i = line % lines.len();
            if let Some((key, _)) = lines[i].split_once('=') {
                lines[i] = format!("{key}= {}", TOKENS[*token]);
            }
            lines.join("\n")
        }
        Mutation::Truncate { at } => text[..boundary(text, *at)].to_string(),
        _ => text.to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = apf::manifest::load_str(&path(), &text);
    }

    #[test]
    fn mutated_manifests_never_panic(
        which in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let texts = valid_texts();
        let mut text = texts[which % texts.len()].clone();
        for m in &mutations {
            text = apply(&text, m);
        }
        if let Err(e) = apf::manifest::load_str(&path(), &text) {
            prop_assert!(!e.problems.is_empty());
            for p in &e.problems {
                prop_assert!(p.span.start <= p.span.end && p.span.end <= text.len(), "{p:?}");
            }
            // Rendering walks the spans too.
            let _ = e.short_lines();
            let _ = e.to_json();
        }
    }

    #[test]
    fn expressions_never_panic(source in "[a-z_ .()<>=!&|+*/%'\"\\[\\]{}:,?0-9\u{e9}-]{0,80}") {
        for vocabulary in [&COUNTERS, &EVENT, &PREFLIGHT] {
            if let Err(e) = Condition::compile_in(&source, vocabulary) {
                prop_assert!(e.offset <= source.len() && source.is_char_boundary(e.offset));
            }
        }
    }

    #[test]
    fn durations_never_panic(text in "\\PC{0,40}") {
        let _ = apf::duration::Span::parse(&text);
    }

    #[test]
    fn preflight_variables_never_panic(models in "\\PC{0,60}", budget in "\\PC{0,12}") {
        let _ = apf::manifest::from_preflight_vars(&models, Some(&budget), None);
    }
}
