//! Drawing the Sync tab: the idle explanation, the planning gauge, the plan review list (only
//! the rows on screen are drawn), a write's detail, the confirmation popups, the live progress
//! view, the summary, and the audit log.
//!
//! The progress view keeps a fixed layout while an apply runs (nothing moves but the numbers),
//! so the terminal receives little more than the cells that changed.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, LineGauge, Paragraph, Sparkline, Wrap};
use serde_json::Value;

use super::progress::{ApplyView, CustomerRow, clock, duration, plural};
use super::{AuditView, Phase, Popup, Row, State, before_after, money, psa_of};
use crate::domain::sync::{CustomerState, Op, Plan, Skipped, Write};
use crate::tui::app::Setup;
use crate::tui::theme::Theme;

pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.width < 10 || area.height < 6 {
        return;
    }
    if let Some(a) = &s.audit {
        audit_view(a, theme, frame, area);
        return;
    }
    match s.phase {
        Phase::Idle | Phase::Planning(_) => idle(s, setup, theme, frame, area),
        Phase::Review => review(s, setup, theme, frame, area),
        Phase::Applying | Phase::Done => {
            if let (Some(a), Some(plan)) = (&s.apply, &s.plan) {
                progress(s, a, plan, theme, frame, area);
            }
        }
    }
    match (s.detail, &s.plan) {
        (Some(Row::Write(i)), Some(plan)) => {
            if let Some(w) = plan.writes.get(i) {
                detail(s, w, theme, frame, area);
            }
        }
        (Some(Row::Skipped(k)), Some(plan)) => {
            if let Some(sk) = plan.skipped.get(k) {
                skipped_detail(s, sk, theme, frame, area);
            }
        }
        _ => {}
    }
    match &s.popup {
        Some(Popup::Confirm { typed, problem }) => {
            confirm(s, typed, problem.as_deref(), theme, frame, area)
        }
        Some(Popup::Cancel) => cancel_popup(theme, frame, area),
        Some(Popup::Price {
            customer,
            product,
            typed,
            problem,
            ..
        }) => price_popup(
            customer,
            product,
            typed,
            problem.as_deref(),
            theme,
            frame,
            area,
        ),
        None => {}
    }
}

fn psa_name(setup: &Setup) -> &'static str {
    psa_of(setup).map_or("your PSA", |p| p.display_name())
}

fn note_line(s: &State, theme: &Theme) -> Option<Line<'static>> {
    s.note.as_ref().map(|(text, err)| {
        Line::from(Span::styled(
            text.clone(),
            if *err { theme.error() } else { theme.ok() },
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// Idle and planning
// ---------------------------------------------------------------------------------------------

fn idle(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    let psa = psa_name(setup);
    let [title, _, about, _, style, _, action, gauge, _, note] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(4),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(Span::styled(
            format!("Bring {psa} in line with Dicker Data"),
            theme.title(),
        )),
        title,
    );
    frame.render_widget(
        Paragraph::new(format!(
            "Dicker Data is the source of truth for what each customer is charged. cspsync fetches \
             Dicker Data, Microsoft and {psa}, reconciles them, and lists every write that brings \
             {psa} to Dicker Data's quantities. Nothing is written before you review that list \
             and approve it."
        ))
        .wrap(Wrap { trim: true }),
        about,
    );
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("Billing style: ", theme.title()),
            Span::raw(format!("{}   ", setup.settings.sync.style.describe())),
            Span::styled("b", theme.key()),
            Span::styled(" advance/arrears  ", theme.dim()),
            Span::styled("p", theme.key()),
            Span::styled(" prorate on/off", theme.dim()),
        ])),
        style,
    );
    match &s.phase {
        Phase::Planning(p) => {
            let (text, ratio) = planning_text(p);
            frame.render_widget(Paragraph::new(Span::styled(text, theme.accent())), action);
            frame.render_widget(
                LineGauge::default()
                    .ratio(ratio)
                    .filled_style(theme.accent())
                    .unfilled_style(theme.dim()),
                gauge,
            );
        }
        _ => {
            let line = if psa_of(setup).is_none() {
                Line::from(Span::styled(
                    "No PSA is set up yet: connect one in the PSA tab (4) first.",
                    theme.warn(),
                ))
            } else {
                Line::from(vec![
                    Span::raw("Press "),
                    Span::styled("Enter", theme.key()),
                    Span::raw(" to make the plan."),
                ])
            };
            frame.render_widget(Paragraph::new(line), action);
        }
    }
    if let Some(n) = note_line(s, theme) {
        frame.render_widget(Paragraph::new(n).wrap(Wrap { trim: true }), note);
    }
}

