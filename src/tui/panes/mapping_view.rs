//! Drawing the Mapping view: the section bar with the unmapped counts (always on screen), a
//! status line, the rows of the section (only those on screen are drawn) and, under them, the
//! row under the cursor explained: its links, its suggestions and their reasons, the keys.
//! Saturating arithmetic and clipped text throughout, so any size is safe.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::{
    Focus, Pending, Purpose, Row, Section, State, identifier_field, pending, pending_count,
};
use crate::api::error::Api;
use crate::domain::mapping::{MatchReason, PsaLink};
use crate::tui::app::Setup;
use crate::tui::theme::Theme;

pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.width < 8 || area.height < 3 {
        return;
    }
    let w = usize::from(area.width);
    let mut y = area.y;
    let bottom = area.y.saturating_add(area.height);
    let line = |frame: &mut Frame, l: Line<'static>, y: &mut u16| {
        if *y < bottom {
            frame.render_widget(Paragraph::new(l), Rect::new(area.x, *y, area.width, 1));
            *y += 1;
        }
    };
    line(frame, section_bar(s, theme, w), &mut y);
    line(frame, status_line(s, setup, theme, w), &mut y);
    let left = bottom.saturating_sub(y);
    if left < 2 {
        return;
    }
    // The list (with its header) above, the explanation below.
    let rows = s.rows();
    let avail = left.saturating_sub(2);
    let wanted = u16::try_from(rows.len().max(1)).unwrap_or(u16::MAX);
    let list_rows = wanted.min((avail / 2).max(avail.min(3))).max(1);
    line(frame, header(s, theme, w), &mut y);
    let list_area = Rect::new(
        area.x,
        y,
        area.width,
        list_rows.min(bottom.saturating_sub(y)),
    );
    list(s, setup, theme, frame, list_area);
    y = y.saturating_add(list_area.height);
    if y < bottom {
        let detail_area = Rect::new(area.x, y, area.width, bottom.saturating_sub(y));
        detail(s, setup, theme, frame, detail_area);
    }
    if let Focus::Picker { picker, purpose } = &s.focus {
        let title = match purpose {
            Purpose::CustomerRecord { name, .. } => format!("Link {name} to"),
            Purpose::ProductCode { name, .. } => format!("Stock code of {name}"),
            Purpose::ProductForCode { stock_code } => format!("PSA product for {stock_code}"),
        };
        let pw = area.width.min(96);
        let ph = area.height.min(20);
        let r = Rect::new(
            area.x + (area.width - pw) / 2,
            area.y + (area.height - ph) / 2,
            pw,
            ph,
        );
        frame.render_widget(Clear, r);
        picker.render_list(
            theme,
            frame,
            r,
            &clip(&title, usize::from(pw).saturating_sub(16)),
        );
    }
}

/// `text` cut to `n` characters (an ellipsis marks the cut).
fn clip(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_string();
    }
    if n == 0 {
        return String::new();
    }
    let mut t: String = text.chars().take(n - 1).collect();
    t.push('…');
    t
}

/// `text` cut or padded to exactly `n` characters.
fn cell(text: &str, n: usize) -> String {
    let t = clip(text, n);
    let pad = n.saturating_sub(t.chars().count());
    format!("{t}{}", " ".repeat(pad))
}

/// Word-wrap to `width` columns; words longer than a line are split.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut len = 0usize;
    for word in text.split_whitespace() {
        let mut chars: Vec<char> = word.chars().collect();
        loop {
            let wl = chars.len();
            if len > 0 && len + 1 + wl <= width {
                cur.push(' ');
                cur.extend(chars.iter());
                len += 1 + wl;
                break;
            }
            if len > 0 {
                out.push(std::mem::take(&mut cur));
                len = 0;
            }
            if wl <= width {
                cur.extend(chars.iter());
                len = wl;
                break;
            }
            let rest = chars.split_off(width);
            out.push(chars.iter().collect());
            chars = rest;
        }
    }
    if len > 0 || out.is_empty() {
        out.push(cur);
    }
    out
}

