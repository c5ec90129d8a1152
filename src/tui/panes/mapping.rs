//! The Mapping view (issue 5 §2), opened from the Reconcile tab: what the last reconciliation
//! could not link, and the manual decisions that fix it.
//!
//! Two sections, switched with Tab or ←/→:
//! - **Customers**: unmapped customers first, each with its top suggestion and the reason
//!   inline, then the linked ones and how (name, domain, by hand, not billed). `a`/Enter
//!   accepts the top suggestion, 1–5 accept that suggestion, `s` walks the suggestion list with
//!   ↑/↓, `o` links by hand through a filterable list of every PSA record, `n` marks the
//!   customer not billed in the PSA, `u` removes a manual decision (back to automatic).
//! - **Products**: PSA products charging customers without a stock code (with ranked stock
//!   codes: accept with `a`/1–5/`s`, or `o` to pick any stock code in use), stock codes Dicker
//!   Data bills that the PSA has no product for (what to create; `o` maps an existing PSA
//!   product to one), and the PSA products mapped already (`u` removes a manual one).
//!
//! Every decision is written into `setup.settings.mapping` (one per tenant or PSA product,
//! replaced, never duplicated) and saved: [`on_key`] then returns [`Action::Changed`] with the
//! `Save` effect and an `Audit` record (`mapping.changed`: who decided what), and whoever opened the view reconciles again and calls [`refresh`]. Until
//! then a saved decision shows as pending on its row. Only a person who may apply syncs
//! (operators and the admin, `Access::may_apply_sync`) may change the mapping; viewers read.
//!
//! Pure: no I/O. `/` filters both sections by name, record or stock code.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;

#[path = "mapping_view.rs"]
mod view;

use super::Hint;
use super::psa::{Item as PickItem, PickOutcome, Picker};
use crate::access;
use crate::api::error::Api;
use crate::domain::mapping::{CustomerLink, MatchReason, PsaLink, canonical_ref};
use crate::domain::{PsaCustomerRef, PsaProductRef, Reconciliation, Suggestion};
use crate::tui::app::{Effect, Setup};
use crate::tui::theme::Theme;
use crate::tui::widgets::{InputOutcome, TextInput};

/// The two halves of the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Section {
    #[default]
    Customers,
    Products,
}

impl Section {
    fn other(self) -> Section {
        match self {
            Section::Customers => Section::Products,
            Section::Products => Section::Customers,
        }
    }
}

/// One row of a section: indices into the reconciliation's mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// `mapping.customers[i]`.
    Customer(usize),
    /// `mapping.unmapped_psa_products[i]`.
    UnmappedProduct(usize),
    /// `mapping.products[i]`: a stock code Dicker Data bills with no PSA product.
    MissingProduct(usize),
    /// `mapping.products[i].psa_products[j]`.
    MappedProduct(usize, usize),
}

/// What a row stands for, independent of indices (kept across a new reconciliation).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    Customer(String),
    UnmappedProduct(PsaProductRef),
    MissingProduct(String),
    MappedProduct(PsaProductRef),
}

/// What an open picker chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A PSA record for this tenant.
    CustomerRecord { tenant_id: String, name: String },
    /// A stock code for this PSA product.
    ProductCode {
        product: PsaProductRef,
        name: String,
    },
    /// A PSA product (one charging without a stock code) for this stock code.
    ProductForCode { stock_code: String },
}

/// Where the keys go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Focus {
    #[default]
    List,
    /// Walking the suggestions of the row under the cursor; the index of the highlighted one.
    Suggestions(usize),
    /// Choosing by hand from a filterable list.
    Picker { picker: Picker, purpose: Purpose },
    /// Typing the list filter.
    Filter,
}

/// What a key did, for whoever opened the view.
#[derive(Debug, Clone)]
pub enum Action {
    None,
    /// Close the view (Esc).
    Close,
    /// `setup.settings.mapping` changed and is being saved (the effects include
    /// `Effect::Save`): reconcile again, then [`refresh`].
    Changed(Vec<Effect>),
}

#[derive(Debug, Clone)]
pub struct State {
    pub rec: Arc<Reconciliation>,
    pub section: Section,
    pub focus: Focus,
    pub filter: TextInput,
    /// Rows shown per section (after the filter).
    pub customers: Vec<Row>,
    pub products: Vec<Row>,
    pub customer_cursor: usize,
    pub product_cursor: usize,
    /// First row drawn per section (kept by render so the cursor stays on screen).
    pub customer_offset: Cell<usize>,
    pub product_offset: Cell<usize>,
    /// List rows the last render had room for (PgUp/PgDn).
    pub view_rows: Cell<usize>,
    /// The outcome of the last key (text, is an error).
    pub note: Option<(String, bool)>,
}

impl State {
    pub fn new(rec: Arc<Reconciliation>, _setup: &Setup) -> State {
        let mut s = State {
            rec,
            section: Section::Customers,
            focus: Focus::List,
            filter: TextInput::default(),
            customers: Vec::new(),
            products: Vec::new(),
            customer_cursor: 0,
            product_cursor: 0,
            customer_offset: Cell::new(0),
            product_offset: Cell::new(0),
            view_rows: Cell::new(0),
            note: None,
        };
        s.rebuild();
        // Open on the products when every customer is linked and a product is not.
        let (c, p) = unmapped_counts(&s.rec);
        if c == 0 && p > 0 {
            s.section = Section::Products;
        }
        s
    }

