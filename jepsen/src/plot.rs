//! The run's plots, as SVG written by hand (no plotting library for two charts):
//! `latency.svg`, every operation's latency over time on a log scale, coloured by outcome
//! (ok, failed, indeterminate drawn at the timeout line), and `throughput.svg`, completed
//! operations per second of each workload; both shade the nemesis' fault intervals.

use std::fmt::Write as _;

use serde_json::Value;

/// One operation, as the plots need it.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub workload: usize,
    pub call_ns: u64,
    pub ret_ns: Option<u64>,
    pub ok: bool,
}

/// A fault in force from `start_ns` to `end_ns`.
#[derive(Debug, Clone)]
pub struct Interval {
    pub kind: String,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Reads the points of a history in JSON lines (either workload's format: both have `call`,
/// `return` and `ok`); lines that are not operations are skipped.
pub fn points(history: &str, workload: usize) -> Vec<Point> {
    history
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|op| {
            Some(Point {
                workload,
                call_ns: op.get("call")?.as_u64()?,
                ret_ns: op.get("return").and_then(Value::as_u64),
                ok: op.get("ok")?.as_bool()?,
            })
        })
        .collect()
}

/// Pairs each fault's start in the nemesis timeline with its end (or the run's end).
pub fn intervals(timeline: &str, end_ns: u64) -> Vec<Interval> {
    let mut open: Vec<Interval> = Vec::new();
    let mut closed = Vec::new();
    for event in timeline
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
    {
        let (Some(time), Some(action)) = (
            event.get("time").and_then(Value::as_u64),
            event.get("action").and_then(Value::as_str),
        ) else {
            continue;
        };
        let first = action.split_whitespace().next().unwrap_or("");
        let membership_start = action.starts_with("member removed");
        let membership_end =
            action.starts_with("member added") || action.starts_with("member add failed");
        // "clock over", "failpoint over (the node had exited: ...)".
        let over = action.split_whitespace().nth(1) == Some("over");
        let ends = match (first, over) {
            _ if membership_end => "member",
            ("member", _) if !membership_start => continue,
            ("kill" | "pause" | "partition" | "member", _) | ("clock" | "failpoint", false) => {
                open.push(Interval {
                    kind: first.to_string(),
                    start_ns: time,
                    end_ns,
                });
                continue;
            }
            ("restart", _) => "kill",
            ("resume", _) => "pause",
            ("heal", _) => "partition",
            ("clock" | "failpoint", true) => first,
            _ => continue,
        };
        if let Some(i) = open.iter().rposition(|interval| interval.kind == ends) {
            let mut interval = open.remove(i);
            interval.end_ns = time;
            closed.push(interval);
        }
    }
    closed.extend(open);
    closed
}

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 60.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 30.0;
/// More points than this per outcome (ok, failed, indeterminate) and the file gets
/// unwieldy (a thirty-minute run has millions of operations): each is thinned evenly.
const MAX_POINTS_PER_OUTCOME: usize = 20_000;

/// 0 ok, 1 failed, 2 indeterminate.
fn outcome_of(point: &Point) -> u8 {
    match (point.ret_ns, point.ok) {
        (Some(_), true) => 0,
        (Some(_), false) => 1,
        (None, _) => 2,
    }
}
const WORKLOAD_COLOURS: [&str; 4] = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b"];

fn fault_colour(kind: &str) -> &'static str {
    match kind {
        "kill" => "#d62728",
        "pause" => "#ff7f0e",
        "clock" => "#17becf",
        "failpoint" => "#e377c2",
        "member" => "#bcbd22",
        _ => "#7f7f7f",
    }
}

struct Frame {
    end_s: f64,
    svg: String,
}

