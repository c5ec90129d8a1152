//! The Users tab (issue 4 §1, §3, §4): screens (insta snapshots at 80x24 and 120x40), every
//! key through the pure update function (and the undo of every change), saving, read-only
//! access, staying current on reload, and loading every page from the simulated world.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tokio::sync::mpsc;

use cspsync::api::error::{Api, ApiError, ErrorKind};
use cspsync::config::{AllowedUser, ConfigDir, Endpoints, Role};
use cspsync::connect::Context;
use cspsync::sim::World;
use cspsync::sim::generate::{GenOptions, generate};
use cspsync::tui::app::{App, Effect, Modal, Msg, Setup, Tab};
use cspsync::tui::panes::Step;
use cspsync::tui::panes::partner::common::Rotated;
use cspsync::tui::panes::users::{self, Cmd, Entry, Phase, Side};
use cspsync::tui::runner::Services;
use cspsync::tui::testing::{SimEnv, ctrl, key, screen, send, type_text};

mod support;

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-11T04:25:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

const NAMES: [&str; 14] = [
    "Alex Nguyen",
    "Priya Sharma",
    "Ben Jones",
    "Chloe Smith",
    "Sam Smithers",
    "Zoe Adams",
    "Liam O'Connor",
    "Mia Chen",
    "Noah Williams",
    "Olivia Brown",
    "Jack Wilson",
    "Grace Taylor",
    "Henry Walker",
    "Isla Robinson",
];

fn oid(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-00000000c0de")
}

/// The tenant's users: the first is the setup account; Zoe Adams is disabled, Jack Wilson a
/// guest.
fn staff() -> Vec<Entry> {
    NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let local = n.to_lowercase().replace(['\'', ' '], ".");
            let guest = *n == "Jack Wilson";
            Entry {
                oid: oid(i),
                name: (*n).into(),
                upn: if guest {
                    format!("{}_gmail.com#EXT#@contosoit.onmicrosoft.com", local)
                } else {
                    format!("{local}@contoso-it.com.au")
                },
                disabled: *n == "Zoe Adams",
                guest,
            }
        })
        .collect()
}

/// `n` more users with generated names (for scrolling).
fn many(n: usize) -> Vec<Entry> {
    let mut v = staff();
    for i in NAMES.len()..n {
        v.push(Entry {
            oid: oid(i),
            name: format!("Staff Member {i:04}"),
            upn: format!("staff{i:04}@contoso-it.com.au"),
            ..Entry::default()
        });
    }
    v
}

fn admin_setup() -> Setup {
    let mut s = Setup::default();
    let m = &mut s.settings.microsoft;
    m.tenant_name = "Contoso IT Pty Ltd".into();
    m.setup_user_oid = oid(0);
    m.setup_user_name = "alex.nguyen@contoso-it.com.au".into();
    s.secrets.microsoft_refresh_token = Some("rt-1".into());
    s
}

fn allowed(i: usize, role: Role) -> AllowedUser {
    AllowedUser {
        oid: oid(i),
        upn: String::new(),
        name: NAMES.get(i).copied().unwrap_or("Someone").into(),
        role,
    }
}

fn app_on(setup: Setup) -> App {
    let mut app = App::new(setup, false);
    send(&mut app, key(KeyCode::Char('5')));
    assert_eq!(app.tab, Tab::Users);
    app
}

/// Enter: the load command (its generation).
fn press_load(app: &mut App) -> u64 {
    let fx = send(app, key(KeyCode::Enter));
    match fx.as_slice() {
        [Effect::Users(Cmd::Load { generation, setup })] => {
            assert_eq!(
                setup.secrets.microsoft_refresh_token.as_deref(),
                Some("rt-1")
            );
            *generation
        }
        other => panic!("expected a load, got {other:?}"),
    }
}

fn page(app: &mut App, generation: u64, users: Vec<Entry>) {
    send(app, Msg::Users(users::Msg::Page { generation, users }));
}

fn finish(app: &mut App, generation: u64, result: Result<(), ApiError>) -> Vec<Effect> {
    send(
        app,
        Msg::Users(users::Msg::Loaded {
            generation,
            at: at(),
            result,
            rotated: None,
        }),
    )
}

/// The tab with `users` loaded (two pages).
fn loaded(setup: Setup, users: Vec<Entry>) -> App {
    let mut app = app_on(setup);
    let g = press_load(&mut app);
    let half = users.len() / 2;
    let (a, b) = users.split_at(half);
    page(&mut app, g, a.to_vec());
    page(&mut app, g, b.to_vec());
    assert!(finish(&mut app, g, Ok(())).is_empty());
    // A draw tells the pane how many rows a column shows (PgUp/PgDn).
    screen(&app, 120, 40);
    app
}

fn snap(name: &str, app: &App) {
    for (w, h) in SIZES {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(app, w, h));
    }
}

fn k(app: &mut App, code: KeyCode) -> Vec<Effect> {
    send(app, key(code))
}

fn ch(app: &mut App, c: char) -> Vec<Effect> {
    send(app, key(KeyCode::Char(c)))
}

fn picker(app: &App) -> &users::model::Picker {
    app.users.picker.as_ref().expect("loaded")
}