    /// The rows of the current section.
    pub fn rows(&self) -> &[Row] {
        match self.section {
            Section::Customers => &self.customers,
            Section::Products => &self.products,
        }
    }

    pub fn cursor(&self) -> usize {
        match self.section {
            Section::Customers => self.customer_cursor,
            Section::Products => self.product_cursor,
        }
    }

    fn cursor_mut(&mut self) -> &mut usize {
        match self.section {
            Section::Customers => &mut self.customer_cursor,
            Section::Products => &mut self.product_cursor,
        }
    }

    /// The row under the cursor.
    pub fn current(&self) -> Option<Row> {
        self.rows().get(self.cursor()).copied()
    }

    /// The customer of a row.
    pub fn customer(&self, row: Row) -> Option<&CustomerLink> {
        match row {
            Row::Customer(i) => self.rec.mapping.customers.get(i),
            _ => None,
        }
    }

    /// The name of the PSA, or "the PSA".
    pub fn psa_name(&self) -> &'static str {
        self.rec
            .mapping
            .psa
            .map(Api::display_name)
            .unwrap_or("the PSA")
    }

    fn identity(&self, row: Row) -> Option<Identity> {
        let m = &self.rec.mapping;
        Some(match row {
            Row::Customer(i) => Identity::Customer(m.customers.get(i)?.tenant_id.to_lowercase()),
            Row::UnmappedProduct(i) => {
                Identity::UnmappedProduct(m.unmapped_psa_products.get(i)?.product.clone())
            }
            Row::MissingProduct(i) => {
                Identity::MissingProduct(m.products.get(i)?.stock_code.clone()?)
            }
            Row::MappedProduct(i, j) => {
                Identity::MappedProduct(m.products.get(i)?.psa_products.get(j)?.product.clone())
            }
        })
    }

    /// Rebuild both sections' rows from the reconciliation and the filter.
    fn rebuild(&mut self) {
        let keep_c = self
            .customers
            .get(self.customer_cursor)
            .and_then(|r| self.identity(*r));
        let keep_p = self
            .products
            .get(self.product_cursor)
            .and_then(|r| self.identity(*r));
        self.rebuild_keeping(keep_c, keep_p);
    }

    fn rebuild_keeping(&mut self, keep_c: Option<Identity>, keep_p: Option<Identity>) {
        let needle = self.filter.value.trim().to_lowercase();
        let m = &self.rec.mapping;
        // Customers: unmapped, not billed, linked (by hand, name, domain), no PSA; by name.
        let rank = |c: &CustomerLink| match &c.psa {
            PsaLink::Unmapped { .. } => 0,
            PsaLink::NotBilled => 1,
            PsaLink::Mapped { .. } => 2,
            PsaLink::NoPsa => 3,
        };
        let mut customers: Vec<usize> = (0..m.customers.len())
            .filter(|&i| {
                needle.is_empty()
                    || m.customers
                        .get(i)
                        .is_some_and(|c| customer_text(c).to_lowercase().contains(&needle))
            })
            .collect();
        customers.sort_by_cached_key(|&i| {
            m.customers
                .get(i)
                .map(|c| (rank(c), c.name.to_lowercase(), c.tenant_id.clone()))
        });
        self.customers = customers.into_iter().map(Row::Customer).collect();

        // Products: PSA products without a code, codes without a PSA product, mapped ones.
        let matches = |text: String| needle.is_empty() || text.to_lowercase().contains(&needle);
        let mut products: Vec<Row> = Vec::new();
        let mut unmapped: Vec<usize> = (0..m.unmapped_psa_products.len())
            .filter(|&i| {
                m.unmapped_psa_products
                    .get(i)
                    .is_some_and(|u| matches(format!("{} {}", u.name, u.product)))
            })
            .collect();
        unmapped.sort_by_cached_key(|&i| {
            m.unmapped_psa_products
                .get(i)
                .map(|u| u.name.to_lowercase())
        });
        products.extend(unmapped.into_iter().map(Row::UnmappedProduct));
        if m.psa.is_some() {
            let mut missing: Vec<usize> = m
                .products
                .iter()
                .enumerate()
                .filter(|(_, p)| p.billed_by_distributor && p.psa_products.is_empty())
                .filter(|(_, p)| p.stock_code.is_some())
                .filter(|(_, p)| {
                    matches(format!(
                        "{} {}",
                        p.product_name,
                        p.stock_code.as_deref().unwrap_or("")
                    ))
                })
                .map(|(i, _)| i)
                .collect();
            missing
                .sort_by_cached_key(|&i| m.products.get(i).map(|p| p.product_name.to_lowercase()));
            products.extend(missing.into_iter().map(Row::MissingProduct));
        }
        let mut mapped: Vec<(usize, usize)> = Vec::new();
        for (i, p) in m.products.iter().enumerate() {
            for (j, pp) in p.psa_products.iter().enumerate() {
                if matches(format!(
                    "{} {} {}",
                    pp.name,
                    pp.product,
                    p.stock_code.as_deref().unwrap_or("")
                )) {
                    mapped.push((i, j));
                }
            }
        }
        mapped.sort_by_cached_key(|&(i, j)| {
            m.products
                .get(i)
                .and_then(|p| p.psa_products.get(j))
                .map(|pp| pp.name.to_lowercase())
        });
        products.extend(mapped.into_iter().map(|(i, j)| Row::MappedProduct(i, j)));
        self.products = products;

        let find = |rows: &[Row], want: &Option<Identity>, s: &State| {
            want.as_ref()
                .and_then(|w| rows.iter().position(|r| s.identity(*r).as_ref() == Some(w)))
        };
        if let Some(i) = find(&self.customers, &keep_c, self) {
            self.customer_cursor = i;
        }
        if let Some(i) = find(&self.products, &keep_p, self) {
            self.product_cursor = i;
        }
        self.customer_cursor = self
            .customer_cursor
            .min(self.customers.len().saturating_sub(1));
        self.product_cursor = self
            .product_cursor
            .min(self.products.len().saturating_sub(1));
    }

    /// The customer suggestions of a row (empty unless it is an unmapped customer).
    pub fn customer_suggestions(&self, row: Row) -> &[Suggestion<PsaCustomerRef>] {
        match self.customer(row).map(|c| &c.psa) {
            Some(PsaLink::Unmapped { suggestions }) => suggestions,
            _ => &[],
        }
    }

    /// The stock-code suggestions of a row (empty unless it is an unmapped PSA product).
    pub fn product_suggestions(&self, row: Row) -> &[Suggestion<String>] {
        match row {
            Row::UnmappedProduct(i) => self
                .rec
                .mapping
                .unmapped_psa_products
                .get(i)
                .map(|u| u.suggestions.as_slice())
                .unwrap_or(&[]),
            _ => &[],
        }
    }

    /// How many suggestions the row has.
    pub fn suggestion_count(&self, row: Row) -> usize {
        self.customer_suggestions(row).len() + self.product_suggestions(row).len()
    }
}

