//! The Users tab's data (issue 4 §1, §3, §4): every tenant user once, in one arena, with a
//! lower-case haystack per user; the two columns are lists of indices into it. Built for
//! 50,000 users: a filter keystroke narrows the previous result when the query extends it
//! (Backspace returns to a cached result), moves touch only the users moved plus one pass
//! over the shown indices, and drawing reads only the visible rows.

use std::collections::{HashMap, HashSet};

use crate::config::{AllowedUser, Role};

/// Per-user access codes (`saved` and `cur`).
pub const NOT_ALLOWED: u8 = 0;
pub const VIEWER: u8 = 1;
pub const OPERATOR: u8 = 2;
/// The setup account: always allowed, never moved.
pub const ADMIN: u8 = 3;

/// More users than this are not listed (an arena offset stays within `u32`: every field is
/// capped below, so 1,000,000 users need at most ~2 GB).
pub const MAX_USERS: usize = 1_000_000;
const MAX_NAME_CHARS: usize = 256;
const MAX_OID_BYTES: usize = 64;
/// Filter results kept for Backspace (each at most one index per user).
const MAX_LEVELS: usize = 48;

fn code_of(role: Role) -> u8 {
    match role {
        Role::Viewer => VIEWER,
        Role::Operator => OPERATOR,
    }
}

fn role_of(code: u8) -> Role {
    if code == OPERATOR {
        Role::Operator
    } else {
        Role::Viewer
    }
}

/// One user as read from Graph /users (§2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// Graph `id` (= the id_token `oid`).
    pub oid: String,
    pub name: String,
    /// The sign-in name (`userPrincipalName`).
    pub upn: String,
    /// `accountEnabled` is false (unknown counts as enabled).
    pub disabled: bool,
    /// `userType` Guest (or, when not readable, a `#EXT#` sign-in name).
    pub guest: bool,
}

/// A column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Disallowed,
    Allowed,
}

impl Side {
    pub fn idx(self) -> usize {
        match self {
            Side::Disallowed => 0,
            Side::Allowed => 1,
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Disallowed => Side::Allowed,
            Side::Allowed => Side::Disallowed,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Side::Disallowed => "Disallowed",
            Side::Allowed => "Allowed",
        }
    }

