//! Drawing the PSA tab. Everything is laid out line by line from the top; when the area is
//! short the blank spacer lines go first, then the "where to get it" note at the bottom.
//! Never indexes past an end and uses saturating arithmetic, so any size is safe.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{
    Button, Field, Form, Kind, Outcome, PickerId, Row, State, XeroPhase, blame_sentence, rows,
    saved_done,
};
use crate::config::PsaKindSetting;
use crate::tui::app::Setup;
use crate::tui::theme::Theme;
use crate::tui::widgets::field_row;

/// Width of the labels column.
const LABEL: u16 = 18;
/// The gutter before the labels (a ✗ marks a field an error points at).
const GUTTER: u16 = 2;
/// The widest a value box gets.
const VALUE_MAX: u16 = 48;

/// One piece of the layout.
enum Piece {
    /// A blank line, dropped first when space is short.
    Spacer,
    /// Lines of text (already wrapped).
    Lines(Vec<Line<'static>>),
    /// A focusable row.
    Row(Row),
    /// Lines under a field, indented to its value.
    Note(Vec<String>, Style),
    /// The context note at the bottom (dropped when space is short).
    Help(Vec<String>),
}

impl Piece {
    fn height(&self) -> u16 {
        let n = match self {
            Piece::Spacer | Piece::Row(_) => 1,
            Piece::Lines(l) => l.len(),
            Piece::Note(l, _) | Piece::Help(l) => l.len(),
        };
        u16::try_from(n).unwrap_or(u16::MAX)
    }
}

/// Word-wrap `text` to `width` columns; words longer than a line are split.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    let mut line = String::new();
    let mut len = 0usize;
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let wl = word.len();
            let need = if len == 0 { wl } else { len + 1 + wl };
            if need <= width {
                if len > 0 {
                    line.push(' ');
                }
                line.extend(word.iter());
                len = need;
                break;
            }
            if len > 0 {
                out.push(std::mem::take(&mut line));
                len = 0;
                continue;
            }
            // A word longer than the line: split it.
            let rest = word.split_off(width.min(word.len()));
            out.push(word.iter().collect());
            word = rest;
            if word.is_empty() {
                break;
            }
        }
    }
    if len > 0 {
        out.push(line);
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

fn styled_lines(text: &str, width: usize, style: Style) -> Vec<Line<'static>> {
    wrap(text, width)
        .into_iter()
        .map(|l| Line::from(Span::styled(l, style)))
        .collect()
}

/// "Where to get it": a short note about the focused row.
fn help_for(s: &State, row: Row) -> Option<&'static str> {
    Some(match row {
        Row::Kind => {
            "Choose the system you bill customers from (←/→ on this row). Enter goes to its first field."
        }
        Row::Field(Field::CwCompany) => {
            "Company id: the company name you type on the ConnectWise login page, next to your user name."
        }
        Row::Field(Field::CwSite) => {
            "Site: the address you log in to ConnectWise at, e.g. api-au.myconnectwise.net (or api-na, api-eu), or your own server's name."
        }
        Row::Field(Field::CwPublicKey | Field::CwPrivateKey) => {
            "Keys: in ConnectWise go to System → Members → API Members, create a member for cspsync, then API Keys → new key; copy the public and private key (the private key is shown only once)."
        }
        Row::Field(Field::CwClientId) => {
            "Client id: a GUID naming the integration, required on every ConnectWise API call; register one at developer.connectwise.com (Client IDs)."
        }
        Row::Field(Field::AtUser) => {
            "API user: the login name (an e-mail address) of an Autotask API user; the portal guides call it the Authentication ID."
        }
        Row::Field(Field::AtSecret) => "Secret: that API user's password (the Authentication Key).",
        Row::Field(Field::AtCode) => {
            "Integration code: the API Tracking Identifier chosen on the API user's Security tab in Autotask."
        }
        Row::Button(Button::Test) => match s.kind {
            Kind::Autotask => {
                "Test connection finds your Autotask zone from the API user, then counts companies; nothing is changed."
            }
            _ => {
                "Test connection signs in with these values and counts companies and agreements; nothing is changed."
            }
        },
        Row::Button(Button::XeroAuthenticate) => {
            "Sign in with a Xero user who can grant application access (connect apps) to your organisation."
        }
        Row::Button(Button::XeroChange) => {
            "Uses the saved Xero sign-in to list the organisations, contacts and accounts again."
        }
        Row::Picker(PickerId::Tenant) => {
            "The Xero organisation cspsync writes invoices and bills in."
        }
        Row::Picker(PickerId::Contact) => {
            "The contact (usually Dicker Data) the internal bill for your licence costs is raised against."
        }
        Row::Picker(PickerId::Expense) => {
            "The expense account that bill's lines post to (expense, direct costs and overheads accounts)."
        }
        Row::Picker(PickerId::Revenue) => {
            "The revenue account used on each line of your customers' invoices (revenue, sales and other income accounts)."
        }
        Row::Button(Button::XeroSave) => {
            "Saves the organisation, contact and accounts; the Xero sign-in is remembered."
        }
        Row::Field(Field::XeroPaste) | Row::Button(Button::XeroCancel) => return None,
    })
}

