//! The audit log (issue 4 §2, issue 6 §4): who signed in, who was refused, who changed the
//! allowed users and their roles, and every PSA write a sync made with its outcome —
//! append-only JSON Lines, `audit.jsonl` in the data directory ([`ConfigDir::data_dir`]).
//!
//! One object per line:
//!
//! ```json
//! {"time":"2025-06-11T03:04:05Z","actor":{"oid":"…","name":"alex@contoso-it.com.au"},
//!  "action":"access.allowed_users_saved","details":{"added":[…],"removed":[…],"role_changed":[…]}}
//! ```
//!
//! Each record is written with one `write_all` of the whole line and its newline on a file
//! opened for appending, so records never interleave or half-overwrite each other; a record
//! that cannot be written is an `Err` the caller shows. Details name users (object ids, sign-in
//! names, roles) and never hold a secret.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use crate::config::{AllowedUser, ConfigDir, Role, Settings};
use crate::domain::sync::{Op, Outcome, Write as SyncWrite};

/// The file name in the data directory.
pub const FILE: &str = "audit.jsonl";

/// Someone signed in and may use cspsync (details: role, tenant, first setup).
pub const SIGN_IN: &str = "access.sign_in";
/// Someone signed in but was refused: not on the allowed users, another tenant, or a
/// `.onmicrosoft.com` account (details: reason).
pub const SIGN_IN_REFUSED: &str = "access.sign_in_refused";
/// The signed-in person signed out.
pub const SIGN_OUT: &str = "access.sign_out";
/// The allowed-users list was saved (details: added, removed, role_changed).
pub const ALLOWED_USERS_SAVED: &str = "access.allowed_users_saved";
/// One PSA write of a sync and its outcome (details: customer, customer_tenant_id, system,
/// entity_id, target, product, kind, key, before, after, result, and error or reason).
pub const SYNC_WRITE: &str = "sync.write";
/// An apply finished (details: psa, writes, done, already_done, failed, skipped, cancelled).
pub const SYNC_APPLY: &str = "sync.apply";
/// A mapping decision was saved in the Mapping view (details: decision, customers, products —
/// the decisions saved in all, after the change).
pub const MAPPING_CHANGED: &str = "mapping.changed";

/// Who did it: the Entra object id and the sign-in name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub oid: String,
    pub name: String,
}

impl Actor {
    pub fn new(oid: impl Into<String>, name: impl Into<String>) -> Actor {
        Actor {
            oid: oid.into(),
            name: name.into(),
        }
    }

    /// The person signed in according to the settings (the setup account when older settings
    /// recorded nobody else); empty when nobody set cspsync up yet.
    pub fn signed_in(settings: &Settings) -> Actor {
        let m = &settings.microsoft;
        if m.signed_in_oid.trim().is_empty() {
            Actor::new(m.setup_user_oid.trim(), m.setup_user_name.trim())
        } else {
            Actor::new(m.signed_in_oid.trim(), m.signed_in_name.trim())
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When, in UTC; written as RFC 3339 (`2025-06-11T03:04:05.123Z`).
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time")]
    pub time: DateTime<Utc>,
    pub actor: Actor,
    /// `access.sign_in`, `access.sign_in_refused`, `access.sign_out`,
    /// `access.allowed_users_saved`, …
    pub action: String,
    /// What happened, by action; an empty object when there is nothing to add.
    #[serde(default = "empty_object")]
    pub details: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn ser_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(d)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| serde::de::Error::custom(format!("`{s}` is not an RFC 3339 time: {e}")))
}

impl Event {
    /// An event happening now.
    pub fn now(actor: Actor, action: &str, details: Value) -> Event {
        Event {
            time: Utc::now(),
            actor,
            action: action.to_string(),
            details,
        }
    }
}

/// Where the log is.
pub fn path(dir: &ConfigDir) -> PathBuf {
    dir.data_dir().join(FILE)
}

/// Append one record. `Err` is one sentence saying what could not be written.
pub fn record(dir: &ConfigDir, event: &Event) -> Result<(), String> {
    let line = line_of(event)?;
    let mut a = Appender::open(dir)?;
    // One write of the whole line: with O_APPEND it lands at the end in one piece.
    a.file
        .write_all(line.as_bytes())
        .and_then(|_| a.file.flush())
        .and_then(|_| a.file.sync_data())
        .map_err(|e| format!("cannot write the audit log {}: {e}", a.path.display()))
}

/// A record as one line of the log.
fn line_of(event: &Event) -> Result<String, String> {
    let mut line = serde_json::to_string(event)
        .map_err(|e| format!("cannot write the audit record {}: {e}", event.action))?;
    line.push('\n');
    Ok(line)
}

/// Every record (at or after `since`, when given), oldest first. A missing log is empty; a
/// line that is not a record is refused with its line number.
pub fn read(dir: &ConfigDir, since: Option<DateTime<Utc>>) -> Result<Vec<Event>, String> {
    let path = path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read the audit log {}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(line).map_err(|e| {
            format!(
                "{} line {} is not an audit record ({e}); the log may have been edited or damaged",
                path.display(),
                i + 1
            )
        })?;
        if since.is_none_or(|s| event.time >= s) {
            out.push(event);
        }
    }
    Ok(out)
}