fn section_bar(s: &State, theme: &Theme, w: usize) -> Line<'static> {
    let (c, p) = super::unmapped_counts(&s.rec);
    let tab = |label: String, on: bool| {
        Span::styled(
            format!(" {label} "),
            if on { theme.active_tab() } else { theme.text() },
        )
    };
    let count = |n: usize| {
        if n == 0 {
            "all mapped".to_string()
        } else {
            format!("{n} unmapped")
        }
    };
    let mut spans = vec![
        Span::styled("Mapping ", theme.title()),
        tab(
            format!("Customers: {}", count(c)),
            s.section == Section::Customers,
        ),
        Span::raw(" "),
        tab(
            format!("Products: {}", count(p)),
            s.section == Section::Products,
        ),
    ];
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let back = "Esc: back to the table";
    if w > used + back.len() + 2 {
        spans.push(Span::raw(" ".repeat(w - used - back.len())));
        spans.push(Span::styled(back, theme.dim()));
    }
    Line::from(spans)
}

fn status_line(s: &State, setup: &Setup, theme: &Theme, w: usize) -> Line<'static> {
    if matches!(s.focus, Focus::Filter) || !s.filter.value.is_empty() {
        let mut spans = vec![
            Span::styled("Filter: ", theme.title()),
            Span::styled(s.filter.value.clone(), theme.text()),
        ];
        if matches!(s.focus, Focus::Filter) {
            spans.push(Span::styled("▏", theme.accent()));
        }
        spans.push(Span::styled(
            format!(
                "  {} customer(s), {} product row(s) match",
                s.customers.len(),
                s.products.len()
            ),
            theme.dim(),
        ));
        return Line::from(spans);
    }
    if let Some((text, err)) = &s.note {
        return Line::from(Span::styled(
            clip(text, w),
            if *err { theme.error() } else { theme.ok() },
        ));
    }
    let m = &s.rec.mapping;
    if m.psa.is_none() {
        return Line::from(Span::styled(
            clip(
                "No PSA was reconciled: customers are matched to Dicker Data by tenant id only.",
                w,
            ),
            theme.dim(),
        ));
    }
    let text = match s.section {
        Section::Customers => {
            let (mut auto, mut manual, mut not_billed) = (0, 0, 0);
            for c in &m.customers {
                match &c.psa {
                    PsaLink::Mapped {
                        reason: MatchReason::Manual,
                        ..
                    } => manual += 1,
                    PsaLink::Mapped { .. } => auto += 1,
                    PsaLink::NotBilled => not_billed += 1,
                    _ => {}
                }
            }
            format!(
                "{} customers: {} unmapped, {auto} linked automatically, {manual} by hand, {not_billed} not billed",
                m.customers.len(),
                m.unmapped_customers
            )
        }
        Section::Products => {
            let mapped: usize = m.products.iter().map(|p| p.psa_products.len()).sum();
            format!(
                "{} PSA product(s) without a stock code, {} stock code(s) without a PSA product, {mapped} mapped",
                m.unmapped_psa_products.len(),
                m.stock_codes_without_psa_product
            )
        }
    };
    // Saved decisions not reconciled yet come first: they explain rows marked "saved".
    let pend = pending_count(s, setup);
    let mut spans = Vec::new();
    let mut used = 0;
    if pend > 0 {
        let first = format!("{pend} saved change(s) apply at the next reconcile · ");
        used = first.chars().count();
        spans.push(Span::styled(clip(&first, w), theme.warn()));
    }
    spans.push(Span::styled(
        clip(&text, w.saturating_sub(used)),
        theme.dim(),
    ));
    Line::from(spans)
}

