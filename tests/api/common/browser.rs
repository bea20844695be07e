//! A report seen as a person sees it: headless Chromium (Debian's `chromium`, installed by infra/test.sh) renders
//! the HTML file, takes a screenshot kept as an artifact (`infra/.run/artifacts/`), and dumps the DOM it built,
//! in which the charts must be drawn with data.

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("CLOUD_AGENT_TEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn run(browser: &Path, args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium")
}

/// Renders `report` and checks the charts in the DOM Chromium built; the screenshot goes to `artifact`.
pub fn check_report(report: &Path, artifact: &str) {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CLOUD_AGENT_REQUIRE_DYNAMODB").is_err(),
            "chromium is not installed: run the tests with infra/test.sh, which installs it"
        );
        eprintln!("skipped: no chromium to render {}", report.display());
        return;
    };
    let url = format!("file://{}", report.display());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/.run/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join(artifact);
    let _ = std::fs::remove_file(&shot);
    let out = run(&browser, &[&format!("--screenshot={}", shot.display()), "--window-size=900,2600"], &url);
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a screenshot with something drawn: {} bytes",
        png.len()
    );

    let out = run(&browser, &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&out.stdout);
    let charts = dom.matches("<svg").count();
    assert!(charts >= 4, "throughput, error rate, a latency chart and the hourly distribution: {charts} charts");
    // Every drawn series has points and a path through them.
    let series: Vec<&str> = dom.split("<path class=\"series\"").skip(1).collect();
    assert!(!series.is_empty(), "no series drawn");
    let drawn = series
        .iter()
        .filter(|s| {
            let points =
                s.split("data-points=\"").nth(1).and_then(|r| r.split('"').next()).and_then(|n| n.parse::<u32>().ok());
            let d = s.split(" d=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
            points.is_some_and(|n| n > 0) && d.starts_with('M')
        })
        .count();
    assert!(drawn >= 4, "series with data: {drawn} of {}", series.len());
    let bars_with_tasks = dom.split("class=\"bar\"").skip(1).filter(|b| !b.contains("data-count=\"0\"")).count();
    assert!(bars_with_tasks >= 1, "the hourly distribution shows the hour that ran tasks");
    assert!(dom.contains("id=\"cost\""), "the cost table");
}
