//! Output: the per-second progress line, the wrk2-style summary, JSON and the
//! HdrHistogram percentile-distribution (.hgrm) file.

use crate::runner::Counters;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

pub const PERCENTILES: [f64; 7] = [50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0];

/// Prints one line a second on stderr until `stop` is set.
pub fn progress(
    c: Arc<Counters>,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let (mut last_sent, mut last_acked, mut last_deliv) = (0, 0, 0);
        while !done.load(Relaxed) {
            std::thread::sleep(Duration::from_secs(1));
            let (s, a, d) = (
                Counters::get(&c.sent),
                Counters::get(&c.acked),
                Counters::get(&c.delivered),
            );
            eprintln!(
                "[{:>4}s] conns {} (failed {}) joined {} | sent {} ({}/s) acked {} ({}/s) delivered {} ({}/s)",
                t0.elapsed().as_secs(),
                Counters::get(&c.connected),
                Counters::get(&c.failed),
                Counters::get(&c.joined),
                s,
                s - last_sent,
                a,
                a - last_acked,
                d,
                d - last_deliv
            );
            (last_sent, last_acked, last_deliv) = (s, a, d);
        }
    })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn fmt_ms(us: u64) -> String {
    let m = ms(us);
    if m >= 1000.0 {
        format!("{:.2}s", m / 1000.0)
    } else {
        format!("{m:.3}ms")
    }
}

/// wrk2-style latency block.
pub fn latency_text(title: &str, h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "  {title} ({} samples)", h.len());
    if h.is_empty() {
        let _ = writeln!(out, "    (no samples)");
        return out;
    }
    let _ = writeln!(
        out,
        "    Mean {}  StdDev {}  Max {}",
        fmt_ms(h.mean() as u64),
        fmt_ms(h.stdev() as u64),
        fmt_ms(h.max())
    );
    for p in PERCENTILES {
        let _ = writeln!(
            out,
            " {:>8.3}%  {:>12}",
            p,
            fmt_ms(h.value_at_percentile(p))
        );
    }
    out
}

/// One line for a part of the samples: its count and share of `total`,
/// p50, p99, p99.9 and max.
pub fn latency_line(label: &str, h: &Histogram<u64>, total: u64) -> String {
    let share = if total > 0 {
        h.len() as f64 * 100.0 / total as f64
    } else {
        0.0
    };
    if h.is_empty() {
        return format!("  {label} 0 samples");
    }
    format!(
        "  {label} {} samples ({share:.1}%): p50 {}  p99 {}  p99.9 {}  max {}",
        h.len(),
        fmt_ms(h.value_at_percentile(50.0)),
        fmt_ms(h.value_at_percentile(99.0)),
        fmt_ms(h.value_at_percentile(99.9)),
        fmt_ms(h.max())
    )
}

/// Percentiles in ms, for JSON.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("count".into(), json!(h.len()));
    if !h.is_empty() {
        m.insert("mean_ms".into(), json!(h.mean() / 1000.0));
        m.insert("stdev_ms".into(), json!(h.stdev() / 1000.0));
        for p in PERCENTILES {
            let key = if p == 100.0 {
                "max_ms".to_string()
            } else {
                format!("p{p}_ms")
            };
            m.insert(key, json!(ms(h.value_at_percentile(p))));
        }
    }
    Value::Object(m)
}

/// HdrHistogram's standard percentile-distribution text (values in ms),
/// as printed by wrk2 and read by HdrHistogram's plotter.
pub fn hgrm_text(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let val = ms(h.highest_equivalent(v.value_iterated_to()));
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{val:12.3} {q:2.12} {:10} {:14.2}",
                    v.count_since_last_iteration(),
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(
                    out,
                    "{val:12.3} {q:2.12} {:10}",
                    v.count_since_last_iteration()
                );
            }
        }
    }
    let mean = if h.is_empty() { 0.0 } else { h.mean() / 1000.0 };
    let sd = if h.is_empty() {
        0.0
    } else {
        h.stdev() / 1000.0
    };
    let _ = writeln!(out, "#[Mean    = {mean:12.3}, StdDeviation   = {sd:12.3}]");
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        ms(h.max()),
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h)
    );
    out
}

/// HdrHistogram's sub-bucket count for the histogram's precision.
fn sub_buckets<T: hdrhistogram::Counter>(h: &Histogram<T>) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(h.sigfig()));
    largest.next_power_of_two()
}

/// Write `--json`, `--hgrm` and `--svg` outputs when asked.
pub fn write_outputs(common: &crate::Common, doc: &Value, h: &Histogram<u64>) {
    write_outputs_with(common, doc, h, &[]);
}

/// [`write_outputs`], with more latency series drawn in the SVG next to
/// `h` (e.g. same- and cross-instance deliveries).
pub fn write_outputs_with(
    common: &crate::Common,
    doc: &Value,
    h: &Histogram<u64>,
    more: &[(&str, &Histogram<u64>)],
) {
    if let Some(p) = &common.svg {
        let title = format!(
            "{} latency by percentile @ {}",
            doc["scenario"].as_str().unwrap_or(""),
            common.servers()
        );
        let mut series = vec![("all", h)];
        series.extend_from_slice(more);
        if let Err(e) = std::fs::write(p, crate::svg::percentile_svg(&series, &title)) {
            eprintln!("writing {p}: {e}");
        }
    }
    let (json_path, hgrm_path) = (common.json.as_deref(), common.hgrm.as_deref());
    if let Some(p) = json_path
        && let Err(e) = std::fs::write(
            p,
            serde_json::to_string_pretty(doc).unwrap_or_default() + "\n",
        )
    {
        eprintln!("writing {p}: {e}");
    }
    if let Some(p) = hgrm_path
        && let Err(e) = std::fs::write(p, hgrm_text(h))
    {
        eprintln!("writing {p}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::new_hist;

    #[test]
    fn hgrm_has_header_rows_and_footer() {
        let mut h = new_hist();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let t = hgrm_text(&h);
        assert!(t.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(t.contains("#[Max     =        1.000, Total count    =         1000]"));
        let last_row = t
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        assert!(last_row.contains("1.000000000000"));
        assert!(t.contains("SubBuckets     =         2048]"));
    }
}
