//! Drawing a frame: tab bar, the current pane, footer with the keys valid now, popups, and the
//! "terminal too small" notice.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::app::{App, Modal, Tab};
use super::panes::{distributor, partner, psa, reconcile, signin, sync, users};
use super::text;
use super::theme::Theme;

/// The smallest terminal cspsync lays out for.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

pub fn draw(app: &App, theme: &Theme, frame: &mut Frame) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(theme, frame, area);
        return;
    }
    let [tabs, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(1),
        Constraint::Length(2),
    ])
    .areas(area);
    tab_bar(app, theme, frame, tabs);
    let inner = body.inner(ratatui::layout::Margin {
        horizontal: 1,
        vertical: 0,
    });
    match app.tab {
        Tab::SignIn => signin::render(&app.signin, &app.setup, theme, frame, inner),
        Tab::Distributor => distributor::render(&app.distributor, &app.setup, theme, frame, inner),
        Tab::PartnerCenter => partner::render(&app.partner, &app.setup, theme, frame, inner),
        Tab::Psa => psa::render(&app.psa, &app.setup, theme, frame, inner),
        Tab::Users => users::render(&app.users, &app.setup, theme, frame, inner),
        Tab::Reconcile => reconcile::render(&app.reconcile, &app.setup, theme, frame, inner),
        Tab::Sync => sync::render(&app.sync, &app.setup, theme, frame, inner),
    }
    footer_bar(app, theme, frame, footer);
    if let Some(m) = &app.modal {
        modal(m, theme, frame, area);
    }
}

fn tab_bar(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    // Padded labels (" 1 Partner Center ✓ ") when they fit, then tight ones
    // ("3 Partner Center✓"), then short titles: every tab stays visible at 80 columns.
    let width = usize::from(area.width);
    let tiers: [&dyn Fn(usize, Tab) -> String; 3] = [
        &|i, t| format!(" {} {} {} ", i + 1, t.title(), app.status(t).mark()),
        &|i, t| format!("{} {}{} ", i + 1, t.title(), app.status(t).mark().trim()),
        &|i, t| {
            format!(
                "{} {}{} ",
                i + 1,
                t.short_title(),
                app.status(t).mark().trim()
            )
        },
    ];
    let mut labels: Vec<String> = Vec::new();
    for tier in tiers {
        labels = Tab::ALL
            .iter()
            .enumerate()
            .map(|(i, t)| tier(i, *t))
            .collect();
        // The last label needs no space after it: "… 7 Sync•" still fits 80 columns.
        if let Some(last) = labels.last_mut() {
            last.truncate(last.trim_end().len());
        }
        if labels.iter().map(|l| l.chars().count()).sum::<usize>() <= width {
            break;
        }
    }
    let spans: Vec<Span> = Tab::ALL
        .iter()
        .zip(labels)
        .map(|(t, label)| {
            let style = if *t == app.tab {
                theme.active_tab()
            } else {
                theme.text()
            };
            Span::styled(label, style)
        })
        .collect();
    let block = Block::default()
        .borders(Borders::BOTTOM)
        .border_style(theme.dim());
    frame.render_widget(Paragraph::new(Line::from(spans)).block(block), area);
}

fn footer_bar(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let [notice, keys] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    if let Some(n) = &app.notice {
        let style = if n.error { theme.error() } else { theme.ok() };
        frame.render_widget(Paragraph::new(Span::styled(n.text.clone(), style)), notice);
    }
    let mut spans = Vec::new();
    if app.demo {
        spans.push(Span::styled("DEMO ", theme.warn()));
    }
    // Who is using the app, once it is set up (issue 4): admin, operator, viewer, ….
    let access = app.access();
    if !matches!(access, crate::access::Access::FirstSetup) {
        spans.push(Span::styled(format!("[{}] ", access.label()), theme.dim()));
    }
    for h in app.hints() {
        spans.push(Span::styled(h.key, theme.key()));
        spans.push(Span::raw(format!(" {}  ", h.action)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), keys);
}

/// A centred rectangle `w`×`h` inside `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn modal(m: &Modal, theme: &Theme, frame: &mut Frame, area: Rect) {
    let (title, lines): (&str, Vec<Line>) = match m {
        Modal::Help => ("Keys", text::help_lines(theme)),
        Modal::ConfirmQuit => (
            "Quit?",
            vec![
                Line::from("Some changes are not saved yet:"),
                Line::from("a step is saved when it completes."),
                Line::from(""),
                Line::from(vec![
                    Span::styled("y", theme.key()),
                    Span::raw(" quit anyway   "),
                    Span::styled("n", theme.key()),
                    Span::raw(" stay"),
                ]),
            ],
        ),
        Modal::ConfirmQuitApplying => (
            "Quit while applying?",
            vec![
                Line::from("A sync is being applied to the PSA."),
                Line::from(
                    "y stops it cleanly first (writes in flight finish, nothing is left half-done), then quits.",
                ),
                Line::from(""),
                Line::from(vec![
                    Span::styled("y", theme.key()),
                    Span::raw(" stop and quit   "),
                    Span::styled("n", theme.key()),
                    Span::raw(" stay   "),
                    Span::styled("Ctrl-C", theme.key()),
                    Span::raw(" quit at once"),
                ]),
            ],
        ),
        Modal::Fatal(e) => (
            "cspsync has to stop",
            vec![
                Line::from(e.clone()),
                Line::from(""),
                Line::from("Press any key to quit."),
            ],
        ),
    };
    let w = 76.min(area.width);
    // Room for wrapped lines: each line takes ceil(len / inner width) rows.
    let inner = usize::from(w.saturating_sub(2)).max(1);
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner)).sum();
    let h = (rows as u16 + 2).min(area.height);
    let r = centered(area, w, h);
    frame.render_widget(Clear, r);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), theme.title()));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        r,
    );
}

fn too_small(theme: &Theme, frame: &mut Frame, area: Rect) {
    let msg = format!(
        "Terminal too small: {}x{}. cspsync needs at least {MIN_WIDTH}x{MIN_HEIGHT}; enlarge the window (q quits).",
        area.width, area.height
    );
    frame.render_widget(
        Paragraph::new(Span::styled(msg, theme.warn())).wrap(Wrap { trim: true }),
        area,
    );
}
