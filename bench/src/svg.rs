//! A latency-by-percentile plot (SVG), in the style of HdrHistogram's
//! plotter: x is 1/(1-percentile) on a log scale, y is latency in ms.

use hdrhistogram::Histogram;
use std::fmt::Write as _;

const W: f64 = 800.0;
const H: f64 = 480.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 50.0;
const TOP: f64 = 40.0;
const RIGHT: f64 = 20.0;
/// Decades on the x axis: 0 (p0) .. 6 (p99.9999).
const DECADES: f64 = 6.0;

fn x_of(q: f64) -> f64 {
    let d = (1.0 / (1.0 - q.min(1.0 - 1e-6))).log10().min(DECADES);
    LEFT + d / DECADES * (W - LEFT - RIGHT)
}

/// Line colours of the series, in order.
const COLOURS: [&str; 4] = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd"];

/// The plot as an SVG document: one line per `(label, histogram)`; a
/// legend when there is more than one.
pub fn percentile_svg(series: &[(&str, &Histogram<u64>)], title: &str) -> String {
    let max_us = series.iter().map(|(_, h)| h.max()).max().unwrap_or(0);
    let max_ms = (max_us as f64 / 1000.0).max(0.001) * 1.1;
    let y_of = |ms: f64| H - BOTTOM - ms / max_ms * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
        W / 2.0,
        escape(title)
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = LEFT + i as f64 / DECADES * (W - LEFT - RIGHT);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#ddd\"/>",
            H - BOTTOM
        );
        let _ = writeln!(
            s,
            "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            H - BOTTOM + 18.0
        );
    }
    for i in 0..=5 {
        let ms = max_ms * i as f64 / 5.0;
        let y = y_of(ms);
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>",
            W - RIGHT
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{ms:.2}</text>",
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>",
        W / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">latency (ms)</text>",
        H / 2.0,
        H / 2.0
    );
    for (i, (label, h)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut pts = String::new();
        if !h.is_empty() {
            for v in h.iter_quantiles(5) {
                let ms = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
                let _ = write!(
                    pts,
                    "{:.1},{:.1} ",
                    x_of(v.quantile_iterated_to()),
                    y_of(ms)
                );
            }
        }
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.trim_end()
        );
        if series.len() > 1 {
            let y = TOP + 16.0 + 18.0 * i as f64;
            let (x0, x1) = (LEFT + 16.0, LEFT + 40.0);
            let _ = writeln!(
                s,
                "<line x1=\"{x0:.1}\" y1=\"{y:.1}\" x2=\"{x1:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{} ({} samples)</text>",
                x1 + 6.0,
                y + 4.0,
                escape(label),
                h.len(),
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::new_hist;

    #[test]
    fn plot_has_a_line() {
        let mut h = new_hist();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let svg = percentile_svg(&[("all", &h)], "a <test>");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt;test&gt;"));
        assert!(svg.matches(',').count() > 10);
        assert!(!svg.contains("samples)"), "no legend for one series");
        let mut cross = new_hist();
        cross.record(20_000).unwrap();
        let svg = percentile_svg(&[("all", &h), ("cross <instance>", &cross)], "t");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("cross &lt;instance&gt; (1 samples)"));
        // The y axis fits the slowest series (its max x 1.1, ~22 ms).
        let top = format!(">{:.2}</text>", cross.max() as f64 / 1000.0 * 1.1);
        assert!(top.starts_with(">22.0"), "{top}");
        assert!(svg.contains(&top));
    }
}