fn planning_text(p: &crate::engine::fetch::FetchProgress) -> (String, f64) {
    let fetched = p.customers_listed
        && p.customers_done >= p.customers_found
        && p.dicker_data_done
        && p.psa_done;
    if fetched {
        return ("Reconciling and planning…".into(), 1.0);
    }
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
    let ratio = if p.customers_found == 0 {
        0.0
    } else {
        (p.customers_done as f64 / p.customers_found as f64).clamp(0.0, 1.0)
    };
    (t, ratio)
}

// ---------------------------------------------------------------------------------------------
// Review
// ---------------------------------------------------------------------------------------------

fn review(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(plan) = &s.plan else { return };
    let note_rows = match &s.note {
        Some((t, _)) if t.chars().count() > usize::from(area.width) => 2,
        _ => 1,
    };
    let [status, summary, list] = Layout::vertical([
        Constraint::Length(note_rows),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(area);
    let wide = area.width >= 110;
    let status_line = note_line(s, theme).unwrap_or_else(|| {
        let period = format!(
            "{} – {}",
            plan.period_start.format("%-d %b"),
            plan.period_end.format("%-d %b %Y")
        );
        Line::from(Span::styled(
            if wide {
                format!(
                    "Plan for {} · billing {} · period {period} · made {}",
                    plan.psa.display_name(),
                    plan.style.describe(),
                    plan.created_at.format("%H:%M UTC")
                )
            } else {
                format!(
                    "{} · {} · {period}",
                    plan.psa.display_name(),
                    plan.style.describe()
                )
            },
            theme.dim(),
        ))
    });
    frame.render_widget(
        Paragraph::new(status_line).wrap(Wrap { trim: true }),
        status,
    );
    let sel = s.selection();
    let mut parts = vec![Span::styled(
        if wide {
            format!(
                "{} of {} selected · {} · {} a month",
                sel.writes.len(),
                plural(plan.writes.len(), "write"),
                plural(sel.customers, "customer"),
                money(sel.monthly_change)
            )
        } else {
            format!(
                "{}/{} writes · {} · {}/month",
                sel.writes.len(),
                plan.writes.len(),
                plural(sel.customers, "customer"),
                money(sel.monthly_change)
            )
        },
        theme.title(),
    )];
    if !sel.cautioned.is_empty() {
        parts.push(Span::styled(
            if wide {
                format!(" · ⚠ {} need confirmation", sel.cautioned.len())
            } else {
                format!(" · ⚠ {} to confirm", sel.cautioned.len())
            },
            theme.warn(),
        ));
    }
    if !plan.skipped.is_empty() {
        parts.push(Span::styled(
            if wide {
                format!(" · {} skipped", plural(plan.skipped.len(), "line"))
            } else {
                format!(" · {} skipped", plan.skipped.len())
            },
            theme.dim(),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(parts)), summary);
    let list = if plan.writes.is_empty() {
        let [msg, _, rest] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(0),
        ])
        .areas(list);
        frame.render_widget(
            Paragraph::new(Span::styled(
                format!(
                    "Nothing to write: {} already matches Dicker Data for every line it can sync.",
                    psa_name(setup)
                ),
                theme.ok(),
            )),
            msg,
        );
        rest
    } else {
        list
    };
    if !s.rows.is_empty() {
        plan_list(s, plan, theme, frame, list);
    }
}

/// Column widths: mark, kind, target (0 when narrow), product, before → after, $/month, ⚠.
fn widths(total: u16) -> [u16; 7] {
    let wide = total >= 100;
    let kind = if wide { 20 } else { 15 };
    let fixed = 8 + kind + 11 + 10 + 1;
    let gaps = if wide { 5 } else { 4 };
    let flex = total.saturating_sub(fixed + gaps);
    let (target, product) = if wide {
        let t = (flex / 2).min(30);
        (t, flex - t)
    } else {
        (0, flex)
    };
    [8, kind, target, product, 11, 10, 1]
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

/// `text` cut to `w` characters (with `…`), not padded.
fn cut(text: &str, w: u16) -> String {
    cell(text, w, false).trim_end().to_string()
}

fn row_text(cols: [&str; 7], w: &[u16; 7]) -> String {
    let right = [false, false, false, false, true, true, false];
    let mut out = String::new();
    for (i, ((c, w), r)) in cols.iter().zip(w.iter()).zip(right.iter()).enumerate() {
        if *w == 0 {
            continue;
        }
        if i > 1 {
            out.push(' ');
        }
        out.push_str(&cell(c, *w, *r));
    }
    out
}

/// The cursor's column: visible without colour too.
fn pointer(cursor: bool) -> &'static str {
    if cursor { "▸" } else { " " }
}

fn mark(selected: usize, of: usize) -> &'static str {
    if selected == 0 {
        "[ ]"
    } else if selected < of {
        "[-]"
    } else {
        "[x]"
    }
}

