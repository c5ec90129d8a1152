//! The Reconcile table's model: which rows are shown and in what order — filtered, sorted,
//! grouped by customer. Everything a keystroke needs (lower-case search text, sort ranks,
//! money in cents) is computed once per result in [`Index::build`], so filtering or sorting
//! 20,000 lines is a scan and an integer sort, with no text allocated per line.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::Sort;
use crate::domain::{Billing, Line, Reconciliation, Status, Term};

/// A line's identity across results (a partial reconciliation and the next one): the
/// customer and the line key (issue 5 §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LineKey {
    pub tenant_id: String,
    pub product_id: String,
    pub term: Term,
    pub billing: Billing,
}

impl LineKey {
    pub fn of(l: &Line) -> LineKey {
        LineKey {
            tenant_id: l.customer_tenant_id.clone(),
            product_id: l.product_id.clone(),
            term: l.term,
            billing: l.billing,
        }
    }

    pub fn is(&self, l: &Line) -> bool {
        self.tenant_id == l.customer_tenant_id
            && self.product_id == l.product_id
            && self.term == l.term
            && self.billing == l.billing
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// A customer's header (grouped view): an index into `State::groups`.
    Group(usize),
    /// A line: an index into the result's `lines`.
    Line(usize),
}

/// A customer's header row in the grouped view.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub tenant_id: String,
    pub name: String,
    /// The customer's lines matching the filter, in line or not.
    pub lines: usize,
    /// Of those, the lines with a mismatch.
    pub mismatched: usize,
    /// Their money at risk per month.
    pub money: Decimal,
    pub collapsed: bool,
}

/// Sort and filter keys of one result, computed once when it arrives.
#[derive(Debug, Default)]
pub struct Index {
    /// Per line: lower-case text the filter searches (customer, product, ids, statuses),
    /// fields separated by a control character so a query never spans two.
    search: Vec<String>,
    /// Per line: its customer's rank in name order (one per tenant).
    customer: Vec<u32>,
    /// Per line: its product's rank in name order.
    product: Vec<u32>,
    /// Per line: its statuses packed so that integer order is the list's order.
    statuses: Vec<u64>,
    /// Per line: money per month in cents.
    money: Vec<i128>,
    /// Per customer rank: tenant id and name.
    customers: Vec<(String, String)>,
}

/// How the rows are chosen.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub show_all: bool,
    pub sort: Sort,
    pub reverse: bool,
    /// Lower-case, trimmed.
    pub needle: &'a str,
    pub grouped: bool,
    pub collapsed: &'a BTreeSet<String>,
}

fn status_digit(s: Status) -> u64 {
    Status::ALL
        .iter()
        .position(|x| *x == s)
        .map_or(0, |p| p as u64 + 1)
}

/// Statuses as a base-11 number of 10 digits, most significant first: comparing two keys
/// compares the lists (a shorter prefix first).
fn pack_statuses(st: &[Status]) -> u64 {
    let mut key = 0u64;
    for i in 0..10 {
        key = key.saturating_mul(11);
        if let Some(s) = st.get(i) {
            key = key.saturating_add(status_digit(*s));
        }
    }
    key
}

fn cents(d: Decimal) -> i128 {
    let mut d = d.round_dp(2);
    d.rescale(2);
    d.mantissa()
}

impl Index {
    pub fn build(r: &Reconciliation) -> Index {
        let n = r.lines.len();
        // Customers: one per tenant, ranked by (lower-case name, tenant id).
        let mut tenant_slot: HashMap<&str, u32> = HashMap::new();
        let mut firsts: Vec<(String, &str, &str)> = Vec::new();
        let mut slot_of_line: Vec<u32> = Vec::with_capacity(n);
        // Products: ranked by lower-case name.
        let mut product_slot: HashMap<&str, u32> = HashMap::new();
        let mut products: Vec<String> = Vec::new();
        let mut pslot_of_line: Vec<u32> = Vec::with_capacity(n);
        let mut search = Vec::with_capacity(n);
        for l in &r.lines {
            let cname = l.customer_name.to_lowercase();
            let slot = *tenant_slot
                .entry(l.customer_tenant_id.as_str())
                .or_insert_with(|| {
                    firsts.push((
                        cname.clone(),
                        l.customer_tenant_id.as_str(),
                        l.customer_name.as_str(),
                    ));
                    (firsts.len() - 1) as u32
                });
            slot_of_line.push(slot);
            let pname = l.product_name.to_lowercase();
            let pslot = match product_slot.get(l.product_name.as_str()) {
                Some(p) => *p,
                None => {
                    products.push(pname.clone());
                    let p = (products.len() - 1) as u32;
                    product_slot.insert(l.product_name.as_str(), p);
                    p
                }
            };
            pslot_of_line.push(pslot);
            let mut s = String::with_capacity(cname.len() + pname.len() + 96);
            s.push_str(&cname);
            s.push('\u{1}');
            s.push_str(&pname);
            s.push('\u{1}');
            s.push_str(&l.product_id.to_lowercase());
            s.push('\u{1}');
            if let Some(c) = &l.stock_code {
                s.push_str(&c.to_lowercase());
            }
            for st in &l.statuses {
                s.push('\u{1}');
                s.push_str(&st.label().to_lowercase());
                s.push('\u{1}');
                s.push_str(st.as_str());
            }
            search.push(s);
        }
        let mut order: Vec<usize> = (0..firsts.len()).collect();
        order.sort_by(|a, b| {
            let (x, y) = (&firsts[*a], &firsts[*b]);
            x.0.cmp(&y.0).then_with(|| x.1.cmp(y.1))
        });
        let mut rank = vec![0u32; firsts.len()];
        let mut customers = Vec::with_capacity(firsts.len());
        for (pos, slot) in order.iter().enumerate() {
            rank[*slot] = pos as u32;
            customers.push((firsts[*slot].1.to_string(), firsts[*slot].2.to_string()));
        }
        let mut porder: Vec<usize> = (0..products.len()).collect();
        porder.sort_by(|a, b| products[*a].cmp(&products[*b]));
        let mut prank = vec![0u32; products.len()];
        for (pos, slot) in porder.iter().enumerate() {
            prank[*slot] = pos as u32;
        }
        Index {
            search,
            customer: slot_of_line.iter().map(|s| rank[*s as usize]).collect(),
            product: pslot_of_line.iter().map(|s| prank[*s as usize]).collect(),
            statuses: r.lines.iter().map(|l| pack_statuses(&l.statuses)).collect(),
            money: r.lines.iter().map(|l| cents(l.monthly_impact)).collect(),
            customers,
        }
    }

