//! Small widgets: a one-line text input (optionally masked) and helpers to draw forms.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::theme::Theme;

/// A single-line text field. `masked` shows bullets unless `revealed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextInput {
    pub value: String,
    /// Cursor position in characters.
    pub cursor: usize,
    pub masked: bool,
    pub revealed: bool,
}

/// What a key did to a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputOutcome {
    /// The value changed.
    Changed,
    /// The cursor moved; the value did not change.
    Moved,
    /// Not a key for the field.
    Ignored,
}

impl TextInput {
    pub fn new(value: &str) -> TextInput {
        TextInput {
            value: value.to_string(),
            cursor: value.chars().count(),
            masked: false,
            revealed: false,
        }
    }

    pub fn masked(value: &str) -> TextInput {
        TextInput {
            masked: true,
            ..TextInput::new(value)
        }
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.value
            .char_indices()
            .nth(chars)
            .map_or(self.value.len(), |(i, _)| i)
    }

    /// Edit keys: printable characters, Backspace, Delete, ←/→, Home/End, Ctrl-U (clear).
    pub fn handle(&mut self, key: KeyEvent) -> InputOutcome {
        let len = self.value.chars().count();
        match key.code {
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.value.clear();
                self.cursor = 0;
                InputOutcome::Changed
            }
            KeyCode::Char(c)
                if !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
            {
                let at = self.byte_at(self.cursor);
                self.value.insert(at, c);
                self.cursor += 1;
                InputOutcome::Changed
            }
            KeyCode::Backspace if self.cursor > 0 => {
                let at = self.byte_at(self.cursor - 1);
                self.value.remove(at);
                self.cursor -= 1;
                InputOutcome::Changed
            }
            KeyCode::Delete if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.value.remove(at);
                InputOutcome::Changed
            }
            KeyCode::Left if self.cursor > 0 => {
                self.cursor -= 1;
                InputOutcome::Moved
            }
            KeyCode::Right if self.cursor < len => {
                self.cursor += 1;
                InputOutcome::Moved
            }
            KeyCode::Home => {
                self.cursor = 0;
                InputOutcome::Moved
            }
            KeyCode::End => {
                self.cursor = len;
                InputOutcome::Moved
            }
            _ => InputOutcome::Ignored,
        }
    }

    /// The text as shown: bullets for a masked, unrevealed value.
    pub fn shown(&self) -> String {
        if self.masked && !self.revealed {
            "•".repeat(self.value.chars().count())
        } else {
            self.value.clone()
        }
    }

    pub fn trimmed(&self) -> &str {
        self.value.trim()
    }
}

/// Draw one labelled form row: `label  [value]  note`. With `focused` the value is highlighted
/// and, when `editing`, the cursor is placed in it.
#[allow(clippy::too_many_arguments)]
pub fn field_row(
    frame: &mut Frame,
    area: Rect,
    theme: &Theme,
    label: &str,
    label_width: u16,
    input: &TextInput,
    focused: bool,
    editing: bool,
    note: Option<(&str, bool)>,
) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let shown = input.shown();
    let value_width = area.width.saturating_sub(label_width + 2).min(48) as usize;
    // Scroll the value so the cursor stays visible.
    let chars: Vec<char> = shown.chars().collect();
    let start = input.cursor.saturating_sub(value_width.saturating_sub(1));
    let visible: String = chars.iter().skip(start).take(value_width).collect();
    let pad = value_width.saturating_sub(visible.chars().count());
    let value_style = if focused {
        theme.selected()
    } else {
        theme.dim()
    };
    let mut spans = vec![
        Span::styled(
            format!("{label:<w$}", w = label_width as usize),
            if focused { theme.title() } else { theme.text() },
        ),
        Span::raw("  "),
        Span::styled(format!("{visible}{}", " ".repeat(pad)), value_style),
    ];
    if let Some((text, is_error)) = note {
        spans.push(Span::raw("  "));
        spans.push(Span::styled(
            text.to_string(),
            if is_error { theme.error() } else { theme.ok() },
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
    if editing && focused {
        let x = area.x + label_width + 2 + (input.cursor - start) as u16;
        if x < area.x + area.width {
            frame.set_cursor_position((x, area.y));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn edits_with_cursor_and_unicode() {
        let mut t = TextInput::new("ab");
        t.handle(key(KeyCode::Left));
        t.handle(key(KeyCode::Char('é')));
        assert_eq!(t.value, "aéb");
        t.handle(key(KeyCode::Backspace));
        assert_eq!(t.value, "ab");
        t.handle(key(KeyCode::End));
        t.handle(key(KeyCode::Backspace));
        assert_eq!(t.value, "a");
        assert_eq!(
            t.handle(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
            InputOutcome::Changed
        );
        assert_eq!(t.value, "");
        let m = TextInput::masked("secret");
        assert_eq!(m.shown(), "••••••");
    }
}