/// Names shown in a column.
fn column(app: &App, side: Side) -> Vec<String> {
    let p = picker(app);
    p.shown(side)
        .iter()
        .map(|i| p.row(*i).name.to_string())
        .collect()
}

fn current(app: &App) -> String {
    let p = picker(app);
    p.current()
        .map(|i| p.row(i).name.to_string())
        .unwrap_or_default()
}

fn note(app: &App) -> String {
    app.users
        .note
        .as_ref()
        .map(|n| n.text.clone())
        .unwrap_or_default()
}

/// `s`, `y`: the commit command, then its result; returns the effects of the result.
fn save(app: &mut App) -> Vec<Effect> {
    assert!(ch(app, 's').is_empty());
    assert!(app.users.confirm.is_some(), "s asks first");
    let fx = ch(app, 'y');
    let generation = match fx.as_slice() {
        [Effect::Users(Cmd::Commit { generation, .. })] => *generation,
        other => panic!("expected a commit, got {other:?}"),
    };
    send(
        app,
        Msg::Users(users::Msg::Committed {
            generation,
            at: at(),
            audit: Ok(()),
        }),
    )
}

// ----- screens --------------------------------------------------------------------------------

#[test]
fn screens_before_and_while_loading() {
    let mut app = app_on(admin_setup());
    snap("idle", &app);
    let g = press_load(&mut app);
    snap("loading_started", &app);
    page(&mut app, g, many(2_500)[..999].to_vec());
    snap("loading", &app);
}

#[test]
fn screen_loaded() {
    let mut setup = admin_setup();
    setup.settings.access.allowed = vec![allowed(1, Role::Operator), allowed(8, Role::Viewer)];
    setup.settings.access.saved_at = Some("2025-06-10T02:00:00Z".into());
    let app = loaded(setup, staff());
    snap("loaded", &app);
}

#[test]
fn screen_filter_active() {
    let mut app = loaded(admin_setup(), staff());
    ch(&mut app, '/');
    type_text(&mut app, "smi");
    snap("filter_typing", &app);
    k(&mut app, KeyCode::Enter);
    snap("filter_kept", &app);
}

#[test]
fn screen_marked_rows() {
    let mut app = loaded(admin_setup(), staff());
    ch(&mut app, ' ');
    ch(&mut app, 'j');
    ch(&mut app, ' ');
    ch(&mut app, ' ');
    snap("marked", &app);
}

#[test]
fn screens_confirm_and_saved() {
    let mut setup = admin_setup();
    setup.settings.access.allowed = vec![allowed(2, Role::Viewer), allowed(8, Role::Viewer)];
    setup.settings.access.saved_at = Some("2025-06-10T02:00:00Z".into());
    let mut app = loaded(setup, staff());
    // Allow two (marked), remove one, make one an operator.
    ch(&mut app, ' ');
    ch(&mut app, ' ');
    k(&mut app, KeyCode::Enter);
    ch(&mut app, 'l');
    ch(&mut app, 'j');
    k(&mut app, KeyCode::Enter);
    ch(&mut app, 'j');
    ch(&mut app, 'r');
    snap("changed", &app);
    ch(&mut app, 's');
    snap("confirm", &app);
    let fx = ch(&mut app, 'y');
    let generation = match fx.as_slice() {
        [Effect::Users(Cmd::Commit { generation, .. })] => *generation,
        other => panic!("{other:?}"),
    };
    send(
        &mut app,
        Msg::Users(users::Msg::Committed {
            generation,
            at: at(),
            audit: Ok(()),
        }),
    );
    send(&mut app, send_saved());
    send(&mut app, key(KeyCode::Char('5')));
    snap("saved", &app);
}

fn send_saved() -> Msg {
    Msg::Saved(Ok(()))
}

#[test]
fn screen_read_only_for_a_viewer() {
    let mut setup = admin_setup();
    setup.settings.access.allowed = vec![allowed(3, Role::Viewer)];
    setup.settings.access.saved_at = Some("2025-06-10T02:00:00Z".into());
    setup.settings.microsoft.signed_in_oid = oid(3);
    setup.settings.microsoft.signed_in_name = "chloe.smith@contoso-it.com.au".into();
    let mut app = loaded(setup, staff());
    k(&mut app, KeyCode::Enter);
    snap("read_only", &app);
}

#[test]
fn screen_removed_users_report() {
    let mut setup = admin_setup();
    setup.settings.access.allowed = vec![
        allowed(2, Role::Viewer),
        AllowedUser {
            oid: "gone-1".into(),
            upn: "tom.baker@contoso-it.com.au".into(),
            name: "Tom Baker".into(),
            role: Role::Operator,
        },
        AllowedUser {
            oid: "gone-2".into(),
            upn: "ruth.ellis@contoso-it.com.au".into(),
            name: "Ruth Ellis".into(),
            role: Role::Viewer,
        },
    ];
    setup.settings.access.saved_at = Some("2025-06-10T02:00:00Z".into());
    let app = loaded(setup, staff());
    snap("removed_users", &app);
}

#[test]
fn screen_empty_tenant() {
    let app = loaded(admin_setup(), Vec::new());
    snap("empty_tenant", &app);
}

