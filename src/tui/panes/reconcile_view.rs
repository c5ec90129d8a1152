//! Drawing the Reconcile tab: status line, summary bar, the table (only the rows on screen)
//! and the detail pane.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line as TLine, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::{Phase, State};
use crate::domain::model::{display_money, display_quantity};
use crate::domain::{Billing, Field, Line, Status, Term};
use crate::tui::app::Setup;
use crate::tui::theme::Theme;

pub fn render(s: &State, _setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.width < 4 || area.height < 4 {
        return;
    }
    let status_rows = if matches!(s.phase, Phase::Failed(_)) && s.filter.is_empty() {
        3
    } else {
        1
    };
    let [status, summary, table] = Layout::vertical([
        Constraint::Length(status_rows),
        Constraint::Length(2),
        Constraint::Min(1),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(status_line(s, theme)).wrap(Wrap { trim: false }),
        status,
    );
    summary_bar(s, theme, frame, summary);
    lines_table(s, theme, frame, table);
    if let Some(i) = s.detail
        && let Some(l) = s.result.as_ref().and_then(|r| r.lines.get(i))
    {
        detail(s, l, theme, frame, area);
    }
}

fn status_line(s: &State, theme: &Theme) -> TLine<'static> {
    if s.typing || !s.filter.is_empty() {
        let mut spans = vec![
            Span::styled("Filter: ", theme.title()),
            Span::styled(s.filter.clone(), theme.text()),
        ];
        if s.typing {
            spans.push(Span::styled("▏", theme.accent()));
        }
        spans.push(Span::styled(
            format!("  {} line(s) match", s.view.len()),
            theme.dim(),
        ));
        return TLine::from(spans);
    }
    if let Some((text, err)) = &s.note {
        let style = if *err { theme.error() } else { theme.ok() };
        return TLine::from(Span::styled(text.clone(), style));
    }
    match &s.phase {
        Phase::Idle => TLine::from(Span::styled(
            "Press Enter to fetch Dicker Data, Microsoft and the PSA and reconcile them.",
            theme.text(),
        )),
        Phase::Running(p) => {
            let customers = if p.customers_listed {
                format!(
                    "{} of {} customers read",
                    p.customers_done, p.customers_found
                )
            } else {
                format!(
                    "{} of {}+ customers read (still listing)",
                    p.customers_done, p.customers_found
                )
            };
            let mut t = format!("Fetching… {customers}");
            if p.dicker_data_done {
                t.push_str("; Dicker Data read");
            }
            if p.psa_done {
                t.push_str("; PSA read");
            }
            TLine::from(Span::styled(t, theme.accent()))
        }
        Phase::Failed(e) => TLine::from(Span::styled(format!("Failed: {e}"), theme.error())),
        Phase::Done => {
            let sort = if s.sort == super::Sort::Default {
                String::new()
            } else {
                format!(
                    "; sorted by {}{}",
                    s.sort.label(),
                    if s.reverse { " (reversed)" } else { "" }
                )
            };
            let at = s
                .result
                .as_ref()
                .map(|r| r.fetched_at.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            TLine::from(Span::styled(
                format!(
                    "Fetched {at}; showing {} {} line(s){sort}",
                    s.view.len(),
                    if s.show_all { "" } else { "mismatched" }
                )
                .replace("  ", " "),
                theme.dim(),
            ))
        }
    }
}

fn summary_bar(s: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(r) = &s.result else {
        return;
    };
    let sum = &r.summary;
    let style = if sum.all_clean() {
        theme.ok()
    } else if sum.lines_audited == 0 {
        theme.error()
    } else {
        theme.warn()
    };
    let counts: Vec<String> = sum
        .by_status
        .iter()
        .filter(|(st, n)| **st != Status::InLine && **n > 0)
        .map(|(st, n)| format!("{} {n}", st.label()))
        .collect();
    let second = if sum.lines_audited == 0 {
        "No subscriptions at Microsoft or Dicker Data: check the setup, then press r.".to_string()
    } else if counts.is_empty() {
        "Every line is in line.".to_string()
    } else {
        counts.join(" · ")
    };
    let lines = vec![
        TLine::from(Span::styled(sum.headline(), style)),
        TLine::from(Span::styled(second, theme.dim())),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}

/// Column widths: customer, product, term, DD, MS, assigned, PSA, $/month, renews, 7d, statuses.
fn widths(total: u16) -> [u16; 11] {
    let wide = total >= 110;
    let (qty, renews) = if wide { (4, 10) } else { (4, 6) };
    let fixed = 4 + qty * 3 + 5 + 10 + renews + 3;
    let gaps = 10;
    let flex = total.saturating_sub(fixed + gaps);
    let (customer, product) = if wide {
        (flex * 3 / 10, flex * 4 / 10)
    } else {
        (flex * 4 / 10, flex * 3 / 10)
    };
    let statuses = flex.saturating_sub(customer + product);
    [
        customer, product, 4, qty, qty, qty, 5, 10, renews, 3, statuses,
    ]
}

fn cell(text: &str, w: u16, right: bool) -> String {
    let w = usize::from(w);
    let n = text.chars().count();
    let t: String = if n > w {
        let mut t: String = text.chars().take(w.saturating_sub(1)).collect();
        if w > 0 {
            t.push('…');
        }
        t
    } else {
        text.to_string()
    };
    if right {
        format!("{t:>w$}")
    } else {
        format!("{t:<w$}")
    }
}

fn row_text(cols: &[String], w: &[u16; 11]) -> String {
    let right = [
        false, false, false, true, true, true, true, true, false, true, false,
    ];
    cols.iter()
        .zip(w.iter())
        .zip(right.iter())
        .map(|((c, w), r)| cell(c, *w, *r))
        .collect::<Vec<_>>()
        .join(" ")
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

fn columns(l: &Line, wide: bool) -> Vec<String> {
    vec![
        l.customer_name.clone(),
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

fn lines_table(s: &State, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(r) = &s.result else {
        return;
    };
    if area.height < 2 {
        return;
    }
    let w = widths(area.width);
    let wide = area.width >= 110;
    let head = [
        "Customer", "Product", "Term", "DD", "MS", "Asgn", "PSA", "$/month", "Renews", "7d",
        "Statuses",
    ]
    .map(String::from);
    let mut out = vec![TLine::from(Span::styled(
        row_text(&head, &w),
        theme.title(),
    ))];
    if s.view.is_empty() {
        let text = if r.summary.lines_audited == 0 {
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
    let mut offset = s.offset.get();
    if s.cursor < offset {
        offset = s.cursor;
    } else if s.cursor >= offset + rows {
        offset = s.cursor + 1 - rows;
    }
    offset = offset.min(s.view.len().saturating_sub(rows));
    s.offset.set(offset);
    for (pos, i) in s.view.iter().enumerate().skip(offset).take(rows) {
        let Some(l) = r.lines.get(*i) else { continue };
        let style = if pos == s.cursor {
            theme.selected()
        } else if l.is_in_line() {
            theme.dim()
        } else {
            Style::default()
        };
        out.push(TLine::from(Span::styled(
            row_text(&columns(l, wide), &w),
            style,
        )));
    }
    frame.render_widget(Paragraph::new(out), area);
}

fn detail(s: &State, l: &Line, theme: &Theme, frame: &mut Frame, area: Rect) {
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
    let r = Rect {
        y: area.y.saturating_add(1),
        height: area.height.saturating_sub(1),
        ..area
    };
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(t)
            .wrap(Wrap { trim: false })
            .scroll((s.detail_scroll, 0))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" Where each number comes from (Esc closes) "),
            ),
        r,
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
