//! Helpers shared by the Distributor and Partner Center tabs: what to tell a person when
//! Microsoft refuses the signed-in account, keeping rotated refresh tokens (every tab's), the
//! setup refusal as a sentence for the tabs, and small text
//! layout helpers (wrapping estimates, truncation, times).

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use crate::api::error::{Api, ApiError, ErrorKind};
use crate::secret::Secret;
use crate::tui::app::Setup;

/// Where a Partner Center admin checks the roles of an account.
pub const ROLE_CHECK: &str = "Role: in Partner Center → Account settings → User management, the signed-in account needs the Admin agent role (or Global administrator).";
/// Where a person sets up multi-factor authentication.
pub const MFA_CHECK: &str = "MFA: the account must sign in with multi-factor authentication; set it up at aka.ms/mfasetup, then sign in again (tab 1).";

/// What a refusal of the Microsoft sign-in means for the person, with what to check, when
/// it is one (a lapsed sign-in, a 401 or a 403 from Partner Center or Graph); `None` for
/// other errors (use `Display` + `hint()`). `who` is the signed-in account, when known.
pub fn microsoft_refusal(e: &ApiError, who: &str) -> Option<Vec<String>> {
    let who = who.trim();
    let account = if who.is_empty() {
        "The signed-in account".to_string()
    } else {
        format!("The signed-in account ({who})")
    };
    let lapsed = e.api == Api::Entra
        && (e.kind == ErrorKind::Unauthorized
            || (e.kind == ErrorKind::OAuth && e.code.as_deref() == Some("invalid_grant")));
    if lapsed {
        let whose = if who.is_empty() {
            String::new()
        } else {
            format!(" ({who})")
        };
        return Some(vec![format!(
            "Your Microsoft sign-in{whose} has lapsed or was revoked: sign in again (tab 1)."
        )]);
    }
    if !matches!(e.api, Api::PartnerCenter | Api::Graph) {
        return None;
    }
    match e.kind {
        // Partner Center answers 401 to an App+User token without MFA (§1.7) as well as to a
        // refused token: MFA first.
        ErrorKind::Unauthorized => Some(vec![
            format!("{account} was refused. Check:"),
            format!("• {MFA_CHECK}"),
            format!("• {ROLE_CHECK}"),
        ]),
        ErrorKind::Forbidden => Some(vec![
            format!("{account} is not allowed to do this. Check:"),
            format!("• {ROLE_CHECK}"),
            format!("• {MFA_CHECK}"),
        ]),
        _ => None,
    }
}

/// A refresh token replaced while a background task used the session (§1.4): `used` is the
/// one the task started with, `new` the one the identity platform returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub used: Secret,
    pub new: Secret,
}

impl Rotated {
    /// When the session's refresh token changed from `used`.
    pub fn of(used: Option<&str>, current: &str) -> Option<Rotated> {
        let used = used?;
        (used != current).then(|| Rotated {
            used: Secret::new(used),
            new: Secret::new(current),
        })
    }

    /// Keep the new refresh token, unless the stored one changed meanwhile (another sign-in:
    /// never overwrite a newer session with an older one's token). True when it was kept.
    pub fn apply(&self, setup: &mut Setup) -> bool {
        let stored = setup.secrets.microsoft_refresh_token.as_deref();
        if stored == Some(self.used.expose()) && !self.new.is_empty() {
            setup.secrets.microsoft_refresh_token = Some(self.new.expose().to_string());
            true
        } else {
            false
        }
    }
}

/// The refresh tokens a run's sessions rotated from the ones `secrets` held: Microsoft's and
/// (Xero rotates on every use, §7.1) Xero's.
pub fn rotated_by(
    secrets: &crate::config::Secrets,
    c: &crate::engine::pipeline::Connected,
) -> (Option<Rotated>, Option<Rotated>) {
    let microsoft = Rotated::of(
        secrets.microsoft_refresh_token.as_deref(),
        c.sources.microsoft.session.refresh_token().secret(),
    );
    (microsoft, xero_rotated(secrets, c))
}

/// Xero's refresh token, when the run's Xero session rotated it (§7.1).
pub fn xero_rotated(
    secrets: &crate::config::Secrets,
    c: &crate::engine::pipeline::Connected,
) -> Option<Rotated> {
    c.xero.as_ref().and_then(|x| {
        Rotated::of(
            secrets.xero_refresh_token.as_deref(),
            x.refresh_token().secret(),
        )
    })
}

/// Keep the refresh tokens a run rotated (each unless the stored one changed meanwhile);
/// a save of the setup when one was kept.
pub fn keep_rotated(
    setup: &mut Setup,
    microsoft: Option<Rotated>,
    xero: Option<Rotated>,
) -> Vec<crate::tui::app::Effect> {
    let mut changed = microsoft.is_some_and(|r| r.apply(setup));
    if let Some(x) = xero
        && setup.secrets.xero_refresh_token.as_deref() == Some(x.used.expose())
        && !x.new.is_empty()
    {
        setup.secrets.xero_refresh_token = Some(x.new.expose().to_string());
        changed = true;
    }
    if changed {
        vec![crate::tui::app::Effect::Save(Box::new(setup.clone()))]
    } else {
        Vec::new()
    }
}

/// A setup refusal from [`crate::engine::pipeline::connect`] as one sentence pointing at the
/// tabs, not the command line.
pub fn setup_sentence(e: String) -> String {
    let e = e.replace(
        "finish the setup (run `cspsync` and complete the wizard) or check it with `cspsync doctor`",
        "finish the setup tabs first",
    );
    let mut e = e.trim_end_matches('.').to_string();
    e.push('.');
    e
}