    fn of(code: u8) -> Side {
        if code == NOT_ALLOWED {
            Side::Disallowed
        } else {
            Side::Allowed
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Person {
    /// Start of `name`, `upn`, `oid` (in that order) in the text arena.
    at: u32,
    name_len: u32,
    upn_len: u32,
    oid_len: u32,
    disabled: bool,
    guest: bool,
}

/// Replace control characters (a line break in a display name) and cap the length.
fn clean(s: &str, max_chars: usize) -> String {
    let spaced: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.trim().chars().take(max_chars).collect()
}

/// The users, in one text arena and one haystack arena (`lower(name) \n lower(upn) \n` per
/// user, in display order once [`Directory::finish`]ed).
#[derive(Clone, Default)]
pub struct Directory {
    text: String,
    people: Vec<Person>,
    hay: String,
    /// Start of each person's haystack; one more entry than people (the end).
    hay_at: Vec<u32>,
    /// The characters in each person's haystack, as a bit set ([`char_bit`]): a query
    /// needs all of its characters, so most users are ruled out without reading text.
    masks: Vec<u64>,
    /// Users left out beyond [`MAX_USERS`] or without an id.
    pub skipped: usize,
}

/// A count, not 50,000 names (the app's state may be logged).
impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("users", &self.len())
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// Counts, not 50,000 users.
impl std::fmt::Debug for Picker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Picker")
            .field("users", &self.len())
            .field("allowed", &self.total[1])
            .field("changed", &self.diff)
            .field("gone", &self.gone.len())
            .field("query", &self.query)
            .field("focus", &self.focus)
            .field("undo", &self.undo.len())
            .finish_non_exhaustive()
    }
}

impl Directory {
    pub fn len(&self) -> usize {
        self.people.len()
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// Add one user (loading: page by page). Users without an id are skipped.
    pub fn push(&mut self, e: &Entry) {
        let oid: String = e.oid.trim().chars().take(MAX_OID_BYTES).collect();
        if oid.is_empty() || self.people.len() >= MAX_USERS {
            self.skipped += 1;
            return;
        }
        let upn = clean(&e.upn, MAX_NAME_CHARS);
        let mut name = clean(&e.name, MAX_NAME_CHARS);
        if name.is_empty() {
            name = if upn.is_empty() {
                "(no name)".into()
            } else {
                upn.clone()
            };
        }
        let oid = &oid[..oid.len().min(MAX_OID_BYTES)];
        if self.hay_at.is_empty() {
            self.hay_at.push(0);
        }
        let at = self.text.len() as u32;
        self.text.push_str(&name);
        self.text.push_str(&upn);
        self.text.push_str(oid);
        self.people.push(Person {
            at,
            name_len: name.len() as u32,
            upn_len: upn.len() as u32,
            oid_len: oid.len() as u32,
            disabled: e.disabled,
            guest: e.guest,
        });
        let from = self.hay.len();
        push_hay(&mut self.hay, &name, &upn);
        self.masks.push(mask_of(&self.hay[from..]));
        self.hay_at.push(self.hay.len() as u32);
    }

    /// Sort into display order (name, then sign-in name, ignoring case); the haystacks are
    /// laid out again in that order so a filter scans memory front to back. A user listed
    /// twice (the same id) is kept once.
    pub fn finish(mut self) -> Directory {
        let n = self.people.len();
        let mut seen = HashSet::with_capacity(n);
        let mut order: Vec<u32> = (0..n as u32)
            .filter(|i| seen.insert(self.oid(*i as usize).to_lowercase()))
            .collect();
        drop(seen);
        self.skipped += n - order.len();
        let n = order.len();
        order.sort_by(|a, b| self.hay_of(*a as usize).cmp(self.hay_of(*b as usize)));
        let mut hay = String::with_capacity(self.hay.len());
        let mut hay_at = Vec::with_capacity(n + 1);
        hay_at.push(0u32);
        let mut people = Vec::with_capacity(n);
        let mut masks = Vec::with_capacity(n);
        for &i in &order {
            hay.push_str(self.hay_of(i as usize));
            hay_at.push(hay.len() as u32);
            people.push(self.people[i as usize]);
            masks.push(self.masks[i as usize]);
        }
        self.hay = hay;
        self.hay_at = hay_at;
        self.people = people;
        self.masks = masks;
        self.text.shrink_to_fit();
        self
    }

    /// Move person `i` to the front (the setup account heads the Allowed column).
    fn move_to_front(&mut self, i: usize) {
        if i == 0 || i >= self.people.len() {
            return;
        }
        let p = self.people.remove(i);
        self.people.insert(0, p);
        let m = self.masks.remove(i);
        self.masks.insert(0, m);
        let h = self.hay_of(i).to_string();
        let mut hay = String::with_capacity(self.hay.len());
        let mut hay_at = Vec::with_capacity(self.hay_at.len());
        hay_at.push(0u32);
        hay.push_str(&h);
        hay_at.push(hay.len() as u32);
        for j in (0..self.people.len()).filter(|j| *j != i) {
            let s = &self.hay[self.hay_at[j] as usize..self.hay_at[j + 1] as usize];
            hay.push_str(s);
            hay_at.push(hay.len() as u32);
        }
        self.hay = hay;
        self.hay_at = hay_at;
    }

    fn hay_of(&self, i: usize) -> &str {
        let (a, b) = (self.hay_at[i] as usize, self.hay_at[i + 1] as usize);
        self.hay.get(a..b).unwrap_or("")
    }

    fn field(&self, i: usize, which: u8) -> &str {
        let Some(p) = self.people.get(i) else {
            return "";
        };
        let a = p.at as usize;
        let (from, len) = match which {
            0 => (a, p.name_len),
            1 => (a + p.name_len as usize, p.upn_len),
            _ => (a + (p.name_len + p.upn_len) as usize, p.oid_len),
        };
        self.text.get(from..from + len as usize).unwrap_or("")
    }

    pub fn name(&self, i: usize) -> &str {
        self.field(i, 0)
    }

    pub fn upn(&self, i: usize) -> &str {
        self.field(i, 1)
    }

    pub fn oid(&self, i: usize) -> &str {
        self.field(i, 2)
    }

    pub fn disabled(&self, i: usize) -> bool {
        self.people.get(i).is_some_and(|p| p.disabled)
    }

    pub fn guest(&self, i: usize) -> bool {
        self.people.get(i).is_some_and(|p| p.guest)
    }

    /// Lower-case oid → index.
    fn index(&self) -> HashMap<String, u32> {
        (0..self.len())
            .map(|i| (self.oid(i).to_lowercase(), i as u32))
            .collect()
    }

    /// Users (ascending) whose haystack contains every word; `base` (ascending) limits
    /// the search to a previous result. The character masks rule out most users at once; a
    /// query of single letters or digits is decided by the masks alone.
    fn search(&self, base: Option<&[u32]>, words: &[&str]) -> Vec<u32> {
        let need = words.iter().fold(0u64, |m, w| m | mask_of(w));
        let by_mask = words.iter().all(|w| {
            let mut cs = w.chars();
            matches!((cs.next(), cs.next()), (Some(c), None) if char_bit(c).1)
        });
        let keep = |i: u32| {
            let i = i as usize;
            self.masks.get(i).is_some_and(|m| m & need == need)
                && (by_mask || {
                    let h = self.hay_of(i);
                    words.iter().all(|w| h.contains(w))
                })
        };
        match base {
            Some(base) => base.iter().copied().filter(|i| keep(*i)).collect(),
            None => (0..self.len() as u32).filter(|i| keep(*i)).collect(),
        }
    }
}

/// A character's bit in a mask, and whether the bit is its own (letters, digits and the
/// punctuation of sign-in names); other characters share the remaining bits.
fn char_bit(c: char) -> (u32, bool) {
    match c {
        'a'..='z' => (c as u32 - 'a' as u32, true),
        '0'..='9' => (26 + c as u32 - '0' as u32, true),
        '.' => (36, true),
        '@' => (37, true),
        '-' => (38, true),
        '_' => (39, true),
        '\'' => (40, true),
        '#' => (41, true),
        _ => (42 + (c as u32 % 22), false),
    }
}

fn mask_of(s: &str) -> u64 {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .fold(0u64, |m, c| m | (1u64 << char_bit(c).0))
}

fn push_hay(hay: &mut String, name: &str, upn: &str) {
    for c in name.chars().flat_map(char::to_lowercase) {
        hay.push(if c.is_whitespace() { ' ' } else { c });
    }
    hay.push('\n');
    for c in upn.chars().flat_map(char::to_lowercase) {
        hay.push(if c.is_whitespace() { ' ' } else { c });
    }
    hay.push('\n');
}

/// One undoable change: these users had these codes before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    users: Vec<u32>,
    before: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Move { to: Side },
    Role { to: Role },
}

/// What a key did, for the line under the title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Moved {
        count: usize,
        to: Side,
    },
    Roles {
        count: usize,
        to: Role,
    },
    Undone {
        kind: ActionKind,
        count: usize,
    },
    /// Nothing changed, and why (one sentence).
    Nothing(&'static str),
}