#[test]
fn screens_not_signed_in_and_failed() {
    let mut setup = admin_setup();
    setup.secrets.microsoft_refresh_token = None;
    setup.settings.microsoft.setup_user_oid.clear();
    let mut app = app_on(setup);
    assert!(k(&mut app, KeyCode::Enter).is_empty());
    assert_eq!(app.users.phase, Phase::NotSignedIn);
    snap("not_signed_in", &app);

    let mut app = app_on(admin_setup());
    let g = press_load(&mut app);
    let e = ApiError::new(
        Api::Graph,
        ErrorKind::Forbidden,
        "Insufficient privileges to complete the operation.",
    );
    finish(&mut app, g, Err(e));
    assert!(matches!(app.users.phase, Phase::Failed(_)));
    snap("failed", &app);
}

// ----- keys -----------------------------------------------------------------------------------

#[test]
fn arrows_jk_page_home_end_move() {
    let mut app = loaded(admin_setup(), many(200));
    assert_eq!(picker(&app).focus, Side::Disallowed);
    assert_eq!(picker(&app).cursor(Side::Disallowed), 0);
    k(&mut app, KeyCode::Down);
    // The rows a column showed at the last draw (120x40).
    let rows = picker(&app).view_rows;
    assert_eq!(rows, 30);
    ch(&mut app, 'j');
    assert_eq!(picker(&app).cursor(Side::Disallowed), 2);
    k(&mut app, KeyCode::Up);
    assert_eq!(picker(&app).cursor(Side::Disallowed), 1);
    ch(&mut app, 'k');
    ch(&mut app, 'k');
    assert_eq!(picker(&app).cursor(Side::Disallowed), 0, "stops at the top");
    k(&mut app, KeyCode::PageDown);
    assert_eq!(picker(&app).cursor(Side::Disallowed), rows - 1);
    k(&mut app, KeyCode::PageDown);
    assert_eq!(picker(&app).cursor(Side::Disallowed), 2 * (rows - 1));
    k(&mut app, KeyCode::PageUp);
    assert_eq!(picker(&app).cursor(Side::Disallowed), rows - 1);
    k(&mut app, KeyCode::End);
    assert_eq!(picker(&app).cursor(Side::Disallowed), 198);
    assert_eq!(current(&app), "Zoe Adams");
    assert!(screen(&app, 120, 40).contains("170–199 of 199"));
    ch(&mut app, 'j');
    assert_eq!(
        picker(&app).cursor(Side::Disallowed),
        198,
        "stops at the bottom"
    );
    k(&mut app, KeyCode::Home);
    assert_eq!(picker(&app).cursor(Side::Disallowed), 0);
    assert_eq!(current(&app), "Ben Jones");
}

#[test]
fn left_right_h_l_switch_columns() {
    let mut app = loaded(admin_setup(), staff());
    k(&mut app, KeyCode::Right);
    assert_eq!(picker(&app).focus, Side::Allowed);
    assert_eq!(current(&app), "Alex Nguyen");
    k(&mut app, KeyCode::Left);
    assert_eq!(picker(&app).focus, Side::Disallowed);
    ch(&mut app, 'l');
    assert_eq!(picker(&app).focus, Side::Allowed);
    ch(&mut app, 'h');
    assert_eq!(picker(&app).focus, Side::Disallowed);
    // The footer names the move by the column.
    assert!(app.hints().iter().any(|h| h.action == "allow"));
    ch(&mut app, 'l');
    assert!(app.hints().iter().any(|h| h.action == "disallow"));
    assert!(app.hints().iter().any(|h| h.key == "r"));
}

#[test]
fn enter_moves_the_current_user_and_u_undoes() {
    let mut app = loaded(admin_setup(), staff());
    assert_eq!(current(&app), "Ben Jones");
    assert!(!app.unsaved());
    k(&mut app, KeyCode::Enter);
    assert_eq!(column(&app, Side::Allowed), ["Alex Nguyen", "Ben Jones"]);
    assert_eq!(
        picker(&app).row(picker(&app).shown(Side::Allowed)[1]).code,
        users::model::VIEWER
    );
    // The cursor stays in place: the next user slid under it.
    assert_eq!(current(&app), "Chloe Smith");
    assert!(
        note(&app).contains("Moved 1 user to Allowed"),
        "{}",
        note(&app)
    );
    assert!(app.unsaved());
    assert_eq!(app.status(Tab::Users), Step::ToDo);
    assert!(screen(&app, 120, 40).contains("● 1 change not saved"));
    ch(&mut app, 'u');
    assert_eq!(column(&app, Side::Allowed), ["Alex Nguyen"]);
    assert!(!app.unsaved());
    assert!(note(&app).starts_with("Undone"), "{}", note(&app));
    // And back: Enter on Allowed disallows.
    k(&mut app, KeyCode::Home);
    k(&mut app, KeyCode::Enter);
    ch(&mut app, 'l');
    ch(&mut app, 'j');
    k(&mut app, KeyCode::Enter);
    assert_eq!(column(&app, Side::Allowed), ["Alex Nguyen"]);
    assert!(note(&app).contains("to Disallowed"));
    ch(&mut app, 'u');
    assert_eq!(column(&app, Side::Allowed), ["Alex Nguyen", "Ben Jones"]);
}

