//! The Mapping view (issue 5 §2): screens (insta snapshots at 80x24 and 120x40), the keys
//! that accept suggestions, link by hand, mark not billed and undo — each saved into
//! `settings.mapping` once, never duplicated — and a run against the simulated demo world:
//! the unmapped customer's suggestion accepted, reconciled again (in process and with the
//! headless command reading the saved settings), no longer unmapped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::text::{Line as TLine, Span};
use ratatui::widgets::Paragraph;
use rust_decimal::Decimal;

use cspsync::api::error::Api;
use cspsync::config::{AllowedUser, ConfigDir, Role};
use cspsync::domain::mapping::{
    CustomerLink, MappedPsaProduct, Mapping, MatchReason, ProductLink, PsaLink, PsaRecord,
    UnclaimedPsaCustomer, UnmappedPsaProduct,
};
use cspsync::domain::{
    self, CustomerOverride, Options, ProductOverride, PsaCustomerRef, PsaProductRef,
    Reconciliation, Status, Suggestion, Summary,
};
use cspsync::tui::app::{Effect, Setup};
use cspsync::tui::panes::mapping::{self, Action, Focus, Row, Section, State};
use cspsync::tui::testing::buffer_text;
use cspsync::tui::theme::Theme;

mod support;

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

const REDGUM: &str = "893cb455-8fc3-4a84-a173-b0b3e29a8656";
const BAKERY: &str = "11111111-2222-4333-8444-555555555555";
const ATLAS: &str = "b44bb1fb-c595-45b0-9e09-d657365580bf";
const BOTTLE: &str = "c0ffee00-0000-4000-8000-000000000002";
const KOWALSKI: &str = "c0ffee00-0000-4000-8000-000000000003";
const SUNRISE: &str = "c0ffee00-0000-4000-8000-000000000004";
const BP_P1Y: &str = "P1Y:CFQ7TTC0LCHC:0002:1:";
const APPS_P1Y: &str = "P1Y:CFQ7TTC0LH1G:0002:1:";
const DEF_P1M: &str = "P1M:CFQ7TTC0HL8W:0001:1:";

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-11T04:25:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn cw(id: u64) -> PsaCustomerRef {
    PsaCustomerRef::ConnectwiseCompany(id)
}

fn customer(tenant: &str, name: &str, psa: PsaLink) -> CustomerLink {
    CustomerLink {
        tenant_id: tenant.into(),
        name: name.into(),
        at_microsoft: true,
        distributor_name: Some(name.to_uppercase()),
        psa,
    }
}

fn mapped(id: u64, name: &str, reason: MatchReason) -> PsaLink {
    PsaLink::Mapped {
        record: cw(id),
        name: name.into(),
        reason,
    }
}

fn link(code: &str, name: &str, billed: bool, psa: Vec<MappedPsaProduct>) -> ProductLink {
    let k = domain::ProductKey::from_stock_code(code).unwrap();
    ProductLink {
        stock_code: Some(code.into()),
        product_id: k.product_id,
        term: k.term,
        billing: k.billing,
        product_name: name.into(),
        billed_by_distributor: billed,
        psa_products: psa,
    }
}

