//! The comparison report: Markdown tables (median, min, max, ratio), SVG
//! plots, and the repository's BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::compare::{Better, Ctx, ScenarioResult};
use crate::hist::Spread;

pub fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.3}"),
    }
}

fn spread_cell(v: &[f64]) -> String {
    match Spread::of(v) {
        None => "not run".into(),
        Some(s) if v.len() == 1 => fmt_num(Some(s.median)),
        Some(s) => format!(
            "{} ({}–{})",
            fmt_num(Some(s.median)),
            fmt_num(Some(s.min)),
            fmt_num(Some(s.max))
        ),
    }
}

/// A/B of the medians.
pub fn ratio(a: &[f64], b: &[f64]) -> Option<f64> {
    let (a, b) = (Spread::of(a)?.median, Spread::of(b)?.median);
    (b != 0.0).then(|| a / b)
}

/// Civil date from unix seconds (UTC).
pub fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = nix::sys::utsname::uname()
        .map(|u| {
            format!(
                "{} {}",
                u.sysname().to_string_lossy(),
                u.release().to_string_lossy()
            )
        })
        .unwrap_or_else(|_| "unknown kernel".into());
    format!("{cores} cores ({model}), {kernel}")
}

fn version_of(path: &Path) -> String {
    std::process::Command::new(path)
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown version".into())
}

pub fn markdown(ctx: &Ctx, results: &[ScenarioResult], cmd: &str, elapsed: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut m = String::new();
    let _ = writeln!(m, "# {} vs {}\n", ctx.a.name, ctx.b.name);
    let _ = writeln!(m, "- command: `{cmd}`");
    let _ = writeln!(m, "- date: {}", utc_date(now));
    let _ = writeln!(m, "- machine: {}", machine());
    let _ = writeln!(
        m,
        "- A: {} (`{}`, {})",
        ctx.a.name,
        ctx.a.path.display(),
        version_of(&ctx.a.path)
    );
    let _ = writeln!(
        m,
        "- B: {} (`{}`, {})",
        ctx.b.name,
        ctx.b.path.display(),
        version_of(&ctx.b.path)
    );
    let pin = match (&ctx.server_cpus, &ctx.client_cpus) {
        (Some(s), Some(c)) => format!("servers on CPUs {s:?}, load on CPUs {c:?}"),
        (Some(s), None) => format!("servers on CPUs {s:?}, load unpinned"),
        _ => "nothing pinned".into(),
    };
    let _ = writeln!(m, "- pinning: {pin}");
    let _ = writeln!(
        m,
        "- runs: {} of each server per scenario, alternating A B A B; timed runs {} s; a fresh server for every run",
        ctx.args.runs, ctx.args.duration
    );
    if !crate::perf::available() {
        let _ = writeln!(
            m,
            "- system calls and context switches per request: not measured (`perf stat` cannot count raw_syscalls:sys_enter here; Debian package linux-perf, run as root)"
        );
    }
    let _ = writeln!(m, "- total time: {:.0} s\n", elapsed.as_secs_f64());
    let _ = writeln!(
        m,
        "Each cell: median (min–max) over the runs. Ratio: A/B of the medians. Both servers get the same flags (memcached's defaults plus those shown).\n"
    );
    for r in results {
        let _ = writeln!(m, "## {}\n", r.name);
        let _ = writeln!(m, "{}.", r.description);
        if !r.server_flags.is_empty() {
            let _ = writeln!(m, " Server flags: `{}`.", r.server_flags.join(" "));
        }
        let _ = writeln!(m);
        for (side, why) in &r.unsupported {
            let _ = writeln!(m, "**Not run on {side}:** {why}\n");
        }
        if !r.metrics.is_empty() {
            let _ = writeln!(
                m,
                "| figure | {} (A) | {} (B) | A/B | better |",
                ctx.a.name, ctx.b.name
            );
            let _ = writeln!(m, "|---|---|---|---|---|");
            for x in &r.metrics {
                let better = match x.better {
                    Better::Higher => "higher",
                    Better::Lower => "lower",
                };
                let _ = writeln!(
                    m,
                    "| {} ({}) | {} | {} | {} | {better} |",
                    x.name,
                    x.unit,
                    spread_cell(&x.a),
                    spread_cell(&x.b),
                    ratio(&x.a, &x.b)
                        .map(|r| format!("{r:.3}"))
                        .unwrap_or_else(|| "n/a".into())
                );
            }
            let _ = writeln!(m);
        }
        for n in &r.notes {
            let _ = writeln!(m, "{n}.\n");
        }
    }
    m
}

