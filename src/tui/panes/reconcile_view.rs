//! Drawing the Reconcile tab: the progress gauge while fetching, the status line, the summary
//! bar (headline, unmapped counts, a count per status), the table (only the rows on screen,
//! grouped by customer or not) and the detail pane.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line as TLine, Span};
use ratatui::widgets::{Block, Borders, Clear, Gauge, Paragraph, Wrap};

use super::{Group, Phase, Row, State};
use crate::domain::model::{display_money, display_quantity};
use crate::domain::{
    Billing, Field, Line, PsaLink, Reconciliation, Status, Suggestion, Summary, Term,
};
use crate::engine::fetch::FetchProgress;
use crate::tui::app::Setup;
use crate::tui::theme::Theme;

/// Most rows the summary's counts may take.
const SUMMARY_COUNT_ROWS: usize = 3;

pub fn render(s: &State, _setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.width < 4 || area.height < 4 {
        return;
    }
    let progress = match &s.phase {
        Phase::Running(p) => Some(p),
        _ => None,
    };
    let status = status_line(s, theme);
    let status_rows: u16 = match (&status, &s.phase) {
        (None, _) => 0,
        (Some(_), Phase::Failed(_)) if s.filter.is_empty() && s.note.is_none() => 3,
        (Some(_), _) => 1,
    };
    let summary = summary_lines(s, theme, usize::from(area.width));
    let [gauge, status_area, summary_area, table] = Layout::vertical([
        Constraint::Length(u16::from(progress.is_some())),
        Constraint::Length(status_rows),
        Constraint::Length(summary.len() as u16),
        Constraint::Min(1),
    ])
    .areas(area);
    if let Some(p) = progress {
        progress_gauge(p, theme, frame, gauge);
    }
    if let Some(line) = status {
        frame.render_widget(Paragraph::new(line).wrap(Wrap { trim: false }), status_area);
    }
    frame.render_widget(Paragraph::new(summary), summary_area);
    lines_table(s, theme, frame, table);
    if let Some(i) = s.detail
        && let Some(r) = &s.result
        && let Some(l) = r.lines.get(i)
    {
        detail(s, r, l, theme, frame, area);
    }
}

/// "Fetching: 17 of 40 customers · Dicker Data ✓ · PSA …" over a bar of customers done.
fn progress_gauge(p: &FetchProgress, theme: &Theme, frame: &mut Frame, area: Rect) {
    let ratio = if p.customers_found == 0 {
        0.0
    } else {
        (p.customers_done as f64 / p.customers_found as f64).clamp(0.0, 1.0)
    };
    let mark = |done: bool| if done { "✓" } else { "…" };
    let label = format!(
        " Fetching: {} of {}{} customers · Dicker Data {} · PSA {} ",
        p.customers_done,
        p.customers_found,
        if p.customers_listed { "" } else { "+" },
        mark(p.dicker_data_done),
        mark(p.psa_done),
    );
    frame.render_widget(
        Gauge::default()
            .ratio(ratio)
            .use_unicode(true)
            .gauge_style(theme.accent())
            .label(Span::styled(label, theme.title())),
        area,
    );
}