/// A ConnectWise world: Redgum Wealth unmapped with two suggestions, Lonely Bakery unmapped
/// with none, four linked customers (name, domain, by hand, not billed); a legacy catalog
/// item charging without a stock code, a stock code without a PSA product, and two mapped
/// catalog items (one by its vendorSku, one by hand).
fn recon() -> Reconciliation {
    let customers = vec![
        customer(
            ATLAS,
            "Atlas Outsourcing Pty Ltd",
            mapped(
                250,
                "Atlas Outsourcing Pty. Ltd.",
                MatchReason::Name {
                    normalised: "atlasoutsourcing".into(),
                },
            ),
        ),
        customer(
            BOTTLE,
            "Bottlebrush Pathology",
            mapped(
                251,
                "Bottlebrush Pathology Services",
                MatchReason::Domain {
                    domain: "bottlebrush.com.au".into(),
                },
            ),
        ),
        customer(
            KOWALSKI,
            "Kowalski Accounting",
            mapped(252, "Kowalski & Co", MatchReason::Manual),
        ),
        customer(
            REDGUM,
            "Redgum Wealth Pty Ltd",
            PsaLink::Unmapped {
                suggestions: vec![
                    Suggestion {
                        target: cw(300),
                        label: "City Wealth".into(),
                        score: 75,
                        reasons: vec![
                            "it is billed for exactly the customer's 4 Dicker Data stock code(s), with the same quantities".into(),
                            "its name shares the word 'wealth'".into(),
                        ],
                    },
                    Suggestion {
                        target: cw(301),
                        label: "Harbour Wealth Advisers".into(),
                        score: 15,
                        reasons: vec!["its name shares the word 'wealth'".into()],
                    },
                ],
            },
        ),
        customer(SUNRISE, "Sunrise Glass Pty Ltd", PsaLink::NotBilled),
        customer(
            BAKERY,
            "Lonely Bakery",
            PsaLink::Unmapped {
                suggestions: vec![],
            },
        ),
    ];
    let records = [
        (250, "Atlas Outsourcing Pty. Ltd."),
        (251, "Bottlebrush Pathology Services"),
        (300, "City Wealth"),
        (301, "Harbour Wealth Advisers"),
        (252, "Kowalski & Co"),
        (253, "Sunrise Glass"),
        (302, "Zenith Wealth Partners"),
    ];
    let mapping = Mapping {
        psa: Some(Api::ConnectWise),
        unmapped_customers: 2,
        customers,
        products: vec![
            link(
                BP_P1Y,
                "Microsoft 365 Business Premium",
                true,
                vec![MappedPsaProduct {
                    product: PsaProductRef::ConnectwiseCatalogItem(731),
                    name: "Microsoft 365 Business Premium (NCE, 1 year)".into(),
                    via: format!("vendorSku {BP_P1Y}"),
                }],
            ),
            link(APPS_P1Y, "Microsoft 365 Apps for business", true, vec![]),
            link(
                DEF_P1M,
                "Microsoft Defender for Business",
                true,
                vec![MappedPsaProduct {
                    product: PsaProductRef::ConnectwiseCatalogItem(760),
                    name: "Defender for Business (monthly)".into(),
                    via: "override".into(),
                }],
            ),
        ],
        stock_codes_without_psa_product: 1,
        unmapped_psa_products: vec![UnmappedPsaProduct {
            product: PsaProductRef::ConnectwiseCatalogItem(747),
            name: "Microsoft 365 Apps for business licences (legacy item)".into(),
            problem: None,
            charges: 1,
            customers: 1,
            suggestions: vec![Suggestion {
                target: APPS_P1Y.into(),
                label: format!("{APPS_P1Y} Microsoft 365 Apps for business"),
                score: 65,
                reasons: vec![
                    "it bills Hunter Property Pty Limited 40 seats, the Dicker Data quantity of a line the PSA bills under no mapped product".into(),
                    "its name shares 'apps business'".into(),
                ],
            }],
        }],
        unclaimed_psa_customers: vec![UnclaimedPsaCustomer {
            record: cw(300),
            name: "City Wealth".into(),
            charges: 4,
        }],
        notes: vec![],
        psa_records: records
            .iter()
            .map(|(id, n)| PsaRecord {
                record: cw(*id),
                name: (*n).into(),
            })
            .collect(),
    };
    let by_status: BTreeMap<Status, usize> = Status::ALL.iter().map(|s| (*s, 0)).collect();
    Reconciliation {
        fetched_from: at(),
        fetched_at: at(),
        now: at(),
        summary: Summary {
            psa: Some(Api::ConnectWise),
            customers: 6,
            lines_audited: 0,
            in_line: 0,
            mismatched: 0,
            by_status,
            monthly_at_risk: Decimal::ZERO,
            lines_without_price: 0,
            unmapped_customers: mapping.unmapped_customers,
            unmapped_products: mapping.unmapped_products(),
            customers_not_read: vec![],
            customers_without_graph: vec![],
            distributor_lines_skipped: 0,
        },
        lines: vec![],
        mapping,
    }
}