#[test]
fn space_marks_and_enter_moves_the_marked() {
    let mut app = loaded(admin_setup(), staff());
    ch(&mut app, ' ');
    assert_eq!(current(&app), "Chloe Smith", "Space steps down");
    ch(&mut app, 'j');
    ch(&mut app, ' ');
    assert_eq!(picker(&app).marked_count(Side::Disallowed), 2);
    assert!(screen(&app, 120, 40).contains("· 2 marked"));
    // Space again unmarks.
    ch(&mut app, 'k');
    assert_eq!(current(&app), "Grace Taylor");
    ch(&mut app, ' ');
    assert_eq!(picker(&app).marked_count(Side::Disallowed), 1);
    assert_eq!(current(&app), "Henry Walker");
    ch(&mut app, ' ');
    k(&mut app, KeyCode::Enter);
    assert_eq!(
        column(&app, Side::Allowed),
        ["Alex Nguyen", "Ben Jones", "Henry Walker"]
    );
    assert_eq!(picker(&app).marked_count(Side::Disallowed), 0);
    assert!(note(&app).contains("Moved 2 users"), "{}", note(&app));
    ch(&mut app, 'u');
    assert_eq!(column(&app, Side::Allowed), ["Alex Nguyen"]);
    // Esc clears marks.
    ch(&mut app, ' ');
    assert_eq!(picker(&app).marked_count(Side::Disallowed), 1);
    k(&mut app, KeyCode::Esc);
    assert_eq!(picker(&app).marked_count(Side::Disallowed), 0);
}

#[test]
fn the_setup_account_cannot_be_moved_marked_or_demoted() {
    let mut app = loaded(admin_setup(), staff());
    ch(&mut app, 'l');
    assert_eq!(current(&app), "Alex Nguyen");
    k(&mut app, KeyCode::Enter);
    assert!(note(&app).contains("always allowed"), "{}", note(&app));
    ch(&mut app, ' ');
    assert!(note(&app).contains("always allowed"));
    ch(&mut app, 'r');
    assert!(note(&app).contains("admin"), "{}", note(&app));
    ch(&mut app, 'a');
    assert_eq!(column(&app, Side::Allowed), ["Alex Nguyen"]);
    assert!(!app.unsaved());
}

#[test]
fn a_moves_everyone_shown_and_u_undoes() {
    let mut app = loaded(admin_setup(), staff());
    ch(&mut app, '/');
    type_text(&mut app, "smith");
    k(&mut app, KeyCode::Enter);
    assert!(!app.users.typing);
    ch(&mut app, 'a');
    assert_eq!(
        column(&app, Side::Allowed),
        ["Chloe Smith", "Sam Smithers"],
        "the filter applies to both columns"
    );
    assert!(note(&app).contains("Moved 2 users"));
    k(&mut app, KeyCode::Esc);
    assert_eq!(picker(&app).total(Side::Allowed), 3);
    ch(&mut app, 'u');
    assert_eq!(picker(&app).total(Side::Allowed), 1);
    // Without a filter: everyone (13) moves, and back with `a` on the right.
    ch(&mut app, 'a');
    assert_eq!(picker(&app).total(Side::Allowed), 14);
    assert!(column(&app, Side::Disallowed).is_empty());
    assert!(screen(&app, 120, 40).contains("Everyone is allowed."));
    ch(&mut app, 'l');
    ch(&mut app, 'a');
    assert_eq!(picker(&app).total(Side::Allowed), 1);
    ch(&mut app, 'u');
    ch(&mut app, 'u');
    assert!(!app.unsaved());
}

#[test]
fn r_toggles_roles_and_u_undoes() {
    let mut setup = admin_setup();
    setup.settings.access.allowed = vec![allowed(2, Role::Viewer), allowed(3, Role::Operator)];
    setup.settings.access.saved_at = Some("2025-06-10T02:00:00Z".into());
    let mut app = loaded(setup, staff());
    ch(&mut app, 'r');
    assert!(
        note(&app).contains("switch to the Allowed column"),
        "{}",
        note(&app)
    );
    ch(&mut app, 'l');
    ch(&mut app, 'j');
    assert_eq!(current(&app), "Ben Jones");
    ch(&mut app, 'r');
    let code = |app: &App, n: usize| picker(app).row(picker(app).shown(Side::Allowed)[n]).code;
    assert_eq!(code(&app, 1), users::model::OPERATOR);
    assert!(note(&app).contains("is now an operator"), "{}", note(&app));
    ch(&mut app, 'r');
    assert_eq!(code(&app, 1), users::model::VIEWER);
    // Marked: Ben (viewer) and Chloe (operator) → both operators, then both viewers.
    ch(&mut app, ' ');
    ch(&mut app, ' ');
    ch(&mut app, 'r');
    assert_eq!(
        (code(&app, 1), code(&app, 2)),
        (users::model::OPERATOR, users::model::OPERATOR)
    );
    ch(&mut app, 'r');
    assert_eq!(
        (code(&app, 1), code(&app, 2)),
        (users::model::VIEWER, users::model::VIEWER)
    );
    assert!(note(&app).contains("are now viewers"), "{}", note(&app));
    assert!(app.unsaved());
    ch(&mut app, 'u');
    ch(&mut app, 'u');
    ch(&mut app, 'u');
    ch(&mut app, 'u');
    assert_eq!(
        (code(&app, 1), code(&app, 2)),
        (users::model::VIEWER, users::model::OPERATOR)
    );
    assert!(!app.unsaved());
    ch(&mut app, 'u');
    assert_eq!(note(&app), "Nothing to undo.");
}