fn status_line(s: &State, theme: &Theme) -> Option<TLine<'static>> {
    if s.typing || !s.filter.is_empty() {
        let mut spans = vec![
            Span::styled("Filter: ", theme.title()),
            Span::styled(s.filter.clone(), theme.text()),
        ];
        if s.typing {
            spans.push(Span::styled("▏", theme.accent()));
        }
        let n = s.view.iter().filter(|r| matches!(r, Row::Line(_))).count();
        spans.push(Span::styled(format!("  {n} line(s) match"), theme.dim()));
        return Some(TLine::from(spans));
    }
    if let Some((text, err)) = &s.note {
        let style = if *err { theme.error() } else { theme.ok() };
        return Some(TLine::from(Span::styled(text.clone(), style)));
    }
    match &s.phase {
        Phase::Idle => Some(TLine::from(Span::styled(
            "Press Enter to fetch Dicker Data, Microsoft and the PSA and reconcile them.",
            theme.text(),
        ))),
        // The gauge says it.
        Phase::Running(_) => None,
        Phase::Failed(e) => Some(TLine::from(Span::styled(
            format!("Failed: {e}"),
            theme.error(),
        ))),
        Phase::Done => {
            let lines = s.view.iter().filter(|r| matches!(r, Row::Line(_))).count();
            let mut t = format!(
                "Fetched {}; showing {lines}{} line(s)",
                s.result
                    .as_ref()
                    .map(|r| r.fetched_at.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default(),
                if s.show_all { "" } else { " mismatched" }
            );
            if s.grouped {
                t.push_str(&format!(" of {} customer(s)", s.groups.len()));
            }
            if s.sort != super::Sort::Default {
                t.push_str(&format!(
                    "; sorted by {}{}",
                    s.sort.label(),
                    if s.reverse { " (reversed)" } else { "" }
                ));
            }
            Some(TLine::from(Span::styled(t, theme.dim())))
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The headline, then the unmapped counts (always, zeros too) and a count per status
/// present, packed into at most [`SUMMARY_COUNT_ROWS`] rows of `width`.
fn summary_lines(s: &State, theme: &Theme, width: usize) -> Vec<TLine<'static>> {
    let Some(r) = &s.result else {
        return Vec::new();
    };
    let sum = &r.summary;
    let (headline, style) = if s.partial {
        (partial_headline(s, sum), theme.accent())
    } else if sum.all_clean() {
        (sum.headline(), theme.ok())
    } else if sum.lines_audited == 0 {
        (sum.headline(), theme.error())
    } else {
        (sum.headline(), theme.warn())
    };
    let mut items: Vec<Span<'static>> = vec![Span::styled(
        format!(
            "unmapped: {}, {}",
            plural(sum.unmapped_customers, "customer", "customers"),
            plural(sum.unmapped_products, "product", "products")
        ),
        if sum.unmapped_customers + sum.unmapped_products > 0 {
            theme.warn()
        } else {
            theme.dim()
        },
    )];
    items.extend(
        sum.by_status
            .iter()
            .filter(|(st, n)| **st != Status::InLine && **n > 0)
            .map(|(st, n)| Span::styled(format!("{} {n}", st.label()), theme.text())),
    );
    if sum.lines_audited == 0 && !s.partial {
        items.push(Span::styled(
            "no subscriptions at Microsoft or Dicker Data: check the setup, then press r",
            theme.error(),
        ));
    } else if sum.lines_audited > 0 && sum.mismatched == 0 {
        items.push(Span::styled(
            if s.partial {
                "every line so far is in line"
            } else {
                "every line is in line"
            },
            theme.ok(),
        ));
    }
    let mut out: Vec<TLine<'static>> = wrap_words(&headline, width, 2)
        .into_iter()
        .map(|row| TLine::from(Span::styled(row, style)))
        .collect();
    out.extend(pack(items, width, SUMMARY_COUNT_ROWS, theme));
    out
}

/// `text` broken between words into at most `max_rows` rows of `width` (a word longer than
/// a row is left to be cut by the paragraph).
fn wrap_words(text: &str, width: usize, max_rows: usize) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for word in text.split(' ') {
        let w = word.chars().count();
        match rows.last_mut() {
            Some(row) if row.chars().count() + 1 + w <= width => {
                row.push(' ');
                row.push_str(word);
            }
            _ => {
                if rows.len() == max_rows {
                    break;
                }
                rows.push(word.to_string());
            }
        }
    }
    rows
}

fn partial_headline(s: &State, sum: &Summary) -> String {
    // The customers this result has (the gauge may already count more).
    let from = match &s.phase {
        Phase::Running(p) => format!(
            " from {} of {} customers",
            s.partial_customers, p.customers_found
        ),
        _ => String::new(),
    };
    format!(
        "So far: {} lines audited{from}, {} in line, {} with mismatches; {} a month at risk",
        sum.lines_audited,
        sum.in_line,
        sum.mismatched,
        display_money(sum.monthly_at_risk)
    )
}

/// Items separated by " · ", wrapped between items.
fn pack(
    items: Vec<Span<'static>>,
    width: usize,
    max_rows: usize,
    theme: &Theme,
) -> Vec<TLine<'static>> {
    let mut rows: Vec<Vec<Span<'static>>> = Vec::new();
    let mut used = 0usize;
    for item in items {
        let w = item.width();
        match rows.last_mut() {
            Some(row) if used + 3 + w <= width => {
                row.push(Span::styled(" · ", theme.dim()));
                row.push(item);
                used += 3 + w;
            }
            _ => {
                if rows.len() == max_rows {
                    break;
                }
                rows.push(vec![item]);
                used = w;
            }
        }
    }
    rows.into_iter().map(TLine::from).collect()
}