fn plan_list(s: &State, plan: &Plan, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.height < 2 {
        return;
    }
    let w = widths(area.width);
    let head = row_text(
        ["", "Write", "Target", "Product", "Quantity", "$/month", ""],
        &w,
    );
    let mut out = vec![Line::from(Span::styled(head, theme.title()))];
    let rows = usize::from(area.height.saturating_sub(1)).max(1);
    s.view_rows.set(rows);
    let offset = crate::tui::panes::scroll_offset(s.offset.get(), s.cursor, rows, s.rows.len());
    s.offset.set(offset);
    let width = usize::from(area.width);
    let skipped_name_w = plan
        .skipped
        .iter()
        .map(|k| k.customer_name.chars().count() + 3 + k.product.chars().count())
        .max()
        .unwrap_or(0)
        .min(usize::from(area.width.saturating_sub(5) / 2));
    let skipped_name_w = u16::try_from(skipped_name_w).unwrap_or(0);
    for (pos, row) in s.rows.iter().enumerate().skip(offset).take(rows) {
        let cursor = pos == s.cursor;
        let line = match *row {
            Row::Customer(g) => {
                let Some(group) = s.groups.get(g) else {
                    continue;
                };
                let n = s.group_selected(group);
                let change: rust_decimal::Decimal = group
                    .writes
                    .iter()
                    .filter(|i| s.selected.get(**i).copied().unwrap_or(false))
                    .filter_map(|i| plan.writes.get(*i))
                    .map(|w| w.monthly_change)
                    .sum();
                let cautioned = group
                    .writes
                    .iter()
                    .filter_map(|i| plan.writes.get(*i))
                    .filter(|w| w.needs_confirmation())
                    .count();
                let mut text = format!(
                    "{} {} — {} of {}, {} a month",
                    mark(n, group.writes.len()),
                    group.name,
                    n,
                    plural(group.writes.len(), "write"),
                    money(change)
                );
                if cautioned > 0 {
                    text.push_str(&format!(", ⚠ {cautioned}"));
                }
                let style = if cursor {
                    theme.selected()
                } else {
                    theme.title()
                };
                Line::from(Span::styled(
                    cell(&format!("{}{text}", pointer(cursor)), area.width, false),
                    style,
                ))
            }
            Row::Write(i) => {
                let Some(wr) = plan.writes.get(i) else {
                    continue;
                };
                let on = s.selected.get(i).copied().unwrap_or(false);
                let text = row_text(
                    [
                        match (cursor, on) {
                            (true, true) => "▸   [x]",
                            (true, false) => "▸   [ ]",
                            (false, true) => "    [x]",
                            (false, false) => "    [ ]",
                        },
                        wr.op.kind(),
                        &wr.target,
                        &wr.product,
                        &before_after(wr),
                        &money(wr.monthly_change),
                        if wr.needs_confirmation() { "⚠" } else { "" },
                    ],
                    &w,
                );
                let style = if cursor {
                    theme.selected()
                } else if !on {
                    theme.dim()
                } else if wr.needs_confirmation() {
                    theme.warn()
                } else {
                    Style::default()
                };
                Line::from(Span::styled(cell(&text, area.width, false), style))
            }
            Row::SkippedHeader => Line::from(Span::styled(
                cell(
                    &format!(
                        "{}Skipped: {} the plan leaves alone",
                        pointer(cursor),
                        plural(plan.skipped.len(), "line")
                    ),
                    area.width,
                    false,
                ),
                if cursor {
                    theme.selected()
                } else {
                    theme.title()
                },
            )),
            Row::Skipped(k) => {
                let Some(sk) = plan.skipped.get(k) else {
                    continue;
                };
                // The reason is what matters: the line's name gets at most half the row.
                let what = cell(
                    &format!("{} — {}", sk.customer_name, sk.product),
                    skipped_name_w,
                    false,
                );
                let text = format!("{}    {what}  {}", pointer(cursor), sk.reason);
                Line::from(Span::styled(
                    cell(&text, area.width, false),
                    if cursor {
                        theme.selected()
                    } else {
                        theme.dim()
                    },
                ))
            }
        };
        debug_assert!(line.width() <= width);
        out.push(line);
    }
    frame.render_widget(Paragraph::new(out), area);
}