/// The saved decisions behind `recon()`: Kowalski by hand, Sunrise not billed, item 760.
fn setup() -> Setup {
    let mut s = Setup::default();
    s.settings.mapping.customers = vec![
        CustomerOverride {
            tenant_id: KOWALSKI.into(),
            psa: Some(cw(252)),
        },
        CustomerOverride {
            tenant_id: SUNRISE.into(),
            psa: None,
        },
    ];
    s.settings.mapping.products = vec![ProductOverride {
        psa_product: PsaProductRef::ConnectwiseCatalogItem(760),
        stock_code: DEF_P1M.into(),
    }];
    s
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(s: &mut State, setup: &mut Setup, code: KeyCode) -> Action {
    mapping::on_key(s, setup, key(code))
}

fn typed(s: &mut State, setup: &mut Setup, text: &str) {
    for c in text.chars() {
        press(s, setup, KeyCode::Char(c));
    }
}

/// The view as the app shows it: the pane's area inside the frame (tab bar above, footer with
/// the view's keys below).
fn screen(s: &State, setup: &Setup, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    let theme = Theme::new(false);
    terminal
        .draw(|f| {
            let area = Rect::new(1, 2, w - 2, h - 4);
            mapping::render(s, setup, &theme, f, area);
            let mut spans = Vec::new();
            for hint in mapping::hints(s) {
                spans.push(Span::raw(hint.key));
                spans.push(Span::raw(format!(" {}  ", hint.action)));
            }
            f.render_widget(
                Paragraph::new(TLine::from(spans)),
                Rect::new(0, h - 1, w, 1),
            );
        })
        .unwrap();
    buffer_text(terminal.backend().buffer())
}

fn snap(name: &str, s: &State, setup: &Setup) {
    for (w, h) in SIZES {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(s, setup, w, h));
    }
}

fn open() -> (State, Setup) {
    let setup = setup();
    (State::new(Arc::new(recon()), &setup), setup)
}

/// Move the cursor to the row of this tenant.
fn to_customer(s: &mut State, setup: &mut Setup, tenant: &str) {
    press(s, setup, KeyCode::Home);
    for _ in 0..s.customers.len() {
        if s.current()
            .and_then(|r| s.customer(r))
            .map(|c| c.tenant_id.as_str())
            == Some(tenant)
        {
            return;
        }
        press(s, setup, KeyCode::Down);
    }
    panic!("{tenant} is not listed");
}

/// The saved settings of a `Changed` action.
fn saved(a: Action) -> Setup {
    let Action::Changed(effects) = a else {
        panic!("expected Changed, got {a:?}");
    };
    let saves: Vec<Setup> = effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Save(s) => Some(*s),
            _ => None,
        })
        .collect();
    assert_eq!(saves.len(), 1, "one Save");
    saves.into_iter().next().unwrap()
}

fn override_of(setup: &Setup, tenant: &str) -> Option<Option<PsaCustomerRef>> {
    let all: Vec<_> = setup
        .settings
        .mapping
        .customers
        .iter()
        .filter(|o| o.tenant_id.eq_ignore_ascii_case(tenant))
        .collect();
    assert!(all.len() <= 1, "never duplicated: {all:?}");
    all.first().map(|o| o.psa.clone())
}

// ----- screens --------------------------------------------------------------------------------