/// Text a customer is found by with `/`.
fn customer_text(c: &CustomerLink) -> String {
    let mut t = format!("{} {}", c.name, c.tenant_id);
    if let Some(n) = &c.distributor_name {
        t.push(' ');
        t.push_str(n);
    }
    match &c.psa {
        PsaLink::Mapped { name, record, .. } => t.push_str(&format!(" {name} {record}")),
        PsaLink::Unmapped { suggestions } => {
            if let Some(s) = suggestions.first() {
                t.push(' ');
                t.push_str(&s.label);
            }
        }
        _ => {}
    }
    t
}

/// Unmapped customers and unmapped products, for a count that is always visible.
pub fn unmapped_counts(rec: &Reconciliation) -> (usize, usize) {
    (
        rec.mapping.unmapped_customers,
        rec.mapping.unmapped_products(),
    )
}

/// After a new reconciliation: the rows again, the cursor on the same item where it still
/// exists, an open picker's choices renewed (its filter kept).
pub fn refresh(s: &mut State, rec: Arc<Reconciliation>) {
    let keep_c = s
        .customers
        .get(s.customer_cursor)
        .and_then(|r| s.identity(*r));
    let keep_p = s
        .products
        .get(s.product_cursor)
        .and_then(|r| s.identity(*r));
    s.rec = rec;
    s.rebuild_keeping(keep_c, keep_p);
    // "Saved; it applies from the next reconciliation" is out of date now; errors stay.
    if !s.note.as_ref().is_some_and(|(_, err)| *err) {
        let (c, p) = unmapped_counts(&s.rec);
        s.note = Some((
            format!("Reconciled again: {c} unmapped customer(s), {p} unmapped product(s)."),
            false,
        ));
    }
    let n = s.current().map_or(0, |r| s.suggestion_count(r));
    match &mut s.focus {
        Focus::Suggestions(_) if n == 0 => s.focus = Focus::List,
        Focus::Suggestions(k) => *k = (*k).min(n - 1),
        Focus::Picker { purpose, .. } => {
            let purpose = purpose.clone();
            let items = picker_items(s, &purpose);
            if let Focus::Picker { picker, .. } = &mut s.focus {
                picker.items = items;
                picker.selected = None;
                picker.cursor = picker.cursor.min(picker.filtered().len().saturating_sub(1));
            }
        }
        _ => {}
    }
}

/// A text filter or picker has the keys (Tab and digits included).
pub fn editing(s: &State) -> bool {
    matches!(s.focus, Focus::Picker { .. } | Focus::Filter)
}

/// Whether the person may change the mapping: operators and the admin (and whoever runs the
/// first setup); viewers only read (issue 4).
pub fn may_change(setup: &Setup) -> bool {
    access::decide(
        &setup.settings,
        setup.secrets.microsoft_refresh_token.is_some(),
    )
    .may_apply_sync()
}