/// Column widths: customer, product, term, DD, MS, assigned, PSA, $/month, renews, 7d,
/// statuses. Grouped, the customer is in the header row: its column is an indent.
fn widths(total: u16, grouped: bool) -> [u16; 11] {
    let wide = total >= 110;
    let (qty, renews) = if wide { (4, 10) } else { (4, 6) };
    let fixed = 4 + qty * 3 + 5 + 10 + renews + 3;
    let gaps = 10;
    let flex = total.saturating_sub(fixed + gaps);
    let (customer, product) = match (grouped, wide) {
        (true, _) => (1, flex * 6 / 10),
        (false, true) => (flex * 3 / 10, flex * 4 / 10),
        (false, false) => (flex * 4 / 10, flex * 3 / 10),
    };
    let statuses = flex.saturating_sub(customer + product);
    [
        customer, product, 4, qty, qty, qty, 5, 10, renews, 3, statuses,
    ]
}

fn cell(out: &mut String, text: &str, w: u16, right: bool) {
    let w = usize::from(w);
    let n = text.chars().count();
    if n > w {
        out.extend(text.chars().take(w.saturating_sub(1)));
        if w > 0 {
            out.push('…');
        }
    } else if right {
        out.extend(std::iter::repeat_n(' ', w - n));
        out.push_str(text);
    } else {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', w - n));
    }
}

fn row_text(cols: &[String], w: &[u16; 11]) -> String {
    const RIGHT: [bool; 11] = [
        false, false, false, true, true, true, true, true, false, true, false,
    ];
    let mut out = String::with_capacity(w.iter().map(|x| usize::from(*x) + 1).sum());
    for (i, ((c, w), r)) in cols.iter().zip(w.iter()).zip(RIGHT.iter()).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        cell(&mut out, c, *w, *r);
    }
    out
}

fn term_billing(t: Term, b: Billing) -> String {
    let t = match t {
        Term::Unknown => "?",
        t => t.as_str().trim_start_matches('P'),
    };
    let b = match b {
        Billing::Monthly => "M",
        Billing::Annual => "A",
    };
    format!("{t}/{b}")
}

fn opt(n: Option<i64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "–".into())
}

fn columns(l: &Line, wide: bool, grouped: bool) -> [String; 11] {
    [
        if grouped {
            String::new()
        } else {
            l.customer_name.clone()
        },
        l.product_name.clone(),
        term_billing(l.term, l.billing),
        opt(l.distributor_qty),
        opt(l.microsoft_qty),
        opt(l.assigned),
        l.psa_qty
            .map(display_quantity)
            .unwrap_or_else(|| "–".into()),
        display_money(l.monthly_impact),
        l.renewal_date
            .map(|d| {
                d.format(if wide { "%Y-%m-%d" } else { "%d %b" })
                    .to_string()
            })
            .unwrap_or_else(|| "–".into()),
        l.cancel_window_hours_left
            .map(|h| h.to_string())
            .unwrap_or_default(),
        l.statuses
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(", "),
    ]
}

fn group_text(g: &Group, width: usize) -> String {
    let mut t = format!(
        "{} {} · {}, {} mismatched · {} a month at risk",
        if g.collapsed { "▸" } else { "▾" },
        g.name,
        plural(g.lines, "line", "lines"),
        g.mismatched,
        display_money(g.money)
    );
    let n = t.chars().count();
    if n < width {
        t.extend(std::iter::repeat_n(' ', width - n));
    }
    t
}