/// Column widths: name, how, and the rest. PSA product names are long and alike ("Exchange
/// Online (Plan 1) (NCE, monthly)"), so the product section gives the name more room.
fn columns(section: Section, w: usize) -> (usize, usize, usize) {
    let how = 11;
    let share = match section {
        Section::Customers => 32,
        Section::Products => 40,
    };
    let name = (w * share / 100).clamp(10, 44);
    let rest = w.saturating_sub(name + how + 4);
    (name, how, rest)
}

fn header(s: &State, theme: &Theme, w: usize) -> Line<'static> {
    let (nw, hw, rw) = columns(s.section, w);
    let (a, b, c) = match s.section {
        Section::Customers => (
            "Customer",
            "Link",
            format!("{} record, or the top suggestion and why", s.psa_name()),
        ),
        Section::Products => (
            "PSA product",
            "State",
            "Stock code, or the top suggestion and why".to_string(),
        ),
    };
    Line::from(Span::styled(
        format!("  {}{}{}", cell(a, nw + 1), cell(b, hw + 1), clip(&c, rw)),
        theme.title(),
    ))
}

/// The three cells of a row, and whether it needs attention.
fn row_cells(s: &State, setup: &Setup, row: Row) -> (String, String, String, bool) {
    let m = &s.rec.mapping;
    let pend = pending(s, setup, row);
    let pending_text = |p: &Pending| match p {
        Pending::Linked(n) => format!("→ {n} (saved; applies at the next reconcile)"),
        Pending::NotBilled => "→ not billed (saved; applies at the next reconcile)".into(),
        Pending::Automatic => "→ automatic again (saved; applies at the next reconcile)".into(),
        Pending::Code(c) => format!("→ {c} (saved; applies at the next reconcile)"),
    };
    match row {
        Row::Customer(i) => {
            let Some(c) = m.customers.get(i) else {
                return Default::default();
            };
            if let Some(p) = &pend {
                return (c.name.clone(), "saved".into(), pending_text(p), false);
            }
            match &c.psa {
                PsaLink::Unmapped { suggestions } => (
                    c.name.clone(),
                    "UNMAPPED".into(),
                    match suggestions.first() {
                        Some(t) => format!(
                            "maybe {} — {}",
                            t.label,
                            t.reasons.first().cloned().unwrap_or_default()
                        ),
                        None => "no suggestion: o links it by hand".into(),
                    },
                    true,
                ),
                PsaLink::Mapped { name, reason, .. } => (
                    c.name.clone(),
                    match reason {
                        MatchReason::Name { .. } => "name",
                        MatchReason::Domain { .. } => "domain",
                        MatchReason::Manual => "by hand",
                    }
                    .into(),
                    name.clone(),
                    false,
                ),
                PsaLink::NotBilled => (
                    c.name.clone(),
                    "not billed".into(),
                    format!("not billed in {}", s.psa_name()),
                    false,
                ),
                PsaLink::NoPsa => (c.name.clone(), "no PSA".into(), "-".into(), false),
            }
        }
        Row::UnmappedProduct(i) => {
            let Some(u) = m.unmapped_psa_products.get(i) else {
                return Default::default();
            };
            if let Some(p) = &pend {
                return (u.name.clone(), "saved".into(), pending_text(p), false);
            }
            (
                u.name.clone(),
                "NO CODE".into(),
                match u.suggestions.first() {
                    Some(t) => format!(
                        "maybe {} — {}",
                        t.target,
                        t.reasons.first().cloned().unwrap_or_default()
                    ),
                    None => "no suggestion: o picks its stock code".into(),
                },
                true,
            )
        }
        Row::MissingProduct(i) => {
            let Some(p) = m.products.get(i) else {
                return Default::default();
            };
            (
                p.product_name.clone(),
                "NO PSA ITEM".into(),
                format!(
                    "{} — create {}",
                    p.stock_code.clone().unwrap_or_default(),
                    identifier_field(m.psa)
                ),
                true,
            )
        }
        Row::MappedProduct(i, j) => {
            let Some((p, pp)) = m
                .products
                .get(i)
                .and_then(|p| p.psa_products.get(j).map(|pp| (p, pp)))
            else {
                return Default::default();
            };
            if let Some(x) = &pend {
                return (pp.name.clone(), "saved".into(), pending_text(x), false);
            }
            let how = if pp.via == "override" {
                "by hand".to_string()
            } else {
                pp.via.split_whitespace().next().unwrap_or("").to_string()
            };
            (
                pp.name.clone(),
                how,
                p.stock_code.clone().unwrap_or_default(),
                false,
            )
        }
    }
}