#[test]
fn screens_customers_products_picker_and_after_accepting() {
    let (mut s, mut setup) = open();
    // Unmapped first (by name), then not billed, then the linked ones.
    let order: Vec<&str> = s
        .customers
        .iter()
        .map(|r| s.customer(*r).unwrap().name.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "Lonely Bakery",
            "Redgum Wealth Pty Ltd",
            "Sunrise Glass Pty Ltd",
            "Atlas Outsourcing Pty Ltd",
            "Bottlebrush Pathology",
            "Kowalski Accounting",
        ]
    );
    to_customer(&mut s, &mut setup, REDGUM);
    let text = screen(&s, &setup, 80, 24);
    assert!(text.contains("Customers: 2 unmapped"), "{text}");
    assert!(text.contains("Products: 2 unmapped"), "{text}");
    assert!(text.contains("maybe City Wealth — it is billed"), "{text}");
    snap("customers", &s, &setup);

    // The suggestion list: ↓ moves to the second.
    press(&mut s, &mut setup, KeyCode::Char('s'));
    press(&mut s, &mut setup, KeyCode::Down);
    assert_eq!(s.focus, Focus::Suggestions(1));
    snap("suggestions", &s, &setup);
    press(&mut s, &mut setup, KeyCode::Esc);

    // The picker of every PSA record, filtered.
    press(&mut s, &mut setup, KeyCode::Char('o'));
    assert!(mapping::editing(&s));
    typed(&mut s, &mut setup, "wealth");
    let text = screen(&s, &setup, 80, 24);
    assert!(
        text.contains("Link Redgum Wealth Pty Ltd to: 3 of 7"),
        "{text}"
    );
    assert!(text.contains("Zenith Wealth Partners"), "{text}");
    assert!(!text.contains("Kowalski & Co  "), "{text}");
    snap("picker_filtered", &s, &setup);
    press(&mut s, &mut setup, KeyCode::Esc);
    assert!(!mapping::editing(&s));

    // Accepting the top suggestion: saved, shown as pending until the next reconcile.
    let after = saved(press(&mut s, &mut setup, KeyCode::Char('a')));
    assert_eq!(override_of(&after, REDGUM), Some(Some(cw(300))));
    let text = screen(&s, &setup, 80, 24);
    assert!(
        text.contains("Redgum Wealth Pty Ltd is linked to City Wealth."),
        "{text}"
    );
    assert!(text.contains("→ City Wealth (saved"), "{text}");
    snap("after_accepting", &s, &setup);

    // Products.
    press(&mut s, &mut setup, KeyCode::Tab);
    assert_eq!(s.section, Section::Products);
    assert_eq!(
        s.products,
        vec![
            Row::UnmappedProduct(0),
            Row::MissingProduct(1),
            Row::MappedProduct(2, 0),
            Row::MappedProduct(0, 0),
        ]
    );
    let text = screen(&s, &setup, 80, 24);
    assert!(text.contains("NO CODE"), "{text}");
    assert!(text.contains("NO PSA ITEM"), "{text}");
    snap("products", &s, &setup);
    press(&mut s, &mut setup, KeyCode::Down);
    let text = screen(&s, &setup, 120, 40);
    assert!(
        text.contains("Create a catalog item with it in vendorSku P1Y:CFQ7TTC0LH1G:0002:1:"),
        "{text}"
    );
    snap("products_missing", &s, &setup);
}

#[test]
fn tiny_and_odd_sizes_never_panic() {
    let (mut s, mut setup) = open();
    for (w, h) in [(10, 5), (20, 6), (40, 8), (80, 10), (200, 60)] {
        screen(&s, &setup, w, h);
    }
    press(&mut s, &mut setup, KeyCode::Char('o'));
    for (w, h) in [(10, 5), (20, 6), (40, 8)] {
        screen(&s, &setup, w, h);
    }
}

// ----- keys -----------------------------------------------------------------------------------