impl Frame {
    fn new(title: &str, end_ns: u64, intervals: &[Interval]) -> Frame {
        let end_s = (end_ns as f64 / 1e9).max(1.0);
        let mut svg = String::new();
        let _ = write!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
             font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" \
             fill=\"white\"/>\n<text x=\"{LEFT}\" y=\"18\" font-size=\"13\">{title}</text>\n"
        );
        let mut frame = Frame { end_s, svg };
        for interval in intervals {
            let x0 = frame.x(interval.start_ns as f64 / 1e9);
            let x1 = frame.x(interval.end_ns as f64 / 1e9);
            let _ = writeln!(
                frame.svg,
                "<rect x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\" \
                 fill-opacity=\"0.15\"><title>{}</title></rect>",
                (x1 - x0).max(1.0),
                HEIGHT - TOP - BOTTOM,
                fault_colour(&interval.kind),
                interval.kind
            );
        }
        let bottom = HEIGHT - BOTTOM;
        let _ = writeln!(
            frame.svg,
            "<line x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{WIDTH}\" y2=\"{bottom}\" stroke=\"black\"/>\n\
             <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{bottom}\" stroke=\"black\"/>\n\
             <text x=\"{}\" y=\"{}\">time (s)</text>",
            WIDTH / 2.0,
            HEIGHT - 8.0
        );
        let step = (frame.end_s / 10.0).ceil().max(1.0);
        let mut t = 0.0;
        while t <= frame.end_s {
            let _ = writeln!(
                frame.svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{t}</text>",
                frame.x(t),
                bottom + 14.0
            );
            t += step;
        }
        frame
    }

    fn x(&self, seconds: f64) -> f64 {
        LEFT + (seconds / self.end_s).clamp(0.0, 1.0) * (WIDTH - LEFT - 10.0)
    }

    /// `fraction` 0 is the bottom of the plot area, 1 its top.
    fn y(fraction: f64) -> f64 {
        HEIGHT - BOTTOM - fraction.clamp(0.0, 1.0) * (HEIGHT - TOP - BOTTOM)
    }

    fn finish(mut self, legend: &[(&str, &str)]) -> String {
        for (i, (colour, name)) in legend.iter().enumerate() {
            let x = WIDTH - 160.0;
            let y = TOP + 14.0 * i as f64 + 10.0;
            let _ = writeln!(
                self.svg,
                "<rect x=\"{x}\" y=\"{}\" width=\"9\" height=\"9\" fill=\"{colour}\"/>\
                 <text x=\"{}\" y=\"{y}\">{name}</text>",
                y - 8.0,
                x + 13.0
            );
        }
        self.svg.push_str("</svg>\n");
        self.svg
    }
}

/// Latency of every operation over time (log scale from 0.1 ms to the timeout line).
pub fn latency_svg(
    points: &[Point],
    intervals: &[Interval],
    end_ns: u64,
    timeout_ns: u64,
) -> String {
    let mut frame = Frame::new("latency of each operation (log scale)", end_ns, intervals);
    let (low, high) = (
        1e5_f64.log10(),
        (timeout_ns.max(1_000_000) as f64 * 1.5).log10(),
    );
    let y_of = |ns: f64| Frame::y((ns.max(1.0).log10() - low) / (high - low));
    for ms in [0.1_f64, 1.0, 10.0, 100.0, 1000.0, 10_000.0] {
        let ns = ms * 1e6;
        if ns.log10() > high {
            break;
        }
        let _ = writeln!(
            frame.svg,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{ms} ms</text>",
            LEFT - 4.0,
            y_of(ns) + 4.0
        );
    }
    // Each outcome thinned evenly on its own, so rare ones keep their points.
    let count = |outcome: u8| points.iter().filter(|p| outcome_of(p) == outcome).count();
    let thin = [0u8, 1, 2].map(|outcome| count(outcome).div_ceil(MAX_POINTS_PER_OUTCOME).max(1));
    let mut seen = [0usize; 3];
    for point in points {
        let outcome = outcome_of(point);
        seen[outcome as usize] += 1;
        if seen[outcome as usize] % thin[outcome as usize] != 0 {
            continue;
        }
        let (latency, colour) = match point.ret_ns {
            Some(ret) if point.ok => (ret.saturating_sub(point.call_ns), "#1f77b4"),
            Some(ret) => (ret.saturating_sub(point.call_ns), "#ff7f0e"),
            None => (timeout_ns, "#d62728"),
        };
        let _ = writeln!(
            frame.svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"2\" height=\"2\" fill=\"{colour}\"/>",
            frame.x(point.call_ns as f64 / 1e9),
            y_of(latency as f64)
        );
    }
    frame.finish(&[
        ("#1f77b4", "ok"),
        ("#ff7f0e", "failed"),
        ("#d62728", "indeterminate"),
        ("#d62728", "shaded: kill"),
        ("#ff7f0e", "shaded: pause"),
        ("#7f7f7f", "shaded: partition"),
        ("#17becf", "shaded: clock"),
        ("#e377c2", "shaded: failpoint"),
        ("#bcbd22", "shaded: member"),
    ])
}

