//! The page and the chart on sample reports: complete, escaped, valid XML,
//! with no external resource, whatever the report holds.

use super::chart::scale::nice_ceil;
use super::text::{duration_text, num, truncate, utc_text};
use super::*;
use crate::report::{Event, FaultWindow, InvariantResult, LoadSeries, SecondPoint};

/// Two loads over 30 s, a Redis kill from 10 s to 12 s recovered in
/// 3.5 s, a proxy fault to the end of the run, two events, one broken
/// invariant, and names with characters to escape.
fn sample() -> RunReport {
    let load = |name: &str, target: &str, base: u64, lat: f64| {
        let timeline: Vec<SecondPoint> = (0..30)
            .map(|s| {
                let down = (10..14).contains(&s);
                let errors = if down { base / 2 } else { u64::from(s == 20) };
                let ok = if down { base / 10 } else { base };
                SecondPoint {
                    second: s,
                    requests: ok + errors,
                    ok,
                    errors,
                    p99_ms: if down {
                        lat * 40.0
                    } else {
                        lat + (s % 5) as f64
                    },
                }
            })
            .collect();
        let ok = timeline.iter().map(|p| p.ok).sum();
        let errors = timeline.iter().map(|p| p.errors).sum();
        LoadSeries {
            name: name.to_string(),
            target: target.to_string(),
            requests: ok + errors,
            ok,
            errors,
            rps: (ok + errors) as f64 / 30.0,
            p50_ms: lat,
            p99_ms: lat * 3.0,
            max_ms: lat * 50.0,
            timeline,
        }
    };
    RunReport {
        scenario: "redis-kill <redis & \"co\">".to_string(),
        description: "Kill Redis mid-run; nothing accepted is lost & it's back quickly."
            .to_string(),
        passed: false,
        short: true,
        started_at_unix_ms: 1_767_225_600_123,
        duration_s: 30.0,
        invariants: vec![
            InvariantResult {
                name: "accepted_jobs_lost".to_string(),
                value: 0.0,
                limit: 0.0,
                compare: Compare::AtMost,
                ok: true,
                unit: "count".to_string(),
                detail: "Jobs answered 202 that never ran.".to_string(),
            },
            InvariantResult {
                name: "recovery_seconds".to_string(),
                value: 3.5,
                limit: 3.0,
                compare: Compare::AtMost,
                ok: false,
                unit: "seconds".to_string(),
                detail: "From the end of the fault to 5 healthy seconds <in a row>.".to_string(),
            },
        ],
        faults: vec![
            FaultWindow {
                name: "redis SIGKILL <redis & \"co\">".to_string(),
                kind: "redis_kill".to_string(),
                start_s: 10.0,
                end_s: Some(12.0),
                recovery_s: Some(3.5),
            },
            FaultWindow {
                name: "latency 50ms".to_string(),
                kind: "proxy".to_string(),
                start_s: 24.0,
                end_s: None,
                recovery_s: None,
            },
        ],
        events: vec![
            Event {
                at_s: 10.0,
                source: "runner".to_string(),
                what: "kill -9 redis".to_string(),
            },
            Event {
                at_s: 10.4,
                source: "api".to_string(),
                what: "redis ready -> reconnecting <'x'>".to_string(),
            },
        ],
        loads: vec![
            load("calls <redis & \"co\">", "POST calls-target", 400, 4.0),
            load("jobs", "POST jobs-target", 150, 9.0),
        ],
        capacity: None,
    }
}

/// `text` through the templates' escaper.
fn esc(text: &str) -> String {
    let mut out = String::new();
    askama::filters::Escaper::write_escaped_str(&text::Xml, &mut out, text)
        .expect("writing to a String");
    out
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// Parses `svg` with Python's XML parser when python3 is around.
fn python_parses(svg: &str, tag: &str) -> Option<bool> {
    let path = std::env::temp_dir().join(format!(
        "holdfast-chaos-html-{}-{tag}.svg",
        std::process::id()
    ));
    std::fs::write(&path, svg).ok()?;
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys,xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status();
    let _ = std::fs::remove_file(&path);
    let available = std::process::Command::new("python3")
        .arg("-c")
        .arg("import xml.dom.minidom")
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        return None;
    }
    Some(status.is_ok_and(|s| s.success()))
}

