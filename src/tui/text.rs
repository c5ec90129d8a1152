//! User-facing text that is not a pane's own: the full key help.

use ratatui::text::{Line, Span};

use super::theme::Theme;

const HELP: &[(&str, &str)] = &[
    ("1-7", "go to a tab"),
    (
        "Tab / Shift-Tab",
        "next / previous tab (when no field is being edited)",
    ),
    ("↑ ↓", "move between fields and rows"),
    ("Enter", "edit a field, or run the action under the cursor"),
    ("Esc", "stop editing a field"),
    ("Ctrl-R", "reveal or hide a secret while editing it"),
    ("Ctrl-U", "clear the field being edited"),
    ("?", "this help"),
    (
        "q / Ctrl-C",
        "quit (asks first when something is not saved)",
    ),
];

pub fn help_lines(theme: &Theme) -> Vec<Line<'static>> {
    HELP.iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:<16}"), theme.key()),
                Span::raw(*v),
            ])
        })
        .collect()
}