/// The PSA call an operation makes, as a person reads it (the paths of the Op's docs).
fn call(op: &Op, key: &str) -> String {
    match op {
        Op::CwSetQuantity {
            agreement_id,
            addition_id,
            ..
        } => format!("PATCH /finance/agreements/{agreement_id}/additions/{addition_id} (quantity)"),
        Op::CwCreateAddition { agreement_id, .. } => {
            format!("POST /finance/agreements/{agreement_id}/additions")
        }
        Op::CwCancelAddition {
            agreement_id,
            addition_id,
            ..
        } => format!(
            "PATCH /finance/agreements/{agreement_id}/additions/{addition_id} (cancelledDate)"
        ),
        Op::AtAddContractService { contract_id, .. } => {
            format!("POST /Contracts/{contract_id}/Services")
        }
        Op::AtAdjustUnits { .. } => "POST /ContractServiceAdjustments".into(),
        Op::XeroDraft { .. } => format!("POST /Invoices, Idempotency-Key {key}"),
    }
}

fn json_text(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn detail_box(s: &State, title: &str, t: Vec<Line>, frame: &mut Frame, area: Rect) {
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
            .block(Block::default().borders(Borders::ALL).title(title)),
        r,
    );
}

fn skipped_detail(s: &State, sk: &Skipped, theme: &Theme, frame: &mut Frame, area: Rect) {
    let t = vec![
        Line::from(Span::styled(
            format!("{} — {}", sk.customer_name, sk.product),
            theme.title(),
        )),
        Line::from(Span::styled(
            format!("Tenant {}", sk.customer_tenant_id),
            theme.dim(),
        )),
        Line::from(""),
        Line::from(format!("Not planned: {}", sk.reason)),
    ];
    detail_box(
        s,
        " A line the plan leaves alone (Esc closes) ",
        t,
        frame,
        area,
    );
}

fn detail(s: &State, w: &Write, theme: &Theme, frame: &mut Frame, area: Rect) {
    let mut t: Vec<Line> = vec![
        Line::from(Span::styled(
            format!("{} — {}", w.customer_name, w.product),
            theme.title(),
        )),
        Line::from(format!(
            "{}: {} on {}",
            w.system.display_name(),
            w.op.kind(),
            w.target
        )),
        Line::from(format!(
            "Quantity {}; {} a month",
            before_after(w),
            money(w.monthly_change)
        )),
        Line::from(Span::styled(
            format!(
                "Tenant {}{}",
                w.customer_tenant_id,
                w.stock_code
                    .as_deref()
                    .map(|c| format!("; stock code {c}"))
                    .unwrap_or_default()
            ),
            theme.dim(),
        )),
        Line::from(Span::styled(format!("Key {}", w.key), theme.dim())),
    ];
    if w.cautions.is_empty() {
        t.push(Line::from(Span::styled(
            "No caution: applied with the others once you confirm.",
            theme.ok(),
        )));
    } else {
        t.push(Line::from(""));
        for c in &w.cautions {
            t.push(Line::from(Span::styled(
                format!("⚠ {}", c.describe()),
                theme.warn(),
            )));
        }
        t.push(Line::from(Span::styled(
            "Applied only if you type yes in the confirmation.",
            theme.dim(),
        )));
    }
    t.push(Line::from(""));
    t.push(Line::from(Span::styled(call(&w.op, &w.key), theme.title())));
    if let Ok(Value::Object(map)) = serde_json::to_value(&w.op) {
        for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "op") {
            match v {
                Value::Array(items) => {
                    t.push(Line::from(format!("  {k}:")));
                    for (n, item) in items.iter().enumerate() {
                        let fields = match item {
                            Value::Object(m) => m
                                .iter()
                                .map(|(k, v)| format!("{k} {}", json_text(v)))
                                .collect::<Vec<_>>()
                                .join(", "),
                            other => json_text(other),
                        };
                        t.push(Line::from(format!("    {}. {fields}", n + 1)));
                    }
                }
                v => t.push(Line::from(format!("  {k:<22} {}", json_text(v)))),
            }
        }
    }
    detail_box(s, " The write (Esc closes) ", t, frame, area);
}

// ---------------------------------------------------------------------------------------------
// Popups
// ---------------------------------------------------------------------------------------------

/// Wider on wide screens: the cautions read best one a line.
fn popup_width(area: Rect) -> u16 {
    (area.width.saturating_mul(3) / 4)
        .clamp(76, 100)
        .min(area.width)
}

/// A centred box sized for `lines` (wrapped), at most `area`.
fn popup(title: &str, lines: Vec<Line>, theme: &Theme, frame: &mut Frame, area: Rect) {
    let w = popup_width(area);
    let inner = usize::from(w.saturating_sub(2)).max(1);
    let rows: usize = lines.iter().map(|l| wrapped_rows(l, inner)).sum();
    let h = u16::try_from(rows + 2).unwrap_or(u16::MAX).min(area.height);
    let r = crate::tui::render::centered(area, w, h);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Span::styled(format!(" {title} "), theme.title())),
        ),
        r,
    );
}