#[test]
fn one_key_accepts_the_top_suggestion_once() {
    let (mut s, mut setup) = open();
    to_customer(&mut s, &mut setup, REDGUM);
    let before = setup.settings.mapping.customers.len();
    let after = saved(press(&mut s, &mut setup, KeyCode::Enter));
    assert_eq!(override_of(&setup, REDGUM), Some(Some(cw(300))));
    assert_eq!(after, setup, "the Save carries the changed settings");
    assert_eq!(setup.settings.mapping.customers.len(), before + 1);
    // Again: nothing changes, nothing is saved, nothing duplicated.
    assert!(matches!(
        press(&mut s, &mut setup, KeyCode::Char('a')),
        Action::None
    ));
    assert_eq!(setup.settings.mapping.customers.len(), before + 1);
    // The second suggestion replaces it.
    let after = saved(press(&mut s, &mut setup, KeyCode::Char('2')));
    assert_eq!(override_of(&after, REDGUM), Some(Some(cw(301))));
    assert_eq!(setup.settings.mapping.customers.len(), before + 1);
    // A suggestion that is not there.
    assert!(matches!(
        press(&mut s, &mut setup, KeyCode::Char('4')),
        Action::None
    ));
    assert!(s.note.as_ref().unwrap().0.contains("only 2 suggestions"));
}

#[test]
fn the_suggestion_list_picks_the_second() {
    let (mut s, mut setup) = open();
    to_customer(&mut s, &mut setup, REDGUM);
    press(&mut s, &mut setup, KeyCode::Char('s'));
    press(&mut s, &mut setup, KeyCode::Down);
    press(&mut s, &mut setup, KeyCode::Down);
    assert_eq!(s.focus, Focus::Suggestions(1), "stops at the last");
    let after = saved(press(&mut s, &mut setup, KeyCode::Enter));
    assert_eq!(override_of(&after, REDGUM), Some(Some(cw(301))));
    assert_eq!(s.focus, Focus::List);
}

#[test]
fn a_manual_link_through_the_picker() {
    let (mut s, mut setup) = open();
    to_customer(&mut s, &mut setup, BAKERY);
    // No suggestion: a/Enter says what to do instead.
    assert!(matches!(
        press(&mut s, &mut setup, KeyCode::Char('a')),
        Action::None
    ));
    assert!(s.note.as_ref().unwrap().0.contains("o links it by hand"));
    press(&mut s, &mut setup, KeyCode::Char('o'));
    typed(&mut s, &mut setup, "zen");
    let after = saved(press(&mut s, &mut setup, KeyCode::Enter));
    assert_eq!(override_of(&after, BAKERY), Some(Some(cw(302))));
    assert!(!mapping::editing(&s));
    assert!(
        s.note
            .as_ref()
            .unwrap()
            .0
            .contains("Lonely Bakery is linked to Zenith Wealth Partners")
    );

    // Taking a record another customer has automatically says that one will be unmapped.
    to_customer(&mut s, &mut setup, REDGUM);
    press(&mut s, &mut setup, KeyCode::Char('o'));
    typed(&mut s, &mut setup, "atlas");
    saved(press(&mut s, &mut setup, KeyCode::Enter));
    assert!(
        s.note.as_ref().unwrap().0.contains(
            "Atlas Outsourcing Pty Ltd was linked to it automatically and will be unmapped"
        )
    );
    // Esc leaves the picker without a change; a filter matching nothing keeps it open.
    press(&mut s, &mut setup, KeyCode::Char('o'));
    typed(&mut s, &mut setup, "zzz");
    assert!(matches!(
        press(&mut s, &mut setup, KeyCode::Enter),
        Action::None
    ));
    assert!(mapping::editing(&s));
    assert!(matches!(
        press(&mut s, &mut setup, KeyCode::Esc),
        Action::None
    ));
    assert!(!mapping::editing(&s));
}