pub fn write(
    ctx: &Ctx,
    results: &[ScenarioResult],
    cmd: &str,
    elapsed: Duration,
) -> Result<(), String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = ctx.args.out.join(format!("compare-{now}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut md = markdown(ctx, results, cmd, elapsed);
    let mut plots = Vec::new();
    let throughput = dir.join("throughput.svg");
    if let Some(p) = plot_metric(
        ctx,
        results,
        &throughput,
        "throughput",
        "Throughput (median)",
        "requests/s",
    )? {
        plots.push(p);
    }
    if let Some(p) = plot_latency(ctx, results, &dir.join("latency.svg"))? {
        plots.push(p);
    }
    let memory = dir.join("memory.svg");
    if let Some(p) = plot_metric(
        ctx,
        results,
        &memory,
        "items held",
        "Items held in -m 64 (median)",
        "items",
    )? {
        plots.push(p);
    }
    if !plots.is_empty() {
        md.push_str("## Plots\n\n");
        for p in &plots {
            md.push_str(&format!("![{p}]({p})\n\n"));
        }
    }
    let report = dir.join("report.md");
    std::fs::write(&report, &md).map_err(|e| e.to_string())?;
    eprintln!("report: {}", report.display());
    if let Some(bm) = &ctx.args.benchmarks_md {
        // The plots live in the results folder; BENCHMARKS.md names it.
        let mut text = md.replace("](", &format!("]({}/", dir.display()));
        text.push_str(&format!(
            "\nPlots and the report of this run: `{}`.\n",
            dir.display()
        ));
        std::fs::write(bm, text).map_err(|e| e.to_string())?;
        eprintln!("wrote {}", bm.display());
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    Spread::of(v).map(|s| s.median).unwrap_or(0.0)
}

type PlotResult = Result<Option<String>, String>;

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// A number with thousands separators ("1,234,567"; "0.85" below 10).
pub fn grouped(v: f64) -> String {
    if v.abs() < 10.0 && v.fract() != 0.0 {
        return format!("{v:.2}");
    }
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// One scenario's bar pair: its name, A's and B's medians (None: that
/// server could not run it).
pub type BarItem = (String, Option<f64>, Option<f64>);

/// Bars: A and B side by side for each scenario, each pair on its own
/// scale (B = 1, or A = 1 where B did not run), the medians written above
/// the bars with thousands separators, "not run" where a server could not
/// run the scenario, the scenario's name centred under its pair.
fn bars(
    path: &Path,
    title: &str,
    unit: &str,
    a_name: &str,
    b_name: &str,
    items: &[BarItem],
) -> PlotResult {
    if items.is_empty() {
        return Ok(None);
    }
    // Heights relative to B (or to A when B has none).
    let rel: Vec<(Option<f64>, Option<f64>)> = items
        .iter()
        .map(|(_, a, b)| {
            let base = b.filter(|v| *v > 0.0).or(a.filter(|v| *v > 0.0));
            match base {
                None => (a.map(|_| 0.0), b.map(|_| 0.0)),
                Some(base) => (a.map(|v| v / base), b.map(|v| v / base)),
            }
        })
        .collect();
    let ymax = rel
        .iter()
        .flat_map(|(a, b)| [a.unwrap_or(0.0), b.unwrap_or(0.0)])
        .fold(1.0f64, f64::max)
        * 1.2;
    let width = (160 + 150 * items.len() as u32).clamp(600, 1600);
    let root = SVGBackend::new(path, (width, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let n = items.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, 0.0..ymax)
        .map_err(err)?;
    let y_desc = format!("relative to {b_name} (= 1); values in {unit}");
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc.as_str())
        .y_label_formatter(&|y: &f64| format!("{y:.1}"))
        .draw()
        .map_err(err)?;
    let a_style = RGBColor(214, 96, 39).filled();
    let b_style = RGBColor(60, 110, 180).filled();
    let bar = |x0: f64, x1: f64, h: Option<f64>, style: ShapeStyle| {
        h.map(|h| Rectangle::new([(x0, 0.0), (x1, h)], style))
    };
    chart
        .draw_series(
            rel.iter()
                .enumerate()
                .filter_map(|(i, (a, _))| bar(i as f64 + 0.1, i as f64 + 0.48, *a, a_style)),
        )
        .map_err(err)?
        .label(a_name)
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], a_style));
    chart
        .draw_series(
            rel.iter()
                .enumerate()
                .filter_map(|(i, (_, b))| bar(i as f64 + 0.52, i as f64 + 0.9, *b, b_style)),
        )
        .map_err(err)?
        .label(b_name)
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], b_style));
    let centred = |size: i32| {
        TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom))
    };
    let mut texts = Vec::new();
    for (i, ((_, a, b), (ra, rb))) in items.iter().zip(&rel).enumerate() {
        let x = i as f64;
        for (centre, v, r) in [(x + 0.29, a, ra), (x + 0.71, b, rb)] {
            let (label, y) = match (v, r) {
                (Some(v), Some(r)) => (grouped(*v), *r),
                _ => ("not run".to_string(), 0.0),
            };
            texts.push(Text::new(label, (centre, y + ymax * 0.01), centred(12)));
        }
    }
    chart.draw_series(texts).map_err(err)?;
    let under =
        TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    chart
        .draw_series(items.iter().enumerate().map(|(i, (label, _, _))| {
            Text::new(label.clone(), (i as f64 + 0.5, -ymax * 0.02), under.clone())
        }))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(path.file_name().map(|f| f.to_string_lossy().into_owned()))
}