/// Whether there is a Microsoft sign-in to use.
pub fn signed_in(setup: &Setup) -> bool {
    setup
        .secrets
        .microsoft_refresh_token
        .as_deref()
        .is_some_and(|t| !t.trim().is_empty())
}

/// `2025-06-11 04:32 UTC`.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `04:32 UTC`.
pub fn fmt_clock(t: DateTime<Utc>) -> String {
    t.format("%H:%M UTC").to_string()
}

/// A stored RFC 3339 time, shown as [`fmt_time`] (or as stored when unreadable).
pub fn fmt_stored(s: &str) -> String {
    DateTime::parse_from_rfc3339(s)
        .map(|t| fmt_time(t.with_timezone(&Utc)))
        .unwrap_or_else(|_| s.to_string())
}

/// `in 10 min`, `in 2 h`, `in 45 s` (never negative).
pub fn fmt_in(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let secs = (to - from).num_seconds().max(0);
    if secs < 90 {
        format!("in {secs} s")
    } else if secs < 90 * 60 {
        format!("in {} min", (secs + 30) / 60)
    } else {
        format!("in {} h", (secs + 1800) / 3600)
    }
}

/// `s` cut to `n` characters, with `…` when cut.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else if n == 0 {
        String::new()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// `s` cut or padded to exactly `n` characters.
pub fn cell(s: &str, n: usize) -> String {
    let t = truncate(s, n);
    let pad = n.saturating_sub(t.chars().count());
    format!("{t}{}", " ".repeat(pad))
}

/// How many rows `text` takes when word-wrapped to `width` (an estimate that never
/// undercounts a greedy word wrap).
pub fn wrapped_rows(text: &str, width: usize) -> usize {
    if width == 0 {
        return 0;
    }
    let mut rows = 1;
    let mut col = 0;
    for word in text.split(' ') {
        let w = word.chars().count();
        let need = if col == 0 { w } else { col + 1 + w };
        if need <= width {
            col = need;
        } else if w > width {
            // A word longer than a row is broken across rows.
            rows += usize::from(col > 0) + (w.saturating_sub(1)) / width;
            col = if w % width == 0 { width } else { w % width };
        } else {
            rows += 1;
            col = w;
        }
    }
    rows
}

/// Rows the lines take word-wrapped to `width`.
pub fn lines_rows(lines: &[Line], width: usize) -> usize {
    lines
        .iter()
        .map(|l| {
            let text: String = l.spans.iter().map(|s| s.content.as_ref()).collect();
            wrapped_rows(&text, width)
        })
        .sum()
}

/// A one-row rectangle at row `y` of `area`, if it is inside.
pub fn row(area: Rect, y: u16) -> Option<Rect> {
    (y < area.height).then(|| Rect {
        x: area.x,
        y: area.y.saturating_add(y),
        width: area.width,
        height: 1,
    })
}

/// The part of `area` from row `y` down, `h` rows at most (empty when past the end).
pub fn rows_from(area: Rect, y: u16, h: u16) -> Rect {
    let y = y.min(area.height);
    Rect {
        x: area.x,
        y: area.y.saturating_add(y),
        width: area.width,
        height: h.min(area.height - y),
    }
}

/// Draw wrapped lines into `area` (nothing when it has no room).
pub fn draw_wrapped(frame: &mut Frame, area: Rect, lines: Vec<Line<'static>>) {
    if area.width == 0 || area.height == 0 || lines.is_empty() {
        return;
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

/// Who is signed in now, for "the signed-in account" sentences (the setup account when no
/// other person signed in since).
pub fn signed_in_name(setup: &crate::tui::app::Setup) -> String {
    let ms = &setup.settings.microsoft;
    if ms.signed_in_name.trim().is_empty() {
        ms.setup_user_name.clone()
    } else {
        ms.signed_in_name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_estimate_counts_rows() {
        assert_eq!(wrapped_rows("", 10), 1);
        assert_eq!(wrapped_rows("abc def", 10), 1);
        assert_eq!(wrapped_rows("abc def ghi", 7), 2);
        assert_eq!(wrapped_rows("abcdefghijklmnopqrstuvwxy", 10), 3);
        assert_eq!(wrapped_rows("x", 0), 0);
    }

    #[test]
    fn times_and_cells() {
        let a = DateTime::parse_from_rfc3339("2025-06-11T04:22:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = a + chrono::Duration::minutes(10);
        assert_eq!(fmt_in(a, b), "in 10 min");
        assert_eq!(fmt_in(b, a), "in 0 s");
        assert_eq!(fmt_clock(b), "04:32 UTC");
        assert_eq!(
            fmt_stored("2025-06-11T04:22:00+00:00"),
            "2025-06-11 04:22 UTC"
        );
        assert_eq!(cell("abcdef", 4), "abc…");
        assert_eq!(cell("ab", 4), "ab  ");
        assert_eq!(truncate("ab", 0), "");
    }

    #[test]
    fn rotation_never_overwrites_a_newer_sign_in() {
        let mut setup = Setup::default();
        setup.secrets.microsoft_refresh_token = Some("rt-1".into());
        let r = Rotated::of(Some("rt-1"), "rt-2").unwrap();
        assert!(r.apply(&mut setup));
        assert_eq!(
            setup.secrets.microsoft_refresh_token.as_deref(),
            Some("rt-2")
        );
        // Someone signed in again meanwhile: the stored token is not the one used.
        setup.secrets.microsoft_refresh_token = Some("rt-9".into());
        assert!(!r.apply(&mut setup));
        assert_eq!(
            setup.secrets.microsoft_refresh_token.as_deref(),
            Some("rt-9")
        );
        assert!(Rotated::of(Some("a"), "a").is_none());
    }
}