/// What a save changes, against the saved list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<AllowedUser>,
    pub removed: Vec<AllowedUser>,
    /// Users whose role changed (with their new role), and the role before.
    pub roles: Vec<(AllowedUser, Role)>,
    /// Saved users no longer in the tenant (removed from the list).
    pub gone: Vec<AllowedUser>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.roles.is_empty()
            && self.gone.is_empty()
    }
}

/// What a (re)load found, besides the users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Saved allowed users not in the tenant any more: removed from the list (unsaved).
    pub gone: Vec<AllowedUser>,
    /// On a reload: users not there at the previous load (they are in Disallowed).
    pub new_users: usize,
    /// Allowed but not yet saved users that left the tenant meanwhile (dropped).
    pub dropped_unsaved: usize,
}

/// One row as drawn.
#[derive(Debug, Clone, Copy)]
pub struct RowView<'a> {
    pub name: &'a str,
    pub upn: &'a str,
    pub disabled: bool,
    pub guest: bool,
    pub code: u8,
    pub marked: bool,
}

#[derive(Debug, Clone, Default)]
struct Level {
    query: String,
    matches: Vec<u32>,
}

/// The two-column picker.
#[derive(Clone)]
pub struct Picker {
    dir: Directory,
    saved: Vec<u8>,
    cur: Vec<u8>,
    marked: Vec<bool>,
    /// Users whose `cur` differs from `saved`.
    diff: usize,
    total: [usize; 2],
    marked_n: [usize; 2],
    /// The filter as typed.
    query: String,
    /// Cached results: each level's query (lower case) extends the previous one's.
    levels: Vec<Level>,
    /// Shown users of each column (ascending = display order).
    cols: [Vec<u32>; 2],
    cursor: [usize; 2],
    top: [usize; 2],
    pub focus: Side,
    /// Rows visible in a column at the last draw (PgUp/PgDn, scrolling).
    pub view_rows: usize,
    undo: Vec<Action>,
    /// Saved users not in the tenant any more.
    gone: Vec<AllowedUser>,
}

impl Picker {
    /// The picker over `dir` (finished), with the saved list; `prev` (a reload) keeps its
    /// unsaved changes, filter, column and undo history for users still in the tenant.
    pub fn build(
        mut dir: Directory,
        setup_oid: &str,
        saved_list: &[AllowedUser],
        prev: Option<&Picker>,
    ) -> (Picker, LoadReport) {
        let setup_oid = setup_oid.trim().to_lowercase();
        // The setup account heads the Allowed column.
        if !setup_oid.is_empty()
            && let Some(i) = (0..dir.len()).find(|i| dir.oid(*i).eq_ignore_ascii_case(&setup_oid))
        {
            dir.move_to_front(i);
        }
        let index = dir.index();
        let n = dir.len();
        let mut saved = vec![NOT_ALLOWED; n];
        let mut report = LoadReport::default();
        let mut seen = HashSet::new();
        for u in saved_list {
            let key = u.oid.trim().to_lowercase();
            if key.is_empty() || key == setup_oid || !seen.insert(key.clone()) {
                continue;
            }
            match index.get(&key) {
                Some(&i) => saved[i as usize] = code_of(u.role),
                None => report.gone.push(u.clone()),
            }
        }
        if let Some(&i) = index.get(&setup_oid) {
            saved[i as usize] = ADMIN;
        }
        let mut cur = saved.clone();
        if let Some(p) = prev {
            let prev_index = p.dir.index();
            report.new_users = (0..n)
                .filter(|i| !prev_index.contains_key(&dir.oid(*i).to_lowercase()))
                .count();
            for (oid, &j) in &prev_index {
                let code = p.cur[j as usize];
                match index.get(oid) {
                    Some(&i) if saved[i as usize] != ADMIN => cur[i as usize] = code,
                    Some(_) => {}
                    None if code != NOT_ALLOWED
                        && code != ADMIN
                        && p.saved[j as usize] == NOT_ALLOWED =>
                    {
                        report.dropped_unsaved += 1;
                    }
                    None => {}
                }
            }
        }
        let mut total = [0usize; 2];
        let mut diff = 0;
        for i in 0..n {
            total[Side::of(cur[i]).idx()] += 1;
            diff += usize::from(cur[i] != saved[i]);
        }
        let mut pk = Picker {
            marked: vec![false; n],
            dir,
            saved,
            cur,
            diff,
            total,
            marked_n: [0, 0],
            query: String::new(),
            levels: Vec::new(),
            cols: [Vec::new(), Vec::new()],
            cursor: [0, 0],
            top: [0, 0],
            focus: Side::Disallowed,
            view_rows: 10,
            undo: Vec::new(),
            gone: report.gone.clone(),
        };
        if let Some(p) = prev {
            pk.focus = p.focus;
            pk.view_rows = p.view_rows;
            pk.undo = p
                .undo
                .iter()
                .filter_map(|a| {
                    let (users, before): (Vec<u32>, Vec<u8>) = a
                        .users
                        .iter()
                        .zip(&a.before)
                        .filter_map(|(u, b)| {
                            let oid = p.dir.oid(*u as usize).to_lowercase();
                            index.get(&oid).map(|i| (*i, *b))
                        })
                        .filter(|(i, _)| pk.saved[*i as usize] != ADMIN)
                        .unzip();
                    (!users.is_empty()).then_some(Action {
                        kind: a.kind,
                        users,
                        before,
                    })
                })
                .collect();
            let q = p.query.clone();
            pk.set_query(&q);
            // Keep each column's cursor on the same user where it still is.
            for side in [Side::Disallowed, Side::Allowed] {
                if let Some(u) = p.current_of(side) {
                    let oid = p.dir.oid(u as usize).to_lowercase();
                    if let Some(&i) = index.get(&oid) {
                        pk.place_cursor(side, i);
                    }
                }
            }
        } else {
            pk.rebuild();
        }
        (pk, report)
    }

