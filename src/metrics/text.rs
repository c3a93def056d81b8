//! Pieces of the Prometheus text exposition format 0.0.4: escaping and number formatting.
//!
//! Floats are written the way Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes them, as the
//! Prometheus Go client (and so etcd) does, because `le` bucket labels are matched as strings: a
//! dashboard written against etcd's `le="0.001"` must find the same string here.

use std::fmt::Write as _;

/// Appends `value` escaped for a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub(crate) fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `help` escaped for a `# HELP` line: `\` → `\\`, newline → `\n` (quotes stay).
pub(crate) fn push_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `value` as Go's `FormatFloat(value, 'g', -1, 64)` (shortest digits that round-trip;
/// exponent form when the decimal exponent is below -4 or at least 6), with Prometheus' spellings
/// of the non-finite values.
pub(crate) fn push_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if value == 0.0 {
        out.push_str(if value.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, e.g. "-2.147483648e9" or "1e-5".
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = match scientific.split_once('e') {
        Some(parts) => parts,
        None => {
            // Unreachable for finite non-zero floats; fall back to a valid rendering.
            let _ = write!(out, "{value}");
            return;
        }
    };
    let exponent: i32 = match exponent.parse() {
        Ok(e) => e,
        Err(_) => {
            let _ = write!(out, "{value}");
            return;
        }
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    debug_assert!(!digits.is_empty(), "a finite float has at least one digit");
    if negative {
        out.push('-');
    }
    if !(-4..6).contains(&exponent) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        // Go writes at least two exponent digits, with a sign.
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
        return;
    }
    // Plain form: the decimal point sits after `exponent + 1` digits.
    let point = exponent + 1;
    if point <= 0 {
        out.push_str("0.");
        for _ in 0..(-point) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if digits.len() <= point {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(v: f64) -> String {
        let mut s = String::new();
        push_float(&mut s, v);
        s
    }

    #[test]
    fn floats_are_written_as_go_formats_them() {
        // Expected strings are what Go's strconv.FormatFloat(v, 'g', -1, 64) prints; the first
        // ones appear verbatim in etcd 3.5.1's /metrics.
        let cases: &[(f64, &str)] = &[
            (0.001, "0.001"),
            (8.192, "8.192"),
            (0.003496997, "0.003496997"),
            (2147483648.0, "2.147483648e+09"),
            (20480.0, "20480"),
            (1.0, "1"),
            (0.0, "0"),
            (-1.5, "-1.5"),
            (1e6, "1e+06"),
            (999999.0, "999999"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e100, "1e+100"),
            (123.456, "123.456"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, expected) in cases {
            assert_eq!(float(*value), *expected, "formatting {value:?}");
        }
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline_only() {
        let mut s = String::new();
        push_label_value(&mut s, "a\\b\"c\nd\te");
        assert_eq!(s, "a\\\\b\\\"c\\nd\te");
    }

    #[test]
    fn help_text_escapes_backslash_and_newline_but_not_quotes() {
        let mut s = String::new();
        push_help(&mut s, "say \"hi\"\\\nbye");
        assert_eq!(s, "say \"hi\"\\\\\\nbye");
    }
}