fn assert_svg_well_formed(svg: &str, tag: &str) {
    assert!(svg.starts_with("<svg "), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(count(svg, "<svg"), 1);
    assert_eq!(count(svg, "<g>") + count(svg, "<g "), count(svg, "</g>"));
    assert_eq!(count(svg, "<text"), count(svg, "</text>"));
    assert_eq!(count(svg, "<title"), count(svg, "</title>"));
    assert_eq!(count(svg, "<"), count(svg, ">"), "angle brackets balance");
    for bad in ["NaN", "inf"] {
        assert!(!svg.contains(&format!("\"{bad}")), "{bad} in an attribute");
    }
    if let Some(ok) = python_parses(svg, tag) {
        assert!(ok, "python's XML parser rejects the SVG ({tag})");
    }
}

#[test]
fn svg_is_well_formed_and_escaped() {
    let r = sample();
    let svg = render_svg(&r);
    assert_svg_well_formed(&svg, "sample");
    assert!(!svg.contains("<redis"));
    assert!(svg.contains("&lt;redis &amp; &quot;co&quot;&gt;"));
    assert!(svg.contains("&#39;x&#39;"), "event tooltip escaped");
    assert!(svg.contains("FAILED"));
    assert!(svg.contains("recovered in 3.5 s"));
    assert!(svg.contains("jobs"));
    assert!(svg.contains("latency 50ms"));
    assert_eq!(count(&svg, "http://"), 1, "only the xmlns");
    assert!(!svg.contains("https://"));
    assert!(!svg.contains("<script"));
}

#[test]
fn page_has_everything_and_no_external_url() {
    let r = sample();
    let page = render_html(&r);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.trim_end().ends_with("</html>"));
    for name in ["accepted_jobs_lost", "recovery_seconds"] {
        assert!(page.contains(name), "{name}");
    }
    assert!(page.contains("FAILED"));
    assert!(page.contains("verdict fail"));
    assert!(page.contains("1 of 2 invariants broken"));
    assert!(page.contains("2026-01-01 00:00:00 UTC"));
    assert!(page.contains("<svg "));
    assert!(page.contains("<details>"));
    assert!(page.contains("&quot;started_at_unix_ms&quot;: 1767225600123"));
    assert!(page.contains("≤ 3 s"));
    assert!(page.contains("✗") && page.contains("✓"));
    assert!(page.contains("end of run"));
    assert!(page.contains("kill -9 redis"));
    assert!(!page.contains("<redis"));
    assert_eq!(count(&page, "http://"), 1, "only the SVG xmlns");
    assert!(!page.contains("https://"));
    assert!(!page.contains("<script"));
    assert!(!page.contains("<link"));
    assert!(!page.contains("src="));
    assert_eq!(count(&page, "<table"), count(&page, "</table>"));
    assert_eq!(count(&page, "<tr"), count(&page, "</tr>"));
    assert_eq!(count(&page, "<td"), count(&page, "</td>"));
}

#[test]
fn urls_in_targets_are_text_not_resources() {
    let mut r = sample();
    r.loads[0].target = "GET http://127.0.0.1:8080/v1/calls?a=1&b=<2>".to_string();
    let page = render_html(&r);
    assert!(page.contains("GET http://127.0.0.1:8080/v1/calls?a=1&amp;b=&lt;2&gt;"));
    assert!(!page.contains("href="));
    assert!(!page.contains("src="));
}

#[test]
fn passed_page_is_green() {
    let mut r = sample();
    r.passed = true;
    for i in &mut r.invariants {
        i.ok = true;
    }
    let page = render_html(&r);
    assert!(page.contains("verdict pass"));
    assert!(page.contains("all 2 invariants held"));
    assert!(!page.contains("FAILED"));
    assert!(render_svg(&r).contains("PASSED"));
}