    pub fn len(&self) -> usize {
        self.dir.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dir.is_empty()
    }

    pub fn skipped(&self) -> usize {
        self.dir.skipped
    }

    pub fn total(&self, side: Side) -> usize {
        self.total[side.idx()]
    }

    pub fn shown(&self, side: Side) -> &[u32] {
        &self.cols[side.idx()]
    }

    pub fn marked_count(&self, side: Side) -> usize {
        self.marked_n[side.idx()]
    }

    pub fn cursor(&self, side: Side) -> usize {
        self.cursor[side.idx()]
    }

    /// The first visible row of a column showing `rows` rows, keeping the cursor in view.
    pub fn top(&self, side: Side, rows: usize) -> usize {
        let s = side.idx();
        let len = self.cols[s].len();
        let rows = rows.max(1);
        let mut top = self.top[s].min(len.saturating_sub(rows));
        let c = self.cursor[s];
        if c < top {
            top = c;
        } else if c >= top + rows {
            top = c + 1 - rows;
        }
        top
    }

    pub fn gone(&self) -> &[AllowedUser] {
        &self.gone
    }

    pub fn undo_depth(&self) -> usize {
        self.undo.len()
    }

    pub fn last_action(&self) -> Option<&Action> {
        self.undo.last()
    }

    /// Changes not saved yet (moves, roles, users gone from the tenant).
    pub fn unsaved(&self) -> bool {
        self.diff > 0 || !self.gone.is_empty()
    }

    /// Number of users whose access differs from the saved list.
    pub fn changed_users(&self) -> usize {
        self.diff
    }