#[test]
fn slash_filters_as_you_type_and_esc_clears() {
    let mut app = loaded(admin_setup(), staff());
    ch(&mut app, '/');
    assert!(app.users.typing && app.editing());
    type_text(&mut app, "SMI");
    assert_eq!(
        column(&app, Side::Disallowed),
        ["Chloe Smith", "Sam Smithers"]
    );
    // Sign-in names count too; keys that would switch tabs or quit are typed.
    type_text(&mut app, "th@");
    assert_eq!(column(&app, Side::Disallowed), ["Chloe Smith"]);
    assert_eq!(app.tab, Tab::Users);
    k(&mut app, KeyCode::Backspace);
    k(&mut app, KeyCode::Backspace);
    assert_eq!(picker(&app).query(), "SMIt");
    assert_eq!(column(&app, Side::Disallowed).len(), 2);
    // Ctrl-U clears while typing; words in any order.
    send(&mut app, ctrl('u'));
    assert_eq!(picker(&app).query(), "");
    type_text(&mut app, "q1 jack");
    assert!(
        column(&app, Side::Disallowed).is_empty(),
        "q1 matches nobody"
    );
    send(&mut app, ctrl('u'));
    type_text(&mut app, "wilson gmail");
    assert_eq!(column(&app, Side::Disallowed), ["Jack Wilson"]);
    // ↑/↓ and ←/→ still move while typing.
    k(&mut app, KeyCode::Right);
    assert_eq!(picker(&app).focus, Side::Allowed);
    assert!(column(&app, Side::Allowed).is_empty());
    assert!(screen(&app, 80, 24).contains("No one matches the filter."));
    k(&mut app, KeyCode::Left);
    // Esc clears the filter and gives the keys back.
    k(&mut app, KeyCode::Esc);
    assert!(!app.users.typing && !app.editing());
    assert_eq!(picker(&app).query(), "");
    assert_eq!(column(&app, Side::Disallowed).len(), 13);
    // Enter keeps it; Esc later clears it.
    ch(&mut app, '/');
    type_text(&mut app, "ch");
    k(&mut app, KeyCode::Enter);
    assert!(!app.users.typing);
    assert_eq!(column(&app, Side::Disallowed), ["Chloe Smith", "Mia Chen"]);
    k(&mut app, KeyCode::Esc);
    assert_eq!(column(&app, Side::Disallowed).len(), 13);
    // Backspace on an empty filter leaves it.
    ch(&mut app, '/');
    k(&mut app, KeyCode::Backspace);
    assert!(!app.users.typing);
}

