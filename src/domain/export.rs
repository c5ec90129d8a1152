//! The reconciliation as JSON, CSV and a plain-text table (docs/reconcile.md). Shared by the
//! headless command and the TUI's export.

use std::fmt::Write as _;

use super::model::{Line, Reconciliation, Status, display_money, display_quantity};

/// The CSV columns, in order (the same names as the JSON line fields).
pub const CSV_COLUMNS: [&str; 14] = [
    "customer_tenant_id",
    "customer_name",
    "product_id",
    "product_name",
    "term",
    "billing",
    "distributor_qty",
    "microsoft_qty",
    "assigned",
    "psa_qty",
    "statuses",
    "monthly_impact",
    "renewal_date",
    "cancel_window_hours_left",
];

/// The whole reconciliation as pretty JSON (money as 2-dp strings).
pub fn to_json(r: &Reconciliation) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| {
        // Serialising plain data cannot fail; say so rather than panic if it ever does.
        format!("{{\"error\": \"cannot write the reconciliation as JSON: {e}\"}}")
    })
}

pub(super) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// One line's CSV values, in [`CSV_COLUMNS`] order (empty for null).
pub fn csv_values(l: &Line) -> Vec<String> {
    vec![
        l.customer_tenant_id.clone(),
        l.customer_name.clone(),
        l.product_id.clone(),
        l.product_name.clone(),
        l.term.as_str().to_string(),
        l.billing.as_str().to_string(),
        opt(l.distributor_qty),
        opt(l.microsoft_qty),
        opt(l.assigned),
        l.psa_qty.map(display_quantity).unwrap_or_default(),
        l.statuses
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(";"),
        display_money(l.monthly_impact),
        opt(l.renewal_date),
        opt(l.cancel_window_hours_left),
    ]
}

/// Every line as CSV (RFC 4180: CRLF line ends, quoted where needed), header first.
pub fn to_csv(r: &Reconciliation) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for l in &r.lines {
        let row: Vec<String> = csv_values(l).iter().map(|v| csv_field(v)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Table options.
#[derive(Debug, Clone, Copy)]
pub struct TableOptions {
    /// Show lines in line too (default: only lines with a mismatch).
    pub all: bool,
    /// Total width in columns (at least 100).
    pub width: usize,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            all: false,
            width: 120,
        }
    }
}

