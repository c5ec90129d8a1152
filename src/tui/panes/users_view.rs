//! Drawing the Users tab. Only the visible rows are read and written, straight into the
//! frame's buffer from the picker's arena (no per-row strings): a frame costs the same with
//! 50 users as with 50,000.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::model::{ADMIN, OPERATOR, Picker, Side, VIEWER};
use super::{NoteKind, Phase, State, is_admin, plural, thousands};
use crate::api::error::{Api, ApiError, ErrorKind};
use crate::tui::app::Setup;
use crate::tui::panes::partner::common::{
    fmt_clock, fmt_stored, lines_rows, microsoft_refusal, row, rows_from,
};
use crate::tui::theme::Theme;

/// Draw the tab; returns the rows a column shows (for PgUp/PgDn).
pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) -> u16 {
    if area.width < 4 || area.height < 3 {
        return 1;
    }
    let width = usize::from(area.width);
    let admin = is_admin(setup);
    let mut y: u16 = 0;

    // Title, with the unsaved marker.
    if let Some(r) = row(area, y) {
        let tenant = setup.settings.microsoft.tenant_name.trim();
        let mut spans = vec![Span::styled("Allowed users", theme.title())];
        // The unsaved marker first, so a narrow terminal cuts the description instead.
        if let Some(p) = &s.picker
            && p.unsaved()
            && admin
        {
            let n = p.changed_users() + p.gone().len();
            spans.push(Span::styled(
                format!("  ● {} not saved", plural(n, "change", "changes")),
                theme.warn(),
            ));
        }
        spans.push(Span::styled(
            if tenant.is_empty() {
                "  who in your Microsoft 365 tenant may use cspsync".to_string()
            } else {
                format!("  who in {tenant} may use cspsync")
            },
            theme.dim(),
        ));
        frame.render_widget(Paragraph::new(Line::from(spans)), r);
    }
    y += 1;

    // What is going on: loading, loaded, failed; read-only; users gone from the tenant.
    let mut top: Vec<Line<'static>> = vec![status_line(s, setup, theme)];
    if !admin && s.picker.is_some() {
        let who = setup.settings.microsoft.setup_user_name.trim();
        top.push(Line::from(Span::styled(
            if who.is_empty() {
                "Read-only: only the account that set up cspsync can change who may use it."
                    .to_string()
            } else {
                format!("Read-only: only the account that set up cspsync ({who}) can change who may use it.")
            },
            theme.warn(),
        )));
    }
    if let Some(p) = &s.picker
        && !p.gone().is_empty()
    {
        top.push(Line::from(Span::styled(gone_text(p), theme.warn())));
    }
    let h = lines_rows(&top, width).min(6) as u16;
    frame.render_widget(
        Paragraph::new(top).wrap(Wrap { trim: false }),
        rows_from(area, y, h),
    );
    y = y.saturating_add(h);

    let Some(p) = &s.picker else {
        intro(
            setup,
            theme,
            frame,
            rows_from(area, y.saturating_add(1), u16::MAX),
        );
        return 10;
    };

    // The filter and the last action.
    if let Some(r) = row(area, y) {
        filter_line(s, p, theme, frame, r);
    }
    y += 1;

    // The columns, then the key legend.
    let cols_area = rows_from(area, y, area.height.saturating_sub(y).saturating_sub(1));
    if let Some(r) = row(area, area.height.saturating_sub(1))
        && r.y >= cols_area.y + cols_area.height
    {
        legend(admin, p, theme, frame.buffer_mut(), r);
    }
    let [left, right] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(cols_area);
    let a = column(s, p, Side::Disallowed, theme, frame, left);
    let b = column(s, p, Side::Allowed, theme, frame, right);
    if let Some(c) = &s.confirm {
        confirm(c, theme, frame, area);
    }
    a.max(b)
}