fn lines_table(s: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(r) = &s.result else {
        if s.running() && area.height > 0 {
            frame.render_widget(
                Paragraph::new(Span::styled(
                    "The table fills as customers arrive, once Dicker Data and the PSA are read.",
                    theme.dim(),
                )),
                area,
            );
        }
        return;
    };
    if area.height < 2 {
        return;
    }
    let w = widths(area.width, s.grouped);
    let wide = area.width >= 110;
    let head = [
        if s.grouped { "" } else { "Customer" },
        "Product",
        "Term",
        "DD",
        "MS",
        "Asgn",
        "PSA",
        "$/month",
        "Renews",
        "7d",
        "Statuses",
    ]
    .map(String::from);
    let mut out = vec![TLine::from(Span::styled(
        row_text(&head, &w),
        theme.title(),
    ))];
    if s.view.is_empty() {
        let text = if s.partial {
            "No mismatches in the customers read so far."
        } else if r.summary.lines_audited == 0 {
            "Nothing to show: 0 lines audited."
        } else if !s.filter.is_empty() {
            "No line matches the filter (Esc clears it)."
        } else {
            "No mismatches. Press a to show every line."
        };
        out.push(TLine::from(Span::styled(text, theme.dim())));
        frame.render_widget(Paragraph::new(out), area);
        s.view_rows.set(1);
        return;
    }
    let rows = usize::from(area.height.saturating_sub(1)).max(1);
    s.view_rows.set(rows);
    // Keep the cursor on screen; only the rows shown are formatted.
    let offset = crate::tui::panes::scroll_offset(s.offset.get(), s.cursor, rows, s.view.len());
    s.offset.set(offset);
    for (pos, row) in s.view.iter().enumerate().skip(offset).take(rows) {
        let selected = pos == s.cursor;
        match row {
            Row::Group(g) => {
                let Some(g) = s.groups.get(*g) else { continue };
                let style = if selected {
                    theme.selected()
                } else {
                    theme.title()
                };
                out.push(TLine::from(Span::styled(
                    group_text(g, usize::from(area.width)),
                    style,
                )));
            }
            Row::Line(i) => {
                let Some(l) = r.lines.get(*i) else { continue };
                let style = if selected {
                    theme.selected()
                } else if l.is_in_line() {
                    theme.dim()
                } else {
                    Style::default()
                };
                out.push(TLine::from(Span::styled(
                    row_text(&columns(l, wide, s.grouped), &w),
                    style,
                )));
            }
        }
    }
    frame.render_widget(Paragraph::new(out), area);
}

fn suggestion_lines<T>(out: &mut Vec<TLine<'static>>, list: &[Suggestion<T>], theme: &Theme) {
    for (n, sg) in list.iter().enumerate() {
        out.push(TLine::from(vec![
            Span::styled(format!("  {}. {}", n + 1, sg.label), theme.text()),
            Span::styled(format!(" (score {})", sg.score), theme.dim()),
        ]));
        for reason in &sg.reasons {
            out.push(TLine::from(Span::styled(
                format!("     – {reason}"),
                theme.dim(),
            )));
        }
    }
}

/// The money parts: status, seats × unit amount = amount, and where the unit amount came from.
fn money_lines(l: &Line, theme: &Theme) -> Vec<TLine<'static>> {
    let mut t = vec![TLine::from(Span::styled(
        format!("Money at risk: {} a month", display_money(l.monthly_impact)),
        theme.title(),
    ))];
    if l.impact.is_empty() {
        t.push(TLine::from(Span::styled(
            "  No money-bearing difference.",
            theme.text(),
        )));
    }
    for p in &l.impact {
        t.push(TLine::from(vec![
            Span::styled(format!("  {}: ", p.status.label()), theme.warn()),
            Span::styled(
                format!(
                    "{} seat{} × {} = {}",
                    display_quantity(p.seats),
                    if p.seats == rust_decimal::Decimal::ONE {
                        ""
                    } else {
                        "s"
                    },
                    p.unit_amount
                        .map(display_money)
                        .unwrap_or_else(|| "?".into()),
                    display_money(p.amount)
                ),
                theme.text(),
            ),
        ]));
        t.push(TLine::from(Span::styled(
            format!("     unit amount: {}", p.unit_source),
            theme.dim(),
        )));
    }
    t
}

