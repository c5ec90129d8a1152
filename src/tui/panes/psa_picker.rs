//! A scrollable list with type-to-filter, for choosing one of many (Xero organisations,
//! contacts, accounts). Only the visible slice is drawn, so thousands of contacts scroll as
//! fast as ten.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::tui::theme::Theme;
use crate::tui::widgets::{InputOutcome, TextInput};

/// One choice: `id` is what is saved, `label` what a person reads, `detail` a dim note.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub label: String,
    pub detail: String,
}

impl Item {
    pub fn new(id: impl Into<String>, label: impl Into<String>, detail: impl Into<String>) -> Item {
        Item {
            id: id.into(),
            label: label.into(),
            detail: detail.into(),
        }
    }
}

/// What a key did to an open picker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickOutcome {
    /// An item was chosen (the list closed); `changed` when it differs from before.
    Chosen {
        changed: bool,
    },
    /// Closed without choosing.
    Closed,
    /// The cursor or the filter changed.
    Moved,
    Ignored,
}

/// Rows moved by PgUp/PgDn.
const PAGE: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Picker {
    pub items: Vec<Item>,
    /// Index into `items`.
    pub selected: Option<usize>,
    pub open: bool,
    pub filter: TextInput,
    /// Index into [`Picker::filtered`].
    pub cursor: usize,
}

impl Picker {
    /// Replace the items, selecting `preselect` (an id) when it is among them.
    pub fn set_items(&mut self, items: Vec<Item>, preselect: Option<&str>) {
        self.selected = preselect.and_then(|id| items.iter().position(|i| i.id == id));
        self.items = items;
        self.open = false;
        self.filter = TextInput::default();
        self.cursor = 0;
    }

    pub fn clear(&mut self) {
        self.set_items(Vec::new(), None);
    }

    pub fn selected_item(&self) -> Option<&Item> {
        self.selected.and_then(|i| self.items.get(i))
    }

    pub fn selected_id(&self) -> Option<&str> {
        self.selected_item().map(|i| i.id.as_str())
    }

    /// Indices of the items matching the filter: every word typed appears in the label or
    /// the detail, ignoring case.
    pub fn filtered(&self) -> Vec<usize> {
        let words: Vec<String> = self
            .filter
            .value
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        self.items
            .iter()
            .enumerate()
            .filter(|(_, it)| {
                if words.is_empty() {
                    return true;
                }
                let hay = format!("{} {}", it.label, it.detail).to_lowercase();
                words.iter().all(|w| hay.contains(w.as_str()))
            })
            .map(|(i, _)| i)
            .collect()
    }

    pub fn open(&mut self) {
        self.open = true;
        self.filter = TextInput::default();
        self.cursor = self
            .selected
            .and_then(|sel| self.filtered().iter().position(|i| *i == sel))
            .unwrap_or(0);
    }

    pub fn close(&mut self) {
        self.open = false;
        self.filter = TextInput::default();
    }

    /// Keys of an open picker: ↑/↓/PgUp/PgDn/Home/End move, letters filter, Backspace and
    /// Ctrl-U edit the filter, Enter chooses, Esc closes.
    pub fn handle(&mut self, key: KeyEvent) -> PickOutcome {
        let n = self.filtered().len();
        let last = n.saturating_sub(1);
        match key.code {
            KeyCode::Esc => {
                self.close();
                PickOutcome::Closed
            }
            KeyCode::Enter => {
                let Some(&idx) = self.filtered().get(self.cursor) else {
                    // Nothing matches: keep the list open so the filter can be fixed.
                    return PickOutcome::Ignored;
                };
                let changed = self.selected != Some(idx);
                self.selected = Some(idx);
                self.close();
                PickOutcome::Chosen { changed }
            }
            KeyCode::Up => {
                self.cursor = self.cursor.saturating_sub(1);
                PickOutcome::Moved
            }
            KeyCode::Down => {
                self.cursor = (self.cursor + 1).min(last);
                PickOutcome::Moved
            }
            KeyCode::PageUp => {
                self.cursor = self.cursor.saturating_sub(PAGE);
                PickOutcome::Moved
            }
            KeyCode::PageDown => {
                self.cursor = (self.cursor + PAGE).min(last);
                PickOutcome::Moved
            }
            KeyCode::Home => {
                self.cursor = 0;
                PickOutcome::Moved
            }
            KeyCode::End => {
                self.cursor = last;
                PickOutcome::Moved
            }
            KeyCode::Left | KeyCode::Right => PickOutcome::Ignored,
            KeyCode::Char(_) if key.modifiers.contains(KeyModifiers::ALT) => PickOutcome::Ignored,
            _ => match self.filter.handle(key) {
                InputOutcome::Changed => {
                    self.cursor = 0;
                    PickOutcome::Moved
                }
                InputOutcome::Moved => PickOutcome::Moved,
                InputOutcome::Ignored => PickOutcome::Ignored,
            },
        }
    }