/// Completed operations per second, one line per workload.
pub fn throughput_svg(
    points: &[Point],
    names: &[&str],
    intervals: &[Interval],
    end_ns: u64,
) -> String {
    let mut frame = Frame::new("completed operations per second", end_ns, intervals);
    let seconds = (end_ns / 1_000_000_000 + 1) as usize;
    let mut buckets = vec![vec![0u64; seconds]; names.len()];
    for point in points {
        if let (Some(ret), true) = (point.ret_ns, point.ok) {
            let second = (ret / 1_000_000_000) as usize;
            if let Some(count) = buckets
                .get_mut(point.workload)
                .and_then(|row| row.get_mut(second))
            {
                *count += 1;
            }
        }
    }
    let peak = buckets.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let _ = writeln!(
        frame.svg,
        "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{peak}</text>\n\
         <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">0</text>",
        LEFT - 4.0,
        Frame::y(1.0) + 4.0,
        LEFT - 4.0,
        Frame::y(0.0)
    );
    let mut legend = Vec::new();
    for (w, row) in buckets.iter().enumerate() {
        let colour = WORKLOAD_COLOURS[w % WORKLOAD_COLOURS.len()];
        let path: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(s, &count)| {
                format!(
                    "{:.1},{:.1}",
                    frame.x(s as f64 + 0.5),
                    Frame::y(count as f64 / peak)
                )
            })
            .collect();
        let _ = writeln!(
            frame.svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.join(" ")
        );
        legend.push((colour, names.get(w).copied().unwrap_or("?")));
    }
    frame.finish(&legend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_pair_with_their_ends_and_unended_ones_last_to_the_end() {
        let timeline = "{\"time\":10,\"action\":\"kill\"}\n{\"time\":20,\"action\":\"restart\"}\n\
                        {\"time\":30,\"action\":\"partition\"}\n\
                        {\"time\":40,\"action\":\"failpoint apply=crash-after(3)\"}\n\
                        {\"time\":50,\"action\":\"failpoint over (the node had exited: signal: 6)\"}\n";
        let intervals = intervals(timeline, 99);
        assert_eq!(intervals.len(), 3);
        assert_eq!(
            (intervals[1].kind.as_str(), intervals[1].end_ns),
            ("failpoint", 50)
        );
        assert_eq!((intervals[0].start_ns, intervals[0].end_ns), (10, 20));
        assert_eq!(intervals[2].kind, "partition");
        assert_eq!(intervals[2].end_ns, 99);
    }

    #[test]
    fn every_outcome_is_drawn_and_throughput_counts_per_second() {
        let history = "{\"call\":0,\"return\":1000000,\"ok\":true}\n\
                       {\"call\":5,\"return\":2000000000,\"ok\":false}\n\
                       {\"call\":7,\"return\":null,\"ok\":false}\n";
        let points = points(history, 0);
        assert_eq!(points.len(), 3);
        let svg = latency_svg(&points, &[], 3_000_000_000, 1_000_000_000);
        assert_eq!(svg.matches("width=\"2\" height=\"2\"").count(), 3);
        let svg = throughput_svg(&points, &["register"], &[], 3_000_000_000);
        assert!(svg.contains("polyline"));
        assert!(
            svg.contains(">1</text>"),
            "the peak is one op in a second: {svg}"
        );
    }
}
