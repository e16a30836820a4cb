//! The report as HTML: a header, the results table, and the chart frames the inline script
//! fills from the JSON beside it. Text from the run is escaped here for the place it goes; the
//! script and style are fixed, and the page's Content-Security-Policy names their hashes.

use std::fmt::Write as _;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::Input;
use super::series::chart_data;
use crate::apply::results::ModelResult;
use crate::money::Usd;
use crate::printer::sanitize;
use crate::status::{duration_text, status_key};

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("chart.js");

const RESULT_COLUMNS: [&str; 15] = [
    "alias", "model", "outcome", "cost", "budget", "used", "over", "events", "tools", "snaps",
    "errors", "elapsed", "exit", "reason", "tokens",
];

/// The page, whole.
pub fn render(input: &Input) -> String {
    let st = &input.state;
    let r = &input.results;
    let chart = chart_data(st, &input.histories, input.generated_at);
    let data = script_json(&serde_json::to_string(&chart).unwrap_or_else(|_| "{}".into()));
    let title = format!("{} · run {}", sanitize(&st.experiment), sanitize(&st.run_id));

    let mut h = String::with_capacity(64 * 1024 + data.len());
    h.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(
        h,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'sha256-{}'; script-src 'sha256-{}'; base-uri 'none'; form-action 'none'\">",
        sha256_b64(STYLE),
        sha256_b64(SCRIPT)
    );
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(h, "<meta name=\"generator\" content=\"apf {}\">", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(h, "<title>{}</title>", text(&format!("apf report · {title}")));
    let _ = writeln!(h, "<style>{STYLE}</style>\n</head>");
    let _ = writeln!(h, "<body data-models=\"{}\">", st.models.len());

    header(&mut h, input);
    results_table(&mut h, &r.models, input);
    h.push_str("<section>\n<h2>Spend against budget, the whole field</h2>\n");
    h.push_str("<p class=\"hint\">Each model's spend as a share of its own budget; × marks an eject.</p>\n");
    h.push_str("<div id=\"overview\" class=\"chart wide\"></div>\n</section>\n");
    h.push_str("<section>\n<h2>Each model</h2>\n<div class=\"grid\">\n");
    for m in &r.models {
        model_card(&mut h, m);
    }
    h.push_str("</div>\n</section>\n");
    footer(&mut h, input);
    h.push_str("<noscript><p class=\"caveat\">The charts need JavaScript; the table has every figure.</p></noscript>\n");
    let _ = writeln!(h, "<script type=\"application/json\" id=\"apf-data\">{data}</script>");
    let _ = writeln!(h, "<script>{SCRIPT}</script>\n</body>\n</html>");
    h
}

fn header(h: &mut String, input: &Input) {
    let st = &input.state;
    let r = &input.results;
    let status = crate::status::View::new(st, &Default::default(), input.generated_at);
    let key = serde_json::to_value(st.status).ok().and_then(|v| v.as_str().map(str::to_string));
    let key = key.unwrap_or_default();
    let _ = writeln!(h, "<header>\n<h1>{}</h1>", text(&st.experiment));
    let _ = writeln!(
        h,
        "<p class=\"meta\">run <code>{}</code> · <span class=\"badge s-{key}\">{}</span> · \
         started {} UTC · {} · report made {} UTC</p>",
        text(&st.run_id),
        text(&key),
        st.started_at.format("%Y-%m-%d %H:%M:%S"),
        match st.finished_at {
            Some(_) => format!("took {}", duration_text(status.run.elapsed_s)),
            None => format!("running for {}", duration_text(status.run.elapsed_s)),
        },
        input.generated_at.format("%Y-%m-%d %H:%M:%S"),
    );
    if let Some(note) = &st.note {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", text(note));
    }
    h.push_str("<div class=\"cards\">\n");
    let t = &status.totals;
    let mix: Vec<String> =
        t.by_status.iter().map(|(k, n)| format!("{n} {}", k.replace('_', " "))).collect();
    let cards = [
        ("spent", format!("{} of {}", r.total_spent, r.total_budget)),
        ("models", format!("{} · {}", t.models, mix.join(", "))),
        ("events", t.events.to_string()),
        ("tool calls", t.tool_calls.to_string()),
        ("snapshots", t.snapshots.to_string()),
        ("overshoot", r.total_overshoot.to_string()),
    ];
    for (label, value) in cards {
        let _ = writeln!(
            h,
            "<div class=\"card\"><div class=\"label\">{}</div><div class=\"value\">{}</div></div>",
            text(label),
            text(&value)
        );
    }
    h.push_str("</div>\n</header>\n");
}

fn results_table(h: &mut String, models: &[ModelResult], input: &Input) {
    h.push_str("<section>\n<h2>Results</h2>\n<div class=\"scroll\">\n");
    h.push_str("<table class=\"results\">\n<thead><tr>");
    for col in RESULT_COLUMNS {
        let _ = write!(h, "<th>{col}</th>");
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for m in models {
        let key = status_key(m.outcome);
        let used = m.spent.fraction_of(m.budget).map(|f| f * Decimal::ONE_HUNDRED);
        let _ = writeln!(
            h,
            "<tr><td class=\"alias\">{}</td><td class=\"id\"><code>{}</code></td>\
             <td><span class=\"badge s-{key}\">{}</span></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"words\">{}</td>\
             <td class=\"words\">{}</td><td title=\"not known in key-only mode\">{}</td></tr>",
            text(&m.alias),
            text(&m.model),
            text(m.outcome.as_str()),
            text(&m.spent.to_string()),
            text(&m.budget.to_string()),
            used_bar(used, &key),
            if m.overshoot > Usd::ZERO { " over" } else { "" },
            text(&m.overshoot.to_string()),
            m.counts.events,
            m.counts.tool_calls,
            m.counts.snapshots,
            m.counts.errors,
            m.elapsed_s.map_or("-".into(), duration_text),
            text(m.exit_cause.as_deref().unwrap_or("-")),
            text(m.reason.as_deref().unwrap_or("")),
            tokens(m),
        );
    }
    let r = &input.results;
    let used = r.total_spent.fraction_of(r.total_budget).map(|f| f * Decimal::ONE_HUNDRED);
    let sum = |f: fn(&ModelResult) -> u64| models.iter().map(f).sum::<u64>();
    let _ = writeln!(
        h,
        "<tr class=\"total\"><td>total</td><td>{} models</td><td></td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td></td><td></td><td></td></tr>",
        models.len(),
        text(&r.total_spent.to_string()),
        text(&r.total_budget.to_string()),
        used_bar(used, "total"),
        text(&r.total_overshoot.to_string()),
        sum(|m| m.counts.events),
        sum(|m| m.counts.tool_calls),
        sum(|m| m.counts.snapshots),
        sum(|m| m.counts.errors),
        r.elapsed_s.map_or("-".into(), duration_text),
    );
    h.push_str("</tbody>\n</table>\n</div>\n</section>\n");
}

/// A small bar of the budget used, as inline SVG (attributes, not styles, so the page's
/// policy needs no inline styles), with the figure beside it.
fn used_bar(pct: Option<Decimal>, key: &str) -> String {
    let Some(p) = pct else { return "-".into() };
    let shown = p.round_dp(0);
    let width = p.min(Decimal::ONE_HUNDRED).max(Decimal::ZERO).round_dp(1);
    format!(
        "<svg class=\"bar\" viewBox=\"0 0 100 8\" width=\"60\" height=\"8\" aria-hidden=\"true\">\
         <rect class=\"track\" width=\"100\" height=\"8\"/>\
         <rect class=\"fill s-{}\" width=\"{width}\" height=\"8\"/></svg> {shown}%",
        text(key)
    )
}

fn tokens(m: &ModelResult) -> String {
    match (m.tokens.prompt, m.tokens.completion) {
        (Some(p), Some(c)) => {
            let cached =
                m.cache.cached_prompt_tokens.map_or(String::new(), |n| format!(", {n} cached"));
            text(&format!("{p} in / {c} out{cached}"))
        }
        _ => "unknown".into(),
    }
}

fn model_card(h: &mut String, m: &ModelResult) {
    let key = status_key(m.outcome);
    let _ = writeln!(
        h,
        "<article class=\"model\">\n<h3>{} <span class=\"badge s-{key}\">{}</span></h3>\n\
         <p class=\"sub\"><code>{}</code> · {} of {}{}</p>",
        text(&m.alias),
        text(m.outcome.as_str()),
        text(&m.model),
        text(&m.spent.to_string()),
        text(&m.budget.to_string()),
        m.reason.as_deref().map_or(String::new(), |r| format!(" · {}", text(r))),
    );
    h.push_str(
        "<div class=\"chart spend\"></div>\n<div class=\"chart events\"></div>\n</article>\n",
    );
}

fn footer(h: &mut String, input: &Input) {
    h.push_str("<footer>\n<ul>\n");
    for c in &input.caveats {
        let _ = writeln!(h, "<li>{}</li>", text(c));
    }
    h.push_str("</ul>\n</footer>\n");
}

/// Text for HTML content or a quoted attribute, with anything that could end either escaped.
/// Control characters and keys are taken out first, as for a terminal.
pub fn text(s: &str) -> String {
    let clean = sanitize(s);
    let mut out = String::with_capacity(clean.len());
    for c in clean.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON made safe inside a `<script>` element: no `<`, `>` or `&` (so no `</script>` and no
/// `<!--`), and no line separators that older parsers end a line at. Each only ever appears
/// inside a JSON string, where its `\u` escape means the same.
pub fn script_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The CSP source hash of an inline element's text.
fn sha256_b64(text: &str) -> String {
    base64(&Sha256::digest(text.as_bytes()))
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            text(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(text("a\u{1b}[31mb"), "a·[31mb");
    }

    #[test]
    fn json_in_a_script_cannot_close_it() {
        let json = serde_json::to_string("</script><!-- & \u{2028}").unwrap();
        let safe = script_json(&json);
        assert!(!safe.contains('<') && !safe.contains('>') && !safe.contains('&'), "{safe}");
        let back: String = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, "</script><!-- & \u{2028}");
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