#[test]
fn degenerate_reports_do_not_panic() {
    let mut empty = sample();
    empty.loads.clear();
    empty.events.clear();
    empty.faults.clear();
    empty.invariants.clear();
    empty.duration_s = 0.0;
    empty.scenario = String::new();
    empty.description = String::new();
    assert_svg_well_formed(&render_svg(&empty), "empty");
    let page = render_html(&empty);
    assert!(page.contains("no invariant was checked"));
    assert!(page.contains("No load ran."));

    let mut weird = sample();
    weird.duration_s = f64::NAN;
    weird.started_at_unix_ms = u64::MAX;
    weird.scenario = "ctl\u{1}\u{0}chars ]]> --".to_string();
    weird.loads[0].timeline.clear();
    weird.loads[1].rps = f64::INFINITY;
    weird.loads[1].p50_ms = f64::NAN;
    for (i, p) in weird.loads[1].timeline.iter_mut().enumerate() {
        // All errors, latency of every kind of broken.
        p.ok = 0;
        p.errors = p.requests.max(1);
        p.p99_ms = match i % 5 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -3.0,
            3 => 0.0,
            _ => 1e12,
        };
    }
    weird.loads[1].timeline.swap(0, 7);
    weird.loads[1].timeline.remove(15);
    weird.faults.push(FaultWindow {
        name: "backwards".to_string(),
        kind: "k".to_string(),
        start_s: 50.0,
        end_s: Some(-1.0),
        recovery_s: Some(f64::NAN),
    });
    weird.faults.push(FaultWindow {
        name: "nan".to_string(),
        kind: "k".to_string(),
        start_s: f64::NAN,
        end_s: Some(f64::INFINITY),
        recovery_s: Some(f64::INFINITY),
    });
    weird.events.push(Event {
        at_s: f64::NEG_INFINITY,
        source: String::new(),
        what: String::new(),
    });
    weird.invariants[0].value = f64::NAN;
    let svg = render_svg(&weird);
    assert_svg_well_formed(&svg, "weird");
    assert!(!svg.contains('\u{1}'));
    let page = render_html(&weird);
    assert!(page.contains("n/a"));

    // One load, one second, zero duration, many faults and events at once.
    let mut tiny = sample();
    tiny.duration_s = 0.0;
    tiny.loads.truncate(1);
    tiny.loads[0].timeline.truncate(1);
    for k in 0..12 {
        tiny.faults.push(FaultWindow {
            name: format!("fault {k}"),
            kind: "k".to_string(),
            start_s: 0.0,
            end_s: Some(0.5),
            recovery_s: Some(0.2),
        });
        tiny.events.push(Event {
            at_s: 0.5,
            source: "s".to_string(),
            what: format!("e{k}"),
        });
    }
    assert_svg_well_formed(&render_svg(&tiny), "tiny");
    let _ = render_html(&tiny);

    // A long run: ticks and hover columns stay bounded.
    let mut long = sample();
    long.duration_s = 7200.0;
    long.loads[0].timeline = (0..7200)
        .map(|s| SecondPoint {
            second: s,
            requests: 10,
            ok: 10,
            errors: 0,
            p99_ms: if s == 4000 { 1e6 } else { 5.0 + (s % 7) as f64 },
        })
        .collect();
    let svg = render_svg(&long);
    assert_svg_well_formed(&svg, "long");
    assert!(
        svg.contains("p99 1000 s at 4000 s (above the axis)"),
        "outlier clipped and marked"
    );
    assert!(count(&svg, "<text") < 200);
}

#[test]
fn small_helpers() {
    assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc_text(951_782_400_000), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc_text(1_767_225_599_999), "2025-12-31 23:59:59 UTC");
    assert_eq!(num(3.0), "3");
    assert_eq!(num(3.456), "3.46");
    assert_eq!(num(12.34), "12.3");
    assert_eq!(num(1234.5), "1234");
    assert_eq!(num(-0.0001), "0");
    assert_eq!(num(f64::NAN), "n/a");
    assert_eq!(nice_ceil(0.0), 1.0);
    assert_eq!(nice_ceil(3.0), 5.0);
    assert_eq!(nice_ceil(120.0), 200.0);
    assert_eq!(
        esc("<a & 'b' \"c\">"),
        "&lt;a &amp; &#39;b&#39; &quot;c&quot;&gt;"
    );
    assert_eq!(duration_text(125.0), "125 s (2 min 5 s)");
    assert_eq!(truncate("abcdef", 4), "abc…");
}