/// Bars of one figure's medians, A beside B, for each scenario that has
/// it or that a server could not run.
fn plot_metric(
    ctx: &Ctx,
    results: &[ScenarioResult],
    path: &Path,
    metric: &str,
    title: &str,
    unit: &str,
) -> PlotResult {
    let items: Vec<BarItem> = results
        .iter()
        .filter_map(|r| {
            let m = r.metrics.iter().find(|m| m.name == metric)?;
            let side = |v: &[f64]| (!v.is_empty()).then(|| median(v));
            Some((r.name.clone(), side(&m.a), side(&m.b)))
        })
        .collect();
    bars(path, title, unit, &ctx.a.name, &ctx.b.name, &items)
}

fn plot_latency(ctx: &Ctx, results: &[ScenarioResult], path: &Path) -> PlotResult {
    let curves: Vec<(&str, [f64; 4], [f64; 4])> = results
        .iter()
        .filter_map(|r| r.latency_curve.map(|(a, b)| (r.name.as_str(), a, b)))
        .collect();
    if curves.is_empty() {
        return Ok(None);
    }
    let ymax = curves
        .iter()
        .flat_map(|(_, a, b)| a.iter().chain(b.iter()).copied())
        .fold(0.0f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency percentiles (median of runs)", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..3.0, 0.0..ymax.max(1e-6))
        .map_err(err)?;
    let labels = ["p50", "p90", "p99", "p99.9"];
    chart
        .configure_mesh()
        .x_labels(4)
        .x_label_formatter(&|x: &f64| {
            labels
                .get(x.round() as usize)
                .copied()
                .unwrap_or("")
                .to_string()
        })
        .y_desc("ms")
        .draw()
        .map_err(err)?;
    for (i, (name, a, b)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts = |v: &[f64; 4]| {
            v.iter()
                .enumerate()
                .map(|(k, y)| (k as f64, *y))
                .collect::<Vec<_>>()
        };
        chart
            .draw_series(LineSeries::new(pts(a), color.stroke_width(2)))
            .map_err(err)?
            .label(format!("{name} {}", ctx.a.name))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2))
            });
        chart
            .draw_series(LineSeries::new(pts(b), color.stroke_width(1)))
            .map_err(err)?
            .label(format!("{name} {}", ctx.b.name))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(1))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(path.file_name().map(|f| f.to_string_lossy().into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_mark_what_did_not_run_and_group_digits() {
        assert_eq!(grouped(1_234_567.0), "1,234,567");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(grouped(0.85), "0.85");
        assert_eq!(grouped(-12_000.4), "-12,000");
        let dir = std::env::temp_dir().join(format!("memcrab-bars-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("throughput.svg");
        let items = vec![
            ("get-heavy".to_string(), Some(121_529.0), Some(123_261.0)),
            ("udp".to_string(), Some(95_000.0), None),
            ("multiget-100".to_string(), Some(6_100.0), Some(5_200.0)),
            ("tls-handshakes".to_string(), None, Some(2_372.0)),
        ];
        bars(
            &path,
            "Throughput (median)",
            "requests/s",
            "memcrab",
            "memcached",
            &items,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert_eq!(svg.matches("not run").count(), 2, "{svg}");
        for want in [
            "121,529",
            "123,261",
            "6,100",
            "2,372",
            "multiget-100",
            "relative to memcached",
        ] {
            assert!(svg.contains(want), "{want}");
        }
        if std::env::var_os("MEMCRAB_KEEP_PLOT").is_none() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn every_scenario_has_a_summary() {
        let named: Vec<&str> = crate::compare::SUMMARY.iter().map(|(n, _)| *n).collect();
        assert_eq!(named, crate::compare::ALL);
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date(1_795_305_597), "2026-11-21 23:59 UTC");
    }

    #[test]
    fn ratios_and_cells() {
        assert_eq!(ratio(&[2.0, 4.0, 6.0], &[2.0]), Some(2.0));
        assert_eq!(ratio(&[1.0], &[0.0]), None);
        assert_eq!(ratio(&[], &[1.0]), None);
        assert_eq!(spread_cell(&[1.0, 2.0, 3.0]), "2.000 (1.000–3.000)");
        assert_eq!(spread_cell(&[]), "not run");
        assert_eq!(fmt_num(Some(12345.6)), "12346");
    }
}