pub fn hints(s: &State) -> Vec<Hint> {
    match &s.focus {
        Focus::Filter => {
            return vec![
                Hint::new("type", "filter"),
                Hint::new("Enter", "keep"),
                Hint::new("Esc", "clear"),
            ];
        }
        Focus::Picker { .. } => {
            return vec![
                Hint::new("type", "filter"),
                Hint::new("↑/↓", "move"),
                Hint::new("Enter", "link"),
                Hint::new("Esc", "cancel"),
            ];
        }
        Focus::Suggestions(_) => {
            return vec![
                Hint::new("↑/↓", "choose"),
                Hint::new("Enter/a", "accept"),
                Hint::new("1-5", "accept that one"),
                Hint::new("Esc", "back"),
            ];
        }
        Focus::List => {}
    }
    let mut h = Vec::new();
    let row = s.current();
    let has_psa = s.rec.mapping.psa.is_some();
    if let Some(row) = row.filter(|_| has_psa) {
        let n = s.suggestion_count(row);
        if n > 0 {
            h.push(Hint::new("a", "accept"));
            if n > 1 {
                h.push(Hint::new("1-5", "pick"));
            }
        }
        // `u` where the shown reconciliation has a manual decision (a saved one not
        // reconciled yet is undone the same way; the row says so).
        let manual = match row {
            Row::Customer(_) => s.customer(row).is_some_and(|c| {
                matches!(
                    c.psa,
                    PsaLink::NotBilled
                        | PsaLink::Mapped {
                            reason: MatchReason::Manual,
                            ..
                        }
                )
            }),
            Row::MappedProduct(i, j) => s
                .rec
                .mapping
                .products
                .get(i)
                .and_then(|p| p.psa_products.get(j))
                .is_some_and(|pp| pp.via == "override"),
            _ => false,
        };
        match row {
            Row::Customer(_) => {
                h.push(Hint::new("o", "any record"));
                h.push(Hint::new("n", "not billed"));
            }
            Row::UnmappedProduct(_) | Row::MappedProduct(..) => {
                h.push(Hint::new("o", "any code"));
            }
            Row::MissingProduct(_) => h.push(Hint::new("o", "map a PSA product")),
        }
        if manual {
            h.push(Hint::new("u", "undo"));
        }
    }
    h.push(Hint::new("Esc", "back"));
    h.push(Hint::new(
        "Tab",
        match s.section {
            Section::Customers => "products",
            Section::Products => "customers",
        },
    ));
    h.push(Hint::new("/", "filter"));
    h
}

pub fn render(s: &State, setup: &Setup, theme: &Theme, frame: &mut Frame, area: Rect) {
    view::render(s, setup, theme, frame, area);
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

pub fn on_key(s: &mut State, setup: &mut Setup, key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    match s.focus.clone() {
        Focus::Filter => {
            filter_key(s, key);
            Action::None
        }
        Focus::Picker { .. } => picker_key(s, setup, key),
        Focus::Suggestions(k) => suggestions_key(s, setup, key, k),
        Focus::List => list_key(s, setup, key),
    }
}

fn filter_key(s: &mut State, key: KeyEvent) {
    match key.code {
        KeyCode::Enter => s.focus = Focus::List,
        KeyCode::Esc => {
            s.focus = Focus::List;
            s.filter = TextInput::default();
            s.rebuild();
        }
        _ => {
            if s.filter.handle(key) == InputOutcome::Changed {
                s.customer_cursor = 0;
                s.product_cursor = 0;
                s.rebuild_keeping(None, None);
            }
        }
    }
}

fn list_key(s: &mut State, setup: &mut Setup, key: KeyEvent) -> Action {
    let last = s.rows().len().saturating_sub(1);
    let page = s.view_rows.get().max(1);
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Esc if !s.filter.value.is_empty() => {
            s.filter = TextInput::default();
            s.rebuild();
        }
        KeyCode::Esc => return Action::Close,
        KeyCode::Tab | KeyCode::BackTab | KeyCode::Left | KeyCode::Right => {
            s.section = s.section.other();
            s.note = None;
        }
        KeyCode::Down | KeyCode::Char('j') => *s.cursor_mut() = (s.cursor() + 1).min(last),
        KeyCode::Up | KeyCode::Char('k') => *s.cursor_mut() = s.cursor().saturating_sub(1),
        KeyCode::PageDown => *s.cursor_mut() = (s.cursor() + page).min(last),
        KeyCode::PageUp => *s.cursor_mut() = s.cursor().saturating_sub(page),
        KeyCode::Home => *s.cursor_mut() = 0,
        KeyCode::End => *s.cursor_mut() = last,
        KeyCode::Char('/') => s.focus = Focus::Filter,
        KeyCode::Char('a') | KeyCode::Enter if !ctrl => return accept(s, setup, 0),
        KeyCode::Char(c @ '1'..='5') if !ctrl => {
            return accept(s, setup, usize::from(c as u8 - b'1'));
        }
        KeyCode::Char('s') if !ctrl => {
            let n = s.current().map_or(0, |r| s.suggestion_count(r));
            if n > 0 {
                s.focus = Focus::Suggestions(0);
            } else {
                s.note = Some(("No suggestions here.".into(), false));
            }
        }
        KeyCode::Char('o') if !ctrl => open_picker(s, setup),
        KeyCode::Char('n') if !ctrl => return not_billed(s, setup),
        KeyCode::Char('u') if !ctrl => return undo(s, setup),
        _ => {}
    }
    Action::None
}