fn outcome_pieces(out: &mut Vec<Piece>, o: &Outcome, kind: Kind, theme: &Theme, w: usize) {
    match o {
        Outcome::None => {}
        Outcome::Running(t) => {
            out.push(Piece::Spacer);
            out.push(Piece::Lines(styled_lines(t, w, theme.warn())));
        }
        Outcome::Ok(t) => {
            out.push(Piece::Spacer);
            out.push(Piece::Lines(styled_lines(t, w, theme.ok())));
        }
        Outcome::Failed { error, hint, blame } => {
            out.push(Piece::Spacer);
            let mut lines = styled_lines(&format!("✗ {error}"), w, theme.error());
            if let Some(b) = blame_sentence(kind, blame) {
                lines.extend(styled_lines(&b, w, theme.text()));
            }
            if !hint.is_empty() {
                lines.extend(styled_lines(hint, w, theme.text()));
            }
            out.push(Piece::Lines(lines));
        }
    }
}

/// What was saved for this PSA, when the step is done with it.
fn saved_line(setup: &Setup, kind: Kind) -> Option<String> {
    if !saved_done(setup) || setup.settings.psa.kind != kind.setting() {
        return None;
    }
    let when = setup
        .settings
        .psa
        .verified_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| format!(", verified {}", t.format("%Y-%m-%d %H:%M UTC")))
        .unwrap_or_default();
    Some(format!("✓ Saved: cspsync uses {}{when}.", kind.title()))
}

fn form_pieces(out: &mut Vec<Piece>, form: &Form, theme: &Theme, note_w: usize) {
    for (f, _) in &form.inputs {
        out.push(Piece::Row(Row::Field(*f)));
        if let Some(p) = form.problem(*f) {
            out.push(Piece::Note(wrap(p, note_w), theme.error()));
        }
    }
}

fn build(s: &State, setup: &Setup, theme: &Theme, w: usize) -> Vec<Piece> {
    let note_w = w.saturating_sub(usize::from(GUTTER + LABEL + 2)).max(10);
    let mut out = vec![
        Piece::Lines(styled_lines(
            "Connect the PSA you bill from: cspsync keeps its licence quantities in step.",
            w,
            theme.dim(),
        )),
        Piece::Spacer,
        Piece::Row(Row::Kind),
        Piece::Spacer,
    ];
    match s.kind {
        Kind::ConnectWise => {
            form_pieces(&mut out, &s.cw, theme, note_w);
            out.push(Piece::Spacer);
            out.push(Piece::Row(Row::Button(Button::Test)));
            push_outcome(&mut out, &s.cw.outcome, setup, s.kind, theme, w);
        }
        Kind::Autotask => {
            form_pieces(&mut out, &s.at, theme, note_w);
            out.push(Piece::Lines(zone_lines(s, theme, w)));
            out.push(Piece::Spacer);
            out.push(Piece::Row(Row::Button(Button::Test)));
            push_outcome(&mut out, &s.at.outcome, setup, s.kind, theme, w);
        }
        Kind::Xero => xero_pieces(&mut out, s, setup, theme, w, note_w),
    }
    if let Some(h) = help_for(s, s.focused()) {
        out.push(Piece::Spacer);
        out.push(Piece::Help(wrap(h, w)));
    }
    out
}

fn push_outcome(
    out: &mut Vec<Piece>,
    o: &Outcome,
    setup: &Setup,
    kind: Kind,
    theme: &Theme,
    w: usize,
) {
    if *o == Outcome::None {
        if let Some(line) = saved_line(setup, kind) {
            out.push(Piece::Spacer);
            out.push(Piece::Lines(styled_lines(&line, w, theme.ok())));
        }
    } else {
        outcome_pieces(out, o, kind, theme, w);
    }
}