#[test]
fn not_billed_and_undo() {
    let (mut s, mut setup) = open();
    to_customer(&mut s, &mut setup, REDGUM);
    let after = saved(press(&mut s, &mut setup, KeyCode::Char('n')));
    assert_eq!(override_of(&after, REDGUM), Some(None));
    let text = screen(&s, &setup, 120, 40);
    assert!(text.contains("→ not billed (saved"), "{text}");
    // u removes it again.
    let after = saved(press(&mut s, &mut setup, KeyCode::Char('u')));
    assert_eq!(override_of(&after, REDGUM), None);
    // u on the customer linked by hand: back to automatic.
    to_customer(&mut s, &mut setup, KOWALSKI);
    let after = saved(press(&mut s, &mut setup, KeyCode::Char('u')));
    assert_eq!(override_of(&after, KOWALSKI), None);
    assert!(screen(&s, &setup, 120, 40).contains("→ automatic again (saved"));
    // u on an automatic link: nothing to undo.
    to_customer(&mut s, &mut setup, ATLAS);
    assert!(matches!(
        press(&mut s, &mut setup, KeyCode::Char('u')),
        Action::None
    ));
    assert!(s.note.as_ref().unwrap().0.contains("linked automatically"));
    // The only customer decision left is Sunrise's.
    assert_eq!(setup.settings.mapping.customers.len(), 1);
}

#[test]
fn products_accept_pick_and_undo() {
    let (mut s, mut setup) = open();
    press(&mut s, &mut setup, KeyCode::Right);
    assert_eq!(s.section, Section::Products);
    // The legacy item: accept its suggested stock code.
    let after = saved(press(&mut s, &mut setup, KeyCode::Char('a')));
    let o = after
        .settings
        .mapping
        .product(&PsaProductRef::ConnectwiseCatalogItem(747))
        .unwrap();
    assert_eq!(o.stock_code, APPS_P1Y);
    // Pick another code by hand: replaces it.
    press(&mut s, &mut setup, KeyCode::Char('o'));
    typed(&mut s, &mut setup, "premium");
    let after = saved(press(&mut s, &mut setup, KeyCode::Enter));
    assert_eq!(after.settings.mapping.products.len(), 2);
    assert_eq!(
        after
            .settings
            .mapping
            .product(&PsaProductRef::ConnectwiseCatalogItem(747))
            .unwrap()
            .stock_code,
        BP_P1Y
    );
    // The stock code without a PSA product: map the legacy item to it from there.
    press(&mut s, &mut setup, KeyCode::Down);
    assert_eq!(s.current(), Some(Row::MissingProduct(1)));
    press(&mut s, &mut setup, KeyCode::Char('o'));
    let after = saved(press(&mut s, &mut setup, KeyCode::Enter));
    assert_eq!(
        after
            .settings
            .mapping
            .product(&PsaProductRef::ConnectwiseCatalogItem(747))
            .unwrap()
            .stock_code,
        APPS_P1Y
    );
    assert_eq!(after.settings.mapping.products.len(), 2);
    // The item mapped by hand: u gives it back to its own identifier.
    press(&mut s, &mut setup, KeyCode::Down);
    assert_eq!(s.current(), Some(Row::MappedProduct(2, 0)));
    let after = saved(press(&mut s, &mut setup, KeyCode::Char('u')));
    assert!(
        after
            .settings
            .mapping
            .product(&PsaProductRef::ConnectwiseCatalogItem(760))
            .is_none()
    );
    // The item mapped by its vendorSku has nothing to undo.
    press(&mut s, &mut setup, KeyCode::Down);
    assert!(matches!(
        press(&mut s, &mut setup, KeyCode::Char('u')),
        Action::None
    ));
}