#[test]
fn s_saves_after_confirmation() {
    let mut setup = admin_setup();
    setup.settings.access.allowed = vec![allowed(2, Role::Viewer)];
    setup.settings.access.saved_at = Some("2025-06-10T02:00:00Z".into());
    let mut app = loaded(setup, staff());
    // Nothing changed: nothing to save.
    assert!(ch(&mut app, 's').is_empty());
    assert!(app.users.confirm.is_none());
    assert!(note(&app).contains("Nothing to save"));
    ch(&mut app, ' ');
    ch(&mut app, ' ');
    k(&mut app, KeyCode::Enter);
    ch(&mut app, 'l');
    k(&mut app, KeyCode::End);
    ch(&mut app, 'r');
    // The popup: n and Esc cancel.
    ch(&mut app, 's');
    let c = app.users.confirm.clone().expect("confirmation");
    assert_eq!(c.changes.added.len(), 2);
    assert_eq!(c.changes.roles.len(), 0);
    assert!(app.editing(), "the popup has the keys: q does not quit");
    ch(&mut app, 'q');
    assert!(!app.quit && app.modal.is_none());
    ch(&mut app, 'n');
    assert!(app.users.confirm.is_none());
    assert!(note(&app).starts_with("Not saved"));
    ch(&mut app, 's');
    k(&mut app, KeyCode::Esc);
    assert!(app.users.confirm.is_none());
    assert_eq!(
        app.setup.settings.access.allowed.len(),
        1,
        "nothing written yet"
    );
    // y: recorded (audit) in the background, then written and saved.
    ch(&mut app, 's');
    let fx = ch(&mut app, 'y');
    let (generation, by, changes) = match fx.as_slice() {
        [
            Effect::Users(Cmd::Commit {
                generation,
                by_oid,
                by,
                changes,
            }),
        ] => {
            assert_eq!(by_oid, &oid(0), "the setup account saves");
            (*generation, by.clone(), changes.clone())
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(by, "alex.nguyen@contoso-it.com.au");
    assert_eq!(changes.added.len(), 2);
    // While it is recorded, changes wait.
    ch(&mut app, 'u');
    assert!(note(&app).contains("Saving"));
    // A stale answer is dropped.
    let fx = send(
        &mut app,
        Msg::Users(users::Msg::Committed {
            generation: generation + 7,
            at: at(),
            audit: Ok(()),
        }),
    );
    assert!(fx.is_empty());
    let fx = send(
        &mut app,
        Msg::Users(users::Msg::Committed {
            generation,
            at: at(),
            audit: Ok(()),
        }),
    );
    let saved = match fx.as_slice() {
        [Effect::Save(s)] => s.clone(),
        other => panic!("{other:?}"),
    };
    let list = &saved.settings.access.allowed;
    assert_eq!(
        saved.settings.access.saved_at.as_deref(),
        Some("2025-06-11T04:25:00Z")
    );
    let names: Vec<(&str, Role)> = list.iter().map(|u| (u.name.as_str(), u.role)).collect();
    assert_eq!(
        names,
        [
            ("Ben Jones", Role::Viewer),
            ("Chloe Smith", Role::Viewer),
            ("Grace Taylor", Role::Operator)
        ]
    );
    assert_eq!(list[0].oid, oid(2));
    assert_eq!(list[0].upn, "ben.jones@contoso-it.com.au");
    assert!(
        list.iter().all(|u| u.oid != oid(0)),
        "the setup account needs no entry"
    );
    assert_eq!(app.setup.settings.access, saved.settings.access);
    assert!(!app.unsaved());
    assert_eq!(app.status(Tab::Users), Step::Done);
    assert!(note(&app).contains("Saved"));
    // The wizard went on to the next open step; back to Users.
    ch(&mut app, '5');
    // Undo after saving makes a change again.
    ch(&mut app, 'u');
    assert!(app.unsaved());
}

#[test]
fn first_save_with_no_change_marks_the_step_done() {
    let mut app = loaded(admin_setup(), staff());
    assert_eq!(app.status(Tab::Users), Step::ToDo);
    let fx = save(&mut app);
    assert!(matches!(fx.as_slice(), [Effect::Save(_)]));
    assert_eq!(app.status(Tab::Users), Step::Done);
    assert!(app.setup.settings.access.allowed.is_empty());
}

#[test]
fn quitting_with_unsaved_changes_asks() {
    let mut app = loaded(admin_setup(), staff());
    ch(&mut app, 'q');
    assert!(app.quit, "nothing unsaved: quits");
    let mut app = loaded(admin_setup(), staff());
    k(&mut app, KeyCode::Enter);
    ch(&mut app, 'q');
    assert!(!app.quit);
    assert_eq!(app.modal, Some(Modal::ConfirmQuit));
}

#[test]
fn non_admins_see_the_list_read_only() {
    let mut setup = admin_setup();
    setup.settings.access.allowed = vec![allowed(3, Role::Operator)];
    setup.settings.access.saved_at = Some("2025-06-10T02:00:00Z".into());
    setup.settings.microsoft.signed_in_oid = oid(3);
    let mut app = loaded(setup, staff());
    for c in [' ', 'a', 'r', 'u', 's'] {
        assert!(ch(&mut app, c).is_empty());
        assert!(note(&app).contains("read-only"), "{c}: {}", note(&app));
    }
    assert!(k(&mut app, KeyCode::Enter).is_empty());
    assert!(note(&app).contains("read-only"));
    assert!(app.users.confirm.is_none());
    assert_eq!(picker(&app).total(Side::Allowed), 2);
    assert!(!app.unsaved());
    // Looking around is fine.
    ch(&mut app, 'j');
    ch(&mut app, 'l');
    ch(&mut app, '/');
    type_text(&mut app, "chloe");
    assert_eq!(column(&app, Side::Allowed), ["Chloe Smith"]);
    assert!(app.hints().iter().all(|h| h.key != "s"));
}

#[test]
fn reload_keeps_changes_adds_new_users_and_removes_the_deleted() {
    let mut setup = admin_setup();
    setup.settings.access.allowed = vec![allowed(2, Role::Viewer), allowed(3, Role::Operator)];
    setup.settings.access.saved_at = Some("2025-06-10T02:00:00Z".into());
    let mut app = loaded(setup, staff());
    // An unsaved change: Priya allowed.
    k(&mut app, KeyCode::End);
    k(&mut app, KeyCode::Up);
    let who = current(&app);
    k(&mut app, KeyCode::Enter);
    // R reloads; meanwhile Chloe Smith left the tenant and two people joined.
    let fx = ch(&mut app, 'R');
    let g = match fx.as_slice() {
        [Effect::Users(Cmd::Load { generation, .. })] => *generation,
        other => panic!("{other:?}"),
    };
    assert!(screen(&app, 120, 40).contains("Reloading"));
    let mut now: Vec<Entry> = staff()
        .into_iter()
        .filter(|e| e.name != "Chloe Smith")
        .collect();
    for (i, n) in [(50, "Aaron New"), (51, "Zara New")] {
        now.push(Entry {
            oid: oid(i),
            name: n.into(),
            upn: format!("{}@contoso-it.com.au", n.to_lowercase().replace(' ', ".")),
            ..Entry::default()
        });
    }
    // A page of an earlier load is dropped.
    page(&mut app, g - 1, staff());
    page(&mut app, g, now);
    finish(&mut app, g, Ok(()));
    assert_eq!(picker(&app).len(), 15);
    assert_eq!(app.users.report.new_users, 2);
    assert!(column(&app, Side::Disallowed).contains(&"Aaron New".to_string()));
    assert_eq!(
        column(&app, Side::Allowed),
        ["Alex Nguyen", "Ben Jones", who.as_str()]
    );
    assert_eq!(picker(&app).gone().len(), 1);
    let text = screen(&app, 120, 40);
    assert!(
        text.contains("1 allowed user no longer exists in the tenant and was removed: Chloe Smith"),
        "{text}"
    );
    assert!(text.contains("2 new users since the last load"), "{text}");
    // The undo history survives the reload.
    ch(&mut app, 'u');
    assert_eq!(column(&app, Side::Allowed), ["Alex Nguyen", "Ben Jones"]);
    assert!(app.unsaved(), "Chloe's removal is still to be saved");
    let fx = save(&mut app);
    let [Effect::Save(saved)] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    let oids: Vec<&str> = saved
        .settings
        .access
        .allowed
        .iter()
        .map(|u| u.oid.as_str())
        .collect();
    assert_eq!(oids, [oid(2).as_str()]);
    assert!(picker(&app).gone().is_empty());
    assert!(!app.unsaved());
}

#[test]
fn a_failed_reload_keeps_the_list() {
    let mut app = loaded(admin_setup(), staff());
    k(&mut app, KeyCode::Enter);
    let g = match ch(&mut app, 'R').as_slice() {
        [Effect::Users(Cmd::Load { generation, .. })] => *generation,
        other => panic!("{other:?}"),
    };
    // R again while loading does nothing.
    assert!(ch(&mut app, 'R').is_empty());
    let e = ApiError::new(
        Api::Graph,
        ErrorKind::Transport {
            maybe_applied: false,
        },
        "the connection was reset",
    );
    finish(&mut app, g, Err(e));
    assert!(matches!(app.users.phase, Phase::Failed(_)));
    assert_eq!(picker(&app).total(Side::Allowed), 2);
    assert!(app.unsaved());
    assert!(screen(&app, 120, 40).contains("✗"));
}

#[test]
fn a_rotated_refresh_token_is_kept() {
    let mut app = app_on(admin_setup());
    let g = press_load(&mut app);
    page(&mut app, g, staff());
    let fx = send(
        &mut app,
        Msg::Users(users::Msg::Loaded {
            generation: g,
            at: at(),
            result: Ok(()),
            rotated: Rotated::of(Some("rt-1"), "rt-2"),
        }),
    );
    assert!(
        matches!(fx.as_slice(), [Effect::Save(s)] if s.secrets.microsoft_refresh_token.as_deref() == Some("rt-2"))
    );
    assert_eq!(
        app.setup.secrets.microsoft_refresh_token.as_deref(),
        Some("rt-2")
    );
}

#[test]
fn tiny_and_odd_sizes_do_not_panic() {
    let mut app = loaded(admin_setup(), many(300));
    ch(&mut app, ' ');
    ch(&mut app, 's');
    for (w, h) in [(1, 1), (10, 5), (40, 12), (80, 24), (81, 25), (200, 60)] {
        screen(&app, w, h);
    }
    let _ = send(
        &mut app,
        Msg::Key(KeyEvent::new(KeyCode::F(5), KeyModifiers::NONE)),
    );
}

// ----- background work against the simulated world -------------------------------------------

fn world(staff_users: usize) -> World {
    let today = Utc::now().date_naive();
    let mut w = generate(&GenOptions::new(3, 20_250_611, today));
    w.app.device_code_interval_secs = 1;
    cspsync::run::set_msp_users(&mut w, staff_users, 7);
    w
}

async fn run_load(world: World, sign_in: bool) -> (Vec<users::Msg>, Setup, World) {
    let env = SimEnv::start(world, sign_in).await;
    let setup = env.setup.clone();
    let (tx, mut rx) = mpsc::channel(256);
    let cmd = Cmd::Load {
        generation: 4,
        setup: Box::new(setup.clone()),
    };
    tokio::time::timeout(
        Duration::from_secs(120),
        users::run(cmd, env.svc.clone(), tx),
    )
    .await
    .expect("loading finishes");
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        match m {
            Msg::Users(u) => out.push(u),
            other => panic!("unexpected {other:?}"),
        }
    }
    (out, setup, env.world.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_loads_every_page_of_a_big_tenant() {
    let (msgs, mut setup, world) = run_load(world(2_500), true).await;
    let pages: Vec<usize> = msgs
        .iter()
        .filter_map(|m| match m {
            users::Msg::Page { generation, users } => {
                assert_eq!(*generation, 4);
                Some(users.len())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        pages,
        [999, 999, 502],
        "$top=999 and every nextLink followed"
    );
    match msgs.last() {
        Some(users::Msg::Loaded {
            generation: 4,
            result: Ok(()),
            ..
        }) => {}
        other => panic!("the last message should be a successful Loaded, got {other:?}"),
    }
    // Disabled accounts and guests are marked as Graph says.
    let all: Vec<&Entry> = msgs
        .iter()
        .flat_map(|m| match m {
            users::Msg::Page { users, .. } => users.iter().collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect();
    let disabled = world
        .msp
        .users
        .iter()
        .filter(|u| !u.account_enabled)
        .count();
    let guests = world
        .msp
        .users
        .iter()
        .filter(|u| u.user_type == "Guest")
        .count();
    assert!(disabled > 0 && guests > 0);
    assert_eq!(all.iter().filter(|e| e.disabled).count(), disabled);
    assert_eq!(all.iter().filter(|e| e.guest).count(), guests);
    let admin = &world.msp.users[0];
    assert!(all.iter().any(|e| e.oid == admin.id
        && e.upn == admin.user_principal_name
        && e.name == admin.display_name));

    // Fed into the tab: the setup account (admin) heads Allowed, everyone else is Disallowed.
    setup.settings.microsoft.setup_user_oid = admin.id.clone();
    setup.settings.microsoft.tenant_name = world.msp.display_name.clone();
    let mut app = app_on(setup);
    let g = press_load_any(&mut app);
    for m in msgs {
        let m = match m {
            users::Msg::Page { users, .. } => users::Msg::Page {
                generation: g,
                users,
            },
            users::Msg::Loaded {
                result, rotated, ..
            } => users::Msg::Loaded {
                generation: g,
                at: at(),
                result,
                rotated,
            },
            other => other,
        };
        send(&mut app, Msg::Users(m));
    }
    assert_eq!(picker(&app).len(), 2_500);
    assert_eq!(picker(&app).total(Side::Allowed), 1);
    assert_eq!(
        column(&app, Side::Allowed),
        vec![admin.display_name.to_string()]
    );
    assert!(screen(&app, 120, 40).contains("2,500 users in"));
}

fn press_load_any(app: &mut App) -> u64 {
    match send(app, key(KeyCode::Enter)).as_slice() {
        [Effect::Users(Cmd::Load { generation, .. })] => *generation,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_a_sign_in_says_so() {
    let (msgs, _, _) = run_load(world(20), false).await;
    assert!(
        matches!(msgs.as_slice(), [users::Msg::NotSignedIn { generation: 4 }]),
        "{msgs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_revoked_sign_in_fails_with_a_reason() {
    let w = world(20);
    let env = SimEnv::start(w, false).await;
    let mut setup = env.setup.clone();
    setup.secrets.microsoft_refresh_token = Some("not-a-refresh-token".into());
    let (tx, mut rx) = mpsc::channel(16);
    users::run(
        Cmd::Load {
            generation: 9,
            setup: Box::new(setup),
        },
        env.svc.clone(),
        tx,
    )
    .await;
    let mut msgs = Vec::new();
    while let Ok(Msg::Users(m)) = rx.try_recv() {
        msgs.push(m);
    }
    match msgs.as_slice() {
        [
            users::Msg::Loaded {
                generation: 9,
                result: Err(e),
                ..
            },
        ] => {
            assert_eq!(e.api, Api::Entra, "{e}");
            assert!(
                !e.to_string().contains("not-a-refresh-token"),
                "no secret in errors"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn run_commit_stamps_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Services::new(
        Context::with_endpoints(Endpoints::default()),
        ConfigDir {
            dir: dir.path().to_path_buf(),
        },
        None,
    );
    let (tx, mut rx) = mpsc::channel(4);
    let before = Utc::now();
    users::run(
        Cmd::Commit {
            generation: 3,
            by_oid: oid(0),
            by: "alex".into(),
            changes: Box::default(),
        },
        Arc::new(svc),
        tx,
    )
    .await;
    match rx.try_recv() {
        Ok(Msg::Users(users::Msg::Committed {
            generation: 3,
            at,
            audit,
        })) => {
            assert!(at >= before);
            assert_eq!(audit, Ok(()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_audit_log_that_cannot_be_written_is_shown_but_the_list_is_saved() {
    let mut app = loaded(admin_setup(), staff());
    k(&mut app, KeyCode::Enter);
    ch(&mut app, 's');
    let generation = match ch(&mut app, 'y').as_slice() {
        [Effect::Users(Cmd::Commit { generation, .. })] => *generation,
        other => panic!("{other:?}"),
    };
    let fx = send(
        &mut app,
        Msg::Users(users::Msg::Committed {
            generation,
            at: at(),
            audit: Err("cannot write /data/audit.jsonl: disk full".into()),
        }),
    );
    assert!(matches!(fx.as_slice(), [Effect::Save(_)]));
    assert_eq!(app.setup.settings.access.allowed.len(), 1);
    let n = app.users.note.clone().unwrap();
    assert_eq!(n.kind, users::NoteKind::Error);
    assert!(
        n.text.contains("audit log") && n.text.contains("disk full"),
        "{}",
        n.text
    );
}

#[test]
fn the_pane_draws_in_any_area_without_panicking() {
    use cspsync::tui::theme::Theme;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::layout::Rect;
    let mut app = loaded(admin_setup(), many(300));
    ch(&mut app, ' ');
    ch(&mut app, '/');
    type_text(&mut app, "staff");
    let states = [app.clone(), {
        let mut a = app.clone();
        k(&mut a, KeyCode::Enter);
        ch(&mut a, 's');
        a
    }];
    for a in &states {
        for w in [0u16, 1, 3, 5, 8, 13, 24, 31, 40, 57] {
            for h in [0u16, 1, 2, 3, 4, 6, 9, 14] {
                let mut t = Terminal::new(TestBackend::new(60, 16)).unwrap();
                t.draw(|f| {
                    users::render(
                        &a.users,
                        &a.setup,
                        &Theme::new(true),
                        f,
                        Rect::new(1, 1, w, h),
                    )
                })
                .unwrap();
            }
        }
    }
}