    pub fn row(&self, i: u32) -> RowView<'_> {
        let i = i as usize;
        RowView {
            name: self.dir.name(i),
            upn: self.dir.upn(i),
            disabled: self.dir.disabled(i),
            guest: self.dir.guest(i),
            code: self.cur.get(i).copied().unwrap_or(NOT_ALLOWED),
            marked: self.marked.get(i).copied().unwrap_or(false),
        }
    }

    /// The user's (oid, name, sign-in name, code).
    pub fn user(&self, i: u32) -> (&str, &str, &str, u8) {
        let r = self.row(i);
        (self.dir.oid(i as usize), r.name, r.upn, r.code)
    }

    /// Index of the user with this oid.
    pub fn find(&self, oid: &str) -> Option<u32> {
        (0..self.len())
            .find(|i| self.dir.oid(*i).eq_ignore_ascii_case(oid.trim()))
            .map(|i| i as u32)
    }

    fn current_of(&self, side: Side) -> Option<u32> {
        self.cols[side.idx()].get(self.cursor[side.idx()]).copied()
    }

    /// The user under the cursor of the focused column.
    pub fn current(&self) -> Option<u32> {
        self.current_of(self.focus)
    }

    // ----- filter ----------------------------------------------------------------------

    pub fn query(&self) -> &str {
        &self.query
    }

    /// Users matching the filter (all users without one).
    pub fn matching(&self) -> usize {
        match self.levels.last() {
            Some(l) => l.matches.len(),
            None => self.len(),
        }
    }

    /// Filter both columns: every word of `q` must appear in the name or the sign-in name,
    /// ignoring case. A query extending the previous one narrows its result; a shorter one
    /// returns to the cached result of that prefix.
    pub fn set_query(&mut self, q: &str) {
        let q: String = q.chars().filter(|c| !c.is_control()).collect();
        let lower = q.to_lowercase();
        self.query = q;
        while self
            .levels
            .last()
            .is_some_and(|l| !lower.starts_with(l.query.as_str()))
        {
            self.levels.pop();
        }
        let words: Vec<&str> = lower.split_whitespace().collect();
        if words.is_empty() {
            self.levels.clear();
        } else if self.levels.last().is_none_or(|l| l.query != lower) {
            let base = self.levels.last().map(|l| l.matches.as_slice());
            let matches = self.dir.search(base, &words);
            if self.levels.len() >= MAX_LEVELS {
                // The oldest (shortest) goes; the rest still extend each other.
                self.levels.remove(0);
            }
            self.levels.push(Level {
                query: lower,
                matches,
            });
        }
        self.rebuild();
    }

    pub fn push_query_char(&mut self, c: char) {
        let mut q = self.query.clone();
        q.push(c);
        self.set_query(&q);
    }

    pub fn pop_query_char(&mut self) {
        let mut q = self.query.clone();
        q.pop();
        self.set_query(&q);
    }

    /// Rebuild both columns from the matches, keeping each cursor on its user (or on the
    /// next one shown when it left the column).
    fn rebuild(&mut self) {
        let keep = [
            self.current_of(Side::Disallowed),
            self.current_of(Side::Allowed),
        ];
        let [a, b] = &mut self.cols;
        a.clear();
        b.clear();
        let cur = &self.cur;
        let mut put = |i: u32| {
            if cur[i as usize] == NOT_ALLOWED {
                a.push(i);
            } else {
                b.push(i);
            }
        };
        match self.levels.last() {
            Some(l) => l.matches.iter().copied().for_each(&mut put),
            None => (0..cur.len() as u32).for_each(&mut put),
        }
        for side in [Side::Disallowed, Side::Allowed] {
            let s = side.idx();
            let old = self.cursor[s];
            match keep[s] {
                Some(u) => self.place_cursor(side, u),
                None => self.cursor[s] = old.min(self.cols[s].len().saturating_sub(1)),
            }
        }
    }

    /// Put the cursor on user `u`, or where it would be (the next user shown).
    fn place_cursor(&mut self, side: Side, u: u32) {
        let s = side.idx();
        let col = &self.cols[s];
        let at = match col.binary_search(&u) {
            Ok(p) => p,
            Err(p) => p,
        };
        self.cursor[s] = at.min(col.len().saturating_sub(1));
    }

    // ----- movement --------------------------------------------------------------------

    pub fn move_by(&mut self, delta: isize) {
        let s = self.focus.idx();
        let last = self.cols[s].len().saturating_sub(1);
        let c = self.cursor[s];
        self.cursor[s] = if delta < 0 {
            c.saturating_sub(delta.unsigned_abs())
        } else {
            c.saturating_add(delta.unsigned_abs()).min(last)
        };
        self.scroll_into_view(self.focus);
    }

    pub fn page(&mut self, down: bool) {
        let step = self.view_rows.saturating_sub(1).max(1) as isize;
        self.move_by(if down { step } else { -step });
    }

    pub fn home(&mut self) {
        let s = self.focus.idx();
        self.cursor[s] = 0;
        self.scroll_into_view(self.focus);
    }

    pub fn end(&mut self) {
        let s = self.focus.idx();
        self.cursor[s] = self.cols[s].len().saturating_sub(1);
        self.scroll_into_view(self.focus);
    }

    pub fn switch_to(&mut self, side: Side) {
        self.focus = side;
        self.scroll_into_view(side);
    }

    fn scroll_into_view(&mut self, side: Side) {
        let t = self.top(side, self.view_rows);
        self.top[side.idx()] = t;
    }

    // ----- changes ---------------------------------------------------------------------

    /// Set one user's code, keeping the counters.
    fn set_code(&mut self, i: usize, code: u8) {
        let old = self.cur[i];
        if old == code || old == ADMIN {
            return;
        }
        let (from, to) = (Side::of(old), Side::of(code));
        if from != to {
            self.total[from.idx()] -= 1;
            self.total[to.idx()] += 1;
            if self.marked[i] {
                self.marked[i] = false;
                self.marked_n[from.idx()] -= 1;
            }
        }
        self.diff -= usize::from(old != self.saved[i]);
        self.diff += usize::from(code != self.saved[i]);
        self.cur[i] = code;
    }

    /// Mark or unmark the current user, then step down (marking a run is Space, Space, …).
    pub fn toggle_mark(&mut self) -> Option<Outcome> {
        let u = self.current()? as usize;
        if self.cur[u] == ADMIN {
            return Some(Outcome::Nothing(
                "The setup account is always allowed (admin); it cannot be moved.",
            ));
        }
        let s = self.focus.idx();
        self.marked[u] = !self.marked[u];
        if self.marked[u] {
            self.marked_n[s] += 1;
        } else {
            self.marked_n[s] -= 1;
        }
        self.move_by(1);
        None
    }

    /// Unmark every user of the focused column.
    pub fn clear_marks(&mut self) -> bool {
        let s = self.focus.idx();
        if self.marked_n[s] == 0 {
            return false;
        }
        for i in 0..self.len() {
            if self.marked[i] && Side::of(self.cur[i]).idx() == s {
                self.marked[i] = false;
            }
        }
        self.marked_n[s] = 0;
        true
    }

    /// The marked users of the focused column, or else the current one (never the admin).
    fn targets(&self) -> Vec<u32> {
        let s = self.focus.idx();
        if self.marked_n[s] > 0 {
            (0..self.len() as u32)
                .filter(|i| self.marked[*i as usize] && Side::of(self.cur[*i as usize]).idx() == s)
                .collect()
        } else {
            self.current()
                .filter(|u| self.cur[*u as usize] != ADMIN)
                .into_iter()
                .collect()
        }
    }

    fn apply(&mut self, kind: ActionKind, users: Vec<u32>, code: u8) -> usize {
        let before: Vec<u8> = users.iter().map(|u| self.cur[*u as usize]).collect();
        for &u in &users {
            self.set_code(u as usize, code);
        }
        let n = users.len();
        self.undo.push(Action {
            kind,
            users,
            before,
        });
        self.rebuild();
        self.scroll_into_view(self.focus);
        n
    }

    fn move_users(&mut self, users: Vec<u32>) -> Outcome {
        let to = self.focus.other();
        if users.is_empty() {
            return Outcome::Nothing(match self.current() {
                Some(u) if self.cur[u as usize] == ADMIN => {
                    "The setup account is always allowed (admin); it cannot be moved."
                }
                _ => "Nobody to move: this column shows no users.",
            });
        }
        // Newly allowed users start as viewers (read-only).
        let code = if to == Side::Allowed {
            VIEWER
        } else {
            NOT_ALLOWED
        };
        let count = self.apply(ActionKind::Move { to }, users, code);
        Outcome::Moved { count, to }
    }

    /// Enter: the marked users of this column (or the current one) go to the other column.
    pub fn transfer(&mut self) -> Outcome {
        let t = self.targets();
        self.move_users(t)
    }

    /// `a`: every user shown in this column (the filter applies) goes to the other column.
    pub fn transfer_shown(&mut self) -> Outcome {
        let t: Vec<u32> = self.cols[self.focus.idx()]
            .iter()
            .copied()
            .filter(|u| self.cur[*u as usize] != ADMIN)
            .collect();
        self.move_users(t)
    }

    /// `r`: the marked allowed users (or the current one) become operators; when they all
    /// are already, viewers.
    pub fn toggle_role(&mut self) -> Outcome {
        if self.focus != Side::Allowed {
            return Outcome::Nothing(
                "Roles belong to allowed users: switch to the Allowed column (→) first.",
            );
        }
        let t = self.targets();
        if t.is_empty() {
            return Outcome::Nothing(match self.current() {
                Some(_) => "The setup account is admin; its role cannot change.",
                None => "No allowed user is selected.",
            });
        }
        let to = if t.iter().any(|u| self.cur[*u as usize] == VIEWER) {
            Role::Operator
        } else {
            Role::Viewer
        };
        let count = self.apply(ActionKind::Role { to }, t, code_of(to));
        Outcome::Roles { count, to }
    }

    /// `u`: take back the last move or role change.
    pub fn undo(&mut self) -> Outcome {
        let Some(a) = self.undo.pop() else {
            return Outcome::Nothing("Nothing to undo.");
        };
        for (&u, &b) in a.users.iter().zip(&a.before) {
            self.set_code(u as usize, b);
        }
        self.rebuild();
        self.scroll_into_view(self.focus);
        Outcome::Undone {
            kind: a.kind,
            count: a.users.len(),
        }
    }

    // ----- saving ----------------------------------------------------------------------

    fn allowed_user(&self, i: usize, code: u8) -> AllowedUser {
        AllowedUser {
            oid: self.dir.oid(i).to_string(),
            upn: self.dir.upn(i).to_string(),
            name: self.dir.name(i).to_string(),
            role: role_of(code),
        }
    }

    /// The list to save (the setup account needs no entry), in display order.
    pub fn allowed_list(&self) -> Vec<AllowedUser> {
        (0..self.len())
            .filter(|i| matches!(self.cur[*i], VIEWER | OPERATOR))
            .map(|i| self.allowed_user(i, self.cur[i]))
            .collect()
    }

    /// What saving now changes.
    pub fn changes(&self) -> Changes {
        let mut c = Changes {
            gone: self.gone.clone(),
            ..Changes::default()
        };
        for i in 0..self.len() {
            let (s, n) = (self.saved[i], self.cur[i]);
            if s == n || s == ADMIN {
                continue;
            }
            match (s, n) {
                (NOT_ALLOWED, _) => c.added.push(self.allowed_user(i, n)),
                (_, NOT_ALLOWED) => c.removed.push(self.allowed_user(i, s)),
                _ => c.roles.push((self.allowed_user(i, n), role_of(s))),
            }
        }
        c
    }

    /// The list was saved: it is the new baseline.
    pub fn commit(&mut self) {
        self.saved.clone_from(&self.cur);
        self.diff = 0;
        self.gone.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize, name: &str) -> Entry {
        Entry {
            oid: format!("oid-{i}"),
            name: name.into(),
            upn: format!("{}@msp.example", name.to_lowercase().replace(' ', ".")),
            ..Entry::default()
        }
    }

    fn dir(names: &[&str]) -> Directory {
        let mut d = Directory::default();
        for (i, n) in names.iter().enumerate() {
            d.push(&entry(i, n));
        }
        d.finish()
    }

    const NAMES: [&str; 6] = [
        "Zoe Adams",
        "Alex Nguyen",
        "Priya Smith",
        "Sam Smithers",
        "Ben Jones",
        "Chloe Smith",
    ];

    #[test]
    fn sorted_with_the_admin_first_and_saved_users_allowed() {
        let saved = vec![AllowedUser {
            oid: "OID-2".into(),
            role: Role::Operator,
            ..Default::default()
        }];
        let (p, r) = Picker::build(dir(&NAMES), "oid-0", &saved, None);
        assert!(r.gone.is_empty());
        let names = |s: Side| -> Vec<&str> { p.shown(s).iter().map(|i| p.row(*i).name).collect() };
        assert_eq!(names(Side::Allowed), ["Zoe Adams", "Priya Smith"]);
        assert_eq!(
            names(Side::Disallowed),
            ["Alex Nguyen", "Ben Jones", "Chloe Smith", "Sam Smithers"]
        );
        assert_eq!(p.row(p.shown(Side::Allowed)[0]).code, ADMIN);
        assert_eq!(p.row(p.shown(Side::Allowed)[1]).code, OPERATOR);
        assert!(!p.unsaved());
    }

    #[test]
    fn filter_narrows_and_backspace_returns() {
        let (mut p, _) = Picker::build(dir(&NAMES), "oid-0", &[], None);
        p.set_query("s");
        let all_s = p.matching();
        p.set_query("smi");
        assert_eq!(p.matching(), 3);
        p.set_query("smith c");
        assert_eq!(p.matching(), 1);
        assert_eq!(p.levels.len(), 3);
        p.set_query("smi");
        assert_eq!(p.matching(), 3);
        p.set_query("s");
        assert_eq!(p.matching(), all_s);
        // Sign-in names match too, case ignored; words in any order.
        p.set_query("JONES@MSP");
        assert_eq!(p.matching(), 1);
        p.set_query("smith priya");
        assert_eq!(p.matching(), 1);
        p.set_query("");
        assert_eq!(p.matching(), NAMES.len());
        assert!(p.levels.is_empty());
    }

    #[test]
    fn narrowing_agrees_with_a_fresh_search() {
        let (mut p, _) = Picker::build(dir(&NAMES), "", &[], None);
        for q in [
            "a", "am", "am ", "am s", "am sm", "am smi", "z", "é", "@msp", "s.", "s.m",
        ] {
            p.set_query(q);
            let words: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
            let w: Vec<&str> = words.iter().map(String::as_str).collect();
            let brute: Vec<u32> = (0..p.len())
                .filter(|i| w.iter().all(|w| p.dir.hay_of(*i).contains(w)))
                .map(|i| i as u32)
                .collect();
            assert_eq!(p.levels.last().unwrap().matches, brute, "{q}");
            assert_eq!(p.dir.search(None, &w), brute, "{q}");
        }
    }

    #[test]
    fn moves_roles_and_undo_keep_counts() {
        let (mut p, _) = Picker::build(dir(&NAMES), "oid-0", &[], None);
        assert_eq!(p.total(Side::Allowed), 1);
        assert_eq!(
            p.transfer(),
            Outcome::Moved {
                count: 1,
                to: Side::Allowed
            }
        );
        assert_eq!(p.total(Side::Allowed), 2);
        assert!(p.unsaved());
        p.switch_to(Side::Allowed);
        // The admin is first: cannot move or change role.
        assert!(matches!(p.transfer(), Outcome::Nothing(_)));
        p.move_by(1);
        assert_eq!(
            p.toggle_role(),
            Outcome::Roles {
                count: 1,
                to: Role::Operator
            }
        );
        let c = p.changes();
        assert_eq!(c.added.len(), 1);
        assert_eq!(c.added[0].role, Role::Operator);
        assert!(matches!(p.undo(), Outcome::Undone { .. }));
        assert!(matches!(p.undo(), Outcome::Undone { .. }));
        assert!(!p.unsaved());
        assert_eq!(p.undo(), Outcome::Nothing("Nothing to undo."));
    }

    #[test]
    fn reload_keeps_unsaved_changes_and_reports_the_gone() {
        let saved = vec![
            AllowedUser {
                oid: "oid-5".into(),
                name: "Chloe Smith".into(),
                ..Default::default()
            },
            AllowedUser {
                oid: "oid-99".into(),
                name: "Gone Person".into(),
                ..Default::default()
            },
        ];
        let (mut p, r) = Picker::build(dir(&NAMES), "oid-0", &saved, None);
        assert_eq!(r.gone.len(), 1);
        assert!(p.unsaved());
        p.transfer();
        let mut names = NAMES.to_vec();
        names.push("New Starter");
        let (q, r) = Picker::build(dir(&names), "oid-0", &saved, Some(&p));
        assert_eq!(r.new_users, 1);
        assert_eq!(q.total(Side::Allowed), 3);
        assert_eq!(q.undo_depth(), 1);
        assert_eq!(q.changes().added.len(), 1);
        assert_eq!(q.changes().gone.len(), 1);
    }

    #[test]
    fn odd_input_is_cleaned_deduplicated_and_capped() {
        let mut d = Directory::default();
        d.push(&Entry {
            oid: "a".into(),
            name: "Line\nBreak\u{7}".into(),
            upn: "x@y".into(),
            ..Entry::default()
        });
        d.push(&Entry {
            oid: "A".into(),
            name: "Same id again".into(),
            ..Entry::default()
        });
        d.push(&Entry {
            oid: "  ".into(),
            name: "No id".into(),
            ..Entry::default()
        });
        d.push(&Entry {
            oid: "b".into(),
            name: "  ".into(),
            upn: "only.upn@y".into(),
            ..Entry::default()
        });
        d.push(&Entry {
            oid: "c".into(),
            name: "é".repeat(5000),
            ..Entry::default()
        });
        let d = d.finish();
        assert_eq!(d.len(), 3);
        assert_eq!(d.skipped, 2);
        let names: Vec<&str> = (0..3).map(|i| d.name(i)).collect();
        assert!(names.contains(&"Line Break"), "{names:?}");
        assert!(
            names.contains(&"only.upn@y"),
            "a user without a name shows the sign-in name"
        );
        assert!(names.iter().any(|n| n.chars().count() == MAX_NAME_CHARS));
        assert_eq!(format!("{d:?}"), "Directory { users: 3, skipped: 2, .. }");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Type(char),
            Back,
            Clear,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => prop::sample::select(vec!['a', 'b', 'A', 'B', ' ', 'é', 'É', '.', '@', 'ß', 'x'])
                    .prop_map(Op::Type),
                2 => Just(Op::Back),
                1 => Just(Op::Clear),
            ]
        }

        proptest! {
            /// Whatever is typed, deleted or cleared, the columns show exactly the users
            /// whose name or sign-in name holds every word, ignoring case.
            #[test]
            fn filtering_matches_a_fresh_search(
                names in prop::collection::vec(("[abAB é.@ßx]{0,6}", "[ab.@x]{0,5}"), 0..40),
                ops in prop::collection::vec(op(), 0..30),
            ) {
                let mut d = Directory::default();
                for (i, (n, u)) in names.iter().enumerate() {
                    d.push(&Entry { oid: format!("o{i}"), name: n.clone(), upn: u.clone(), ..Entry::default() });
                }
                let (mut p, _) = Picker::build(d.finish(), "o0", &[], None);
                for o in ops {
                    match o {
                        Op::Type(c) => p.push_query_char(c),
                        Op::Back => p.pop_query_char(),
                        Op::Clear => p.set_query(""),
                    }
                    let q = p.query().to_lowercase();
                    let words: Vec<&str> = q.split_whitespace().collect();
                    let want: Vec<u32> = (0..p.len())
                        .filter(|i| {
                            let h = format!("{}\n{}", p.dir.name(*i).to_lowercase(), p.dir.upn(*i).to_lowercase());
                            words.iter().all(|w| h.contains(w))
                        })
                        .map(|i| i as u32)
                        .collect();
                    let mut got: Vec<u32> = p.shown(Side::Disallowed).iter().chain(p.shown(Side::Allowed)).copied().collect();
                    got.sort_unstable();
                    prop_assert_eq!(got, want, "query {:?}", p.query());
                    prop_assert!(p.cursor(Side::Disallowed) <= p.shown(Side::Disallowed).len());
                }
            }

            /// Any sequence of keys keeps the counters true, and undoing everything returns
            /// to the saved list.
            #[test]
            fn changes_then_undo_all(keys in prop::collection::vec(0u8..9, 0..60)) {
                let names: Vec<String> = (0..12).map(|i| format!("User {i}")).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let saved = vec![AllowedUser { oid: "oid-3".into(), role: Role::Operator, ..Default::default() }];
                let (mut p, _) = Picker::build(dir(&refs), "oid-0", &saved, None);
                for k in keys {
                    match k {
                        0 => p.move_by(1),
                        1 => p.move_by(-1),
                        2 => { p.toggle_mark(); }
                        3 => { p.transfer(); }
                        4 => { p.transfer_shown(); }
                        5 => { p.toggle_role(); }
                        6 => p.switch_to(p.focus.other()),
                        7 => p.push_query_char('1'),
                        _ => p.set_query(""),
                    }
                    let allowed = (0..p.len()).filter(|i| p.cur[*i] != NOT_ALLOWED).count();
                    prop_assert_eq!(p.total(Side::Allowed), allowed);
                    prop_assert_eq!(p.total(Side::Disallowed), p.len() - allowed);
                    let diff = (0..p.len()).filter(|i| p.cur[*i] != p.saved[*i]).count();
                    prop_assert_eq!(p.changed_users(), diff);
                    prop_assert_eq!(p.cur[0], ADMIN);
                    for side in [Side::Disallowed, Side::Allowed] {
                        let marked = (0..p.len()).filter(|i| p.marked[*i] && Side::of(p.cur[*i]) == side).count();
                        prop_assert_eq!(p.marked_count(side), marked);
                    }
                }
                while p.undo_depth() > 0 {
                    p.undo();
                }
                prop_assert!(!p.unsaved());
                prop_assert_eq!(p.allowed_list().len(), 1);
            }
        }
    }
}