/// How the customer is linked to the PSA record, or why not and what it may be.
fn mapping_lines(r: &Reconciliation, l: &Line, theme: &Theme) -> Vec<TLine<'static>> {
    let psa = r
        .mapping
        .psa
        .map(|a| a.to_string())
        .unwrap_or_else(|| "the PSA".into());
    let mut t = vec![TLine::from(Span::styled(
        format!("Customer mapping ({psa})"),
        theme.title(),
    ))];
    let Some(c) = r
        .mapping
        .customers
        .iter()
        .find(|c| c.tenant_id == l.customer_tenant_id)
    else {
        t.push(TLine::from(Span::styled(
            "  Not in the mapping.",
            theme.dim(),
        )));
        return t;
    };
    match &c.psa {
        PsaLink::NoPsa => t.push(TLine::from(Span::styled(
            "  No PSA was reconciled.",
            theme.text(),
        ))),
        PsaLink::NotBilled => t.push(TLine::from(Span::styled(
            format!(
                "  Marked as not billed in {psa} (a manual decision): its lines are not compared with {psa}."
            ),
            theme.text(),
        ))),
        PsaLink::Mapped {
            record,
            name,
            reason,
        } => t.push(TLine::from(vec![
            Span::styled("  Linked to ", theme.text()),
            Span::styled(format!("{name} ({record})"), theme.ok()),
            Span::styled(format!(" because {}.", reason.describe()), theme.text()),
        ])),
        PsaLink::Unmapped { suggestions } => {
            t.push(TLine::from(Span::styled(
                format!(
                    "  Not linked to a {psa} record, so what it charges cannot be checked."
                ),
                theme.warn(),
            )));
            if suggestions.is_empty() {
                t.push(TLine::from(Span::styled(
                    "  No suggestion: no record shares its name, domain or billing.",
                    theme.dim(),
                )));
            } else {
                t.push(TLine::from(Span::styled(
                    "  Suggestions, best first:",
                    theme.text(),
                )));
                suggestion_lines(&mut t, suggestions, theme);
            }
        }
    }
    if let Some(d) = &c.distributor_name
        && d != &c.name
    {
        t.push(TLine::from(Span::styled(
            format!("  Dicker Data calls it {d}."),
            theme.dim(),
        )));
    }
    if !c.at_microsoft {
        t.push(TLine::from(Span::styled(
            "  Partner Center does not list it as a customer (known from Dicker Data only).",
            theme.dim(),
        )));
    }
    t
}

fn detail(s: &State, r: &Reconciliation, l: &Line, theme: &Theme, frame: &mut Frame, area: Rect) {
    let mut t: Vec<TLine> = vec![
        TLine::from(Span::styled(
            format!("{} — {}", l.customer_name, l.product_name),
            theme.title(),
        )),
        TLine::from(Span::styled(
            format!(
                "Tenant {}; product {} ({} {}){}",
                l.customer_tenant_id,
                l.product_id,
                l.term.as_str(),
                l.billing.as_str(),
                l.stock_code
                    .as_deref()
                    .map(|c| format!("; stock code {c}"))
                    .unwrap_or_default()
            ),
            theme.dim(),
        )),
    ];
    for st in &l.statuses {
        let style = if *st == Status::InLine {
            theme.ok()
        } else {
            theme.warn()
        };
        t.push(TLine::from(vec![
            Span::styled(format!("{}: ", st.label()), style),
            Span::styled(st.describe(), theme.text()),
        ]));
    }
    t.push(TLine::from(""));
    t.extend(money_lines(l, theme));
    t.push(TLine::from(""));
    t.extend(mapping_lines(r, l, theme));
    if l.has(Status::UnmappedProduct) || !l.suggestions.is_empty() {
        t.push(TLine::from(""));
        t.push(TLine::from(Span::styled("Product mapping", theme.title())));
        if l.suggestions.is_empty() {
            t.push(TLine::from(Span::styled(
                "  No PSA product to suggest for this line.",
                theme.dim(),
            )));
        } else {
            t.push(TLine::from(Span::styled(
                "  PSA products that may be this line's billing, best first:",
                theme.text(),
            )));
            suggestion_lines(&mut t, &l.suggestions, theme);
        }
    }
    for e in &l.explain {
        t.push(TLine::from(""));
        t.push(TLine::from(vec![
            Span::styled(
                format!("{} = {}", field_name(e.field), e.value),
                theme.title(),
            ),
            Span::styled(
                format!("  (fetched {})", e.fetched_at.format("%Y-%m-%d %H:%M UTC")),
                theme.dim(),
            ),
        ]));
        t.push(TLine::from(Span::styled(e.how.clone(), theme.text())));
        for src in &e.sources {
            t.push(TLine::from(Span::styled(
                format!("  • {} {} {}: {}", src.api, src.record, src.id, src.detail),
                theme.dim(),
            )));
        }
    }
    let rect = Rect {
        y: area.y.saturating_add(1),
        height: area.height.saturating_sub(1),
        ..area
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(t)
            .wrap(Wrap { trim: false })
            .scroll((s.detail_scroll, 0))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" Where each number comes from (Esc closes) "),
            ),
        rect,
    );
}

fn field_name(f: Field) -> &'static str {
    match f {
        Field::DistributorQty => "Dicker Data quantity",
        Field::MicrosoftQty => "Microsoft quantity",
        Field::Assigned => "Assigned",
        Field::PsaQty => "PSA quantity",
        Field::MonthlyImpact => "$/month at risk",
        Field::RenewalDate => "Renews",
        Field::CancelWindow => "Cancel window (hours left)",
        Field::Customer => "Customer",
    }
}