fn list(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    let height = usize::from(area.height);
    if height == 0 {
        return;
    }
    s.view_rows.set(height);
    let rows = s.rows();
    let w = usize::from(area.width);
    if rows.is_empty() {
        let text = if !s.filter.value.is_empty() {
            "Nothing matches the filter; Esc clears it.".to_string()
        } else {
            match s.section {
                Section::Customers => "No customers.".to_string(),
                Section::Products if s.rec.mapping.psa.is_none() => {
                    "No PSA was reconciled: there are no PSA products to map.".to_string()
                }
                Section::Products => "No PSA product charges a customer for a licence.".into(),
            }
        };
        frame.render_widget(
            Paragraph::new(Span::styled(clip(&text, w), theme.dim())),
            Rect::new(area.x, area.y, area.width, 1),
        );
        return;
    }
    let cursor = s.cursor().min(rows.len().saturating_sub(1));
    let offset_cell = match s.section {
        Section::Customers => &s.customer_offset,
        Section::Products => &s.product_offset,
    };
    let offset = crate::tui::panes::scroll_offset(offset_cell.get(), cursor, height, rows.len());
    offset_cell.set(offset);
    let (nw, hw, rw) = columns(s.section, w);
    for (n, row) in rows.iter().skip(offset).take(height).enumerate() {
        let (name, how, target, attention) = row_cells(s, setup, *row);
        let on = offset + n == cursor;
        let base = if on { theme.selected() } else { theme.text() };
        let how_style = if on {
            base
        } else if how == "saved" {
            theme.warn()
        } else if attention {
            theme.error()
        } else {
            theme.dim()
        };
        let text = format!("{}{} ", if on { "▸ " } else { "  " }, cell(&name, nw));
        let tail = cell(&target, rw);
        let pad = w.saturating_sub(text.chars().count() + hw + 1 + tail.chars().count());
        let l = Line::from(vec![
            Span::styled(text, base),
            Span::styled(format!("{} ", cell(&how, hw)), how_style),
            Span::styled(tail, base),
            Span::styled(" ".repeat(pad), base),
        ]);
        let y = area.y.saturating_add(u16::try_from(n).unwrap_or(u16::MAX));
        frame.render_widget(Paragraph::new(l), Rect::new(area.x, y, area.width, 1));
    }
}

/// The noun for a PSA record.
fn record_noun(psa: Option<Api>) -> &'static str {
    match psa {
        Some(Api::Xero) => "contact",
        _ => "company",
    }
}

/// Lines of the explanation, each with a style; `highlight` marks the lines of the chosen
/// suggestion (first and last line index).
struct Text {
    lines: Vec<(String, Style)>,
    highlight: Option<(usize, usize)>,
    width: usize,
}

impl Text {
    fn push(&mut self, text: &str, style: Style) {
        for l in wrap(text, self.width) {
            self.lines.push((l, style));
        }
    }

    /// A numbered suggestion: `n label: reasons`, indented under the number.
    fn suggestion(
        &mut self,
        n: usize,
        label: &str,
        reasons: &[String],
        style: Style,
        chosen: bool,
    ) {
        let start = self.lines.len();
        let text = format!("{label}: {}", reasons.join("; "));
        for (i, l) in wrap(&text, self.width.saturating_sub(3))
            .into_iter()
            .enumerate()
        {
            let lead = match (i, chosen) {
                (0, true) => format!("▸{n} "),
                (0, false) => format!("{n}  "),
                _ => "   ".into(),
            };
            self.lines.push((format!("{lead}{l}"), style));
        }
        if chosen {
            self.highlight = Some((start, self.lines.len().saturating_sub(1)));
        }
    }
}

