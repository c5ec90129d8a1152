//! A sync plan as JSON (`{summary, writes[], …}`), CSV (one row per write) and a plain-text
//! table (docs/sync.md "Output"). Shared by `cspsync sync --plan` and the Sync tab's export;
//! the table helpers are the reconciliation export's.

use std::fmt::Write as _;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::export::{csv_field, fit, right, short_product, wrap};
use super::model::{display_money, display_quantity, whole};
use super::sync::{Caution, Op, Plan, Write};

/// The CSV columns, in order (the same names as the JSON write fields).
pub const CSV_COLUMNS: [&str; 13] = [
    "key",
    "customer_tenant_id",
    "customer_name",
    "system",
    "kind",
    "target",
    "product",
    "stock_code",
    "before",
    "after",
    "monthly_change",
    "needs_confirmation",
    "cautions",
];

/// A quantity as a JSON number when whole, else as a decimal string.
fn quantity(d: Decimal) -> Value {
    match whole(d) {
        Some(i) => json!(i),
        None => json!(d.normalize().to_string()),
    }
}

fn quantity_opt(d: Option<Decimal>) -> Value {
    d.map(quantity).unwrap_or(Value::Null)
}

/// An amount as it is sent: an exact decimal string.
fn amount(d: Decimal) -> Value {
    json!(d.normalize().to_string())
}

fn amount_opt(d: Option<Decimal>) -> Value {
    d.map(amount).unwrap_or(Value::Null)
}

fn caution_json(c: &Caution) -> Value {
    let mut m = Map::new();
    match c {
        Caution::BelowAssigned { assigned } => {
            m.insert("flag".into(), json!("below_assigned"));
            m.insert("assigned".into(), json!(assigned));
        }
        Caution::OutsideCancelWindow => {
            m.insert("flag".into(), json!("outside_cancel_window"));
        }
    }
    m.insert("text".into(), json!(c.describe()));
    Value::Object(m)
}

fn caution_flag(c: &Caution) -> &'static str {
    match c {
        Caution::BelowAssigned { .. } => "below_assigned",
        Caution::OutsideCancelWindow => "outside_cancel_window",
    }
}

/// The PSA call, with quantities as numbers and amounts as exact decimal strings.
fn op_json(op: &Op) -> Value {
    match op {
        Op::CwSetQuantity {
            agreement_id,
            addition_id,
            quantity: qty,
        } => json!({"op": "cw_set_quantity", "agreement_id": agreement_id,
                    "addition_id": addition_id, "quantity": quantity(*qty)}),
        Op::CwCreateAddition {
            agreement_id,
            catalog_item_id,
            quantity: qty,
            unit_price,
            unit_cost,
            description,
            effective_date,
        } => json!({"op": "cw_create_addition", "agreement_id": agreement_id,
                    "catalog_item_id": catalog_item_id, "quantity": quantity(*qty),
                    "unit_price": amount_opt(*unit_price), "unit_cost": amount_opt(*unit_cost),
                    "description": description, "effective_date": effective_date}),
        Op::CwCancelAddition {
            agreement_id,
            addition_id,
            cancelled_date,
        } => json!({"op": "cw_cancel_addition", "agreement_id": agreement_id,
                    "addition_id": addition_id, "cancelled_date": cancelled_date}),
        Op::AtAddContractService {
            contract_id,
            service_id,
            unit_price,
            invoice_description,
        } => json!({"op": "at_add_contract_service", "contract_id": contract_id,
                    "service_id": service_id, "unit_price": amount_opt(*unit_price),
                    "invoice_description": invoice_description}),
        Op::AtAdjustUnits {
            contract_id,
            service_id,
            contract_service_id,
            unit_change,
            effective_date,
            adjusted_unit_price,
        } => json!({"op": "at_adjust_units", "contract_id": contract_id,
                    "service_id": service_id, "contract_service_id": contract_service_id,
                    "unit_change": unit_change, "effective_date": effective_date,
                    "adjusted_unit_price": amount_opt(*adjusted_unit_price)}),
        Op::XeroDraft {
            kind,
            contact_id,
            invoice_id,
            reference,
            date,
            due_date,
            lines,
        } => json!({"op": "xero_draft", "kind": kind, "contact_id": contact_id,
                    "invoice_id": invoice_id, "reference": reference, "date": date,
                    "due_date": due_date,
                    "lines": lines.iter().map(|l| json!({
                        "description": l.description, "item_code": l.item_code,
                        "quantity": quantity(l.quantity), "unit_amount": amount(l.unit_amount),
                        "account_code": l.account_code})).collect::<Vec<_>>()}),
    }
}

fn write_json(w: &Write) -> Value {
    json!({
        "key": w.key,
        "customer_tenant_id": w.customer_tenant_id,
        "customer_name": w.customer_name,
        "system": w.system,
        "kind": w.op.kind(),
        "target": w.target,
        "product": w.product,
        "stock_code": w.stock_code,
        "before": quantity_opt(w.before),
        "after": quantity_opt(w.after),
        "monthly_change": display_money(w.monthly_change),
        "needs_confirmation": w.needs_confirmation(),
        "cautions": w.cautions.iter().map(caution_json).collect::<Vec<_>>(),
        "op": op_json(&w.op),
    })
}