fn status_line(s: &State, setup: &Setup, theme: &Theme) -> Line<'static> {
    let tenant = setup.settings.microsoft.tenant_name.trim();
    match &s.phase {
        Phase::Idle => {
            let access = &setup.settings.access;
            let saved = match &access.saved_at {
                Some(at) => format!(
                    "Saved {}: the setup account and {} may use cspsync. ",
                    fmt_stored(at),
                    plural(access.allowed.len(), "allowed user", "allowed users")
                ),
                None => String::new(),
            };
            Line::from(Span::raw(format!(
                "{saved}Press Enter to load the users of {} from Microsoft 365.",
                if tenant.is_empty() {
                    "your tenant"
                } else {
                    tenant
                }
            )))
        }
        Phase::NotSignedIn => Line::from(Span::styled(
            "! Sign in first (tab 1): the users are read with your Microsoft sign-in.",
            theme.warn(),
        )),
        Phase::Loading { so_far } if s.picker.is_some() => Line::from(Span::styled(
            format!("… Reloading the users: {} so far…", thousands(*so_far)),
            theme.accent(),
        )),
        Phase::Loading { so_far } => Line::from(Span::styled(
            format!(
                "… Loading the users from Microsoft 365: {} so far…",
                thousands(*so_far)
            ),
            theme.accent(),
        )),
        Phase::Loaded { at } => {
            let n = s.picker.as_ref().map_or(0, Picker::len);
            let mut t = format!(
                "✓ {} in {}, loaded {}.",
                plural(n, "user", "users"),
                if tenant.is_empty() {
                    "the tenant"
                } else {
                    tenant
                },
                fmt_clock(*at)
            );
            if s.report.new_users > 0 {
                t.push_str(&format!(
                    " {} since the last load (in Disallowed).",
                    plural(s.report.new_users, "new user", "new users")
                ));
            }
            let skipped = s.picker.as_ref().map_or(0, Picker::skipped);
            if skipped > 0 {
                t.push_str(&format!(" {} not listed.", thousands(skipped)));
            }
            Line::from(Span::styled(t, theme.ok()))
        }
        Phase::Failed(e) => Line::from(Span::styled(
            format!("✗ {e} {}", failure_advice(e, setup)),
            theme.error(),
        )),
    }
}

/// What to do about a failed load: a lapsed sign-in, a refused permission, else the hint.
fn failure_advice(e: &ApiError, setup: &Setup) -> String {
    let who = setup.settings.microsoft.signed_in_name.trim();
    let who = if who.is_empty() {
        setup.settings.microsoft.setup_user_name.trim()
    } else {
        who
    };
    if e.api == Api::Graph && matches!(e.kind, ErrorKind::Unauthorized | ErrorKind::Forbidden) {
        // §1.7 / §2.2: listing users needs User.ReadBasic.All (least) or User.Read.All.
        return "Listing the tenant's users needs the User.Read.All (or User.ReadBasic.All) permission consented for cspsync: an administrator of the tenant consents to it when signing in (tab 1).".into();
    }
    match microsoft_refusal(e, who) {
        Some(lines) => lines.join(" "),
        None => e.hint().to_string(),
    }
}

/// "2 allowed users no longer exist in the tenant and were removed: …".
fn gone_text(p: &Picker) -> String {
    let gone = p.gone();
    let names: Vec<String> = gone
        .iter()
        .take(3)
        .map(|u| {
            let name = if u.name.trim().is_empty() {
                u.oid.trim()
            } else {
                u.name.trim()
            };
            if u.upn.trim().is_empty() {
                name.to_string()
            } else {
                format!("{name} ({})", u.upn.trim())
            }
        })
        .collect();
    let more = if gone.len() > 3 {
        format!(" and {} more", thousands(gone.len() - 3))
    } else {
        String::new()
    };
    format!(
        "! {} no longer {} in the tenant and {} removed: {}{more}. Save (s) to update the list.",
        plural(gone.len(), "allowed user", "allowed users"),
        if gone.len() == 1 { "exists" } else { "exist" },
        if gone.len() == 1 { "was" } else { "were" },
        names.join(", ")
    )
}

