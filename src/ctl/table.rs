//! Tables in the layout `etcdctl -w table` prints: `+---+` borders, centred upper-case
//! headers, right-aligned cells.

/// Renders `header` and `rows` as a bordered table, one trailing newline included.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .map(|cell| cell.chars().count())
                .chain([h.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let border: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = border.clone();
    out.push_str(&line(header.iter().map(|h| h.to_string()), &widths, center));
    out.push_str(&border);
    for row in rows {
        out.push_str(&line(row.iter().cloned(), &widths, right));
    }
    out.push_str(&border);
    out
}

fn line(
    cells: impl Iterator<Item = String>,
    widths: &[usize],
    align: fn(&str, usize) -> String,
) -> String {
    let mut out = String::new();
    for (cell, width) in cells.zip(widths) {
        out.push_str("| ");
        out.push_str(&align(&cell, *width));
        out.push(' ');
    }
    out.push_str("|\n");
    out
}

fn right(cell: &str, width: usize) -> String {
    format!("{cell:>width$}")
}

/// Centred, with the odd space on the right (as tablewriter pads).
fn center(cell: &str, width: usize) -> String {
    let gap = width.saturating_sub(cell.chars().count());
    let left = gap / 2;
    format!("{}{cell}{}", " ".repeat(left), " ".repeat(gap - left))
}

/// A byte count the way etcdctl prints it (SI units: "20 kB", "1.5 MB").
pub fn human_bytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if size < 10 {
        return format!("{size} B");
    }
    let mut exponent = 0;
    let mut scaled = size as f64;
    while scaled >= 1000.0 && exponent + 1 < UNITS.len() {
        scaled /= 1000.0;
        exponent += 1;
    }
    let rounded = (scaled * 10.0 + 0.5).floor() / 10.0;
    if rounded < 10.0 {
        format!("{rounded:.1} {}", UNITS[exponent])
    } else {
        format!("{rounded:.0} {}", UNITS[exponent])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_etcdctl() {
        let table = render(
            &["ID", "IS LEARNER"],
            &[vec!["b5179d13d0285315".into(), "false".into()]],
        );
        let expected = "\
+------------------+------------+
|        ID        | IS LEARNER |
+------------------+------------+
| b5179d13d0285315 |      false |
+------------------+------------+
";
        assert_eq!(table, expected);
    }

    #[test]
    fn byte_counts_use_si_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 kB");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(25_165_824), "25 MB");
    }
}
