//! Tabs whose screens come with later versions (Users, Reconcile, Sync): they say so, and
//! what to use meanwhile.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::Hint;
use crate::tui::app::Tab;
use crate::tui::theme::Theme;

pub fn hints() -> Vec<Hint> {
    Vec::new()
}

pub fn render(tab: Tab, theme: &Theme, frame: &mut Frame, area: Rect) {
    let what = match tab {
        Tab::Users => {
            "Choosing which of your staff may operate cspsync (allowed and disallowed users)."
        }
        Tab::Reconcile => {
            "Dicker Data vs Microsoft vs your PSA, per customer and product, with every mismatch explained."
        }
        _ => {
            "Bringing your PSA in line with Dicker Data: a plan to review, then applied with live progress."
        }
    };
    let lines = vec![
        Line::from(Span::styled(tab.title(), theme.title())),
        Line::from(""),
        Line::from(what),
        Line::from(""),
        Line::from(Span::styled(
            "This screen is not in this version of cspsync yet.",
            theme.dim(),
        )),
    ];
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), area);
}