#[test]
fn viewers_read_but_cannot_change() {
    let (mut s, mut setup) = open();
    setup.settings.microsoft.setup_user_oid = "admin-oid".into();
    setup.settings.microsoft.signed_in_oid = "viewer-oid".into();
    setup.settings.access.allowed.push(AllowedUser {
        oid: "viewer-oid".into(),
        role: Role::Viewer,
        ..Default::default()
    });
    setup.secrets.microsoft_refresh_token = Some("r".into());
    assert!(!mapping::may_change(&setup));
    let before = setup.clone();
    to_customer(&mut s, &mut setup, REDGUM);
    for k in ['a', '2', 'n', 'o'] {
        assert!(matches!(
            press(&mut s, &mut setup, KeyCode::Char(k)),
            Action::None
        ));
        assert!(s.note.as_ref().unwrap().0.contains("Viewers cannot change"));
    }
    to_customer(&mut s, &mut setup, KOWALSKI);
    assert!(matches!(
        press(&mut s, &mut setup, KeyCode::Char('u')),
        Action::None
    ));
    assert_eq!(setup, before, "nothing changed");
    assert!(!mapping::editing(&s), "no picker opened");
    // An operator may.
    setup.settings.access.allowed[0].role = Role::Operator;
    to_customer(&mut s, &mut setup, REDGUM);
    saved(press(&mut s, &mut setup, KeyCode::Char('a')));
}

#[test]
fn filter_sections_and_close() {
    let (mut s, mut setup) = open();
    press(&mut s, &mut setup, KeyCode::Char('/'));
    assert!(mapping::editing(&s));
    typed(&mut s, &mut setup, "wealth");
    press(&mut s, &mut setup, KeyCode::Enter);
    assert!(!mapping::editing(&s));
    // Redgum (by its suggestion's name too) only.
    assert_eq!(s.customers.len(), 1);
    assert_eq!(
        s.customer(s.customers[0]).unwrap().tenant_id.as_str(),
        REDGUM
    );
    // Esc clears the filter first, then closes the view.
    assert!(matches!(
        press(&mut s, &mut setup, KeyCode::Esc),
        Action::None
    ));
    assert_eq!(s.customers.len(), 6);
    assert!(matches!(
        press(&mut s, &mut setup, KeyCode::Esc),
        Action::Close
    ));
    // Tab and ←/→ switch sections.
    press(&mut s, &mut setup, KeyCode::Tab);
    assert_eq!(s.section, Section::Products);
    press(&mut s, &mut setup, KeyCode::Left);
    assert_eq!(s.section, Section::Customers);
}

#[test]
fn refresh_keeps_the_cursor_on_the_same_customer() {
    let (mut s, mut setup) = open();
    to_customer(&mut s, &mut setup, REDGUM);
    saved(press(&mut s, &mut setup, KeyCode::Char('a')));
    // The next reconciliation: Redgum linked by hand, one unmapped customer left.
    let mut r = recon();
    for c in &mut r.mapping.customers {
        if c.tenant_id == REDGUM {
            c.psa = mapped(300, "City Wealth", MatchReason::Manual);
        }
    }
    r.mapping.unmapped_customers = 1;
    mapping::refresh(&mut s, Arc::new(r));
    assert_eq!(mapping::unmapped_counts(&s.rec), (1, 2));
    assert_eq!(
        s.note.as_ref().unwrap().0,
        "Reconciled again: 1 unmapped customer(s), 2 unmapped product(s)."
    );
    let c = s.customer(s.current().unwrap()).unwrap();
    assert_eq!(c.tenant_id, REDGUM, "the cursor followed the customer");
    assert!(matches!(c.psa, PsaLink::Mapped { .. }));
    let text = screen(&s, &setup, 80, 24);
    assert!(text.contains("Customers: 1 unmapped"), "{text}");
    assert!(!text.contains("(saved"), "nothing pending any more: {text}");
}

#[test]
fn without_a_psa_there_is_nothing_to_link() {
    let mut r = recon();
    r.mapping.psa = None;
    for c in &mut r.mapping.customers {
        c.psa = PsaLink::NoPsa;
    }
    r.mapping.unmapped_customers = 0;
    r.mapping.unmapped_psa_products.clear();
    r.mapping.stock_codes_without_psa_product = 0;
    r.mapping.psa_records.clear();
    let mut setup = Setup::default();
    let mut s = State::new(Arc::new(r), &setup);
    assert_eq!(mapping::unmapped_counts(&s.rec), (0, 0));
    for k in ['a', 'n', 'o', 'u'] {
        assert!(matches!(
            press(&mut s, &mut setup, KeyCode::Char(k)),
            Action::None
        ));
    }
    assert_eq!(setup, Setup::default());
    let text = screen(&s, &setup, 80, 24);
    assert!(text.contains("No PSA was reconciled"), "{text}");
}