    /// Draw the open list in `area`: a frame titled `title`, the filter line, then the
    /// visible slice of the matching items with the cursor row highlighted.
    pub fn render_list(&self, theme: &Theme, frame: &mut Frame, area: Rect, title: &str) {
        if area.width < 4 || area.height < 3 {
            return;
        }
        frame.render_widget(Clear, area);
        let filtered = self.filtered();
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.accent())
            .title(Span::styled(
                format!(" {title}: {} of {} ", filtered.len(), self.items.len()),
                theme.title(),
            ));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if inner.height == 0 || inner.width == 0 {
            return;
        }
        let filter_line = if self.filter.value.is_empty() {
            Line::from(Span::styled(
                "Type to filter · ↑↓ move · Enter choose · Esc close",
                theme.dim(),
            ))
        } else {
            Line::from(vec![
                Span::styled("Filter: ", theme.dim()),
                Span::styled(self.filter.value.clone(), theme.accent()),
            ])
        };
        frame.render_widget(Paragraph::new(filter_line), row(inner, 0));
        let rows = usize::from(inner.height.saturating_sub(1));
        if rows == 0 {
            return;
        }
        if filtered.is_empty() {
            frame.render_widget(
                Paragraph::new(Span::styled(
                    if self.items.is_empty() {
                        "Nothing to choose from."
                    } else {
                        "Nothing matches; Backspace edits the filter."
                    },
                    theme.warn(),
                )),
                row(inner, 1),
            );
            return;
        }
        let cursor = self.cursor.min(filtered.len().saturating_sub(1));
        let start = (cursor + 1).saturating_sub(rows);
        let width = usize::from(inner.width);
        for (n, idx) in filtered.iter().skip(start).take(rows).enumerate() {
            let Some(item) = self.items.get(*idx) else {
                continue;
            };
            let mark = if Some(*idx) == self.selected {
                "● "
            } else {
                "  "
            };
            let mut text = format!("{mark}{}", item.label);
            if !item.detail.is_empty() {
                text.push_str("  ");
            }
            let label_len = text.chars().count();
            let detail: String = item
                .detail
                .chars()
                .take(width.saturating_sub(label_len))
                .collect();
            let label: String = text.chars().take(width).collect();
            let pad = width.saturating_sub(label.chars().count() + detail.chars().count());
            let on_cursor = start + n == cursor;
            let style = if on_cursor {
                theme.selected()
            } else {
                theme.text()
            };
            let line = Line::from(vec![
                Span::styled(label, style),
                Span::styled(detail, if on_cursor { style } else { theme.dim() }),
                Span::styled(" ".repeat(pad), style),
            ]);
            frame.render_widget(Paragraph::new(line), row(inner, n as u16 + 1));
        }
    }
}

fn row(area: Rect, n: u16) -> Rect {
    Rect {
        x: area.x,
        y: area.y.saturating_add(n),
        width: area.width,
        height: u16::from(n < area.height),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn picker() -> Picker {
        let mut p = Picker::default();
        p.set_items(
            vec![
                Item::new("200", "200  Sales", "REVENUE"),
                Item::new("260", "260  Other Revenue", "OTHERINCOME"),
                Item::new("270", "270  Interest Income", "OTHERINCOME"),
            ],
            Some("260"),
        );
        p
    }

    #[test]
    fn filters_moves_and_chooses() {
        let mut p = picker();
        assert_eq!(p.selected_id(), Some("260"));
        p.open();
        assert_eq!(p.cursor, 1, "opens on the current choice");
        for c in "inc".chars() {
            p.handle(key(KeyCode::Char(c)));
        }
        assert_eq!(p.filtered(), vec![1, 2]);
        assert_eq!(p.cursor, 0);
        p.handle(key(KeyCode::Down));
        p.handle(key(KeyCode::Down));
        assert_eq!(p.cursor, 1, "the cursor stops at the last match");
        assert_eq!(
            p.handle(key(KeyCode::Enter)),
            PickOutcome::Chosen { changed: true }
        );
        assert_eq!(p.selected_id(), Some("270"));
        assert!(!p.open);
    }

    #[test]
    fn nothing_matching_keeps_the_list_open() {
        let mut p = picker();
        p.open();
        for c in "zzz".chars() {
            p.handle(key(KeyCode::Char(c)));
        }
        assert!(p.filtered().is_empty());
        assert_eq!(p.handle(key(KeyCode::Enter)), PickOutcome::Ignored);
        assert!(p.open);
        assert_eq!(p.handle(key(KeyCode::Esc)), PickOutcome::Closed);
        assert_eq!(p.selected_id(), Some("260"), "Esc keeps the old choice");
    }
}