/// The plan as pretty JSON: `{summary, writes[], skipped[], psa, period, style, created_at}`
/// (every field in docs/sync.md; money as 2-dp strings).
pub fn to_json(p: &Plan) -> String {
    let v = json!({
        "summary": {
            "writes": p.summary.writes,
            "customers": p.summary.customers,
            "cautioned": p.summary.cautioned,
            "skipped": p.summary.skipped,
            "monthly_change": display_money(p.summary.monthly_change),
        },
        "writes": p.writes.iter().map(write_json).collect::<Vec<_>>(),
        "skipped": p.skipped,
        "psa": p.psa,
        "period_start": p.period_start,
        "period_end": p.period_end,
        "style": p.style,
        "created_at": p.created_at,
    });
    serde_json::to_string_pretty(&v).unwrap_or_else(|e| {
        // Serialising plain data cannot fail; say so rather than panic if it ever does.
        format!("{{\"error\": \"cannot write the plan as JSON: {e}\"}}")
    })
}

fn opt_quantity(d: Option<Decimal>) -> String {
    d.map(display_quantity).unwrap_or_default()
}

/// One write's CSV values, in [`CSV_COLUMNS`] order (empty for null).
pub fn csv_values(w: &Write) -> Vec<String> {
    vec![
        w.key.clone(),
        w.customer_tenant_id.clone(),
        w.customer_name.clone(),
        w.system.key().to_string(),
        w.op.kind().to_string(),
        w.target.clone(),
        w.product.clone(),
        w.stock_code.clone().unwrap_or_default(),
        opt_quantity(w.before),
        opt_quantity(w.after),
        display_money(w.monthly_change),
        w.needs_confirmation().to_string(),
        w.cautions
            .iter()
            .map(caution_flag)
            .collect::<Vec<_>>()
            .join(";"),
    ]
}

/// Every write as CSV (RFC 4180: CRLF line ends, quoted where needed), header first.
pub fn to_csv(p: &Plan) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for w in &p.writes {
        let row: Vec<String> = csv_values(w).iter().map(|v| csv_field(v)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

fn arrow(w: &Write) -> String {
    let side = |d: Option<Decimal>| d.map(display_quantity).unwrap_or_else(|| "-".into());
    format!("{} → {}", side(w.before), side(w.after))
}

/// A plain-text report for a terminal `width` columns wide (at least 100): the period and
/// style, the summary, one row per write grouped by customer, the cautions, and what is
/// skipped and why.
pub fn to_table(p: &Plan, width: usize) -> String {
    const W: [usize; 5] = [20, 16, 22, 12, 9];
    let width = width.max(100);
    let fixed: usize = W.iter().sum::<usize>() + W.len() + 2;
    let target_w = width.saturating_sub(fixed).max(10);
    let s = &p.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Sync plan for {}: period {} to {}, billing {}",
        p.psa.display_name(),
        p.period_start,
        p.period_end,
        p.style.describe()
    );
    let money = display_money(s.monthly_change);
    let sign = if s.monthly_change > Decimal::ZERO {
        "+"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "{} write(s) for {} customer(s), {} needing confirmation, {} line(s) skipped; {sign}{money} a month",
        s.writes, s.customers, s.cautioned, s.skipped
    );
    let _ = writeln!(out);
    let header = [
        fit("Customer", W[0]),
        fit("Write", W[1]),
        fit("Product", W[2]),
        fit("Before→after", W[3]),
        right("$/month", W[4]),
        "Record".to_string(),
    ];
    let _ = writeln!(out, "  {}", header.join(" ").trim_end());
    // `!` marks a write that needs its own confirmation (listed below the table).
    let _ = writeln!(out, "{}", "─".repeat(width));
    let mut last: Option<&str> = None;
    for w in &p.writes {
        let same = last == Some(w.customer_tenant_id.as_str());
        last = Some(&w.customer_tenant_id);
        let change = if w.monthly_change > Decimal::ZERO {
            format!("+{}", display_money(w.monthly_change))
        } else {
            display_money(w.monthly_change)
        };
        let row = [
            fit(if same { "" } else { &w.customer_name }, W[0]),
            fit(w.op.kind(), W[1]),
            fit(&short_product(&w.product), W[2]),
            fit(&arrow(w), W[3]),
            right(&change, W[4]),
            fit(&w.target, target_w),
        ];
        let mark = if w.needs_confirmation() { "! " } else { "  " };
        let _ = writeln!(out, "{mark}{}", row.join(" ").trim_end());
    }
    if p.writes.is_empty() {
        let _ = writeln!(
            out,
            "  (no writes: the PSA already charges what Dicker Data bills)"
        );
    }
    let _ = writeln!(out, "{}", "─".repeat(width));
    let cautioned: Vec<&Write> = p.writes.iter().filter(|w| w.needs_confirmation()).collect();
    if !cautioned.is_empty() {
        let _ = writeln!(out, "Needing confirmation (!):");
        for w in cautioned {
            out.push_str(&wrap(
                &format!(
                    "  {} — {} {}: {}",
                    w.customer_name,
                    w.op.kind(),
                    w.product,
                    w.cautions
                        .iter()
                        .map(Caution::describe)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                width,
                4,
            ));
        }
    }
    if !p.skipped.is_empty() {
        let _ = writeln!(out, "Skipped:");
        for k in &p.skipped {
            out.push_str(&wrap(
                &format!("  {} — {}: {}", k.customer_name, k.product, k.reason),
                width,
                4,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_numbers_when_whole_and_amounts_exact_strings() {
        assert_eq!(quantity(Decimal::new(25, 0)), json!(25));
        assert_eq!(quantity(Decimal::new(250, 1)), json!(25));
        assert_eq!(quantity(Decimal::new(25, 1)), json!("2.5"));
        assert_eq!(amount(Decimal::new(32900, 3)), json!("32.9"));
        assert_eq!(quantity_opt(None), Value::Null);
    }
}