/// A role changed on a user who stays allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    pub user: AllowedUser,
    /// The role before; `user.role` is the new one.
    pub from: Role,
}

/// What a save of the allowed-users list changed, by object id (case-insensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListChanges {
    pub added: Vec<AllowedUser>,
    pub removed: Vec<AllowedUser>,
    pub role_changes: Vec<RoleChange>,
}

impl ListChanges {
    pub fn between(before: &[AllowedUser], after: &[AllowedUser]) -> ListChanges {
        let find = |list: &[AllowedUser], oid: &str| {
            list.iter()
                .find(|u| u.oid.trim().eq_ignore_ascii_case(oid.trim()))
                .cloned()
        };
        let mut c = ListChanges::default();
        for u in after {
            match find(before, &u.oid) {
                None => c.added.push(u.clone()),
                Some(old) if old.role != u.role => c.role_changes.push(RoleChange {
                    user: u.clone(),
                    from: old.role,
                }),
                Some(_) => {}
            }
        }
        c.removed = before
            .iter()
            .filter(|u| find(after, &u.oid).is_none())
            .cloned()
            .collect();
        c
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.role_changes.is_empty()
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Viewer => "viewer",
        Role::Operator => "operator",
    }
}

fn user_json(u: &AllowedUser) -> Value {
    json!({"oid": u.oid, "upn": u.upn, "name": u.name, "role": role_name(u.role)})
}

/// The record of a saved allowed-users list (the Users tab calls this when a save succeeded):
/// who saved it, and who was added, removed, or given another role.
pub fn allowed_users_saved(
    dir: &ConfigDir,
    actor: &Actor,
    added: &[AllowedUser],
    removed: &[AllowedUser],
    role_changes: &[RoleChange],
) -> Result<(), String> {
    record(
        dir,
        &allowed_users_saved_event(actor, added, removed, role_changes),
    )
}