fn detail(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let w = usize::from(area.width);
    let Some(row) = s.current() else {
        return;
    };
    let m = &s.rec.mapping;
    let psa = s.psa_name();
    let noun = record_noun(m.psa);
    let chosen = match s.focus {
        Focus::Suggestions(k) => Some(k),
        _ => None,
    };
    let mut t = Text {
        lines: Vec::new(),
        highlight: None,
        width: w,
    };
    let text = theme.text();
    let dim = theme.dim();
    let keys = theme.accent();
    let title = match row {
        Row::Customer(i) => m
            .customers
            .get(i)
            .map(|c| format!("{} · tenant {}", c.name, c.tenant_id)),
        Row::UnmappedProduct(i) => m
            .unmapped_psa_products
            .get(i)
            .map(|u| format!("{} · {}", u.name, u.product)),
        Row::MissingProduct(i) => m.products.get(i).map(|p| {
            format!(
                "{} · {}",
                p.product_name,
                p.stock_code.clone().unwrap_or_default()
            )
        }),
        Row::MappedProduct(i, j) => m
            .products
            .get(i)
            .and_then(|p| p.psa_products.get(j))
            .map(|pp| format!("{} · {}", pp.name, pp.product)),
    }
    .unwrap_or_default();
    let rule = format!("── {} ", clip(&title, w.saturating_sub(4)));
    let fill = w.saturating_sub(rule.chars().count());
    frame.render_widget(
        Paragraph::new(Span::styled(
            format!("{rule}{}", "─".repeat(fill)),
            theme.title(),
        )),
        Rect::new(area.x, area.y, area.width, 1),
    );
    let pend = pending(s, setup, row);
    if let Some(p) = &pend {
        let what = match p {
            Pending::Linked(n) => format!("linked by hand to {n}"),
            Pending::NotBilled => format!("marked not billed in {psa}"),
            Pending::Automatic => "matched automatically again".to_string(),
            Pending::Code(c) => format!("mapped by hand to {c}"),
        };
        t.push(
            &format!(
                "Saved: {what}. The next reconciliation applies it; u undoes a manual decision."
            ),
            theme.warn(),
        );
    }
    match row {
        Row::Customer(i) => {
            let Some(c) = m.customers.get(i) else {
                return;
            };
            let ms = if c.at_microsoft {
                "Partner Center: listed"
            } else {
                "Partner Center: not listed"
            };
            let dd = match &c.distributor_name {
                Some(n) => format!("Dicker Data: {n} (same tenant id)"),
                None => "Dicker Data: bills nothing".to_string(),
            };
            t.push(&format!("{ms} · {dd}"), dim);
            match &c.psa {
                PsaLink::Unmapped { suggestions } => {
                    t.push(
                        &format!("Not linked to a {psa} {noun}: its billing is not checked."),
                        theme.warn(),
                    );
                    if suggestions.is_empty() {
                        t.push(
                            &format!(
                                "No suggestion: o links it by hand to any {psa} {noun}; n marks it not billed in {psa}."
                            ),
                            keys,
                        );
                    } else {
                        t.push(
                            "a/Enter accept 1 · 1-5 that one · s choose · o any record · n not billed",
                            keys,
                        );
                        for (n, sug) in suggestions.iter().enumerate() {
                            let label = format!("{} ({})", sug.label, sug.target);
                            t.suggestion(n + 1, &label, &sug.reasons, text, chosen == Some(n));
                        }
                    }
                }
                PsaLink::Mapped {
                    record,
                    name,
                    reason,
                } => {
                    t.push(
                        &if *reason == MatchReason::Manual {
                            format!("Linked by hand to {name} ({record}).")
                        } else {
                            format!("Linked to {name} ({record}): {}.", reason.describe())
                        },
                        text,
                    );
                    t.push(
                        if *reason == MatchReason::Manual {
                            "o links it to another record · n marks it not billed · u back to automatic"
                        } else {
                            "o links it to another record · n marks it not billed"
                        },
                        keys,
                    );
                }
                PsaLink::NotBilled => {
                    t.push(
                        &format!(
                            "Marked not billed in {psa} (by hand): its lines are not compared with {psa} and it does not count as unmapped."
                        ),
                        text,
                    );
                    t.push("o links it to a record · u back to automatic", keys);
                }
                PsaLink::NoPsa => t.push(
                    "No PSA was reconciled: only Microsoft and Dicker Data are compared.",
                    text,
                ),
            }
        }
        Row::UnmappedProduct(i) => {
            let Some(u) = m.unmapped_psa_products.get(i) else {
                return;
            };
            let mut what = format!(
                "It charges {} time(s), for {} customer(s), but carries no Dicker Data stock code, so those charges count on no line",
                u.charges, u.customers
            );
            if let Some(p) = &u.problem {
                what.push_str(&format!(" ({p})"));
            }
            what.push('.');
            t.push(&what, theme.warn());
            if u.suggestions.is_empty() {
                t.push(
                    "No suggestion: o picks its stock code from those in use.",
                    keys,
                );
            } else {
                t.push(
                    "a/Enter accept 1 · 1-5 that one · s choose · o any stock code",
                    keys,
                );
                for (n, sug) in u.suggestions.iter().enumerate() {
                    t.suggestion(n + 1, &sug.label, &sug.reasons, text, chosen == Some(n));
                }
            }
        }
        Row::MissingProduct(i) => {
            let Some(p) = m.products.get(i) else {
                return;
            };
            let code = p.stock_code.clone().unwrap_or_default();
            t.push(
                &format!(
                    "Dicker Data bills {code} ({}), but no {psa} product carries it, so no line of it can show what {psa} charges.",
                    p.product_name
                ),
                theme.warn(),
            );
            t.push(
                &format!(
                    "Create {} {code} in {psa}, or press o to map one of {psa}'s products without a stock code to it.",
                    identifier_field(m.psa)
                ),
                keys,
            );
        }
        Row::MappedProduct(i, j) => {
            let Some((p, pp)) = m
                .products
                .get(i)
                .and_then(|p| p.psa_products.get(j).map(|pp| (p, pp)))
            else {
                return;
            };
            let code = p.stock_code.clone().unwrap_or_default();
            let by = if pp.via == "override" {
                "by hand".to_string()
            } else {
                format!("by its {}", pp.via)
            };
            t.push(
                &format!("Mapped to {code} ({}) {by}.", p.product_name),
                text,
            );
            t.push(
                if pp.via == "override" {
                    "o picks another stock code · u back to its own identifier"
                } else {
                    "o picks another stock code (a manual decision wins over its identifier)"
                },
                keys,
            );
        }
    }
    // Scroll so the chosen suggestion is on screen.
    let rows = usize::from(area.height.saturating_sub(1));
    if rows == 0 {
        return;
    }
    let mut start = 0usize;
    if let Some((a, b)) = t.highlight
        && b >= rows
    {
        start = (b + 1 - rows).min(a);
    }
    for (n, (l, style)) in t.lines.iter().skip(start).take(rows).enumerate() {
        let on = t
            .highlight
            .is_some_and(|(a, b)| (a..=b).contains(&(start + n)));
        let style = if on { theme.selected() } else { *style };
        let y = area
            .y
            .saturating_add(1)
            .saturating_add(u16::try_from(n).unwrap_or(u16::MAX));
        frame.render_widget(
            Paragraph::new(Span::styled(cell(l, w), style)),
            Rect::new(area.x, y, area.width, 1),
        );
    }
}