/// Rows a line takes when word-wrapped at `width` (as `Wrap { trim: false }` does, near enough).
fn wrapped_rows(line: &Line, width: usize) -> usize {
    let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
    let mut rows = 1;
    let mut col = 0usize;
    for word in text.split(' ') {
        let n = word.chars().count();
        let need = if col == 0 { n } else { col + 1 + n };
        if need <= width {
            col = need;
        } else {
            rows += 1 + n.saturating_sub(1) / width;
            col = n % width;
        }
    }
    rows
}

/// Cautioned writes listed in the confirmation (the rest are counted).
const CAUTIONS_LISTED: usize = 5;

fn confirm(
    s: &State,
    typed: &str,
    problem: Option<&str>,
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
) {
    let Some(plan) = &s.plan else { return };
    let sel = s.selection();
    let psa = plan.psa.display_name();
    let mut lines = vec![
        Line::from(Span::styled(
            format!(
                "Apply {} to {psa} for {}?",
                plural(sel.writes.len(), "write"),
                plural(sel.customers, "customer")
            ),
            theme.title(),
        )),
        Line::from(format!(
            "What customers are charged changes by {} a month. Every write is recorded in the audit log, and one that already succeeded is never sent twice.",
            money(sel.monthly_change)
        )),
    ];
    if sel.cautioned.is_empty() {
        lines.push(Line::from(""));
        lines.push(Line::from(vec![
            Span::styled("y", theme.key()),
            Span::raw(" apply   "),
            Span::styled("n", theme.key()),
            Span::raw(" back"),
        ]));
        popup("Apply the plan?", lines, theme, frame, area);
        return;
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        if sel.cautioned.len() == 1 {
            "1 of them needs your explicit confirmation:".to_string()
        } else {
            format!(
                "{} of them need your explicit confirmation:",
                sel.cautioned.len()
            )
        },
        theme.warn(),
    )));
    let rest = sel.without_cautioned();
    let mut tail = vec![
        Line::from(""),
        Line::from(format!(
            "Type yes and press Enter to apply all {}.",
            plural(sel.writes.len(), "write")
        )),
        Line::from(format!(
            "Enter alone applies the other {} (for {}) and leaves these out.",
            rest.len(),
            plural(s.customers_of(&rest), "customer")
        )),
        Line::from(vec![
            Span::styled("Confirm: ", theme.title()),
            Span::raw(typed.to_string()),
            Span::styled("▏", theme.accent()),
        ]),
    ];
    if let Some(p) = problem {
        tail.push(Line::from(Span::styled(p.to_string(), theme.error())));
    }
    // The cautioned writes listed: as many as fit (two rows each, cut to the width), so the
    // question and the field are always on screen.
    let inner = usize::from(popup_width(area).saturating_sub(2)).max(1);
    let used: usize = lines
        .iter()
        .chain(tail.iter())
        .map(|l| wrapped_rows(l, inner))
        .sum();
    let room = usize::from(area.height.saturating_sub(2)).saturating_sub(used + 1);
    let listed = (room / 2).min(CAUTIONS_LISTED).min(sel.cautioned.len());
    let width = u16::try_from(inner).unwrap_or(u16::MAX);
    for i in sel.cautioned.iter().take(listed) {
        let Some(w) = plan.writes.get(*i) else {
            continue;
        };
        lines.push(Line::from(Span::styled(
            cut(
                &format!(
                    "⚠ {} · {} {} {}",
                    w.customer_name,
                    w.op.kind(),
                    before_after(w),
                    w.product
                ),
                width,
            ),
            theme.warn(),
        )));
        let why = w
            .cautions
            .iter()
            .map(|c| c.describe())
            .collect::<Vec<_>>()
            .join("; ");
        lines.push(Line::from(cut(&format!("  {why}"), width)));
    }
    if sel.cautioned.len() > listed {
        lines.push(Line::from(Span::styled(
            format!(
                "  … {} {}(marked ⚠ in the list)",
                sel.cautioned.len() - listed,
                if listed > 0 { "more " } else { "" }
            ),
            theme.warn(),
        )));
    }
    lines.extend(tail);
    popup("Apply the plan?", lines, theme, frame, area);
}

