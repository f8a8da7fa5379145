//! Numbers, times and texts as the page and the chart show them, and the
//! escaper the template engine applies to everything they print.

use std::fmt;

/// The templates' escaper (named for `html` and `svg` in `askama.toml`):
/// the five XML entities by name, so the page and the chart stay valid XML
/// as well as HTML, and the characters XML 1.0 does not allow (most
/// control characters) dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Xml;

impl askama::filters::Escaper for Xml {
    fn write_escaped_str<W: fmt::Write>(&self, mut dest: W, text: &str) -> fmt::Result {
        for c in text.chars() {
            match c {
                '&' => dest.write_str("&amp;")?,
                '<' => dest.write_str("&lt;")?,
                '>' => dest.write_str("&gt;")?,
                '"' => dest.write_str("&quot;")?,
                '\'' => dest.write_str("&#39;")?,
                '\t' | '\n' | '\r' => dest.write_char(c)?,
                c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
                c => dest.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A coordinate in the chart: one decimal is plenty, and a non-finite one
/// is drawn at 0 rather than breaking the document.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Px(pub f64);

impl Px {
    /// This coordinate moved by `by`.
    pub fn plus(self, by: f64) -> Px {
        Px(self.0 + by)
    }
}

impl fmt::Display for Px {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if !v.is_finite() {
            return f.write_str("0");
        }
        let s = format!("{v:.1}");
        f.write_str(s.strip_suffix(".0").unwrap_or(&s))
    }
}

/// Shortens `s` to at most `max` characters, with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A number for people: no more than two decimals, trailing zeros dropped,
/// `n/a` for NaN and infinities.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".to_string() } else { s }
}

/// Milliseconds for an axis label: `12 ms`, `1.5 s`.
pub fn ms_label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", num(v / 1000.0))
    } else {
        format!("{} ms", num(v))
    }
}

/// Seconds for people: `42.5 s`, `2 min 5 s`, `1 h 2 min`.
pub fn duration_text(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "n/a".to_string();
    }
    if s < 60.0 {
        return format!("{} s", num(s));
    }
    let total = s.round() as u64;
    let (h, m, sec) = (total / 3600, (total % 3600) / 60, total % 60);
    if h > 0 {
        format!("{} s ({h} h {m} min)", num(s))
    } else if sec == 0 {
        format!("{} s ({m} min)", num(s))
    } else {
        format!("{} s ({m} min {sec} s)", num(s))
    }
}

/// `2026-05-01 12:34:56 UTC` from unix milliseconds (proleptic Gregorian).
pub fn utc_text(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = holdfast_core::civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Seconds, or `none` without a value.
pub fn secs(v: Option<f64>, none: &str) -> String {
    match v {
        Some(v) => format!("{} s", num(v)),
        None => none.to_string(),
    }
}

/// A value with its unit for people: `0`, `0.5 %`, `3.2 s`.
pub fn with_unit(v: f64, unit: &str) -> String {
    let n = num(v);
    match unit {
        "" | "count" => n,
        "percent" | "%" => format!("{n} %"),
        "seconds" | "s" => format!("{n} s"),
        "ms" | "milliseconds" => format!("{n} ms"),
        u => format!("{n} {u}"),
    }
}