/// `s` cut or padded to exactly `n` columns (one column per character).
pub(super) fn fit(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        format!("{s}{}", " ".repeat(n - count))
    } else if n == 0 {
        String::new()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub(super) fn right(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count >= n {
        fit(s, n)
    } else {
        format!("{}{s}", " ".repeat(n - count))
    }
}

/// `text` wrapped at `width` columns; lines after the first are indented by `indent`.
pub(super) fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let body = text.trim_start_matches(' ');
    let mut line = " ".repeat(text.len() - body.len());
    for word in body.split(' ').filter(|w| !w.is_empty()) {
        let len = line.chars().count();
        if len > indent && len + 1 + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(indent);
        } else if !line.is_empty() && !line.ends_with(' ') {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// A product name shortened for the table (`Microsoft 365 Business Premium` → `M365 Business
/// Premium`).
pub(super) fn short_product(name: &str) -> String {
    let n = name.trim();
    for (long, short) in [
        ("Microsoft 365 ", "M365 "),
        ("Office 365 ", "O365 "),
        ("Microsoft ", ""),
    ] {
        if let Some(rest) = n.strip_prefix(long) {
            return format!("{short}{rest}");
        }
    }
    n.to_string()
}

fn num(n: Option<i64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

/// A plain-text report for a terminal: the summary, the lines (mismatches only unless
/// `all`), a legend, and what is unmapped.
pub fn to_table(r: &Reconciliation, opts: TableOptions) -> String {
    const W: [usize; 10] = [22, 22, 5, 4, 4, 4, 4, 9, 10, 3];
    let width = opts.width.max(100);
    let fixed: usize = W.iter().sum::<usize>() + W.len();
    let status_w = width.saturating_sub(fixed).max(10);
    let s = &r.summary;
    let mut out = String::new();
    let psa = s.psa.map(|a| a.display_name()).unwrap_or("no PSA");
    let _ = writeln!(
        out,
        "Reconciliation: Dicker Data, Microsoft and {psa} — fetched {}",
        r.fetched_at.format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(out, "{}", s.headline());
    let _ = writeln!(out);
    let header = [
        fit("Customer", W[0]),
        fit("Product", W[1]),
        fit("Term", W[2]),
        right("DD", W[3]),
        right("MS", W[4]),
        right("Asg", W[5]),
        right("PSA", W[6]),
        right("$/month", W[7]),
        fit("Renews", W[8]),
        right("7d", W[9]),
        "Status".to_string(),
    ];
    let _ = writeln!(out, "{}", header.join(" ").trim_end());
    let _ = writeln!(out, "{}", "─".repeat(width));
    let mut shown = 0usize;
    for l in r.lines.iter().filter(|l| opts.all || !l.is_in_line()) {
        shown += 1;
        let bill = match l.billing {
            super::model::Billing::Monthly => "M",
            super::model::Billing::Annual => "A",
        };
        let statuses = l
            .statuses
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(", ");
        let row = [
            fit(&l.customer_name, W[0]),
            fit(&short_product(&l.product_name), W[1]),
            fit(&format!("{}/{bill}", l.term.as_str()), W[2]),
            right(&num(l.distributor_qty), W[3]),
            right(&num(l.microsoft_qty), W[4]),
            right(&num(l.assigned), W[5]),
            right(
                &l.psa_qty
                    .map(display_quantity)
                    .unwrap_or_else(|| "-".into()),
                W[6],
            ),
            right(&display_money(l.monthly_impact), W[7]),
            fit(
                &l.renewal_date
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into()),
                W[8],
            ),
            right(
                &l.cancel_window_hours_left
                    .map(|h| h.to_string())
                    .unwrap_or_default(),
                W[9],
            ),
            fit(&statuses, status_w),
        ];
        let _ = writeln!(out, "{}", row.join(" ").trim_end());
    }
    if shown == 0 {
        let _ = writeln!(
            out,
            "{}",
            if s.lines_audited == 0 {
                "(no lines: nothing was audited)"
            } else {
                "(no mismatches)"
            }
        );
    }
    let _ = writeln!(out, "{}", "─".repeat(width));
    if !opts.all && s.in_line > 0 {
        let _ = writeln!(
            out,
            "{} line(s) in line are not shown (--all shows them).",
            s.in_line
        );
    }
    let counts: Vec<String> = s
        .by_status
        .iter()
        .filter(|(st, n)| **n > 0 && **st != Status::InLine)
        .map(|(st, n)| format!("{} {n}", st.as_str()))
        .collect();
    if !counts.is_empty() {
        out.push_str(&wrap(
            &format!("Per status: {}", counts.join(", ")),
            width,
            2,
        ));
    }
    out.push_str(&wrap(
        &format!(
            "Columns: DD = Dicker Data confirmed, MS = Microsoft active, Asg = assigned (per SKU), PSA = what {psa} charges; Term = term/billing (M monthly, A annual); $/month = monthly money impact; 7d = hours left to cancel (NCE window)."
        ),
        width,
        2,
    ));
    let _ = writeln!(
        out,
        "Unmapped: {} customer(s), {} product(s).",
        s.unmapped_customers, s.unmapped_products
    );
    for c in r.mapping.customers.iter().filter(|c| c.psa.is_unmapped()) {
        let hint = match &c.psa {
            super::mapping::PsaLink::Unmapped { suggestions } => suggestions
                .first()
                .map(|t| format!(" — suggestion: {} ({})", t.label, t.reasons.join("; ")))
                .unwrap_or_default(),
            _ => String::new(),
        };
        out.push_str(&wrap(
            &format!("  customer {} [{}]{hint}", c.name, c.tenant_id),
            width,
            4,
        ));
    }
    for p in &r.mapping.unmapped_psa_products {
        let hint = p
            .suggestions
            .first()
            .map(|t| format!(" — suggestion: {} ({})", t.label, t.reasons.join("; ")))
            .unwrap_or_default();
        out.push_str(&wrap(
            &format!(
                "  product {} \"{}\": {} charge(s), no stock code{hint}",
                p.product, p.name, p.charges
            ),
            width,
            4,
        ));
    }
    if s.lines_without_price > 0 {
        let _ = writeln!(
            out,
            "{} line(s) have a difference without a known price or cost (counted as 0).",
            s.lines_without_price
        );
    }
    if !s.customers_without_graph.is_empty() {
        out.push_str(&wrap(
            &format!(
                "Assigned licences not checked (no Graph data) for {} customer(s): {}",
                s.customers_without_graph.len(),
                s.customers_without_graph
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            width,
            2,
        ));
    }
    for c in &s.customers_not_read {
        let _ = writeln!(
            out,
            "NOT AUDITED: {} [{}]: {}",
            c.name, c.tenant_id, c.reason
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("Atlas"), "Atlas");
        assert_eq!(csv_field("Atlas, Pty"), "\"Atlas, Pty\"");
        assert_eq!(csv_field("O\"Brien"), "\"O\"\"Brien\"");
        assert_eq!(csv_field("a\nb"), "\"a\nb\"");
    }

    #[test]
    fn wrap_keeps_lines_within_the_width() {
        let t = wrap(&"word ".repeat(60), 30, 2);
        assert!(t.lines().all(|l| l.chars().count() <= 30), "{t}");
        assert!(t.lines().skip(1).all(|l| l.starts_with("  word")), "{t}");
        assert_eq!(wrap("short", 30, 2), "short\n");
        assert_eq!(wrap("  indented text", 30, 4), "  indented text\n");
    }

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("abc", 5), "abc  ");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(right("7", 3), "  7");
    }
}