fn price_popup(
    customer: &str,
    product: &str,
    typed: &str,
    problem: Option<&str>,
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
) {
    let mut lines = vec![
        Line::from(Span::styled(customer.to_string(), theme.title())),
        Line::from(product.to_string()),
        Line::from(""),
        Line::from(
            "The sell price per seat per month for this customer only; it wins over the PSA catalogue. It prices new additions, new contract services and Xero lines (existing records keep theirs). Empty removes it.",
        ),
        Line::from(""),
        Line::from(vec![
            Span::styled("Price: ", theme.key()),
            Span::raw(format!("{typed}▏")),
        ]),
    ];
    if let Some(p) = problem {
        lines.push(Line::from(Span::styled(p.to_string(), theme.error())));
    }
    popup("Price", lines, theme, frame, area);
}

fn cancel_popup(theme: &Theme, frame: &mut Frame, area: Rect) {
    let lines = vec![
        Line::from(Span::styled("Cancel the apply?", theme.title())),
        Line::from(
            "Writes in flight finish, nothing is left half-done; writes not started yet are skipped (a new plan picks them up).",
        ),
        Line::from(""),
        Line::from(vec![
            Span::styled("y", theme.key()),
            Span::raw(" cancel   "),
            Span::styled("n", theme.key()),
            Span::raw(" keep going"),
        ]),
    ];
    popup("Cancel?", lines, theme, frame, area);
}

// ---------------------------------------------------------------------------------------------
// Applying and done
// ---------------------------------------------------------------------------------------------

fn progress(s: &State, a: &ApplyView, plan: &Plan, theme: &Theme, frame: &mut Frame, area: Rect) {
    let done = s.phase == Phase::Done;
    let tall = area.height >= 30;
    let spark_rows = if tall { 3 } else { 2 };
    let [status, hint, gauge, times, spark, _, panels] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(spark_rows),
        Constraint::Length(1),
        Constraint::Min(3),
    ])
    .areas(area);
    let psa = plan.psa.display_name();
    let c = a.counts;
    let counts = format!(
        "{} done · {} already done · {} failed · {} skipped",
        c.done, c.already_done, c.failed, c.skipped
    );
    let (head, head_style) = if let Some(f) = &a.finished {
        (
            format!(
                "{} {} UTC ({}): {counts}",
                if f.cancelled { "Cancelled" } else { "Finished" },
                clock(f.at),
                duration(a.elapsed_secs())
            ),
            if f.failed > 0 || f.cancelled {
                theme.warn()
            } else {
                theme.ok()
            },
        )
    } else if let Some(e) = &a.error {
        (format!("Stopped: {e}"), theme.error())
    } else if a.cancelling {
        (format!("Cancelling… {counts}"), theme.warn())
    } else {
        (format!("Applying to {psa}: {counts}"), theme.accent())
    };
    frame.render_widget(
        Paragraph::new(Span::styled(cell(&head, status.width, false), head_style)),
        status,
    );
    let hint_line = if let Some(p) = a.problems.first() {
        Line::from(Span::styled(format!("Not recorded: {p}"), theme.error()))
    } else if done && a.counts.done + a.counts.already_done == 0 {
        Line::from(vec![
            Span::raw("Nothing was written. "),
            Span::styled("r", theme.key()),
            Span::raw(" plans again."),
        ])
    } else if done {
        Line::from(vec![
            Span::raw("Reconcile should now show these lines in line: press "),
            Span::styled("R", theme.key()),
            Span::raw(" to run it again."),
        ])
    } else if a.cancelling {
        Line::from(Span::styled(
            "Cancel asked: writes in flight finish, the ones not started are skipped.",
            theme.warn(),
        ))
    } else {
        Line::from(Span::styled(
            "Every write is recorded in the audit log (l). Esc cancels cleanly.",
            theme.dim(),
        ))
    };
    frame.render_widget(Paragraph::new(hint_line), hint);
    let total = a.total_writes();
    let finished = a.finished_writes().min(total.max(a.finished_writes()));
    let ratio = if total == 0 {
        1.0
    } else {
        (finished as f64 / total as f64).clamp(0.0, 1.0)
    };
    frame.render_widget(
        LineGauge::default()
            .ratio(ratio)
            .label(Span::styled(
                format!("{finished:>5} of {total:<5} {:>3.0}%", ratio * 100.0),
                theme.title(),
            ))
            .filled_style(if a.counts.failed > 0 {
                theme.warn()
            } else {
                theme.ok()
            })
            .unfilled_style(theme.dim()),
        gauge,
    );
    let rate = if a.running() {
        match a.rate() {
            Some(1) => "1 write/s".to_string(),
            Some(r) => format!("{r} writes/s"),
            None => "– writes/s".into(),
        }
    } else {
        let secs = a.elapsed_secs().max(1) as f64;
        let sent = (a.counts.done + a.counts.failed) as f64;
        format!("{:.1} writes/s on average", sent / secs)
    };
    let eta = match a.eta_secs() {
        Some(_) if a.cancelling => String::new(),
        Some(e) => format!("about {} left", duration(e)),
        None if a.running() && !a.cancelling => "time left: –".into(),
        None => String::new(),
    };
    let times_text = [format!("Elapsed {}", duration(a.elapsed_secs())), eta, rate]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" · ");
    frame.render_widget(
        Paragraph::new(Span::styled(times_text, theme.text())),
        times,
    );
    let rates = a.shown_rates();
    let width = usize::from(spark.width);
    let start = rates.len().saturating_sub(width);
    let shown = rates.get(start..).unwrap_or(&[]);
    let max = a.per_second.iter().copied().max().unwrap_or(1).max(1);
    frame.render_widget(
        Sparkline::default()
            .data(shown)
            .max(max)
            .style(theme.accent()),
        spark,
    );
    if done && !a.failures.is_empty() {
        // The reasons need the width: failures above the log.
        let n = u16::try_from(a.failures.len()).unwrap_or(u16::MAX);
        let h = n
            .saturating_mul(2)
            .saturating_add(1)
            .min(panels.height / 2)
            .max(3);
        let [f, _, l] = Layout::vertical([
            Constraint::Length(h),
            Constraint::Length(1),
            Constraint::Min(2),
        ])
        .areas(panels);
        failures(a, plan, theme, frame, f);
        log(s, a, theme, frame, l);
        return;
    }
    let wide = panels.width >= 110;
    let (left, right) = if wide {
        let [l, sep, r] = Layout::horizontal([
            Constraint::Length(44),
            Constraint::Length(2),
            Constraint::Min(10),
        ])
        .areas(panels);
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(Span::styled("│", theme.dim()));
                usize::from(sep.height)
            ]),
            sep,
        );
        (l, r)
    } else {
        let list = (panels.height / 3).clamp(3, 8);
        let [l, _, r] = Layout::vertical([
            Constraint::Length(list),
            Constraint::Length(0),
            Constraint::Min(2),
        ])
        .areas(panels);
        (l, r)
    };
    customers(s, a, theme, frame, left);
    log(s, a, theme, frame, right);
}