/// The event [`allowed_users_saved`] writes, stamped now.
pub fn allowed_users_saved_event(
    actor: &Actor,
    added: &[AllowedUser],
    removed: &[AllowedUser],
    role_changes: &[RoleChange],
) -> Event {
    let changed: Vec<Value> = role_changes
        .iter()
        .map(|c| {
            json!({
                "oid": c.user.oid,
                "upn": c.user.upn,
                "name": c.user.name,
                "from": role_name(c.from),
                "to": role_name(c.user.role),
            })
        })
        .collect();
    Event::now(
        actor.clone(),
        ALLOWED_USERS_SAVED,
        json!({
            "added": added.iter().map(user_json).collect::<Vec<_>>(),
            "removed": removed.iter().map(user_json).collect::<Vec<_>>(),
            "role_changed": changed,
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// Sync writes (issue 6 §4)
// ---------------------------------------------------------------------------------------------

fn quantity_json(q: Option<rust_decimal::Decimal>) -> Value {
    match q {
        Some(d) => crate::api::connectwise::decimal_json(d),
        None => Value::Null,
    }
}

/// The PSA record a write is about, before it has an id of its own from the outcome.
fn target_id(op: &Op) -> Option<String> {
    match op {
        Op::CwSetQuantity { addition_id, .. } | Op::CwCancelAddition { addition_id, .. } => {
            Some(addition_id.to_string())
        }
        Op::AtAdjustUnits {
            contract_service_id: Some(id),
            ..
        } => Some(id.to_string()),
        Op::XeroDraft {
            invoice_id: Some(id),
            ..
        } => Some(id.clone()),
        _ => None,
    }
}

/// The record of one write of an apply: who approved it, which customer and system, the PSA
/// record, the quantity before and after, and what happened.
pub fn sync_write_event(actor: &Actor, write: &SyncWrite, outcome: &Outcome) -> Event {
    let (result, entity_id, note) = match outcome {
        Outcome::Done { id } => ("done", Some(id.clone()), None),
        Outcome::AlreadyDone { id } => ("already_done", Some(id.clone()), None),
        Outcome::Failed { error } => ("failed", target_id(&write.op), Some(("error", error))),
        Outcome::Skipped { reason } => ("skipped", target_id(&write.op), Some(("reason", reason))),
    };
    let mut details = json!({
        "customer": write.customer_name,
        "customer_tenant_id": write.customer_tenant_id,
        "system": write.system.key(),
        "entity_id": entity_id,
        "target": write.target,
        "product": write.product,
        "kind": write.op.kind(),
        "key": write.key,
        "before": quantity_json(write.before),
        "after": quantity_json(write.after),
        "result": result,
    });
    if let (Some((name, text)), Value::Object(m)) = (note, &mut details) {
        m.insert(name.to_string(), Value::String(text.clone()));
    }
    Event::now(actor.clone(), SYNC_WRITE, details)
}

/// An audit log held open for many records (an apply writes one per write): each record is
/// one `write_all` of its line on a file opened for appending; [`Appender::sync`] flushes them
/// to the disk.
#[derive(Debug)]
pub struct Appender {
    path: PathBuf,
    file: std::fs::File,
}

impl Appender {
    pub fn open(dir: &ConfigDir) -> Result<Appender, String> {
        let path = path(dir);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Names of colleagues and who did what: for the owner only, like the secrets.
            opts.mode(0o600);
        }
        let file = opts
            .open(&path)
            .map_err(|e| format!("cannot open the audit log {}: {e}", path.display()))?;
        Ok(Appender { path, file })
    }

    pub fn append(&mut self, event: &Event) -> Result<(), String> {
        let line = line_of(event)?;
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| format!("cannot write the audit log {}: {e}", self.path.display()))
    }

    pub fn sync(&mut self) -> Result<(), String> {
        self.file
            .flush()
            .and_then(|_| self.file.sync_data())
            .map_err(|e| format!("cannot write the audit log {}: {e}", self.path.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// `cspsync audit`
// ---------------------------------------------------------------------------------------------

/// `--since`: a date (`2026-05-01`, midnight UTC), an RFC 3339 time, or an age (`7d`, `24h`,
/// `30m`) before `now`.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "`{t}` is not a time: give a date (2026-05-01), a time (2026-05-01T09:00:00Z) or an age (7d, 24h, 30m)"
        )
    };
    if let Some(unit) = t.chars().last().filter(|c| c.is_ascii_alphabetic())
        && let Ok(n) = t[..t.len() - 1].trim().parse::<i64>()
    {
        let age = match unit.to_ascii_lowercase() {
            'd' => chrono::Duration::try_days(n),
            'h' => chrono::Duration::try_hours(n),
            'm' => chrono::Duration::try_minutes(n),
            _ => None,
        }
        .filter(|_| n >= 0)
        .ok_or_else(bad)?;
        return now.checked_sub_signed(age).ok_or_else(bad);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|dt| dt.and_utc())
            .ok_or_else(bad);
    }
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| bad())
}

fn text_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// One line of what a record says, for the table.
pub fn describe(e: &Event) -> String {
    let d = &e.details;
    match e.action.as_str() {
        SYNC_WRITE => {
            let q = |k: &str| match d.get(k) {
                Some(Value::Null) | None => "—".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            };
            let mut s = format!(
                "{} · {} · {} {} · {} → {} · {}",
                text_of(d, "system"),
                text_of(d, "customer"),
                text_of(d, "kind"),
                text_of(d, "target"),
                q("before"),
                q("after"),
                text_of(d, "result")
            );
            let id = text_of(d, "entity_id");
            if !id.is_empty() {
                s.push_str(&format!(" (id {id})"));
            }
            for k in ["error", "reason"] {
                let t = text_of(d, k);
                if !t.is_empty() {
                    s.push_str(&format!(": {t}"));
                }
            }
            s
        }
        SYNC_APPLY => format!(
            "{}: {} write(s): {} done, {} already done, {} failed, {} skipped{}",
            text_of(d, "psa"),
            text_of(d, "writes"),
            text_of(d, "done"),
            text_of(d, "already_done"),
            text_of(d, "failed"),
            text_of(d, "skipped"),
            if d.get("cancelled") == Some(&Value::Bool(true)) {
                " (cancelled)"
            } else {
                ""
            }
        ),
        MAPPING_CHANGED => format!(
            "{} ({} customer and {} product decision(s) saved in all)",
            text_of(d, "decision"),
            text_of(d, "customers"),
            text_of(d, "products")
        ),
        ALLOWED_USERS_SAVED => {
            let n = |k: &str| d.get(k).and_then(Value::as_array).map_or(0, Vec::len);
            format!(
                "{} added, {} removed, {} role(s) changed",
                n("added"),
                n("removed"),
                n("role_changed")
            )
        }
        _ => match d.as_object() {
            Some(m) if !m.is_empty() => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}: {s}"),
                    other => format!("{k}: {other}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        },
    }
}

/// The records as a table for a terminal, oldest first (newest last).
pub fn to_table(events: &[Event]) -> String {
    let who = |e: &Event| {
        if e.actor.name.is_empty() {
            e.actor.oid.clone()
        } else {
            e.actor.name.clone()
        }
    };
    let w_who = events
        .iter()
        .map(|e| who(e).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(8, 40);
    let w_action = events
        .iter()
        .map(|e| e.action.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut s = format!(
        "{:<19}  {:<w_who$}  {:<w_action$}  details\n",
        "time (UTC)", "operator", "action"
    );
    for e in events {
        let mut name = who(e);
        if name.chars().count() > w_who {
            name = name
                .chars()
                .take(w_who.saturating_sub(1))
                .collect::<String>()
                + "…";
        }
        s.push_str(&format!(
            "{:<19}  {:<w_who$}  {:<w_action$}  {}\n",
            e.time.format("%Y-%m-%d %H:%M:%S"),
            name,
            e.action,
            describe(e)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, ConfigDir) {
        let t = tempfile::tempdir().unwrap();
        let c = ConfigDir {
            dir: t.path().join("cfg"),
        };
        (t, c)
    }

    fn user(oid: &str, role: Role) -> AllowedUser {
        AllowedUser {
            oid: oid.into(),
            upn: format!("{oid}@msp.example"),
            name: oid.to_uppercase(),
            role,
        }
    }

    #[test]
    fn records_round_trip_one_line_each() {
        let (_t, d) = dir();
        assert_eq!(read(&d, None).unwrap(), Vec::new(), "no log yet");
        let a = Actor::new("admin-oid", "alex@msp.example");
        let e1 = Event::now(a.clone(), SIGN_IN, json!({"role": "admin"}));
        record(&d, &e1).unwrap();
        allowed_users_saved(
            &d,
            &a,
            &[user("bob", Role::Viewer)],
            &[],
            &[RoleChange {
                user: user("cat", Role::Operator),
                from: Role::Viewer,
            }],
        )
        .unwrap();
        let text = std::fs::read_to_string(path(&d)).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let time = first["time"].as_str().unwrap();
        assert!(time.ends_with('Z'), "{time}");
        assert!(DateTime::parse_from_rfc3339(time).is_ok());
        let all = read(&d, None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].action, SIGN_IN);
        assert_eq!(all[0].actor, a);
        assert_eq!(all[1].action, ALLOWED_USERS_SAVED);
        assert_eq!(all[1].details["added"][0]["oid"], "bob");
        assert_eq!(all[1].details["added"][0]["role"], "viewer");
        assert_eq!(all[1].details["role_changed"][0]["from"], "viewer");
        assert_eq!(all[1].details["role_changed"][0]["to"], "operator");
        // since: only the later ones.
        let later = read(&d, Some(all[1].time)).unwrap();
        assert!(later.iter().all(|e| e.time >= all[1].time));
        assert!(
            read(&d, Some(Utc::now() + chrono::Duration::hours(1)))
                .unwrap()
                .is_empty()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(&d)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_corrupt_line_is_refused_with_its_number() {
        let (_t, d) = dir();
        record(&d, &Event::now(Actor::default(), SIGN_OUT, json!({}))).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path(&d))
            .unwrap();
        f.write_all(b"{\"time\":\"yesterday\"\n").unwrap();
        let e = read(&d, None).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains(FILE), "{e}");
    }

    #[test]
    fn an_unwritable_log_is_an_error() {
        let (_t, d) = dir();
        std::fs::create_dir_all(&d.dir).unwrap();
        // A directory where the file should be.
        std::fs::create_dir_all(path(&d)).unwrap();
        let e = record(&d, &Event::now(Actor::default(), SIGN_OUT, json!({}))).unwrap_err();
        assert!(e.contains("audit log"), "{e}");
    }

    #[test]
    fn list_changes_by_oid() {
        let before = vec![
            user("a", Role::Viewer),
            user("b", Role::Viewer),
            user("c", Role::Operator),
        ];
        let after = vec![
            user("A", Role::Viewer),
            user("b", Role::Operator),
            user("d", Role::Viewer),
        ];
        let c = ListChanges::between(&before, &after);
        assert_eq!(c.added, vec![user("d", Role::Viewer)]);
        assert_eq!(c.removed, vec![user("c", Role::Operator)]);
        assert_eq!(c.role_changes.len(), 1);
        assert_eq!(c.role_changes[0].user.oid, "b");
        assert_eq!(c.role_changes[0].from, Role::Viewer);
        assert!(ListChanges::between(&before, &before).is_empty());
    }

    fn sync_write() -> SyncWrite {
        use crate::api::error::Api;
        SyncWrite {
            key: "cw:77:9012:qty:30".into(),
            customer_tenant_id: "t-1".into(),
            customer_name: "Contoso Ltd".into(),
            system: Api::ConnectWise,
            target: "addition 9012 on agreement 77".into(),
            product: "Microsoft 365 Business Premium".into(),
            stock_code: None,
            before: Some(rust_decimal::Decimal::from(25)),
            after: Some(rust_decimal::Decimal::from(30)),
            monthly_change: rust_decimal::Decimal::new(17275, 2),
            cautions: vec![],
            op: Op::CwSetQuantity {
                agreement_id: 77,
                addition_id: 9012,
                quantity: rust_decimal::Decimal::from(30),
            },
        }
    }

    #[test]
    fn sync_writes_are_recorded_with_operator_system_entity_and_result() {
        let (_t, d) = dir();
        let a = Actor::new("op-oid", "olive@msp.example");
        let mut log = Appender::open(&d).unwrap();
        log.append(&sync_write_event(
            &a,
            &sync_write(),
            &Outcome::Done { id: "9012".into() },
        ))
        .unwrap();
        log.append(&sync_write_event(
            &a,
            &sync_write(),
            &Outcome::Failed {
                error: "ConnectWise Manage said: no".into(),
            },
        ))
        .unwrap();
        log.sync().unwrap();
        let all = read(&d, None).unwrap();
        assert_eq!(all.len(), 2);
        let e = &all[0];
        assert_eq!(e.action, SYNC_WRITE);
        assert_eq!(e.actor, a);
        assert_eq!(e.details["customer"], "Contoso Ltd");
        assert_eq!(e.details["system"], "connectwise");
        assert_eq!(e.details["entity_id"], "9012");
        assert_eq!(e.details["before"], 25);
        assert_eq!(e.details["after"], 30);
        assert_eq!(e.details["result"], "done");
        assert_eq!(all[1].details["result"], "failed");
        assert_eq!(all[1].details["error"], "ConnectWise Manage said: no");
        // The addition written is named even though the write failed.
        assert_eq!(all[1].details["entity_id"], "9012");
        let table = to_table(&all);
        assert!(table.lines().count() == 3, "{table}");
        assert!(table.contains("olive@msp.example"), "{table}");
        assert!(
            table.contains("connectwise · Contoso Ltd · change quantity addition 9012 on agreement 77 · 25 → 30 · done (id 9012)"),
            "{table}"
        );
        assert!(
            table.contains("failed (id 9012): ConnectWise Manage said: no"),
            "{table}"
        );
    }

    #[test]
    fn since_takes_dates_times_and_ages() {
        let now = DateTime::parse_from_rfc3339("2026-05-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| parse_since(s, now).unwrap().to_rfc3339();
        assert_eq!(at("7d"), "2026-05-03T12:00:00+00:00");
        assert_eq!(at("24h"), "2026-05-09T12:00:00+00:00");
        assert_eq!(at("30m"), "2026-05-10T11:30:00+00:00");
        assert_eq!(at("2026-05-01"), "2026-05-01T00:00:00+00:00");
        assert_eq!(at("2026-05-01T09:00:00+10:00"), "2026-04-30T23:00:00+00:00");
        for bad in ["yesterday", "7x", "-3d", "", "2026-13-01"] {
            let e = parse_since(bad, now).unwrap_err();
            assert!(e.contains("not a time"), "{bad}: {e}");
        }
    }
}