fn zone_lines(s: &State, theme: &Theme, w: usize) -> Vec<Line<'static>> {
    let indent = usize::from(GUTTER + LABEL + 2);
    let label = format!(
        "{}{:<l$}  ",
        " ".repeat(usize::from(GUTTER)),
        "Zone",
        l = usize::from(LABEL)
    );
    let room = w.saturating_sub(indent);
    let cut = |t: &str| t.chars().take(room).collect::<String>();
    match &s.zone {
        Some((name, url)) => vec![
            Line::from(vec![
                Span::raw(label),
                Span::styled(cut(name), theme.text()),
            ]),
            Line::from(vec![
                Span::raw(" ".repeat(indent)),
                Span::styled(cut(url), theme.dim()),
            ]),
        ],
        None => vec![Line::from(vec![
            Span::raw(label),
            Span::styled(
                cut("found automatically when you test the connection"),
                theme.dim(),
            ),
        ])],
    }
}

fn xero_pieces(
    out: &mut Vec<Piece>,
    s: &State,
    setup: &Setup,
    theme: &Theme,
    w: usize,
    note_w: usize,
) {
    let x = &s.xero;
    match &x.phase {
        XeroPhase::SignedOut => {
            let p = &setup.settings.psa;
            if p.kind == PsaKindSetting::Xero && saved_done(setup) {
                let xs = &p.xero;
                for (label, value) in [
                    ("Organisation", xs.tenant_name.as_str()),
                    ("Contact", xs.contact_name.as_str()),
                    ("Expense account", xs.expense_account_code.as_str()),
                    ("Revenue account", xs.revenue_account_code.as_str()),
                ] {
                    out.push(Piece::Lines(vec![static_row(label, value, theme, w)]));
                }
                out.push(Piece::Spacer);
            } else {
                out.push(Piece::Lines(styled_lines(
                    "Authenticate opens Xero's sign-in in a browser: sign in with a Xero user who can grant application access, and allow cspsync. Then choose the organisation, a contact, an expense and a revenue account.",
                    w,
                    theme.text(),
                )));
                out.push(Piece::Spacer);
            }
            for r in rows(s).into_iter().skip(1) {
                out.push(Piece::Row(r));
            }
            push_outcome(out, &x.outcome, setup, s.kind, theme, w);
        }
        XeroPhase::Starting => {
            out.push(Piece::Lines(styled_lines(
                "Starting the Xero sign-in…",
                w,
                theme.warn(),
            )));
            out.push(Piece::Spacer);
            out.push(Piece::Row(Row::Button(Button::XeroCancel)));
        }
        XeroPhase::Waiting { url, redirect_uri } => {
            out.push(Piece::Lines(styled_lines(
                "Open this address in a browser, sign in to Xero and allow access:",
                w,
                theme.text(),
            )));
            out.push(Piece::Lines(
                wrap(url, w)
                    .into_iter()
                    .map(|l| Line::from(Span::styled(l, theme.accent())))
                    .collect(),
            ));
            out.push(Piece::Lines(styled_lines(
                &format!("Waiting for the browser to come back to {redirect_uri} …"),
                w,
                theme.warn(),
            )));
            out.push(Piece::Spacer);
            out.push(Piece::Lines(styled_lines(
                "Browser on another computer (SSH)? After allowing access it shows a page that cannot load: copy that page's address (http://localhost…) and paste it here.",
                w,
                theme.text(),
            )));
            out.push(Piece::Row(Row::Field(Field::XeroPaste)));
            if let Some(p) = &x.paste_problem {
                out.push(Piece::Note(wrap(p, note_w), theme.error()));
            } else if x.paste_sent {
                out.push(Piece::Note(
                    wrap("Checking the pasted address…", note_w),
                    theme.warn(),
                ));
            }
            out.push(Piece::Spacer);
            out.push(Piece::Row(Row::Button(Button::XeroCancel)));
        }
        XeroPhase::Connecting => {
            out.push(Piece::Lines(styled_lines(
                "Signing in to Xero and reading the organisations…",
                w,
                theme.warn(),
            )));
            out.push(Piece::Spacer);
            out.push(Piece::Row(Row::Button(Button::XeroCancel)));
        }
        XeroPhase::Choosing => {
            let rs = rows(s);
            out.push(Piece::Row(Row::Picker(PickerId::Tenant)));
            if x.loading {
                let name = x
                    .tenants
                    .selected_item()
                    .map(|t| t.label.clone())
                    .unwrap_or_default();
                out.push(Piece::Note(
                    wrap(
                        &format!("Loading the contacts and accounts of {name}…"),
                        note_w,
                    ),
                    theme.warn(),
                ));
            }
            for r in rs.into_iter().skip(2) {
                if r == Row::Button(Button::XeroSave) {
                    out.push(Piece::Spacer);
                }
                out.push(Piece::Row(r));
            }
            push_outcome(out, &x.outcome, setup, s.kind, theme, w);
        }
    }
}