fn state_style(st: CustomerState, theme: &Theme) -> Style {
    match st {
        CustomerState::Running => theme.accent(),
        CustomerState::Failed => theme.error(),
        CustomerState::Queued => theme.dim(),
        CustomerState::Done => theme.ok(),
        CustomerState::Skipped => theme.warn(),
    }
}

fn customers(s: &State, a: &ApplyView, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let counts = a
        .state_counts()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(st, n)| format!("{n} {st}"))
        .collect::<Vec<_>>()
        .join(" · ");
    let mut out = vec![Line::from(vec![
        Span::styled(
            format!("Customers ({}): ", a.customers.len()),
            theme.title(),
        ),
        Span::raw(counts),
    ])];
    let rows = usize::from(area.height.saturating_sub(1));
    let list = &a.shown_customers;
    let first = s.customer_scroll.min(list.len().saturating_sub(rows));
    let w = usize::from(area.width);
    for c in list.iter().skip(first).take(rows) {
        out.push(customer_line(c, w, theme));
    }
    frame.render_widget(Paragraph::new(out), area);
}

fn customer_line(c: &CustomerRow, width: usize, theme: &Theme) -> Line<'static> {
    let progress = format!("{}/{}", c.finished, c.writes);
    let name_w = width.saturating_sub(8 + 1 + progress.len() + 1).max(1);
    let name = cell(&c.name, u16::try_from(name_w).unwrap_or(u16::MAX), false);
    Line::from(vec![
        Span::styled(
            format!("{:<8} ", c.state.to_string()),
            state_style(c.state, theme),
        ),
        Span::raw(name),
        Span::styled(format!(" {progress}"), theme.dim()),
    ])
}

fn failures(a: &ApplyView, plan: &Plan, theme: &Theme, frame: &mut Frame, area: Rect) {
    let mut out = vec![Line::from(Span::styled(
        format!("Failed writes ({}):", a.failures.len()),
        theme.error(),
    ))];
    let rows = usize::from(area.height.saturating_sub(1));
    for f in a.failures.iter().take(rows / 2) {
        let what = plan
            .writes
            .get(f.write)
            .map(|w| {
                format!(
                    "✗ {}: {} {}, {}",
                    w.customer_name,
                    w.op.kind(),
                    before_after(w),
                    w.product
                )
            })
            .unwrap_or_else(|| format!("✗ write {}", f.write));
        out.push(Line::from(Span::raw(cell(&what, area.width, false))));
        out.push(Line::from(Span::styled(
            cell(&format!("  {}", f.error), area.width, false),
            theme.error(),
        )));
    }
    if a.failures.len() > rows / 2 {
        out.truncate(out.len().saturating_sub(1));
        out.push(Line::from(Span::styled(
            format!(
                "  … {} more in the log below and in the audit log (l)",
                a.failures.len() - (rows / 2).saturating_sub(1)
            ),
            theme.dim(),
        )));
    }
    frame.render_widget(Paragraph::new(out), area);
}