// ----- the demo world -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_the_demo_customers_suggestion_maps_it_on_the_next_reconcile() {
    use cspsync::demo::PsaKind;
    use cspsync::engine::fetch::{self, FetchProgress};

    let world = support::sim::demo_world();
    let sim = support::sim::start(&world).await;
    let (mut setup, dir) = support::sim::saved_setup(&sim, &world).await;
    assert!(mapping::may_change(&setup), "the setup account is admin");

    let sources = cspsync::demo::connect(&sim, &world, PsaKind::ConnectWise)
        .await
        .unwrap();
    let (tx, _rx) = tokio::sync::watch::channel(FetchProgress::default());
    let snap = fetch::fetch(&sources, &tx).await.unwrap();
    let reconcile = |setup: &Setup| {
        domain::reconcile(
            &snap,
            &Options {
                overrides: setup.settings.mapping.clone(),
                ..Options::default()
            },
        )
        .unwrap()
    };
    let r = reconcile(&setup);
    let (customers_before, _) = mapping::unmapped_counts(&r);
    assert!(customers_before >= 1, "the demo has an unmapped customer");
    let mut s = State::new(Arc::new(r), &setup);
    // The first row is an unmapped customer with a suggestion.
    let c = s.customer(s.current().unwrap()).unwrap().clone();
    let PsaLink::Unmapped { suggestions } = &c.psa else {
        panic!("the first row is not unmapped: {c:?}");
    };
    let top = suggestions.first().expect("a suggestion").clone();
    let text = screen(&s, &setup, 80, 24);
    assert!(text.contains(&format!("maybe {} — ", top.label)), "{text}");

    let after = saved(press(&mut s, &mut setup, KeyCode::Char('a')));
    assert_eq!(
        after.settings.mapping.customer(&c.tenant_id).unwrap().psa,
        Some(top.target.clone())
    );
    ConfigDir {
        dir: dir.path().to_path_buf(),
    }
    .save_settings(&after.settings)
    .unwrap();

    // Reconciled again with the saved decision: mapped by hand, its lines checked.
    let r = reconcile(&setup);
    mapping::refresh(&mut s, Arc::new(r));
    assert_eq!(mapping::unmapped_counts(&s.rec).0, customers_before - 1);
    let now = s.customer(s.current().unwrap()).unwrap();
    assert_eq!(now.tenant_id, c.tenant_id, "the cursor stayed on it");
    assert!(matches!(
        now.psa,
        PsaLink::Mapped {
            reason: MatchReason::Manual,
            ..
        }
    ));
    let lines: Vec<_> = s
        .rec
        .lines
        .iter()
        .filter(|l| l.customer_tenant_id == c.tenant_id)
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| !l.has(Status::UnmappedCustomer)));
    assert!(
        lines.iter().any(|l| l.psa_qty.is_some()),
        "the lines get their PSA quantities: {lines:#?}"
    );

    // The headless command reads the same saved decision.
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_str().unwrap().to_string();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_cspsync"))
                .args([
                    "--config-dir",
                    &dir,
                    "reconcile",
                    "--psa",
                    "connectwise",
                    "--format",
                    "json",
                ])
                .env_remove("CSPSYNC_CONFIG_DIR")
                .env("NO_COLOR", "1")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("JSON from the command ({e}): {stderr}");
    });
    assert_eq!(
        j["summary"]["unmapped_customers"].as_u64(),
        Some((customers_before - 1) as u64),
        "{stderr}"
    );
    let customer = j["mapping"]["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["tenant_id"].as_str() == Some(c.tenant_id.as_str()))
        .unwrap();
    assert_eq!(customer["psa"]["state"], "mapped");
    assert_eq!(customer["psa"]["reason"]["by"], "manual");
}