fn static_row(label: &str, value: &str, theme: &Theme, w: usize) -> Line<'static> {
    let head = format!(
        "{}{:<l$}  ",
        " ".repeat(usize::from(GUTTER)),
        label,
        l = usize::from(LABEL)
    );
    let room = w.saturating_sub(head.chars().count());
    Line::from(vec![
        Span::styled(head, theme.text()),
        Span::styled(value.chars().take(room).collect::<String>(), theme.accent()),
    ])
}

fn line_rect(area: Rect, y: u16, height: u16) -> Rect {
    let bottom = area.y.saturating_add(area.height);
    Rect {
        x: area.x,
        y,
        width: area.width,
        height: height.min(bottom.saturating_sub(y)),
    }
}

pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.width == 0 || area.height == 0 {
        return;
    }
    let w = usize::from(area.width);
    let mut pieces = build(s, setup, theme, w);
    let total = |p: &[Piece]| p.iter().map(|x| u32::from(x.height())).sum::<u32>();
    if total(&pieces) > u32::from(area.height) {
        // The note at the bottom goes first (with the blank line before it), then the
        // blank lines.
        if let Some(i) = pieces.iter().position(|p| matches!(p, Piece::Help(_))) {
            pieces.truncate(i.saturating_sub(1));
        }
    }
    if total(&pieces) > u32::from(area.height) {
        pieces.retain(|p| !matches!(p, Piece::Spacer));
    }
    let focused = s.focused();
    let bottom = area.y.saturating_add(area.height);
    let mut y = area.y;
    let mut picker_at: Option<(PickerId, u16)> = None;
    for p in &pieces {
        if y >= bottom {
            break;
        }
        let h = p.height();
        let r = line_rect(area, y, h);
        match p {
            Piece::Spacer => {}
            Piece::Lines(lines) => frame.render_widget(Paragraph::new(lines.clone()), r),
            Piece::Help(lines) => frame.render_widget(
                Paragraph::new(
                    lines
                        .iter()
                        .map(|l| Line::from(Span::styled(l.clone(), theme.dim())))
                        .collect::<Vec<_>>(),
                ),
                r,
            ),
            Piece::Note(lines, style) => {
                let indent = GUTTER + LABEL + 2;
                let nr = Rect {
                    x: r.x.saturating_add(indent),
                    width: r.width.saturating_sub(indent),
                    ..r
                };
                frame.render_widget(
                    Paragraph::new(
                        lines
                            .iter()
                            .map(|l| Line::from(Span::styled(l.clone(), *style)))
                            .collect::<Vec<_>>(),
                    ),
                    nr,
                );
            }
            Piece::Row(row) => {
                draw_row(s, theme, frame, r, *row, *row == focused);
                if let Row::Picker(id) = row
                    && s.xero.picker(*id).open
                {
                    picker_at = Some((*id, y));
                }
            }
        }
        y = y.saturating_add(h);
    }
    if let Some((id, row_y)) = picker_at {
        let below = row_y.saturating_add(1);
        // Room for every item (borders and the filter line add 3), at most to the bottom.
        let want = u16::try_from(s.xero.picker(id).items.len())
            .unwrap_or(u16::MAX)
            .saturating_add(3)
            .clamp(6, 20);
        let mut list = Rect {
            x: area.x,
            y: below,
            width: area.width.min(VALUE_MAX + GUTTER + LABEL + 4),
            height: bottom.saturating_sub(below).min(want),
        };
        if list.height < 6 {
            // Too little room below the row: use the whole pane.
            list.y = area.y;
            list.height = area.height.min(want);
        }
        // Nothing of the form shows through beside the list.
        frame.render_widget(
            ratatui::widgets::Clear,
            Rect {
                width: area.width,
                ..list
            },
        );
        s.xero.picker(id).render_list(
            theme,
            frame,
            list,
            &format!("Choose the {}", id.label().to_lowercase()),
        );
    }
}