fn suggestions_key(s: &mut State, setup: &mut Setup, key: KeyEvent, k: usize) -> Action {
    let n = s.current().map_or(0, |r| s.suggestion_count(r));
    match key.code {
        KeyCode::Esc | KeyCode::Backspace => s.focus = Focus::List,
        KeyCode::Down | KeyCode::Char('j') => {
            s.focus = Focus::Suggestions((k + 1).min(n.saturating_sub(1)))
        }
        KeyCode::Up | KeyCode::Char('k') => s.focus = Focus::Suggestions(k.saturating_sub(1)),
        KeyCode::Enter | KeyCode::Char('a') => {
            s.focus = Focus::List;
            return accept(s, setup, k);
        }
        KeyCode::Char(c @ '1'..='5') => {
            s.focus = Focus::List;
            return accept(s, setup, usize::from(c as u8 - b'1'));
        }
        _ => {}
    }
    Action::None
}

fn picker_key(s: &mut State, setup: &mut Setup, key: KeyEvent) -> Action {
    let Focus::Picker {
        mut picker,
        purpose,
    } = std::mem::take(&mut s.focus)
    else {
        return Action::None;
    };
    match picker.handle(key) {
        PickOutcome::Closed => Action::None,
        PickOutcome::Chosen { .. } => {
            let Some(id) = picker.selected_id().map(str::to_string) else {
                return Action::None;
            };
            chosen(s, setup, &purpose, &id)
        }
        PickOutcome::Moved | PickOutcome::Ignored => {
            s.focus = Focus::Picker { picker, purpose };
            Action::None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------------------------

/// Whether a change may be made now; else the note saying why not.
fn gate(s: &mut State, setup: &Setup) -> bool {
    if s.rec.mapping.psa.is_none() {
        s.note = Some((
            "No PSA was reconciled, so there is nothing to link to: choose a PSA in the setup, then reconcile.".into(),
            true,
        ));
        return false;
    }
    if !may_change(setup) {
        s.note = Some((
            "Viewers cannot change the mapping: ask an operator or the admin.".into(),
            true,
        ));
        return false;
    }
    true
}

/// Save the changed settings.
fn saved(s: &mut State, setup: &Setup, text: String) -> Action {
    let m = &setup.settings.mapping;
    // Who decided what, for the audit log (DESIGN.md §4: changes are recorded with who).
    let event = crate::audit::Event::now(
        crate::audit::Actor::signed_in(&setup.settings),
        crate::audit::MAPPING_CHANGED,
        serde_json::json!({
            "decision": text,
            "customers": m.customers.len(),
            "products": m.products.len(),
        }),
    );
    s.note = Some((
        format!("{text} Saved; it applies from the next reconciliation."),
        false,
    ));
    Action::Changed(vec![
        Effect::Save(Box::new(setup.clone())),
        Effect::Audit(Box::new(event)),
    ])
}

/// Nothing changed: say so.
fn unchanged(s: &mut State, text: String) -> Action {
    s.note = Some((text, false));
    Action::None
}

/// Accept suggestion `k` of the row under the cursor.
fn accept(s: &mut State, setup: &mut Setup, k: usize) -> Action {
    let Some(row) = s.current() else {
        return Action::None;
    };
    if s.suggestion_count(row) == 0 {
        s.note = Some((
            match row {
                Row::Customer(_) if s.customer(row).is_some_and(|c| c.psa.is_unmapped()) => {
                    "No suggestion for this customer: o links it by hand, n marks it not billed in the PSA.".into()
                }
                Row::Customer(_) => {
                    "This customer is not unmapped: o links it to another record, n marks it not billed.".into()
                }
                Row::UnmappedProduct(_) => {
                    "No suggestion for this product: o picks its stock code by hand.".into()
                }
                Row::MissingProduct(_) => format!(
                    "Create a {} product carrying this stock code, or press o to map an existing PSA product to it.",
                    s.psa_name()
                ),
                Row::MappedProduct(..) => {
                    "This product is mapped already: o picks another stock code.".into()
                }
            },
            false,
        ));
        return Action::None;
    }
    let n = s.suggestion_count(row);
    if k >= n {
        s.note = Some((
            format!(
                "There {} only {n} suggestion{} here.",
                if n == 1 { "is" } else { "are" },
                if n == 1 { "" } else { "s" }
            ),
            true,
        ));
        return Action::None;
    }
    if !gate(s, setup) {
        return Action::None;
    }
    match row {
        Row::Customer(_) => {
            let Some(c) = s.customer(row) else {
                return Action::None;
            };
            let Some(sug) = s.customer_suggestions(row).get(k) else {
                return Action::None;
            };
            let (tenant, name, target, label) = (
                c.tenant_id.clone(),
                c.name.clone(),
                sug.target.clone(),
                sug.label.clone(),
            );
            link_customer(s, setup, &tenant, &name, Some(target), &label)
        }
        Row::UnmappedProduct(i) => {
            let Some(u) = s.rec.mapping.unmapped_psa_products.get(i) else {
                return Action::None;
            };
            let Some(sug) = u.suggestions.get(k) else {
                return Action::None;
            };
            let (product, name, code) = (u.product.clone(), u.name.clone(), sug.target.clone());
            map_product(s, setup, &product, &name, &code)
        }
        _ => Action::None,
    }
}

/// Link (or, with `None`, mark not billed) a customer by hand.
fn link_customer(
    s: &mut State,
    setup: &mut Setup,
    tenant: &str,
    name: &str,
    record: Option<PsaCustomerRef>,
    label: &str,
) -> Action {
    let changed = setup.settings.mapping.set_customer(tenant, record.clone());
    let what = match &record {
        Some(_) => format!("{name} is linked to {label}."),
        None => format!("{name} is marked not billed in {}.", s.psa_name()),
    };
    if !changed {
        return unchanged(s, format!("{what} (already saved)"));
    }
    // Taking a record another customer was linked to automatically unlinks that one.
    let mut text = what;
    if let Some(r) = &record {
        let others: Vec<String> = s
            .rec
            .mapping
            .customers_of(r)
            .filter(|c| !c.tenant_id.eq_ignore_ascii_case(tenant))
            .filter(|c| setup.settings.mapping.customer(&c.tenant_id).is_none())
            .map(|c| c.name.clone())
            .collect();
        if !others.is_empty() {
            text.push_str(&format!(
                " {} was linked to it automatically and will be unmapped.",
                others.join(", ")
            ));
        }
    }
    saved(s, setup, text)
}

/// Map a PSA product by hand to a stock code.
fn map_product(
    s: &mut State,
    setup: &mut Setup,
    product: &PsaProductRef,
    name: &str,
    code: &str,
) -> Action {
    if !setup.settings.mapping.set_product(product, code) {
        return unchanged(
            s,
            match crate::domain::ProductKey::from_stock_code(code) {
                Some(_) => format!("{name} is mapped to {code}. (already saved)"),
                None => format!("{code} is not a licence stock code."),
            },
        );
    }
    saved(s, setup, format!("{name} is mapped to {code}."))
}

fn not_billed(s: &mut State, setup: &mut Setup) -> Action {
    let Some(c) = s.current().and_then(|r| s.customer(r)) else {
        s.note = Some((
            "n marks a customer not billed in the PSA: choose one in Customers.".into(),
            false,
        ));
        return Action::None;
    };
    let (tenant, name) = (c.tenant_id.clone(), c.name.clone());
    if !gate(s, setup) {
        return Action::None;
    }
    link_customer(s, setup, &tenant, &name, None, "")
}

fn undo(s: &mut State, setup: &mut Setup) -> Action {
    let Some(row) = s.current() else {
        return Action::None;
    };
    match row {
        Row::Customer(_) => {
            let Some(c) = s.customer(row) else {
                return Action::None;
            };
            let (tenant, name) = (c.tenant_id.clone(), c.name.clone());
            if setup.settings.mapping.customer(&tenant).is_none() {
                let how = match &c.psa {
                    PsaLink::Mapped { reason, .. } if *reason != MatchReason::Manual => {
                        format!(
                            "{name} is linked automatically; there is no manual decision to undo."
                        )
                    }
                    _ => format!("There is no manual decision for {name} to undo."),
                };
                return unchanged(s, how);
            }
            if !gate(s, setup) {
                return Action::None;
            }
            setup.settings.mapping.remove_customer(&tenant);
            saved(
                s,
                setup,
                format!(
                    "The manual decision for {name} is removed: it is matched automatically again."
                ),
            )
        }
        Row::UnmappedProduct(_) | Row::MappedProduct(..) => {
            let Some((product, name)) = product_of(s, row) else {
                return Action::None;
            };
            if setup.settings.mapping.product(&product).is_none() {
                return unchanged(s, format!("{name} has no manual stock code to undo."));
            }
            if !gate(s, setup) {
                return Action::None;
            }
            setup.settings.mapping.remove_product(&product);
            saved(
                s,
                setup,
                format!(
                    "The manual stock code of {name} is removed: its own identifier counts again."
                ),
            )
        }
        Row::MissingProduct(_) => unchanged(s, "There is no manual decision here to undo.".into()),
    }
}

/// The PSA product of a product row and its name.
fn product_of(s: &State, row: Row) -> Option<(PsaProductRef, String)> {
    let m = &s.rec.mapping;
    match row {
        Row::UnmappedProduct(i) => m
            .unmapped_psa_products
            .get(i)
            .map(|u| (u.product.clone(), u.name.clone())),
        Row::MappedProduct(i, j) => m
            .products
            .get(i)
            .and_then(|p| p.psa_products.get(j))
            .map(|pp| (pp.product.clone(), pp.name.clone())),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The picker
// ---------------------------------------------------------------------------------------------

fn ref_id<T: serde::Serialize>(r: &T) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

fn picker_items(s: &State, purpose: &Purpose) -> Vec<PickItem> {
    let m = &s.rec.mapping;
    match purpose {
        Purpose::CustomerRecord { tenant_id, .. } => {
            // Who each record is linked to, indexed once (thousands of records and customers).
            let mut linked_to: HashMap<&PsaCustomerRef, Vec<&str>> = HashMap::new();
            for c in m
                .customers
                .iter()
                .filter(|c| !c.tenant_id.eq_ignore_ascii_case(tenant_id))
            {
                if let Some(r) = c.psa.record() {
                    linked_to.entry(r).or_default().push(c.name.as_str());
                }
            }
            let charges: HashMap<&PsaCustomerRef, usize> = m
                .unclaimed_psa_customers
                .iter()
                .map(|u| (&u.record, u.charges))
                .collect();
            m.psa_records
                .iter()
                .map(|p| {
                    let linked = linked_to.get(&p.record).cloned().unwrap_or_default();
                    let mut detail = p.record.to_string();
                    if !linked.is_empty() {
                        detail.push_str(&format!(" · linked to {}", linked.join(", ")));
                    } else if let Some(n) = charges.get(&p.record) {
                        detail.push_str(&format!(" · {n} charge(s), no customer linked"));
                    }
                    PickItem::new(ref_id(&p.record), p.name.clone(), detail)
                })
                .collect()
        }
        Purpose::ProductCode { .. } => {
            let mut codes: Vec<&crate::domain::mapping::ProductLink> = m
                .products
                .iter()
                .filter(|p| p.stock_code.is_some())
                .collect();
            codes.sort_by_key(|p| (!p.billed_by_distributor, p.stock_code.clone()));
            codes
                .into_iter()
                .filter_map(|p| {
                    let code = p.stock_code.clone()?;
                    let mut detail = p.product_name.clone();
                    if !p.billed_by_distributor {
                        detail.push_str(" · not billed by Dicker Data");
                    }
                    Some(PickItem::new(code.clone(), code, detail))
                })
                .collect()
        }
        Purpose::ProductForCode { .. } => m
            .unmapped_psa_products
            .iter()
            .map(|u| {
                PickItem::new(
                    ref_id(&u.product),
                    u.name.clone(),
                    format!("{} · {} charge(s), no stock code", u.product, u.charges),
                )
            })
            .collect(),
    }
}

fn open_picker(s: &mut State, setup: &Setup) {
    let Some(row) = s.current() else {
        return;
    };
    if !gate(s, setup) {
        return;
    }
    let purpose = match row {
        Row::Customer(_) => {
            let Some(c) = s.customer(row) else {
                return;
            };
            if s.rec.mapping.psa_records.is_empty() {
                s.note = Some((
                    format!("{} has no companies or contacts to link to.", s.psa_name()),
                    true,
                ));
                return;
            }
            Purpose::CustomerRecord {
                tenant_id: c.tenant_id.clone(),
                name: c.name.clone(),
            }
        }
        Row::UnmappedProduct(_) | Row::MappedProduct(..) => {
            let Some((product, name)) = product_of(s, row) else {
                return;
            };
            if !s
                .rec
                .mapping
                .products
                .iter()
                .any(|p| p.stock_code.is_some())
            {
                s.note = Some(("No stock code is in use to map it to.".into(), true));
                return;
            }
            Purpose::ProductCode { product, name }
        }
        Row::MissingProduct(i) => {
            let Some(code) = s
                .rec
                .mapping
                .products
                .get(i)
                .and_then(|p| p.stock_code.clone())
            else {
                return;
            };
            if s.rec.mapping.unmapped_psa_products.is_empty() {
                s.note = Some((
                    format!(
                        "Every {} product charging customers has a stock code already: create one carrying {code} ({}).",
                        s.psa_name(),
                        identifier_field(s.rec.mapping.psa)
                    ),
                    false,
                ));
                return;
            }
            Purpose::ProductForCode { stock_code: code }
        }
    };
    let mut picker = Picker::default();
    let items = picker_items(s, &purpose);
    // Open on the current choice where there is one.
    let current = match (&purpose, row) {
        (Purpose::CustomerRecord { tenant_id, .. }, _) => setup
            .settings
            .mapping
            .customer(tenant_id)
            .and_then(|o| o.psa.as_ref())
            .or_else(|| s.customer(row).and_then(|c| c.psa.record()))
            .map(ref_id),
        (Purpose::ProductCode { product, .. }, _) => setup
            .settings
            .mapping
            .product(product)
            .map(|o| o.stock_code.clone())
            .or_else(|| match row {
                Row::MappedProduct(i, _) => s
                    .rec
                    .mapping
                    .products
                    .get(i)
                    .and_then(|p| p.stock_code.clone()),
                _ => None,
            }),
        _ => None,
    };
    picker.set_items(items, current.as_deref());
    picker.open();
    s.note = None;
    s.focus = Focus::Picker { picker, purpose };
}

fn chosen(s: &mut State, setup: &mut Setup, purpose: &Purpose, id: &str) -> Action {
    if !gate(s, setup) {
        return Action::None;
    }
    match purpose {
        Purpose::CustomerRecord { tenant_id, name } => {
            let Ok(record) = serde_json::from_str::<PsaCustomerRef>(id) else {
                return Action::None;
            };
            let label = s
                .rec
                .mapping
                .psa_record_name(&record)
                .map(str::to_string)
                .unwrap_or_else(|| record.to_string());
            link_customer(s, setup, tenant_id, name, Some(record), &label)
        }
        Purpose::ProductCode { product, name } => map_product(s, setup, product, name, id),
        Purpose::ProductForCode { stock_code } => {
            let Ok(product) = serde_json::from_str::<PsaProductRef>(id) else {
                return Action::None;
            };
            let name = s
                .rec
                .mapping
                .unmapped_psa_products
                .iter()
                .find(|u| u.product == product)
                .map(|u| u.name.clone())
                .unwrap_or_else(|| product.to_string());
            map_product(s, setup, &product, &name, stock_code)
        }
    }
}

/// Where a PSA product carries its stock code (docs/reconcile.md "Mapping").
pub fn identifier_field(psa: Option<Api>) -> &'static str {
    match psa {
        Some(Api::ConnectWise) => "a catalog item with it in vendorSku",
        Some(Api::Autotask) => "a service with it in sku",
        Some(Api::Xero) => "invoice lines with it as ItemCode",
        _ => "its stock-code identifier",
    }
}

// ---------------------------------------------------------------------------------------------
// Pending decisions (saved, not reconciled yet)
// ---------------------------------------------------------------------------------------------

/// A saved decision the shown reconciliation does not reflect yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// Linked by hand to this record (its name where known).
    Linked(String),
    NotBilled,
    /// The manual decision was removed.
    Automatic,
    /// Mapped by hand to this stock code.
    Code(String),
}

/// The pending decision of a row, if any.
pub fn pending(s: &State, setup: &Setup, row: Row) -> Option<Pending> {
    let o = &setup.settings.mapping;
    match row {
        Row::Customer(i) => {
            let c = s.rec.mapping.customers.get(i)?;
            customer_pending(s, c, o.customer(&c.tenant_id))
        }
        Row::UnmappedProduct(i) => {
            let u = s.rec.mapping.unmapped_psa_products.get(i)?;
            o.product(&u.product)
                .map(|d| Pending::Code(d.stock_code.clone()))
        }
        Row::MappedProduct(i, j) => {
            let p = s.rec.mapping.products.get(i)?;
            let pp = p.psa_products.get(j)?;
            let by_hand = pp.via == "override";
            let canonical = |code: &str| {
                crate::domain::ProductKey::from_stock_code(code).and_then(|k| k.stock_code())
            };
            match o.product(&pp.product) {
                None if by_hand => Some(Pending::Automatic),
                None => None,
                Some(d) if by_hand && canonical(&d.stock_code) == p.stock_code => None,
                Some(d) => Some(Pending::Code(d.stock_code.clone())),
            }
        }
        Row::MissingProduct(_) => None,
    }
}

/// A customer's saved decision `d` against what the shown reconciliation did.
fn customer_pending(
    s: &State,
    c: &CustomerLink,
    d: Option<&crate::domain::CustomerOverride>,
) -> Option<Pending> {
    let manual = match &c.psa {
        PsaLink::Mapped {
            record,
            reason: MatchReason::Manual,
            ..
        } => Some(Some(record.clone())),
        PsaLink::NotBilled => Some(None),
        _ => None,
    };
    match (d, manual) {
        (None, None) => None,
        (None, Some(_)) => Some(Pending::Automatic),
        (Some(d), m) if m == Some(d.psa.as_ref().map(canonical_ref)) => None,
        (Some(d), _) => Some(match &d.psa {
            None => Pending::NotBilled,
            Some(r) => Pending::Linked(
                s.rec
                    .mapping
                    .psa_record_name(r)
                    .map(str::to_string)
                    .unwrap_or_else(|| r.to_string()),
            ),
        }),
    }
}

/// How many saved decisions the shown reconciliation does not reflect yet. Drawn every frame,
/// so the decisions are indexed once (not searched per customer).
pub fn pending_count(s: &State, setup: &Setup) -> usize {
    let m = &s.rec.mapping;
    let mut decided: HashMap<String, &crate::domain::CustomerOverride> = HashMap::new();
    for o in &setup.settings.mapping.customers {
        decided
            .entry(o.tenant_id.trim().to_lowercase())
            .or_insert(o);
    }
    let customers = m
        .customers
        .iter()
        .filter(|c| {
            let d = decided.get(&c.tenant_id.trim().to_lowercase()).copied();
            customer_pending(s, c, d).is_some()
        })
        .count();
    let products =
        (0..m.unmapped_psa_products.len())
            .map(Row::UnmappedProduct)
            .chain(m.products.iter().enumerate().flat_map(|(i, p)| {
                (0..p.psa_products.len()).map(move |j| Row::MappedProduct(i, j))
            }))
            .filter(|r| pending(s, setup, *r).is_some())
            .count();
    customers + products
}
