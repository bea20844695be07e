//! The analytics report as one self-contained HTML file: inline SVG charts (latency percentiles per task type,
//! throughput, error rate, the hourly distribution) with anomalies marked, the anomaly list and the cost table.
//! No script, font or stylesheet is fetched: it opens the same offline, attached to a ticket or in a browser.

use std::fmt::Write as _;

use cloud_agent_sdk::api::analytics::{Analytics, Bucket, Severity};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
const COLOURS: [&str; 6] = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

/// Text as HTML (names come from the service: a task type could hold `<`).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Line<'a> {
    name: &'a str,
    values: Vec<Option<f64>>,
}

/// A short number for an axis label.
fn short(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A line chart: one path per series (gaps where a bucket has no value), a circle on each marked point.
fn line_chart(id: &str, title: &str, unit: &str, x: &[String], lines: &[Line<'_>], marks: &[(usize, usize)]) -> String {
    let max = lines.iter().flat_map(|l| l.values.iter().flatten()).fold(0.0f64, |m, v| m.max(*v));
    let max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = if x.len() > 1 { plot_w / (x.len() - 1) as f64 } else { 0.0 };
    let px = |i: usize| LEFT + step * i as f64;
    let py = |v: f64| TOP + plot_h - v / max * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure><figcaption>{}</figcaption><svg id="{id}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">"#,
        escape(title),
        escape(title)
    );
    for g in 0..=4 {
        let v = max * f64::from(g) / 4.0;
        let y = py(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end" class="axis">{}{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            short(v),
            if g == 4 { format!(" {unit}") } else { String::new() }
        );
    }
    if !x.is_empty() {
        for (i, anchor) in [(0, "start"), (x.len() / 2, "middle"), (x.len() - 1, "end")] {
            let label = x[i].get(5..16).unwrap_or(&x[i]).replace('T', " ");
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="{anchor}" class="axis">{}</text>"#,
                px(i),
                HEIGHT - 8.0,
                escape(&label)
            );
        }
    }
    for (n, line) in lines.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let mut d = String::new();
        let mut pen_down = false;
        for (i, v) in line.values.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(d, "{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, px(i), py(*v));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let points = line.values.iter().flatten().count();
        let _ = write!(
            svg,
            r#"<path class="series" data-series="{}" data-points="{points}" d="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            escape(line.name),
            d.trim_end()
        );
        // A single point draws no line: show it as a dot.
        if points == 1
            && let Some((i, v)) = line.values.iter().enumerate().find_map(|(i, v)| v.map(|v| (i, v)))
        {
            let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#, px(i), py(v));
        }
    }
    for (n, i) in marks {
        if let Some(Some(v)) = lines.get(*n).and_then(|l| l.values.get(*i)) {
            let _ = write!(
                svg,
                r##"<circle class="anomaly" cx="{:.1}" cy="{:.1}" r="7" fill="none" stroke="#dc2626" stroke-width="2.5"><title>anomaly</title></circle>"##,
                px(*i),
                py(*v)
            );
        }
    }
    svg.push_str("</svg><div class=\"legend\">");
    for (n, line) in lines.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<span><i style="background:{}"></i>{}</span>"#,
            COLOURS[n % COLOURS.len()],
            escape(line.name)
        );
    }
    svg.push_str("</div></figure>");
    svg
}