fn gutter(frame: &mut Frame, r: Rect, mark: &str, theme: &Theme) {
    if r.width >= GUTTER {
        frame.render_widget(
            Paragraph::new(Span::styled(mark.to_string(), theme.error())),
            Rect {
                width: GUTTER,
                height: 1,
                ..r
            },
        );
    }
}

fn after_gutter(r: Rect) -> Rect {
    Rect {
        x: r.x.saturating_add(GUTTER),
        width: r.width.saturating_sub(GUTTER),
        height: r.height.min(1),
        ..r
    }
}

fn draw_row(s: &State, theme: &Theme, frame: &mut Frame, r: Rect, row: Row, focused: bool) {
    if r.height == 0 {
        return;
    }
    let inner = after_gutter(r);
    match row {
        Row::Kind => {
            let mut spans = vec![Span::styled(
                format!("{:<l$}  ", "PSA", l = usize::from(LABEL)),
                if focused { theme.title() } else { theme.text() },
            )];
            for k in Kind::ALL {
                let chosen = k == s.kind;
                let text = format!("{} {}", if chosen { "(•)" } else { "( )" }, k.title());
                let style = match (chosen, focused) {
                    (true, true) => theme.selected(),
                    (true, false) => theme.title(),
                    _ => theme.dim(),
                };
                spans.push(Span::styled(text, style));
                spans.push(Span::raw("   "));
            }
            if focused {
                spans.push(Span::styled("←/→", theme.key()));
            }
            frame.render_widget(Paragraph::new(Line::from(spans)), inner);
        }
        Row::Field(f) => {
            let input = if f == Field::XeroPaste {
                Some(&s.xero.paste)
            } else {
                s.form().and_then(|form| form.input(f))
            };
            let Some(input) = input else {
                return;
            };
            let blamed = match s.form().map(|form| &form.outcome) {
                Some(Outcome::Failed { blame, .. }) => blame.contains(&f),
                _ => false,
            };
            if blamed {
                gutter(frame, r, "✗", theme);
            }
            field_row(
                frame,
                inner,
                theme,
                f.label(),
                LABEL,
                input,
                focused,
                focused && s.editing,
                None,
            );
        }
        Row::Picker(id) => {
            let p = s.xero.picker(id);
            let value_w = usize::from(inner.width.saturating_sub(LABEL + 2).min(VALUE_MAX));
            let (text, style) = match p.selected_item() {
                Some(it) => (it.label.clone(), theme.text()),
                None if p.items.is_empty() => ("(nothing to choose yet)".to_string(), theme.dim()),
                None => (format!("(choose one of {})", p.items.len()), theme.warn()),
            };
            let room = value_w.saturating_sub(2);
            let shown: String = text.chars().take(room).collect();
            let pad = room.saturating_sub(shown.chars().count());
            let value_style = if focused { theme.selected() } else { style };
            let line = Line::from(vec![
                Span::styled(
                    format!("{:<l$}  ", id.label(), l = usize::from(LABEL)),
                    if focused { theme.title() } else { theme.text() },
                ),
                Span::styled(format!("{shown}{} ▾", " ".repeat(pad)), value_style),
            ]);
            frame.render_widget(Paragraph::new(line), inner);
        }
        Row::Button(b) => {
            let busy = match b {
                Button::Test => s.form().is_some_and(|f| f.outcome.running()),
                Button::XeroSave => s.xero.outcome.running(),
                _ => false,
            };
            let label = match b {
                Button::XeroAuthenticate if s.xero.phase == XeroPhase::Choosing => {
                    "Sign in to Xero again"
                }
                Button::XeroAuthenticate if s.xero.refresh.is_some() => "Sign in to Xero again",
                _ => b.label(),
            };
            let style = if focused {
                theme.selected()
            } else if busy {
                theme.dim()
            } else {
                theme.accent()
            };
            frame.render_widget(
                Paragraph::new(Span::styled(format!("[ {label} ]"), style)),
                inner,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wraps_words_and_splits_long_ones() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), vec![""]);
        assert_eq!(wrap("x abcdefgh", 3), vec!["x", "abc", "def", "gh"]);
        assert_eq!(wrap("abc", 0), vec!["a", "b", "c"]);
    }
}