fn intro(setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    let who = setup.settings.microsoft.setup_user_name.trim();
    let lines = vec![
        Line::from(
            "Choose which of your staff may use cspsync: two columns, Disallowed and Allowed, moved between with the keyboard.",
        ),
        Line::from(""),
        Line::from(Span::styled(
            if who.is_empty() {
                "The account that set up cspsync is admin: always allowed.".to_string()
            } else {
                format!("The account that set up cspsync ({who}) is admin: always allowed.")
            },
            theme.dim(),
        )),
        Line::from(Span::styled(
            "Allowed users are viewers (reconcile, read-only) or operators (may also apply syncs).",
            theme.dim(),
        )),
        Line::from(Span::styled(
            "Anyone else who signs in can use nothing but Sign in.",
            theme.dim(),
        )),
    ];
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), area);
}

fn filter_line(s: &State, p: &Picker, theme: &Theme, frame: &mut Frame, r: Rect) {
    let mut spans: Vec<Span> = Vec::new();
    let q = p.query();
    if s.typing {
        spans.push(Span::styled("Filter: ", theme.title()));
        spans.push(Span::styled(q.to_string(), theme.selected()));
        spans.push(Span::styled(" ", theme.selected()));
    } else if !q.is_empty() {
        spans.push(Span::styled("Filter: ", theme.title()));
        spans.push(Span::raw(q.to_string()));
    }
    if s.typing || !q.is_empty() {
        spans.push(Span::styled(
            format!(
                "  {} of {} match",
                thousands(p.matching()),
                thousands(p.len())
            ),
            theme.dim(),
        ));
    }
    if let Some(n) = &s.note {
        let style = match n.kind {
            NoteKind::Ok => theme.ok(),
            NoteKind::Warn => theme.warn(),
            NoteKind::Error => theme.error(),
        };
        if !spans.is_empty() {
            spans.push(Span::raw("   "));
        }
        spans.push(Span::styled(n.text.clone(), style));
    } else if spans.is_empty() {
        spans.push(Span::styled(
            "/ filters by name or sign-in name.",
            theme.dim(),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), r);
    if s.typing {
        let x =
            r.x.saturating_add(8)
                .saturating_add(Span::raw(q).width() as u16);
        if x < r.x.saturating_add(r.width) {
            frame.set_cursor_position((x, r.y));
        }
    }
}

/// The keys, as many as fit, most useful first.
fn legend(admin: bool, p: &Picker, theme: &Theme, buf: &mut Buffer, r: Rect) {
    let change: &[(&str, &str)] = &[
        ("Enter", "move"),
        ("Space", "mark"),
        ("←→", "column"),
        ("/", "filter"),
        ("a", "move all shown"),
        ("r", "role"),
        ("u", "undo"),
        ("s", "save"),
        ("PgUp/PgDn Home/End", "scroll"),
        ("R", "reload"),
    ];
    let look: &[(&str, &str)] = &[
        ("↑↓", "move"),
        ("←→", "column"),
        ("/", "filter"),
        ("PgUp/PgDn Home/End", "scroll"),
        ("R", "reload"),
    ];
    let items = if admin && !p.is_empty() { change } else { look };
    let end = r.x.saturating_add(r.width);
    let mut x = r.x;
    for (k, a) in items {
        let w = (Span::raw(*k).width() + 1 + a.len() + 2) as u16;
        if x.saturating_add(w) > end {
            break;
        }
        let (nx, _) = buf.set_stringn(x, r.y, k, usize::from(end - x), theme.key());
        let ax = nx.saturating_add(1);
        let (nx, _) = buf.set_stringn(ax, r.y, a, usize::from(end.saturating_sub(ax)), theme.dim());
        x = nx + 2;
    }
}

/// One column: a frame titled with its counts, the visible rows only, the position.
fn column(s: &State, p: &Picker, side: Side, theme: &Theme, frame: &mut Frame, area: Rect) -> u16 {
    if area.width < 6 || area.height < 3 {
        return 1;
    }
    // The focused column has the highlighted cursor row (not under the popup) and a `›`.
    let focused = p.focus == side && s.confirm.is_none();
    let has_cursor = p.focus == side;
    let shown = p.shown(side);
    let total = p.total(side);
    let mut title = if p.query().is_empty() {
        format!(" {} ({}) ", side.title(), thousands(total))
    } else {
        format!(
            " {} ({} of {}) ",
            side.title(),
            thousands(shown.len()),
            thousands(total)
        )
    };
    let marked = p.marked_count(side);
    if marked > 0 {
        title = format!("{}· {} marked ", title, thousands(marked));
    }
    let rows = area.height.saturating_sub(2);
    let first = p.top(side, usize::from(rows));
    let mut block = Block::default()
        .borders(Borders::ALL)
        .border_style(if focused { theme.accent() } else { theme.dim() })
        .title(Span::styled(
            title,
            if focused {
                theme.accent()
            } else {
                theme.title()
            },
        ));
    if shown.len() > usize::from(rows) {
        let last = (first + usize::from(rows)).min(shown.len());
        block = block.title_bottom(Span::styled(
            format!(
                " {}–{} of {} ",
                thousands(first + 1),
                thousands(last),
                thousands(shown.len())
            ),
            theme.dim(),
        ));
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.width == 0 || inner.height == 0 {
        return rows;
    }
    let buf = frame.buffer_mut();
    if shown.is_empty() {
        let text = if !p.query().is_empty() {
            "No one matches the filter."
        } else if side == Side::Allowed {
            "Nobody yet: Enter moves users here."
        } else if p.is_empty() {
            "The tenant has no users."
        } else {
            "Everyone is allowed."
        };
        put(
            buf,
            inner.x + 1,
            inner.y,
            text,
            inner.width.saturating_sub(1),
            theme.dim(),
        );
        return rows;
    }
    let cursor = p.cursor(side);
    for (k, &u) in shown
        .iter()
        .skip(first)
        .take(usize::from(inner.height))
        .enumerate()
    {
        let y = inner.y + k as u16;
        let at_cursor = first + k == cursor;
        draw_row(
            p,
            u,
            side,
            at_cursor && focused,
            at_cursor && has_cursor,
            theme,
            buf,
            inner.x,
            y,
            inner.width,
        );
    }
    rows
}

#[allow(clippy::too_many_arguments)]
fn draw_row(
    p: &Picker,
    u: u32,
    side: Side,
    selected: bool,
    cursor_here: bool,
    theme: &Theme,
    buf: &mut Buffer,
    x0: u16,
    y: u16,
    width: u16,
) {
    let row = p.row(u);
    let line = Rect {
        x: x0,
        y,
        width,
        height: 1,
    };
    let sel = theme.selected();
    if selected {
        buf.set_style(line, sel);
    }
    let pick = |s: Style| if selected { sel } else { s };
    // One cell of air before the right border.
    let end = x0.saturating_add(width).saturating_sub(1);
    // Mark, then the right-hand tags (role in Allowed; disabled/guest), then name and sign-in.
    let mark = if row.marked {
        "✓"
    } else if cursor_here {
        "›"
    } else {
        " "
    };
    put(buf, x0, y, mark, 1, pick(theme.accent()));
    let role = match (side, row.code) {
        (Side::Allowed, ADMIN) => "admin",
        (Side::Allowed, OPERATOR) => "operator",
        (Side::Allowed, VIEWER) => "viewer",
        _ => "",
    };
    let role_w: u16 = if side == Side::Allowed { 8 } else { 0 };
    let mut right = end;
    if role_w > 0 && width >= 24 {
        right = end.saturating_sub(role_w);
        let style = match row.code {
            ADMIN => theme.title(),
            OPERATOR => theme.accent(),
            _ => theme.text(),
        };
        put(buf, right, y, role, role_w, pick(style));
        right = right.saturating_sub(1);
    }
    let tags = match (row.disabled, row.guest) {
        (true, true) => "disabled guest",
        (true, false) => "disabled",
        (false, true) => "guest",
        (false, false) => "",
    };
    if !tags.is_empty() && width >= 30 {
        let w = tags.len() as u16;
        right = right.saturating_sub(w);
        put(buf, right, y, tags, w, pick(theme.warn()));
        right = right.saturating_sub(1);
    }
    let x = x0.saturating_add(2);
    let mid = right.saturating_sub(x);
    // The name column: half of the row, at most 22 cells.
    let fixed = (end.saturating_sub(x).saturating_sub(role_w)) / 2;
    let name_w = fixed.clamp(8, 22).min(mid);
    let name_style = if row.disabled {
        theme.dim()
    } else {
        theme.text()
    };
    put(buf, x, y, row.name, name_w, pick(name_style));
    let ux = x.saturating_add(name_w).saturating_add(1);
    if ux < right {
        put(buf, ux, y, row.upn, right - ux, pick(theme.dim()));
    }
}

/// Write `s` in at most `w` cells at (x, y), ending in `…` when cut.
fn put(buf: &mut Buffer, x: u16, y: u16, s: &str, w: u16, style: Style) {
    if w == 0 || s.is_empty() {
        return;
    }
    let need = Span::raw(s).width();
    if need <= usize::from(w) {
        buf.set_stringn(x, y, s, usize::from(w), style);
    } else {
        let (nx, _) = buf.set_stringn(x, y, s, usize::from(w - 1), style);
        buf.set_stringn(nx, y, "…", 1, style);
    }
}

fn confirm(c: &super::Confirm, theme: &Theme, frame: &mut Frame, area: Rect) {
    let ch = &c.changes;
    let mut lines: Vec<Line> = Vec::new();
    let counts = format!(
        "{} added · {} removed · {}",
        thousands(ch.added.len()),
        thousands(ch.removed.len() + ch.gone.len()),
        plural(ch.roles.len(), "role change", "role changes"),
    );
    lines.push(Line::from(Span::styled(counts, theme.title())));
    let names = |v: &mut dyn Iterator<Item = &str>, n: usize| -> String {
        let shown: Vec<&str> = v.take(4).collect();
        let more = n.saturating_sub(shown.len());
        if more > 0 {
            format!("{} and {} more", shown.join(", "), thousands(more))
        } else {
            shown.join(", ")
        }
    };
    if !ch.added.is_empty() {
        lines.push(Line::from(format!(
            "Added: {}",
            names(
                &mut ch.added.iter().map(|u| u.name.as_str()),
                ch.added.len()
            )
        )));
    }
    if !ch.removed.is_empty() {
        lines.push(Line::from(format!(
            "Removed: {}",
            names(
                &mut ch.removed.iter().map(|u| u.name.as_str()),
                ch.removed.len()
            )
        )));
    }
    if !ch.gone.is_empty() {
        lines.push(Line::from(format!(
            "No longer in the tenant: {}",
            names(&mut ch.gone.iter().map(|u| u.name.as_str()), ch.gone.len())
        )));
    }
    if !ch.roles.is_empty() {
        lines.push(Line::from(format!(
            "Role changed: {}",
            names(
                &mut ch.roles.iter().map(|(u, _)| u.name.as_str()),
                ch.roles.len()
            )
        )));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(format!(
        "After saving, the setup account (admin), {} and {} may use cspsync; anyone else is refused at sign-in.",
        plural(c.operators, "operator", "operators"),
        plural(c.viewers, "viewer", "viewers"),
    )));
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::styled("y", theme.key()),
        Span::raw("/"),
        Span::styled("Enter", theme.key()),
        Span::raw(" save    "),
        Span::styled("n", theme.key()),
        Span::raw("/"),
        Span::styled("Esc", theme.key()),
        Span::raw(" cancel"),
    ]));
    let w = 72.min(area.width);
    let inner = usize::from(w.saturating_sub(4)).max(1);
    let h = (lines_rows(&lines, inner) as u16 + 2).min(area.height);
    let r = crate::tui::render::centered(area, w, h);
    frame.render_widget(Clear, r);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.accent())
        .title(Span::styled(" Save the allowed users? ", theme.title()));
    let inner_r = block.inner(r).inner(ratatui::layout::Margin {
        horizontal: 1,
        vertical: 0,
    });
    frame.render_widget(block, r);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner_r);
}