fn log(s: &State, a: &ApplyView, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let shown = a.shown_log();
    let n = shown.len();
    let rows = usize::from(area.height.saturating_sub(1));
    let up = s.log_scroll.min(n.saturating_sub(rows));
    let end = n.saturating_sub(up);
    let start = end.saturating_sub(rows);
    let title = if up > 0 {
        format!("Log ({}; {up} newer below, End follows)", plural(n, "line"))
    } else {
        format!("Log ({}, newest last)", plural(n, "line"))
    };
    let mut out = vec![Line::from(Span::styled(
        cell(&title, area.width, false),
        theme.title(),
    ))];
    for l in shown.skip(start).take(end - start) {
        let style = if l.contains(" ✗ ") || l.contains(": failed") || l.contains(" stopped: ") {
            theme.error()
        } else if l.contains(" retry: ") || l.contains(" cancel") {
            theme.warn()
        } else {
            Style::default()
        };
        out.push(Line::from(Span::styled(cell(l, area.width, false), style)));
    }
    frame.render_widget(Paragraph::new(out), area);
}

// ---------------------------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------------------------

/// What a record says, the outcome first for a sync write (the rest is cut on narrow screens);
/// others as `cspsync audit` describes them.
fn audit_text(e: &crate::audit::Event) -> String {
    if e.action != crate::audit::SYNC_WRITE {
        return crate::audit::describe(e);
    }
    let d = &e.details;
    let t = |k: &str| match d.get(k) {
        Some(Value::Null) | None => "–".to_string(),
        Some(v) => json_text(v),
    };
    let mut out = format!(
        "{:<12} {} · {} {} → {} · {} · {}",
        t("result"),
        t("customer"),
        t("kind"),
        t("before"),
        t("after"),
        t("product"),
        t("target")
    );
    for k in ["error", "reason"] {
        if let Some(v) = d.get(k) {
            out.push_str(&format!(": {}", json_text(v)));
        }
    }
    out
}

fn audit_view(a: &AuditView, theme: &Theme, frame: &mut Frame, area: Rect) {
    let [title, list] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let head = if a.loading {
        Line::from(Span::styled("Audit log: reading…", theme.accent()))
    } else if let Some(e) = &a.error {
        Line::from(Span::styled(format!("Audit log: {e}"), theme.error()))
    } else {
        Line::from(vec![
            Span::styled("Audit log", theme.title()),
            Span::styled(
                format!(
                    ": {} in audit.jsonl (data directory), newest last",
                    plural(a.events.len(), "record")
                ),
                theme.dim(),
            ),
        ])
    };
    frame.render_widget(Paragraph::new(head), title);
    let rows = usize::from(list.height);
    a.view_rows.set(rows.max(1));
    if a.events.is_empty() {
        if !a.loading && a.error.is_none() {
            frame.render_widget(
                Paragraph::new(Span::styled(
                    "Nothing recorded yet: sign-ins, user changes and every sync write appear here.",
                    theme.dim(),
                )),
                list,
            );
        }
        return;
    }
    let n = a.events.len();
    let up = a.scroll.min(n.saturating_sub(rows));
    let end = n - up;
    let start = end.saturating_sub(rows);
    let w = list.width;
    let out: Vec<Line> = a
        .events
        .get(start..end)
        .unwrap_or(&[])
        .iter()
        .map(|e| {
            let who = if e.actor.name.is_empty() {
                "–".to_string()
            } else {
                e.actor.name.clone()
            };
            // Who did it needs room: on narrow screens the details come first.
            let who = if w >= 100 {
                format!("{}  ", cell(&who, 20, false))
            } else {
                String::new()
            };
            let text = format!(
                "{}  {who}{}  {}",
                e.time.format("%Y-%m-%d %H:%M:%S"),
                cell(&e.action, 18, false),
                audit_text(e)
            );
            let style = if e.details.get("error").is_some()
                || e.details.get("result").and_then(Value::as_str) == Some("failed")
            {
                theme.error()
            } else {
                Style::default()
            };
            Line::from(Span::styled(cell(&text, w, false), style))
        })
        .collect();
    frame.render_widget(Paragraph::new(out), list);
}