    fn customer_of(&self, i: usize) -> u32 {
        self.customer.get(i).copied().unwrap_or(0)
    }
}

fn renews_key(l: Option<&Line>) -> (bool, Option<NaiveDate>) {
    let d = l.and_then(|l| l.renewal_date);
    (d.is_none(), d)
}

/// The rows to show, and the customers' headers when grouped.
pub fn rows(r: &Reconciliation, ix: &Index, v: &View<'_>) -> (Vec<Row>, Vec<Group>) {
    let n = r.lines.len().min(ix.search.len());
    let ncust = ix.customers.len();
    let mut shown: Vec<usize> = Vec::with_capacity(n);
    // Per customer rank (grouped only): lines matching, mismatched, money, earliest renewal.
    let mut stats: Vec<(usize, usize, i128, Option<NaiveDate>)> = if v.grouped {
        vec![(0, 0, 0, None); ncust]
    } else {
        Vec::new()
    };
    for (i, l) in r.lines.iter().enumerate().take(n) {
        if !v.needle.is_empty() && !ix.search[i].contains(v.needle) {
            continue;
        }
        let in_line = l.is_in_line();
        let show = v.show_all || !in_line;
        if let Some(g) = stats.get_mut(ix.customer_of(i) as usize) {
            g.0 += 1;
            if !in_line {
                g.1 += 1;
                g.2 += ix.money[i];
            }
            if show && let Some(d) = l.renewal_date {
                g.3 = Some(g.3.map_or(d, |x: NaiveDate| x.min(d)));
            }
        }
        if show {
            shown.push(i);
        }
    }
    match v.sort {
        Sort::Default => {}
        Sort::Customer => shown.sort_by_key(|i| (ix.customer[*i], ix.product[*i])),
        Sort::Product => shown.sort_by_key(|i| (ix.product[*i], ix.customer[*i])),
        // Biggest money first: the default direction is the useful one.
        Sort::Money => shown.sort_by_key(|i| Reverse(ix.money[*i])),
        Sort::Renews => shown.sort_by_key(|i| renews_key(r.lines.get(*i))),
        Sort::Statuses => shown.sort_by_key(|i| ix.statuses[*i]),
    }
    if v.reverse {
        shown.reverse();
    }
    if !v.grouped {
        return (shown.into_iter().map(Row::Line).collect(), Vec::new());
    }

    // Grouped: the customers present, ordered by the sort column where it means something
    // for a customer (its name, its money, its first renewal), else by name.
    let mut present: Vec<u32> = Vec::new();
    let mut seen = vec![false; ncust];
    for i in &shown {
        let c = ix.customer_of(*i) as usize;
        if let Some(s) = seen.get_mut(c)
            && !*s
        {
            *s = true;
            present.push(c as u32);
        }
    }
    present.sort_unstable();
    let orders_groups = match v.sort {
        Sort::Money => {
            present.sort_by_key(|c| Reverse(stats[*c as usize].2));
            true
        }
        Sort::Renews => {
            present.sort_by_key(|c| {
                let d = stats[*c as usize].3;
                (d.is_none(), d)
            });
            true
        }
        Sort::Default | Sort::Customer => true,
        Sort::Product | Sort::Statuses => false,
    };
    if v.reverse && orders_groups {
        present.reverse();
    }
    let mut pos = vec![0u32; ncust];
    for (p, c) in present.iter().enumerate() {
        pos[*c as usize] = p as u32;
    }
    // Stable: each customer's lines keep the column order.
    shown.sort_by_key(|i| pos[ix.customer_of(*i) as usize]);
    let groups: Vec<Group> = present
        .iter()
        .map(|c| {
            let (tenant, name) = ix.customers[*c as usize].clone();
            let (lines, mismatched, money, _) = stats[*c as usize];
            Group {
                collapsed: v.collapsed.contains(&tenant),
                tenant_id: tenant,
                name,
                lines,
                mismatched,
                money: Decimal::from_i128_with_scale(money, 2),
            }
        })
        .collect();
    let mut out = Vec::with_capacity(shown.len() + groups.len());
    let mut current: Option<u32> = None;
    for i in shown {
        let c = ix.customer_of(i);
        let g = pos[c as usize] as usize;
        if current != Some(c) {
            current = Some(c);
            out.push(Row::Group(g));
        }
        if !groups.get(g).is_some_and(|g| g.collapsed) {
            out.push(Row::Line(i));
        }
    }
    (out, groups)
}