/// Bars of tasks by hour of the day (UTC), over the whole window.
fn hourly_chart(counts: &[u64; 24]) -> String {
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let bar = plot_w / 24.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure><figcaption>Tasks by hour of day (UTC)</figcaption><svg id="hourly" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="Tasks by hour of day">"#
    );
    let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="end" class="axis">{}</text>"#, LEFT - 6.0, TOP + 8.0, max);
    for (hour, n) in counts.iter().enumerate() {
        let h = *n as f64 / max * plot_h;
        let x = LEFT + bar * hour as f64;
        let _ = write!(
            svg,
            r##"<rect class="bar" data-hour="{hour}" data-count="{n}" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#2563eb"><title>{hour:02}:00 — {n}</title></rect>"##,
            x + 2.0,
            TOP + plot_h - h,
            bar - 4.0
        );
        if hour % 3 == 0 {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle" class="axis">{hour:02}</text>"#,
                x + bar / 2.0,
                HEIGHT - 8.0
            );
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

fn usd(v: f64) -> String {
    if v >= 1.0 { format!("${v:.2}") } else { format!("${v:.6}") }
}

/// The whole report.
pub(crate) fn html(a: &Analytics, generated: &str) -> String {
    let x = &a.buckets;
    let index_of = |start: &str| x.iter().position(|b| b == start);
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Cloud Agent analytics</h1><p class=\"meta\">{} to {} · {} buckets of one {} · percentiles within {:.0} % · \
         generated {}</p>",
        escape(&a.from),
        escape(&a.to),
        x.len(),
        a.bucket.as_str(),
        a.accuracy * 100.0,
        escape(generated)
    );
    let totals: u64 = a.tasks.iter().map(|s| s.window.total).sum();
    let requests: u64 = a.requests.iter().map(|s| s.window.requests).sum();
    let _ = write!(
        body,
        "<section class=\"stats\"><div><b>{totals}</b>tasks finished</div><div><b>{requests}</b>requests counted</div>\
         <div><b>{}</b>anomalies</div><div><b>{}</b>on Lambda · <b>{}</b>on Vercel</div></section>",
        a.anomalies.len(),
        usd(a.cost.platforms.get("lambda").map_or(0.0, |p| p.total_usd)),
        usd(a.cost.platforms.get("vercel").map_or(0.0, |p| p.total_usd)),
    );
    if a.tasks.is_empty() {
        body.push_str("<p class=\"empty\">No task finished in this window.</p>");
    }
    // Throughput and error rate: a line per type, anomalies of that metric marked.
    let marks_of = |metric: &str| -> Vec<(usize, usize)> {
        a.anomalies
            .iter()
            .filter(|an| an.metric == metric)
            .filter_map(|an| {
                let kind = an.series.strip_prefix("task:")?;
                Some((a.tasks.iter().position(|s| s.kind == kind)?, index_of(&an.start)?))
            })
            .collect()
    };
    if !a.tasks.is_empty() {
        let throughput: Vec<Line<'_>> = a
            .tasks
            .iter()
            .map(|s| Line { name: &s.kind, values: s.points.iter().map(|p| Some(p.throughput_per_s)).collect() })
            .collect();
        body.push_str(&line_chart(
            "throughput",
            "Throughput (tasks finished per second)",
            "/s",
            x,
            &throughput,
            &marks_of("throughput"),
        ));
        let errors: Vec<Line<'_>> = a
            .tasks
            .iter()
            .map(|s| Line { name: &s.kind, values: s.points.iter().map(|p| p.error_rate.map(|e| e * 100.0)).collect() })
            .collect();
        body.push_str(&line_chart(
            "error-rate",
            "Error rate (failed or timed out)",
            "%",
            x,
            &errors,
            &marks_of("error_rate"),
        ));
        for (n, s) in a.tasks.iter().enumerate() {
            let lines = [
                Line { name: "p50", values: s.points.iter().map(|p| p.duration_ms.p50).collect() },
                Line { name: "p95", values: s.points.iter().map(|p| p.duration_ms.p95).collect() },
                Line { name: "p99", values: s.points.iter().map(|p| p.duration_ms.p99).collect() },
            ];
            let marks: Vec<(usize, usize)> =
                marks_of("p95_ms").into_iter().filter(|(t, _)| *t == n).map(|(_, i)| (1, i)).collect();
            body.push_str(&line_chart(
                &format!("latency-{n}"),
                &format!("{} — duration percentiles", s.kind),
                "ms",
                x,
                &lines,
                &marks,
            ));
        }
        if a.bucket == Bucket::Hour {
            let mut counts = [0u64; 24];
            for s in &a.tasks {
                for p in &s.points {
                    if let Some(hour) = p.start.get(11..13).and_then(|h| h.parse::<usize>().ok()) {
                        counts[hour % 24] += p.total;
                    }
                }
            }
            body.push_str(&hourly_chart(&counts));
        }
    }
    body.push_str("<h2>Anomalies</h2>");
    if a.anomalies.is_empty() {
        body.push_str("<p class=\"empty\">None: every bucket is within its baseline.</p>");
    } else {
        body.push_str(
            "<table id=\"anomalies\"><tr><th>bucket</th><th>series</th><th>metric</th><th>value</th><th>baseline mean</th>\
             <th>deviation</th><th>z</th><th>severity</th></tr>",
        );
        for an in &a.anomalies {
            let severity = match an.severity {
                Severity::Warning => "warning",
                Severity::Critical => "critical",
            };
            let _ = write!(
                body,
                "<tr class=\"{severity}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{severity}</td></tr>",
                escape(&an.start),
                escape(&an.series),
                escape(&an.metric),
                short(an.value),
                short(an.mean),
                short(an.deviation),
                an.z
            );
        }
        body.push_str("</table>");
    }
    let _ = write!(
        body,
        "<h2>Cost estimate</h2><table id=\"cost\"><tr><th>platform</th><th>memory</th><th>compute</th><th>requests</th>\
         <th>total</th></tr>"
    );
    for (name, p) in &a.cost.platforms {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{} MB</td><td>{}</td><td>{}</td><td><b>{}</b></td></tr>",
            escape(name),
            p.memory_mb,
            usd(p.compute_usd),
            usd(p.requests_usd),
            usd(p.total_usd)
        );
    }
    let _ = write!(
        body,
        "</table><p class=\"meta\">{} invocations, {:.1} s busy; prices as of {} — {}.</p>",
        a.cost.invocations,
        a.cost.busy_seconds,
        escape(&a.cost.prices_as_of),
        escape(&a.cost.basis)
    );
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Cloud Agent analytics</title><style>\
         body{{font:14px system-ui,sans-serif;margin:24px auto;max-width:800px;color:#111}}h1{{font-size:22px}}\
         .meta{{color:#555}}figure{{margin:18px 0}}figcaption{{font-weight:600;margin-bottom:4px}}\
         .axis{{font-size:10px;fill:#555}}.legend span{{margin-right:14px;font-size:12px}}\
         .legend i{{display:inline-block;width:10px;height:10px;margin-right:4px}}\
         .stats{{display:flex;gap:12px}}.stats div{{border:1px solid #ddd;border-radius:6px;padding:8px 12px}}\
         .stats b{{display:block;font-size:18px}}table{{border-collapse:collapse;width:100%}}\
         td,th{{border-bottom:1px solid #eee;padding:4px 6px;text-align:left}}tr.critical td{{color:#b91c1c}}\
         tr.warning td{{color:#b45309}}.empty{{color:#555}}</style></head><body>{body}</body></html>\n"
    )
}
